"""纪实报告 as a page and a PDF, the 确认单 of a class (PDF, a QR code a student), and the page a QR code
opens: a signed, expiring, read-only link to one student's report that needs no login and leads nowhere
else (SPEC §7, issue 7)."""
from __future__ import annotations

import dataclasses
from datetime import timedelta
from urllib.parse import quote

import sqlalchemy as sa
from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.exceptions import HTTPException

from models import policy, reports
from models.base import db
from models.clock import local, now
from models.org import SchoolClass, Student
from views.actions import render_page
from views.pdf import report_pdf, slips_pdf

bp = Blueprint("reports", __name__)
LINK_SALT = "cqe-report-link"


def report_title(student: Student) -> str:
    city = student.school.district.city.name if student.school.district.city else ""
    return f"{city}初中学生综合素质评价纪实报告"


def slip_title(klass: SchoolClass) -> str:
    city = klass.school.district.city.name if klass.school.district.city else ""
    return f"{city}初中学生综合素质评价结果确认单"


# ---------------------------------------------------------------------------------------------
# Signed links (the QR code on a 确认单)


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=LINK_SALT)


def link_token(student: Student, days: int | None = None) -> tuple[str, str]:
    """A token for the student's report, valid ``days`` from now (the app clock): (token, expiry date)."""
    days = days or current_app.config["CQE_REPORT_LINK_DAYS"]
    expires = now() + timedelta(days=days)
    token = _serializer().dumps({"s": student.id, "e": int(expires.timestamp())})
    return token, local(expires).strftime("%Y-%m-%d")


