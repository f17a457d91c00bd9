"""Report batches (issue 7): every participating student's 纪实报告, or every class's 确认单, of a class, a
school or a district as one zip, built by an RQ job with a progress bar (inline without Redis).

The zip is written under ``instance/batches/<token>.zip`` with a ``.json`` naming its owner; only the user
who asked for it can download it (views/reports.py).
"""
from __future__ import annotations

import json
import os
import secrets
import zipfile

import sqlalchemy as sa
from flask import current_app

from jobs import app_context, job, progress
from models import policy, reports
from models.accounts import User
from models.base import db
from models.org import District, School, SchoolClass, Student

TIMEOUT = 3 * 3600  # a district of 50,000 students at ~50 reports a second is about 20 minutes
KINDS = {"reports": "纪实报告", "slips": "确认单"}
SCOPES = {"class": SchoolClass, "school": School, "district": District}


def batch_dir() -> str:
    path = os.path.join(current_app.instance_path, "batches")
    os.makedirs(path, exist_ok=True)
    return path


def scope_object(user: User, scope: str, ident: int):
    """The class, school or district, if the user may print reports for it (else policy.Denied)."""
    model = SCOPES.get(scope)
    obj = policy.get_scoped(user, model, ident) if model is not None else None
    if obj is None:
        raise policy.Denied("班级、学校或区不存在或不在您的权限范围内。", 404)
    policy.require(user, "print_reports", obj, in_scope=True)
    return obj


def _classes(obj) -> list[SchoolClass]:
    stmt = sa.select(SchoolClass).join(School, SchoolClass.school_id == School.id)
    if isinstance(obj, SchoolClass):
        stmt = stmt.where(SchoolClass.id == obj.id)
    elif isinstance(obj, School):
        stmt = stmt.where(SchoolClass.school_id == obj.id)
    else:
        stmt = stmt.where(School.district_id == obj.id)
    return db.session.execute(stmt.order_by(School.code, SchoolClass.grade, SchoolClass.number)).scalars().all()


def _safe(name: str) -> str:
    return "".join("_" if c in '/\\:*?"<>|' else c for c in name).strip() or "_"


def build_batch(user_id: int, scope: str, ident: int, kind: str, base_url: str, report=progress,
                release: bool = False) -> dict:
    """Write the zip; returns {"token", "files", "students", "name"}. ``base_url`` is the site the QR codes
    point at (the address the batch was asked for from). ``release``: empty the session after each class
    (a job's own session: memory stays flat over a district; a request keeps its objects)."""
    from views.pdf import report_pdf, slips_pdf
    from views.reports import report_title, slip_title, slips_for

    user = db.session.get(User, user_id)
    if user is None or kind not in KINDS:
        raise ValueError("unknown user or kind")
    obj = scope_object(user, scope, ident)
    name = f"{KINDS[kind]}-{getattr(obj, 'name', '')}.zip"
    # ids and names first: the session is emptied after each class to keep memory flat over a district
    classes = [(c.id, f"{_safe(c.school.name)}/{_safe(c.name)}") for c in _classes(obj)]
    counts = dict(db.session.execute(
        sa.select(Student.class_id, sa.func.count()).where(Student.class_id.in_([c for c, _ in classes]),
                                                           Student.status == "enrolled")
        .group_by(Student.class_id)).all()) if classes else {}
    total = sum(counts.values()) if kind == "reports" else len(classes)
    token = secrets.token_hex(16)
    path = os.path.join(batch_dir(), token)
    files = students = done = 0
    report(0, total, f"{KINDS[kind]}：0 / {total}")
    with current_app.test_request_context(base_url=base_url), \
            zipfile.ZipFile(path + ".part", "w", compression=zipfile.ZIP_STORED) as zf:
        for class_id, folder in classes:
            klass = db.session.get(SchoolClass, class_id)
            if kind == "slips":
                slips = slips_for(klass)
                zf.writestr(f"{folder}-确认单.pdf", slips_pdf(slips, slip_title(klass)))
                files += 1
                students += len(slips)
                done += 1
            else:
                for student in db.session.execute(sa.select(Student).where(Student.class_id == klass.id)
                                                  .order_by(Student.xjh)).scalars():
                    if not student.participates:
                        continue
                    pdf = report_pdf(reports.build(student), report_title(student))
                    zf.writestr(f"{folder}/{_safe(student.xjh)}-{_safe(student.name)}.pdf", pdf)
                    files += 1
                    students += 1
                    done += 1
                    if done % 20 == 0:
                        report(done, total, f"{KINDS[kind]}：{done} / {total}")
            if release:
                db.session.expunge_all()
            if kind == "slips":
                report(done, total, f"{KINDS[kind]}：{done} / {total}")
    os.replace(path + ".part", path + ".zip")
    with open(path + ".json", "w") as fh:
        json.dump({"user_id": user_id, "name": name, "files": files, "students": students}, fh, ensure_ascii=False)
    report(total, total, f"{KINDS[kind]}：{total} / {total}")
    return {"token": token, "files": files, "students": students, "name": name}


@job(timeout=TIMEOUT)
@app_context
def report_batch(user_id: int, scope: str, ident: int, kind: str, base_url: str) -> dict:
    try:
        return build_batch(user_id, scope, ident, kind, base_url, release=True)
    finally:
        db.session.rollback()
