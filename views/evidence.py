"""实证材料 (Changsha, seed 001): students and parents upload the evidence portfolio from their phones; the
homeroom teacher and the class evaluation group follow each class's completeness and chase what is missing (催交
清单, also as xlsx for the parents); the school's staff and the district see it per class and per school.

Every page loads through ``policy.scope`` (404 for what is not the user's) and asks ``policy.check`` (403 with the
reason, e.g. the window); every change goes through ``models.evidence`` (policy, audit, one commit).
"""
from __future__ import annotations

import io
import os
from urllib.parse import quote

import sqlalchemy as sa
from flask import Blueprint, Response, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from flask_wtf import FlaskForm

from models import evaluation as ev
from models import evidence, policy
from models.base import db
from models.calendar import Term
from models.changsha import EvidenceFile, EvidenceItem, MaterialReview
from models.clock import local, now
from models.org import School, SchoolClass, Student
from views.actions import perform, render_page
from views.export import XLSX_MIME, printable_sheet, send_private_file
from views.i18n import _l, pick

bp = Blueprint("evidence", __name__)

CHASE_HEADER = [_l("序号"), _l("考号"), _l("姓名"), _l("缺少的实证材料"), _l("缺项数"), _l("还缺文件数")]
WINDOW_STATES = {"before": _l("尚未开始"), "open": _l("进行中"), "after": _l("已结束")}


# ---------------------------------------------------------------------------------------------
# Shared pieces


def _windows(student: Student, term: Term) -> list[dict]:
    """The phases in which files are added and removed, for the student's cohort, as the page shows them."""
    cohort = term.cohort_for_grade(student.school_class.grade)
    at = now()
    out = []
    for phase in evidence.PHASES:
        w = cohort.window(phase) if cohort else None
        if w is None:
            continue
        state = "before" if at < w.starts_at else ("open" if at < w.ends_at else "after")
        out.append({"name": w.name, "start": local(w.starts_at).strftime("%Y-%m-%d %H:%M"),
                    "end": local(w.ends_at).strftime("%Y-%m-%d %H:%M"), "state": state,
                    "state_name": WINDOW_STATES[state]})
    return out


def _term(student_or_school) -> Term:
    school = student_or_school.school if isinstance(student_or_school, (Student, SchoolClass)) else student_or_school
    term = policy.current_term(school.district_id)
    if term is None or not evidence.items_of(term):
        abort(404, description=_("本学期的评价方案没有实证材料。"))
    return term


def _portfolio(student: Student, term: Term) -> dict:
    """What a page about one student's portfolio shows: items by dimension with their files, what the user
    may do now (and why not), and the windows."""
    groups = evidence.student_items(student, term)
    add = policy.check(current_user, "create", evidence.probe(student, term))
    deletable = set()
    for group in groups:
        for status in group.items:
            for f in status.files:
                if policy.check(current_user, "delete", f, in_scope=True):
                    deletable.add(f.id)
    statuses = [s for g in groups for s in g.items]
    missing = [s for s in statuses if not s.complete]
    return {"groups": groups, "can_add": bool(add), "why_not": "" if add else add.reason, "deletable": deletable,
            "role_may_add": policy.can(current_user, "create", EvidenceFile),
            "windows": _windows(student, term), "missing": missing, "done": len(statuses) - len(missing),
            "total": len(statuses), "files_short": sum(s.short for s in missing), "term": term,
            "kinds": evidence.KIND_NAMES, "size_text": evidence.size_text, "formats_text": evidence.formats_text,
            "local": local, "pick": pick}


def _accept(item: EvidenceItem) -> str:
    """The file picker's hint (phones offer the camera for images); the server checks the content anyway."""
    types = {"pdf": ".pdf,application/pdf", "jpeg": ".jpg,.jpeg,image/jpeg", "png": ".png,image/png"}
    return ",".join(types[k] for k in item.formats if k in types)


def _upload(student: Student, item_id: int) -> EvidenceItem:
    """Save the posted file for one of the student's items; the outcome is flashed."""
    term = policy.current_term(student.school.district_id)
    item = policy.get_scoped(current_user, EvidenceItem, item_id)
    if item is None or term is None or item.profile_id != term.profile_id:
        abort(404, description=_("实证材料项目不存在。"))
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash(_("「%(item)s」：请先选择要上传的文件。", item=item.name), "error")
        return item
    data = upload.stream.read()  # bounded by MAX_CONTENT_LENGTH (413 beyond it)
    name = evidence.clean_filename(upload.filename)
    perform(lambda: evidence.save_evidence(current_user._get_current_object(), student, item, upload.filename, data),
            _("已上传「%(item)s」：%(name)s（%(size)s）。", item=item.name, name=name, size=evidence.size_text(len(data))))
    return item