class LinkError(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message = message
        self.status = status


def read_token(token: str) -> Student:
    """The student a link is for, or LinkError: a tampered link and an expired one say so, never more."""
    try:
        payload = _serializer().loads(token)
        student_id, expires = int(payload["s"]), int(payload["e"])
    except (BadSignature, KeyError, TypeError, ValueError):
        raise LinkError("此链接无效：二维码或链接不完整，或已被改动。请扫描确认单上的二维码。", 404) from None
    if now().timestamp() >= expires:
        raise LinkError("此链接已过期。请向班主任索取新的确认单，或登录平台查看《纪实报告》。", 410)
    student = db.session.get(Student, student_id)
    if student is None or not student.participates:
        raise LinkError("此链接无效：二维码或链接不完整，或已被改动。请扫描确认单上的二维码。", 404)
    return student


def _pdf(data: bytes, name: str) -> Response:
    return Response(data, mimetype="application/pdf", headers={
        "Content-Disposition": f"inline; filename=report.pdf; filename*=UTF-8''{quote(name)}",
        "Cache-Control": "private, no-store"})


# ---------------------------------------------------------------------------------------------
# Signed-in pages


def _visible_student(student_id: int) -> Student:
    student = db.session.get(Student, student_id)
    if student is None or not policy.report_visible(current_user, student):
        abort(404, description="学生不存在或不在您的查看范围内。")
    return student


def _report_for_viewer(student: Student):
    """The report as the signed-in user may read it: a classmate gets no 学籍号."""
    report = reports.build(student)
    if not policy.sees_register_data(current_user, student):
        report = dataclasses.replace(report, xjh="—")
    return report


@bp.route("/reports/student/<int:student_id>/")
@login_required
def student_report(student_id: int):
    student = _visible_student(student_id)
    report = _report_for_viewer(student)
    return render_page("cqe/report.html", report=report, title=report_title(student), student=student,
                       pdf_url=url_for(".student_report_pdf", student_id=student.id), page_title="纪实报告")


@bp.route("/reports/student/<int:student_id>/report.pdf")
@login_required
def student_report_pdf(student_id: int):
    student = _visible_student(student_id)
    report = _report_for_viewer(student)
    suffix = f"-{student.xjh}" if report.xjh == student.xjh else ""
    return _pdf(report_pdf(report, report_title(student)), f"纪实报告-{student.name}{suffix}.pdf")


def slips_for(klass: SchoolClass) -> list[dict]:
    """The 确认单 of a class: every participating student's report and a fresh signed link."""
    students = db.session.execute(sa.select(Student).where(Student.class_id == klass.id).order_by(Student.xjh)
                                  ).scalars().all()
    slips = []
    for student in students:
        if not student.participates:
            continue
        token, expires = link_token(student)
        slips.append({"report": reports.build(student), "expires": expires,
                      "url": url_for("reports.public_report", token=token, _external=True)})
    return slips


@bp.route("/reports/class/<int:class_id>/slips.pdf")
@login_required
def class_slips(class_id: int):
    klass = policy.get_scoped(current_user, SchoolClass, class_id)
    if klass is None:
        abort(404, description="班级不存在或不在您的权限范围内。")
    decision = policy.check(current_user, "print_reports", klass, in_scope=True)
    if not decision:
        abort(decision.status, description=decision.reason)
    data = slips_pdf(slips_for(klass), slip_title(klass))
    return _pdf(data, f"确认单-{klass.school.name}-{klass.name}.pdf")


# ---------------------------------------------------------------------------------------------
# The QR code's page: no login, one student's report, nothing else


def _public_headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _public(token: str, respond) -> Response:
    """A QR link's answer: ``respond(student)`` for a good link, a plain page saying why for any other."""
    try:
        student = read_token(token)
    except LinkError as exc:
        return _public_headers(Response(render_template("cqe/report_link_error.html", message=exc.message),
                                        status=exc.status))
    return _public_headers(respond(student))


@bp.route("/r/<token>")
def public_report(token: str):
    return _public(token, lambda student: Response(render_template(
        "cqe/report_public.html", report=reports.build(student), title=report_title(student),
        pdf_url=url_for(".public_report_pdf", token=token))))


@bp.route("/r/<token>/report.pdf")
def public_report_pdf(token: str):
    return _public(token, lambda student: _pdf(report_pdf(reports.build(student), report_title(student)),
                                               f"纪实报告-{student.name}.pdf"))


# ---------------------------------------------------------------------------------------------
# Batches: a class, a school or a district as one zip (an RQ job with a progress bar)


def _batch_choices() -> list[tuple[str, int, str]]:
    """(scope, id, label) the user may print: their district(s), schools and classes."""
    from jobs.reports import SCOPES

    out = []
    for scope, model in SCOPES.items():
        if not policy.can(current_user, "print_reports", model):
            continue
        if scope == "class" and any(c[0] == "district" for c in out):
            continue  # a district picks a school or the whole district, not one of its thousand classes
        rows = db.session.execute(sa.select(model).where(policy.scope(current_user, model))).scalars().all()
        for obj in rows:
            if policy.check(current_user, "print_reports", obj, in_scope=True):
                label = f"{obj.school.name} {obj.name}" if scope == "class" else obj.name
                out.append((scope, obj.id, label))
    order = {"district": 0, "school": 1, "class": 2}
    return sorted(out, key=lambda c: (order[c[0]], c[2]))


def _batch_meta(token: str) -> dict:
    import json
    import os
    import re

    from jobs.reports import batch_dir

    if not re.fullmatch(r"[0-9a-f]{32}", token):
        abort(404)
    try:
        with open(os.path.join(batch_dir(), token + ".json")) as fh:
            meta = json.load(fh)
    except OSError:
        abort(404)
    if meta.get("user_id") != current_user.id:
        abort(404)
    return meta


@bp.route("/reports/batch/", methods=["GET", "POST"])
@login_required
def batch():
    import jobs
    from jobs import reports as report_jobs

    choices = _batch_choices()
    if not choices:
        abort(403, description="您的角色不能批量生成纪实报告或确认单。")
    if request.method == "POST":
        scope, _, ident = request.form.get("target", "").partition(":")
        kind = request.form.get("kind", "")
        if kind not in report_jobs.KINDS or not ident.isdigit():
            flash("请选择范围和类型。", "error")
            return redirect(url_for(".batch"))
        try:
            report_jobs.scope_object(current_user, scope, int(ident))
        except policy.Denied as exc:
            abort(exc.status, description=exc.reason)
        args = (current_user.id, scope, int(ident), kind, request.host_url)
        q = jobs.live_queue()  # None when Redis is down: then in this request
        if q is not None:
            job = q.enqueue(report_jobs.report_batch, *args, job_timeout=report_jobs.TIMEOUT, result_ttl=24 * 3600,
                            meta={"user_id": current_user.id, "progress": None})
            session["cqe_batch_job"] = job.id
            return redirect(url_for(".batch"))
        result = report_jobs.build_batch(*args, report=lambda *a: None)
        db.session.rollback()
        session["cqe_batch_token"] = result["token"]
        return redirect(url_for(".batch"))
    job_id, ready = session.get("cqe_batch_job"), None
    if job_id:
        info = None
        try:
            info = jobs.status(job_id)
        except Exception:  # noqa: BLE001 - Redis down: the job's outcome is unknown for now
            info = None
        if info and info.get("status") == "finished" and info.get("result"):
            session.pop("cqe_batch_job")
            session["cqe_batch_token"] = info["result"]["token"]
            job_id = None
        elif not info or info.get("status") in ("failed", "stopped", "canceled"):
            session.pop("cqe_batch_job")
            if info:
                flash("批量生成失败，请稍后重试或联系管理员。", "error")
            job_id = None
    token = session.get("cqe_batch_token")
    if token:
        try:
            ready = {**_batch_meta(token), "token": token}
        except HTTPException:
            session.pop("cqe_batch_token")
    return render_page("cqe/report_batch.html", choices=choices, job_id=job_id, ready=ready,
                       page_title="批量生成纪实报告与确认单")


@bp.route("/reports/batch/<token>.zip")
@login_required
def batch_download(token: str):
    import os

    from flask import send_file

    from jobs.reports import batch_dir

    meta = _batch_meta(token)
    return send_file(os.path.join(batch_dir(), token + ".zip"), mimetype="application/zip", as_attachment=True,
                     download_name=meta.get("name") or "reports.zip", max_age=0)
