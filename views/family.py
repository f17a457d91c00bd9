"""Students' and parents' pages (phone first): my records with confirm / reject / submit, my report,
my classmates' published reports, appeals. Every action asks policy and goes through the workflow."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from forms.base import db_id, posted_text, posted_version
from models import policy, workflow
from models.base import db
from models.cases import APPEAL_KINDS, CASE_STATES, Case
from models.catalog import Category, Dimension
from models.fields import display_value
from models.org import Student
from models.records import PUBLISHED_STATES, RECORD_STATES, Record
from models.roles import LEVEL_NAMES
from views.actions import RECORD_ACTIONS, available, perform, render_page
from views.i18n import pick

bp = Blueprint("me", __name__, url_prefix="/me")

DONE = {
    "confirm": _l("已确认。"), "reject": _l("已标记为确认不通过，录入人将修改。"), "submit": _l("已提交班主任审阅。"),
    "publish": _l("已提交公示。"),
}


@bp.before_request
@login_required
def _family_only():
    if not current_user.has_role("student", "parent"):
        abort(403, description="此页面供学生和家长使用。")


def family_student() -> tuple[Student, str]:
    """The student this account acts for, and as whom (student / parent)."""
    for g in current_user.grants:
        if g.role in ("student", "parent") and g.student is not None:
            return g.student, g.role
    abort(403, description="此账号没有关联学生。")


def _term_ids(student: Student):
    term = policy.current_term(student.school.district_id)
    return [term.id] if term else []


def report_sections(student: Student, states=PUBLISHED_STATES) -> list[dict]:
    """A student's records of the current term by dimension, for a report or a records page."""
    stmt = (
        sa.select(Record, Category, Dimension)
        .join(Category, Record.category_id == Category.id).join(Dimension, Category.dimension_id == Dimension.id)
        .where(Record.student_id == student.id, Record.term_id.in_(_term_ids(student)))
        .order_by(Dimension.position, Category.position, Record.id)
    )
    if states is not None:
        stmt = stmt.where(Record.state.in_(states))
    sections: dict[int, dict] = {}
    for record, category, dimension in db.session.execute(stmt).all():
        section = sections.setdefault(dimension.id, {"name": pick(dimension.name, dimension.name_en), "items": []})
        data = record.data or {}
        fields = [(pick(f["label"], f.get("label_en")), display_value(f, data.get(f["name"]))) for f in category.fields]
        previous = None
        if record.previous_data:
            previous = [(pick(f["label"], f.get("label_en")), display_value(f, record.previous_data.get(f["name"])))
                        for f in category.fields if record.previous_data.get(f["name"]) != data.get(f["name"])]
        section["items"].append({"record": record, "category": pick(category.name, category.name_en),
                                 "fields": fields, "previous": previous,
                                 "state": RECORD_STATES.get(record.state, record.state),
                                 "level": LEVEL_NAMES.get(record.origin, record.origin)})
    return list(sections.values())


def _profile_categories(student: Student) -> list[Category]:
    """The categories of the profile the student's district runs this term."""
    term = policy.current_term(student.school.district_id)
    if term is None:
        return []
    return db.session.execute(sa.select(Category).where(Category.profile_id == term.profile_id)
                              .order_by(Category.position)).scalars().all()


def _student_categories(student: Student) -> list[Category]:
    grade = student.school_class.grade
    return [c for c in _profile_categories(student) if policy.entry_rule(c, "student", grade) is not None]


@bp.route("/records")
def records():
    student, role = family_student()
    sections = report_sections(student, states=None)
    confirmable = 0
    for section in sections:
        for item in section["items"]:
            record = item["record"]
            item["actions"] = available(current_user, record, RECORD_ACTIONS) if role == "student" else []
            confirmable += "confirm" in item["actions"]
            item["editable"] = (role == "student" and record.origin == "student"
                                and workflow.transition_for(record, "edit") is not None
                                and bool(policy.check(current_user, "edit", record)))
    write = [(c, url_for(f"cat_{c.code}.create_view")) for c in _student_categories(student)] if role == "student" else []
    return render_page("cqe/me/records.html", student=student, role=role, sections=sections,
                           confirmable=confirmable, write=write)