# ---------------------------------------------------------------------------------------------
# Students and parents: /me/evidence


def family_has_evidence() -> bool:
    """Whether the signed-in student or parent has an evidence portfolio this term (the nav shows the link)."""
    from flask import g

    if "cqe_family_evidence" not in g:
        shown = False
        # Only a profile with an evidence phase has portfolios (asked once per request; no cohort lookups else).
        if current_user.is_authenticated and policy.runs_phase(current_user, "evidence"):
            for grant in current_user.grants:
                if grant.role in ("student", "parent") and grant.student is not None:
                    term = policy.current_term(grant.student.school.district_id)
                    shown = grant.student.school_class.grade in evidence.evidence_grades(term) and bool(
                        evidence.items_of(term))
                    break
        g.cqe_family_evidence = shown
    return g.cqe_family_evidence


@bp.app_context_processor
def _nav_globals():
    return {"cqe_family_evidence": family_has_evidence}



def _family() -> tuple[Student, str]:
    if not current_user.has_role("student", "parent"):
        abort(403, description=_("此页面供学生和家长使用。"))
    from views.family import family_student

    return family_student()


@bp.route("/me/evidence")
@login_required
def me():
    student, role = _family()
    term = _term(student)
    if student.school_class.grade not in evidence.evidence_grades(term):
        abort(404, description=_("本学期你所在年级没有实证材料阶段。"))
    # What the class evaluation group found wrong comes back to the student and the parents (教师审核的反馈).
    problems = db.session.execute(sa.select(MaterialReview).where(
        MaterialReview.term_id == term.id, MaterialReview.student_id == student.id,
        sa.or_(MaterialReview.authentic.is_(False), MaterialReview.complete.is_(False)))
        .order_by(MaterialReview.id)).scalars().all()
    return render_page("cqe/evidence/me.html", student=student, role=role, accept=_accept, review_problems=problems,
                       upload_url=lambda item: url_for(".me_upload", item_id=item.id),
                       page_title=_("我的实证材料") if role == "student" else _("孩子的实证材料"),
                       **_portfolio(student, term))


@bp.route("/me/evidence/item/<int:item_id>", methods=["POST"])
@login_required
def me_upload(item_id: int):
    student, _role = _family()
    item = _upload(student, item_id)
    return redirect(url_for(".me") + f"#item-{item.code}")


@bp.route("/evidence/file/<int:file_id>")
@login_required
def download(file_id: int):
    f = policy.get_scoped(current_user, EvidenceFile, file_id)
    if f is None:
        abort(404, description=_("文件不存在或不在您的权限范围内。"))
    path = evidence.file_path(f.sha256)
    if not os.path.exists(path):
        abort(404, description=_("文件内容缺失，请联系管理员。"))
    ext = evidence.KIND_EXTENSIONS[f.kind]
    endings = (".jpg", ".jpeg") if f.kind == "jpeg" else (f".{ext}",)
    name = f.filename if f.filename.lower().endswith(endings) else f"{f.filename}.{ext}"
    return send_private_file(path, evidence.KIND_MIMETYPES[f.kind], name, f"evidence.{ext}", inline=True)


@bp.route("/evidence/file/<int:file_id>/delete", methods=["POST"])
@login_required
def delete(file_id: int):
    f = policy.get_scoped(current_user, EvidenceFile, file_id)
    if f is None:
        abort(404, description=_("文件不存在或不在您的权限范围内。"))
    student_id, item_code, item_name, name = f.student_id, f.item.code, f.item.name, f.filename
    own = any(g.role in ("student", "parent") and g.student_id == student_id for g in current_user.grants)
    perform(lambda: evidence.delete_evidence(current_user._get_current_object(), f),
            _("已删除「%(item)s」的文件：%(name)s。", item=item_name, name=name))
    target = url_for(".me") if own else url_for(".student", student_id=student_id)
    return redirect(target + f"#item-{item_code}")


# ---------------------------------------------------------------------------------------------
# Staff: a school, a class, a student


def _tracked_class(class_id: int) -> tuple[SchoolClass, Term]:
    klass = policy.get_scoped(current_user, SchoolClass, class_id)
    if klass is None:
        abort(404, description=_("班级不存在或不在您的权限范围内。"))
    decision = policy.check(current_user, "track_evidence", klass, in_scope=True)
    if not decision:
        abort(decision.status, description=decision.reason)
    term = _term(klass)
    if klass.grade not in evidence.evidence_grades(term):
        abort(404, description=_("该班级所在年级本学期没有实证材料阶段。"))
    return klass, term


