"""The record lifecycle as a table of transitions, and the one function family that performs them.

Each public function here: checks policy (role, scope, window, state), validates, applies the
change, lets the audit hook write the history in the same transaction, and commits — or rolls
back and raises, leaving nothing half-saved. Nothing else changes a record's state or data.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm.exc import StaleDataError

from models import policy
from models.accounts import User
from models.audit import acting
from models.base import db
from models.calendar import Term
from models.catalog import Activity, Category
from models.clock import now
from models.fields import FieldErrors, validate_data
from models.org import GRADE_NAMES, STUDENT_STATUSES, Student
from models.records import RECORD_STATES, Record
from models.roles import CLERK_OF_LEVEL, LEVEL_NAMES

DELETED = None


@dataclass(frozen=True)
class Transition:
    action: str
    source: str | None  # None: the record does not exist yet
    target: str | None  # None: the record is deleted
    name: str


# The record lifecycle: (state, action) → new state. Roles and windows follow from the record's
# origin (who entered it): clerks work in the entry window, students in the student-entry window (SPEC §3).
TRANSITIONS = [
    Transition("create", None, "entered", "录入"),
    Transition("edit", "entered", "entered", "修改"),
    Transition("delete", "entered", DELETED, "删除"),
    Transition("create", None, "draft", "填写"),
    Transition("edit", "draft", "draft", "修改"),
    Transition("delete", "draft", DELETED, "删除"),
]
INITIAL_STATE = {"school": "entered", "district": "entered", "city": "entered", "student": "draft"}
WINDOW_OF_ORIGIN = {"school": "entry", "district": "entry", "city": "entry", "student": "student_entry"}


class WorkflowError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Conflict(WorkflowError):
    """Somebody else saved the object first; nothing was overwritten."""


def transition_for(record: Record, action: str) -> Transition | None:
    """The transition ``action`` takes this record through, or None when its state does not allow it."""
    if action == "create":
        source, target = None, INITIAL_STATE.get(record.origin)
    else:
        source, target = record.state, ...
    for t in TRANSITIONS:
        if t.action == action and t.source == source and (target is ... or t.target == target):
            return t
    return None


def record_rule(user: User, action: str, record: Record) -> tuple[policy.Rule | None, str]:
    """The roles and window an action on this record needs, or why it cannot happen at all."""
    t = transition_for(record, action)
    if t is None:
        return None, f"记录当前状态为「{RECORD_STATES.get(record.state, record.state)}」，不能{policy.ACTION_NAMES.get(action, action)}。"
    category = record.category
    grade = record.student.school_class.grade
    rule = policy.entry_rule(category, record.origin, grade)
    if rule is None:
        return None, f"「{category.name}」的{GRADE_NAMES.get(grade, grade)}记录不由{LEVEL_NAMES.get(record.origin)}录入。"
    return policy.Rule(frozenset({CLERK_OF_LEVEL[record.origin]}), (WINDOW_OF_ORIGIN[record.origin],)), ""


def _commit(action: str, reason: str = "") -> None:
    try:
        db.session.commit()
    except StaleDataError:
        db.session.rollback()
        raise Conflict("该记录刚被他人修改，您的修改未保存。请刷新后重试。") from None
    except sa.exc.IntegrityError as exc:
        db.session.rollback()
        raise FieldErrors(_integrity_message(exc)) from None
    except Exception:
        db.session.rollback()
        raise


# Unique and foreign-key constraints that a person can hit, and what to tell them.
_CONSTRAINTS = {
    "xjh": ("xjh", "学籍号：该学籍号已存在"),
    "username": ("username", "用户名：该用户名已被使用"),
    "uq_schools_code": ("code", "学校代码：该代码已存在"),
    "uq_classes_school_id": ("number", "班号：本校该年级已有此班号"),
    "uq_role_grants_user_id": (None, "该账号已有相同的角色授权"),
}


def _integrity_message(exc) -> dict:
    text = str(getattr(exc, "orig", exc))
    for key, (field, message) in _CONSTRAINTS.items():
        if key in text:
            return {field: message}
    return {None: "保存失败：数据与已有数据重复，或引用的数据不存在。"}


def _fail(exc: Exception):
    db.session.rollback()
    raise exc


def entry_levels(user: User, category: Category, grade: int | None = None) -> list[str]:
    """The levels (school/district/city/student) this user enters the category at, for a grade."""
    levels = []
    for r in policy.entry_rules_for(user, category):
        if grade is None or grade in r.get("grades", category.grades):
            if r["level"] not in levels:
                levels.append(r["level"])
    return levels


def _check_student(category: Category, student: Student) -> None:
    grade = student.school_class.grade
    if grade not in category.grades:
        allowed = "、".join(GRADE_NAMES[g] for g in category.grades)
        raise FieldErrors({"student": f"学生：「{category.name}」仅适用于{allowed}，{student.name}是{GRADE_NAMES[grade]}学生。"})
    if not student.participates:
        raise FieldErrors(
            {"student": f"学生：{student.name}已预确认为不参与填报（{STUDENT_STATUSES[student.status]}），不能录入记录。"}
        )


def _check_where(category: Category, level: str, grade: int, data: dict) -> None:
    rule = policy.entry_rule(category, level, grade) or {}
    errors = {}
    for field, allowed in rule.get("where", {}).items():
        if data.get(field) not in allowed:
            label = next((f["label"] for f in category.fields if f["name"] == field), field)
            errors[field] = f"{label}：{LEVEL_NAMES[level]}只能录入「{'、'.join(allowed)}」"
    if errors:
        raise FieldErrors(errors)


def _check_activities(category: Category, student: Student, term: Term, data: dict) -> None:
    for spec in category.fields:
        if spec["type"] != "activity" or data.get(spec["name"]) is None:
            continue
        activity = db.session.get(Activity, data[spec["name"]])
        ok = (
            activity is not None
            and activity.term_id == term.id
            and (activity.school_id == student.school_id
                 or (activity.level == "district" and activity.district_id == student.school.district_id))
        )
        if not ok:
            raise FieldErrors({spec["name"]: f"{spec['label']}：请从本校或本区的活动项目中选择。"})


def check_limits(category: Category, student: Student, term: Term, exclude_id: int | None = None) -> None:
    """Per-term and per-school-year limits (SPEC §3), with a message naming the limit."""
    base = sa.select(sa.func.count(Record.id)).where(Record.student_id == student.id, Record.category_id == category.id)
    if exclude_id is not None:
        base = base.where(Record.id != exclude_id)
    if category.per_term_limit:
        have = db.session.execute(base.where(Record.term_id == term.id)).scalar_one()
        if have >= category.per_term_limit:
            raise FieldErrors({None: (
                f"「{category.name}」每学期最多录入{category.per_term_limit}条：{student.name}本学期已有{have}条。"
            )})
    if category.per_year_limit:
        same_year = sa.select(Term.id).where(Term.district_id == term.district_id, Term.school_year == term.school_year)
        have = db.session.execute(base.where(Record.term_id.in_(same_year))).scalar_one()
        if have >= category.per_year_limit:
            raise FieldErrors({None: (
                f"「{category.name}」每学年只能录入{category.per_year_limit}条：{student.name}"
                f"{term.school_year}学年已有{have}条。"
            )})


def create_record(user: User, category: Category, student: Student, data: dict, *,
                  level: str | None = None, at: datetime | None = None) -> Record:
    at = at or now()
    try:
        if not policy.visible(user, student):
            raise policy.Denied("学生不存在或不在您的权限范围内。", 404)
        _check_student(category, student)
        grade = student.school_class.grade
        levels = entry_levels(user, category, grade)
        if level is None:
            if not levels:
                raise policy.Denied(f"您的角色不能录入{GRADE_NAMES[grade]}的「{category.name}」。", 403)
            level = levels[0]
        term = policy.current_term(student.school.district_id)
        if term is None:
            raise WorkflowError("当前没有进行中的学期。")
        record = Record(term=term, category=category, student=student, school_id=student.school_id, origin=level,
                        entered_by=user, state=INITIAL_STATE[level], data={})
        policy.require(user, "create", record, at)
        clean = validate_data(category.fields, data)
        _check_where(category, level, grade, clean)
        _check_activities(category, student, term, clean)
        check_limits(category, student, term)
        record.data = clean
        with acting("create", ""):
            db.session.add(record)
            _commit("create")
        return record
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def update_record(user: User, record: Record, data: dict, *, expected_version: int | None = None,
                  at: datetime | None = None) -> Record:
    at = at or now()
    try:
        policy.require(user, "edit", record, at)
        if expected_version is not None and int(expected_version) != record.version_id:
            raise Conflict(
                f"该记录已被他人修改（您打开的是第{expected_version}版，现在是第{record.version_id}版），"
                "您的修改未保存。请刷新后重试。"
            )
        clean = validate_data(record.category.fields, data)
        _check_where(record.category, record.origin, record.student.school_class.grade, clean)
        _check_activities(record.category, record.student, record.term, clean)
        if clean != record.data:
            with acting("edit", ""):
                record.data = clean
                _commit("edit")
        return record
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def delete_record(user: User, record: Record, *, expected_version: int | None = None,
                  at: datetime | None = None) -> None:
    at = at or now()
    try:
        policy.require(user, "delete", record, at)
        if expected_version is not None and int(expected_version) != record.version_id:
            raise Conflict("该记录已被他人修改，未删除。请刷新后重试。")
        with acting("delete", ""):
            db.session.delete(record)
            _commit("delete")
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


# ---------------------------------------------------------------------------------------------
# Other objects: the same discipline (policy → change → audit → commit) for admin edits.


def save_object(user: User, obj, action: str, apply, *, at: datetime | None = None, reason: str = "") -> None:
    """Check ``action`` on ``obj`` before and after ``apply(obj)`` changes it, then commit once.

    Checking after the change too means a clerk cannot move an object out of their scope (e.g.
    re-point a student at another school's class)."""
    at = at or now()
    try:
        with acting(action, reason):
            with db.session.no_autoflush:
                if sa.inspect(obj).persistent:
                    policy.require(user, action, obj, at)
                apply(obj)
                policy.require(user, action, obj, at)
            db.session.add(obj)
            _commit(action)
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def delete_object(user: User, obj, *, at: datetime | None = None) -> None:
    try:
        policy.require(user, "delete", obj, at or now())
        with acting("delete", ""):
            db.session.delete(obj)
            _commit("delete")
    except (policy.Denied, WorkflowError) as exc:
        _fail(exc)