@bp.route("/records/<int:record_id>/<action>", methods=["POST"])
def record_action(record_id: int, action: str):
    if action not in ("confirm", "reject", "submit", "publish"):
        abort(404)
    record = policy.get_scoped(current_user, Record, record_id)
    if record is None:
        abort(404, description="记录不存在或不在您的权限范围内。")
    perform(lambda: workflow.record_action(current_user, record, action,
                                           reason=posted_text(request.form.get("reason"), "reason", "原因"),
                                           expected_version=posted_version(request.form.get("version"))), DONE[action])
    return redirect(url_for(".records") + f"#r{record_id}")


@bp.route("/confirm-all", methods=["POST"])
def confirm_all():
    student, role = family_student()
    if role != "student":
        abort(403, description="确认由学生本人操作。")
    perform(lambda: workflow.confirm_all(current_user, student), _("已全部确认。"))
    return redirect(url_for(".records"))


def _report_student(student_id: int | None) -> tuple[Student, Student, str]:
    me, role = family_student()
    if student_id is None or student_id == me.id:
        return me, me, role
    other = db.session.get(Student, student_id)
    if other is None or not policy.report_visible(current_user, other):
        if other is not None and role == "student" and other.class_id == me.class_id and other.participates:
            decision = policy.classmates_decision(me)
            if not decision:  # a classmate, outside publication: say when it opens
                abort(403, description=decision.reason)
        abort(404, description="该同学的公示数据不存在或不在您的查看范围内。")
    return me, other, role


@bp.route("/report", defaults={"student_id": None})
@bp.route("/report/<int:student_id>")
def report(student_id: int | None):
    me, student, role = _report_student(student_id)
    can_appeal = role == "student" and bool(policy.check(current_user, "file", _probe_case(student)))
    return render_page("cqe/me/report.html", student=student, own=student.id == me.id, role=role,
                           sections=report_sections(student), can_appeal=can_appeal)


def _probe_case(student: Student) -> Case:
    """An unsaved appeal on the student, to ask policy whether filing is open now."""
    return Case(student=student, state="open")


@bp.route("/class")
def classmates():
    me, role = family_student()
    if role != "student":
        return redirect(url_for(".report"))
    students = db.session.execute(
        sa.select(Student).where(policy.report_scope(current_user), Student.class_id == me.class_id)
        .order_by(Student.name)
    ).scalars().all()
    decision = policy.classmates_decision(me)
    return render_page("cqe/me/class.html", me=me, students=students, closed=None if decision else decision.reason)


@bp.route("/appeal/<int:student_id>", methods=["GET", "POST"])
def appeal(student_id: int):
    me, student, role = _report_student(student_id)
    if role != "student":
        abort(403, description="申诉由学生本人提交。")
    record = None
    record_id = request.values.get("record")
    if record_id:
        record_id = db_id(record_id) or 0  # not an id: no such record
        record = db.session.execute(sa.select(Record).where(
            Record.id == record_id, Record.student_id == student.id, Record.state.in_(PUBLISHED_STATES))
        ).scalar_one_or_none()
        if record is None:
            abort(404, description="该公示记录不存在。")
    categories = [c for c in _profile_categories(student) if student.school_class.grade in c.grades]
    if request.method == "POST":
        category = db.session.get(Category, db_id(request.form.get("category")) or 0) if record is None else None
        kind = request.form.get("kind", "")
        if perform(lambda: workflow.file_appeal(current_user, student, kind=kind, record=record, category=category,
                                                description=posted_text(request.form.get("description"), "description",
                                                                        "申诉说明")),
                   _("申诉已提交，请在“我的申诉”中查看处理进度。")):
            return redirect(url_for(".appeals"))
    item = None
    if record is not None:
        item = next((i for s in report_sections(student) for i in s["items"] if i["record"].id == record.id), None)
    limit = workflow.max_open_appeals(student.school.district)
    return render_page("cqe/me/appeal.html", student=student, own=student.id == me.id, record=record, item=item,
                           categories=categories, kinds=APPEAL_KINDS, limit=limit, form=request.form)


@bp.route("/appeals")
def appeals():
    cases = db.session.execute(
        sa.select(Case).where(policy.scope(current_user, Case)).order_by(Case.id.desc())
    ).scalars().all()
    rows = []
    for case in cases:
        rows.append({"case": case, "mine": case.filed_by_id == current_user.id,
                     "state": CASE_STATES.get(case.state, case.state),
                     "to_correct": bool(policy.check(current_user, "correct", case))
                     if case.state == "accepted" else False})
    return render_page("cqe/me/appeals.html", rows=rows)