def _tracked_school(school_id: int) -> tuple[School, Term]:
    school = policy.get_scoped(current_user, School, school_id)
    if school is None:
        abort(404, description=_("学校不存在或不在您的权限范围内。"))
    decision = policy.check(current_user, "track_evidence", school, in_scope=True)
    if not decision:
        abort(decision.status, description=decision.reason)
    return school, _term(school)


def _evidence_classes(school: School, term: Term) -> list[SchoolClass]:
    return db.session.execute(sa.select(SchoolClass).where(
        SchoolClass.school_id == school.id, SchoolClass.grade.in_(evidence.evidence_grades(term)))
        .order_by(SchoolClass.grade, SchoolClass.number)).scalars().all()


def _may_track(obj) -> bool:
    return bool(policy.check(current_user, "track_evidence", obj, in_scope=True))


@bp.route("/evidence/")
@login_required
def index():
    """Where a user's evidence pages start: a student's own page, a teacher's class, a school's classes, a
    district's schools."""
    if current_user.has_role("student", "parent") and not policy.can(current_user, "track_evidence", SchoolClass):
        return redirect(url_for(".me"))
    schools = [s for s in db.session.execute(sa.select(School).where(policy.scope(current_user, School))
                                             .order_by(School.code)).scalars() if _may_track(s)]
    if len(schools) == 1:
        return redirect(url_for(".school", school_id=schools[0].id))
    if schools:
        rows = []
        by_district: dict[int, list[School]] = {}
        for s in schools:
            by_district.setdefault(s.district_id, []).append(s)
        for district_id, group in by_district.items():
            term = policy.current_term(district_id)
            if term is None or not evidence.items_of(term):
                continue  # a district whose profile collects no evidence
            tallies = evidence.completeness(Student.school_id, [Student.school_id.in_([s.id for s in group])], term)
            rows += [{"school": s, "tally": tallies.get(s.id, evidence.Tally())} for s in group]
        return render_page("cqe/evidence/index.html", rows=rows, classes=[], page_title=_("实证材料完成情况"),
                           total=sum((r["tally"] for r in rows), evidence.Tally()))
    classes = [c for c in db.session.execute(sa.select(SchoolClass).where(policy.scope(current_user, SchoolClass))
                                             .order_by(SchoolClass.grade, SchoolClass.number)).scalars()
               if _may_track(c) and c.grade in evidence.evidence_grades(policy.current_term(c.school.district_id))]
    if len(classes) == 1:
        return redirect(url_for(".klass", class_id=classes[0].id))
    if not classes:
        abort(403, description=_("您的角色不能查看实证材料完成情况。"))
    return render_page("cqe/evidence/index.html", rows=[], classes=classes, page_title=_("实证材料完成情况"),
                       total=evidence.Tally())


@bp.route("/evidence/school/<int:school_id>")
@login_required
def school(school_id: int):
    school, term = _tracked_school(school_id)
    classes = _evidence_classes(school, term)
    tallies = evidence.completeness(Student.class_id, [Student.school_id == school.id], term)
    rows = [{"klass": c, "tally": tallies.get(c.id, evidence.Tally())} for c in classes]
    return render_page("cqe/evidence/school.html", school=school, term=term, rows=rows,
                       total=sum((r["tally"] for r in rows), evidence.Tally()), items=len(evidence.items_of(term)),
                       page_title=_("实证材料完成情况"))


def _chase_rows(chases: list[evidence.Chase]) -> list[list]:
    """The 催交清单 as table rows, the same for the page and the xlsx."""
    return [[n, c.student.exam_number or "", c.student.name, c.text, len(c.missing), c.files_short]
            for n, c in enumerate(chases, 1)]


@bp.route("/evidence/class/<int:class_id>")
@login_required
def klass(class_id: int):
    klass, term = _tracked_class(class_id)
    students = evidence.class_students(klass, term)
    chases = evidence.chasing_list(klass, term)
    tally = evidence.completeness(Student.class_id, [Student.class_id == klass.id], term).get(klass.id,
                                                                                                evidence.Tally())
    by_item: dict[int, list] = {}
    for c in chases:
        for m in c.missing:
            by_item.setdefault(m.item.id, [m.item, 0])[1] += 1
    items = evidence.items_of(term)
    item_rows = [(i, by_item[i.id][1]) for i in items if i.id in by_item]
    up = url_for(".school", school_id=klass.school_id) if _may_track(klass.school) else None
    return render_page("cqe/evidence/class.html", klass=klass, school=klass.school, term=term, students=students,
                       chases=chases, rows=_chase_rows(chases), tally=tally, item_rows=item_rows, items=len(items),
                       header=CHASE_HEADER, windows=_windows(students[0].student, term) if students else [],
                       up_url=up, page_title=_("实证材料完成情况"))


def chase_xlsx(klass: SchoolClass, term: Term, rows: list[list]) -> bytes:
    wb, ws = printable_sheet("催交清单", f"{klass.school.name} {klass.name} · 实证材料催交清单（{term.name}）",
                             CHASE_HEADER, rows, dict(zip("ABCDEF", (6, 14, 12, 70, 8, 10), strict=True)))
    ws.append([])
    ws.append([f"生成时间：{local(now()):%Y-%m-%d %H:%M}（北京时间）。请于实证材料阶段结束前登录平台补齐上传。"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


@bp.route("/evidence/class/<int:class_id>/chasing.xlsx")
@login_required
def chasing_xlsx(class_id: int):
    klass, term = _tracked_class(class_id)
    rows = _chase_rows(evidence.chasing_list(klass, term))
    name = f"实证材料催交清单-{klass.school.name}-{klass.name}-{local(now()):%Y-%m-%d}.xlsx"
    return Response(chase_xlsx(klass, term, rows), mimetype=XLSX_MIME, headers={
        "Content-Disposition": f"attachment; filename=chasing.xlsx; filename*=UTF-8''{quote(name)}",
        "Cache-Control": "private, no-store"})


def _tracked_student(student_id: int) -> tuple[Student, Term]:
    student = policy.get_scoped(current_user, Student, student_id)
    if student is None:
        abort(404, description=_("学生不存在或不在您的权限范围内。"))
    decision = policy.check(current_user, "track_evidence", student.school_class)
    if not decision:
        abort(decision.status, description=decision.reason)
    term = _term(student)
    if student.school_class.grade not in evidence.evidence_grades(term) or not student.participates:
        abort(404, description=_("该学生本学期没有实证材料。"))
    return student, term


class ReviewForm(FlaskForm):
    pass


def _reviews(student: Student, term: Term) -> tuple[list[MaterialReview], MaterialReview | None, policy.Decision]:
    """The class evaluation group's reviews of the student's materials, the user's own, and whether they may review."""
    reviews = db.session.execute(sa.select(MaterialReview).where(
        MaterialReview.term_id == term.id, MaterialReview.student_id == student.id)
        .order_by(MaterialReview.id)).scalars().all()
    own = next((r for r in reviews if r.reviewer_id == current_user.id), None)
    probe = own or MaterialReview(term=term, student=student, school_id=student.school_id, class_id=student.class_id,
                                  reviewer_id=current_user.id)
    return reviews, own, policy.check(current_user, "review_materials", probe)


@bp.route("/evidence/student/<int:student_id>", methods=["GET", "POST"])
@login_required
def student(student_id: int):
    """A student's materials for the staff who track them; the class evaluation group reviews them here
    (教师审核: authentic and complete, or what is wrong, which goes back to the homeroom teacher and parents)."""
    student, term = _tracked_student(student_id)
    review_form = ReviewForm()
    if request.method == "POST":
        if not review_form.validate_on_submit():
            abort(400)
        verdict = request.form.get("verdict", "")
        if perform(lambda: ev.review_materials(current_user, student, authentic=verdict in ("ok", "incomplete"),
                                               complete=verdict == "ok", note=request.form.get("note", "")),
                   _("审核结果已保存。")):
            return redirect(url_for(".student", student_id=student.id) + "#review")
    reviews, own, may_review = _reviews(student, term)
    return render_page("cqe/evidence/student.html", student=student, accept=_accept,
                       upload_url=lambda item: url_for(".student_upload", student_id=student.id, item_id=item.id),
                       back_url=url_for(".klass", class_id=student.class_id), page_title=_("实证材料"),
                       reviews=reviews, own_review=own, may_review=may_review, review_form=review_form,
                       pledged=ev.has_pledged(current_user, term),
                       member=ev.is_group_member(current_user, term, student.class_id), **_portfolio(student, term))


@bp.route("/evidence/student/<int:student_id>/item/<int:item_id>", methods=["POST"])
@login_required
def student_upload(student_id: int, item_id: int):
    student, _term_ = _tracked_student(student_id)
    item = _upload(student, item_id)
    return redirect(url_for(".student", student_id=student.id) + f"#item-{item.code}")
