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
from models.calendar import PhaseWindow, Term
from models.cases import CASE_STATES, OPEN_CASE_STATES, ROUTES, Case
from models.catalog import Activity, Category
from models.clock import now
from models.deadlines import cohort_cases
from models.fields import FieldErrors, validate_data
from models.org import GRADE_NAMES, STUDENT_STATUSES, School, Student
from models.records import CLERK_ORIGINS, PUBLISHED_STATES, RECORD_STATES, Record
from models.roles import CLERK_OF_LEVEL, LEVEL_NAMES

DELETED = None


@dataclass(frozen=True)
class Transition:
    action: str
    source: str | None  # None: the object does not exist yet
    target: str | None  # None: the object is deleted
    name: str
    # Who performs it: "enterer" (the clerk of the record's level, or the student for their own entries),
    # "student" (the record's student), "homeroom" (their homeroom teacher), "system" (a deadline job);
    # for cases: "filer", "handler", "corrector".
    actor: str = "enterer"
    # The phase that must be open for the student's cohort; "origin": the entry window of the record's level.
    window: str | None = "origin"
    origins: frozenset = frozenset()
    # Student entries: only when the category needs the homeroom teacher's review (True) or not (False).
    review: bool | None = None


STUDENT_ORIGIN = frozenset({"student"})
_T = Transition

# The record lifecycle: (state, action) → new state, with who acts and in which window (SPEC §3, §5).
TRANSITIONS = [
    # Clerk-entered data: entry → the student confirms or rejects → the clerk corrects a rejection.
    _T("create", None, "entered", "录入", origins=CLERK_ORIGINS),
    _T("edit", "entered", "entered", "修改", origins=CLERK_ORIGINS),
    _T("delete", "entered", DELETED, "删除", origins=CLERK_ORIGINS),
    _T("confirm", "entered", "confirmed", "确认", "student", "confirmation", CLERK_ORIGINS),
    _T("reject", "entered", "rejected", "确认不通过", "student", "confirmation", CLERK_ORIGINS),
    _T("correct", "rejected", "corrected", "修改确认不通过的数据", "enterer", "correction", CLERK_ORIGINS),
    _T("auto_confirm", "entered", "confirmed", "逾期默认通过", "system", None, CLERK_ORIGINS),
    _T("escalate", "rejected", "problem", "逾期未修改，升级为问题数据", "system", None, frozenset({"school"})),
    # Student-written entries: write → (homeroom review) → submit for publication, all before publication.
    _T("create", None, "draft", "填写", origins=STUDENT_ORIGIN),
    _T("edit", "draft", "draft", "修改", origins=STUDENT_ORIGIN),
    _T("edit", "reviewed", "draft", "修改（须重新提交审阅）", origins=STUDENT_ORIGIN, review=True),
    _T("delete", "draft", DELETED, "删除", origins=STUDENT_ORIGIN),
    _T("submit", "draft", "submitted", "提交班主任审阅", "student", "student_entry", STUDENT_ORIGIN, True),
    _T("review", "submitted", "reviewed", "班主任审阅", "homeroom", "student_entry", STUDENT_ORIGIN, True),
    _T("return", "submitted", "draft", "班主任退回修改", "homeroom", "student_entry", STUDENT_ORIGIN, True),
    _T("publish", "reviewed", "final", "提交公示", "student", "student_entry", STUDENT_ORIGIN, True),
    _T("publish", "draft", "final", "提交公示", "student", "student_entry", STUDENT_ORIGIN, False),
]
INITIAL_STATE = {"school": "entered", "district": "entered", "city": "entered", "student": "draft"}
WINDOW_OF_ORIGIN = {"school": "entry", "district": "entry", "city": "entry", "student": "student_entry"}

# The case lifecycle (SPEC §6): file → handle (accept / dismiss) → correct → audit (approve / send back).
CASE_TRANSITIONS = [
    _T("file", None, "open", "提交申诉", "filer", "publication"),
    _T("accept", "open", "accepted", "受理", "handler", "issue_handling"),
    _T("dismiss", "open", "dismissed", "驳回", "handler", "issue_handling"),
    _T("correct", "accepted", "corrected", "修改", "corrector", "issue_handling"),
    _T("approve", "corrected", "closed", "审核通过", "handler", "issue_handling"),
    _T("send_back", "corrected", "accepted", "审核退回", "handler", "issue_handling"),
]
ACTION_LABELS = {t.action: t.name for t in TRANSITIONS + CASE_TRANSITIONS}
ACTION_LABELS.update({"review": "审阅/审核通过", "correct": "修改", "edit": "修改"})


class WorkflowError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Conflict(WorkflowError):
    """Somebody else saved the object first; nothing was overwritten."""


def needs_review(record: Record) -> bool:
    """Whether a student's entry goes to the homeroom teacher before publication (SPEC §3, §4)."""
    rule = policy.entry_rule(record.category, "student", record.student.school_class.grade) or {}
    mode = rule.get("review")
    if mode == "teacher":
        return True
    if mode == "school_setting":
        return bool(record.student.school.homeroom_audit)
    return False


def transition_for(record: Record, action: str) -> Transition | None:
    """The transition ``action`` takes this record through, or None when its state does not allow it."""
    source = None if action == "create" else record.state
    review = None
    for t in TRANSITIONS:
        if t.action != action or t.source != source or record.origin not in t.origins:
            continue
        if t.review is not None:
            if review is None:
                review = needs_review(record)
            if t.review != review:
                continue
        return t
    return None


def case_transition_for(case: Case, action: str) -> Transition | None:
    source = None if action == "file" else case.state
    return next((t for t in CASE_TRANSITIONS if t.action == action and t.source == source), None)


ACTOR_ROLES = {"student": "student", "homeroom": "homeroom_teacher", "filer": "student"}


def record_rule(user: User, action: str, record: Record) -> tuple[policy.Rule | None, str]:
    """The roles and window an action on this record needs, or why it cannot happen at all."""
    t = transition_for(record, action)
    if t is None:
        state = RECORD_STATES.get(record.state, record.state)
        return None, f"记录当前状态为「{state}」，不能{ACTION_LABELS.get(action, policy.ACTION_NAMES.get(action, action))}。"
    if t.actor == "system":
        return None, f"「{t.name}」由系统在截止时自动执行。"
    category = record.category
    student = record.student
    grade = student.school_class.grade
    if not student.participates:
        return None, f"{student.name}已预确认为不参与填报（{STUDENT_STATUSES[student.status]}），没有记录、确认和申诉。"
    rule = policy.entry_rule(category, record.origin, grade)
    if rule is None:
        return None, f"「{category.name}」的{GRADE_NAMES.get(grade, grade)}记录不由{LEVEL_NAMES.get(record.origin)}录入。"
    role = CLERK_OF_LEVEL[record.origin] if t.actor == "enterer" else ACTOR_ROLES[t.actor]
    window = WINDOW_OF_ORIGIN[record.origin] if t.window == "origin" else t.window
    return policy.Rule(frozenset({role}), (window,) if window else ()), ""


def case_rule(user: User, action: str, case: Case) -> tuple[policy.Rule | None, str]:
    t = case_transition_for(case, action)
    if t is None:
        return None, f"该案件当前状态为「{CASE_STATES.get(case.state, case.state)}」，不能{ACTION_LABELS.get(action, action)}。"
    if t.actor == "handler":
        role = f"{case.handler_level}_auditor"
    elif t.actor == "corrector":
        role = CLERK_OF_LEVEL[case.corrector_level]
    else:
        role = ACTOR_ROLES[t.actor]
    return policy.Rule(frozenset({role}), (t.window,) if t.window else ()), ""


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


def check_limits(category: Category, student: Student, term: Term, exclude_id: int | None = None,
                 earlier: int = 0) -> None:
    """Per-term and per-school-year limits (SPEC §3), with a message naming the limit; ``earlier``
    counts records of the same batch not saved yet."""
    if not category.per_term_limit and not category.per_year_limit:
        return
    base = sa.select(sa.func.count(Record.id)).where(Record.student_id == student.id, Record.category_id == category.id)
    if exclude_id is not None:
        base = base.where(Record.id != exclude_id)
    if category.per_term_limit:
        have = db.session.execute(base.where(Record.term_id == term.id)).scalar_one() + earlier
        if have >= category.per_term_limit:
            raise FieldErrors({None: (
                f"「{category.name}」每学期最多录入{category.per_term_limit}条：{student.name}本学期已有{have}条。"
            )})
    if category.per_year_limit:
        same_year = sa.select(Term.id).where(Term.district_id == term.district_id, Term.school_year == term.school_year)
        have = db.session.execute(base.where(Record.term_id.in_(same_year))).scalar_one() + earlier
        if have >= category.per_year_limit:
            raise FieldErrors({None: (
                f"「{category.name}」每学年只能录入{category.per_year_limit}条：{student.name}"
                f"{term.school_year}学年已有{have}条。"
            )})


def prepare_record(user: User, category: Category, student: Student, data: dict, *, level: str | None = None,
                   at: datetime | None = None, earlier: int = 0, term: Term | None = None,
                   in_scope: bool = False) -> Record:
    """Every check of a new record (scope, role, window, fields, grade rules, limits) without saving it;
    ``earlier``: records of the same student and category already accepted from the same batch. A batch
    passes the student's current ``term`` and ``in_scope`` when it loaded the student through the user's
    scope (one query for the batch instead of two per row)."""
    at = at or now()
    if not in_scope and not policy.visible(user, student):
        raise policy.Denied("学生不存在或不在您的权限范围内。", 404)
    _check_student(category, student)
    grade = student.school_class.grade
    levels = entry_levels(user, category, grade)
    if level is None:
        if not levels:
            raise policy.Denied(f"您的角色不能录入{GRADE_NAMES[grade]}的「{category.name}」。", 403)
        level = levels[0]
    term = term or policy.current_term(student.school.district_id)
    if term is None:
        raise WorkflowError("当前没有进行中的学期。")
    record = Record(term=term, category=category, student=student, school_id=student.school_id, origin=level,
                    entered_by=user, state=INITIAL_STATE[level], data={})
    policy.require(user, "create", record, at)
    clean = validate_data(category.fields, data)
    _check_where(category, level, grade, clean)
    _check_activities(category, student, term, clean)
    check_limits(category, student, term, earlier=earlier)
    record.data = clean
    return record


def create_record(user: User, category: Category, student: Student, data: dict, *,
                  level: str | None = None, at: datetime | None = None) -> Record:
    try:
        record = prepare_record(user, category, student, data, level=level, at=at)
        with acting("create", ""):
            db.session.add(record)
            _commit("create")
        return record
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def add_records(records: list[Record], reason: str) -> int:
    """Save prepared records in one transaction, each with its history row (imports, the grid)."""
    try:
        with acting("create", reason):
            db.session.add_all(records)
            _commit("create", reason)
        return len(records)
    except (FieldErrors, WorkflowError) as exc:
        _fail(exc)


def update_record(user: User, record: Record, data: dict, *, expected_version: int | None = None,
                  at: datetime | None = None, reason: str = "") -> Record:
    """Edit a record's fields: an edit in its entry window, or the clerk's correction of a rejected one."""
    at = at or now()
    action = "correct" if record.state == "rejected" else "edit"
    try:
        _require_fresh(user, action, record, at, expected_version)
        clean = validate_data(record.category.fields, data)
        _check_where(record.category, record.origin, record.student.school_class.grade, clean)
        _check_activities(record.category, record.student, record.term, clean)
        target = transition_for(record, action).target
        if clean != record.data or target != record.state:
            with acting(action, reason):
                if action == "correct":
                    record.previous_data = dict(record.data or {})
                record.data = clean
                record.state = target
                _commit(action)
        return record
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def _require_fresh(user: User, action: str, obj, at: datetime, expected_version) -> None:
    """Policy for one action on an object the user opened at ``expected_version``: a stale page is told
    that somebody else changed the object (before any state or window reason), never applied."""
    if sa.inspect(obj).persistent and policy.visible(user, obj):
        _check_version(obj, expected_version)
    policy.require(user, action, obj, at)


def _check_version(obj, expected_version) -> None:
    if expected_version not in (None, "") and int(expected_version) != obj.version_id:
        raise Conflict(
            f"该记录已被他人修改（您打开的是第{expected_version}版，现在是第{obj.version_id}版），"
            "您的修改未保存。请刷新后重试。"
        )


def delete_record(user: User, record: Record, *, expected_version: int | None = None,
                  at: datetime | None = None) -> None:
    at = at or now()
    try:
        _require_fresh(user, "delete", record, at, expected_version)
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


def check_homeroom_audit_change(school: School) -> None:
    """团、队等德育活动审核设置 is locked once a student of the school has entered such a record this term
    (SPEC §4): the categories whose student entries follow the school's setting."""
    if not sa.inspect(school).attrs.homeroom_audit.history.has_changes():
        return
    following = [c.id for c in db.session.execute(sa.select(Category)).scalars()
                 if any(r.get("review") == "school_setting" for r in c.entry)]
    locked = db.session.execute(
        sa.select(Record.id).where(Record.school_id == school.id, Record.origin == "student",
                                   Record.category_id.in_(following),
                                   Record.term_id.in_(sa.select(Term.id).where(Term.is_current.is_(True))))
        .limit(1)
    ).first()
    if locked:
        raise FieldErrors({"homeroom_audit": "班主任审核德育活动：本学期已有学生录入团、队等德育活动记录，该设置已锁定。"})


# ---------------------------------------------------------------------------------------------
# Record actions of students and homeroom teachers (SPEC §3, §5)

REASON_REQUIRED = {
    "reject": ("reason", "原因：请写明哪里与实际不符"),
    "return": ("reason", "退回原因：必填"),
}
MAX_TEXT = 1000


def _reason(action: str, reason: str | None, record: Record | None = None) -> str:
    reason = (reason or "").strip()
    need = REASON_REQUIRED.get(action)
    if need is None and action == "review" and record is not None:
        rule = policy.entry_rule(record.category, "student", record.student.school_class.grade) or {}
        if rule.get("review") == "teacher":
            need = ("reason", "审阅意见：必填")
    if need and not reason:
        raise FieldErrors({need[0]: need[1]})
    if len(reason) > MAX_TEXT:
        raise FieldErrors({"reason": f"原因：不能超过{MAX_TEXT}个字（现有{len(reason)}个）"})
    return reason


def _apply_record_action(record: Record, action: str, reason: str) -> None:
    record.state = transition_for(record, action).target
    if action == "reject":
        record.reject_reason = reason
    elif action in ("review", "return"):
        record.review_comment = reason or None


def record_action(user: User, record: Record, action: str, *, reason: str = "", expected_version=None,
                  at: datetime | None = None) -> Record:
    """confirm / reject (students), submit / publish (students' own entries), review / return (homeroom)."""
    at = at or now()
    try:
        _require_fresh(user, action, record, at, expected_version)
        reason = _reason(action, reason, record)
        with acting(action, reason):
            _apply_record_action(record, action, reason)
            _commit(action)
        return record
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def records_awaiting(user: User, student: Student, action: str) -> list[Record]:
    """The student's current-term records that ``action`` can take now (e.g. every record to confirm)."""
    source = {"confirm": "entered", "publish": None}.get(action)
    stmt = sa.select(Record).where(Record.student_id == student.id, Record.term_id.in_(
        sa.select(Term.id).where(Term.is_current.is_(True))))
    if source:
        stmt = stmt.where(Record.state == source)
    rows = db.session.execute(stmt.order_by(Record.id)).scalars().all()
    return [r for r in rows if transition_for(r, action) is not None]


def confirm_all(user: User, student: Student, *, at: datetime | None = None) -> int:
    """Confirm every record still waiting for the student's confirmation, in one transaction."""
    at = at or now()
    try:
        records = records_awaiting(user, student, "confirm")
        if not records:
            raise WorkflowError("没有待确认的记录。")
        with acting("confirm", "全部确认"):
            for record in records:
                policy.require(user, "confirm", record, at)
                _apply_record_action(record, "confirm", "")
            _commit("confirm")
        return len(records)
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


# ---------------------------------------------------------------------------------------------
# Appeals and problem data (SPEC §6)

DEFAULT_MAX_OPEN_APPEALS = 5


def max_open_appeals(district) -> int:
    return int((district.settings or {}).get("max_open_appeals", DEFAULT_MAX_OPEN_APPEALS))


def _issue_handling_end(term: Term, grade: int):
    cohort = term.cohort_for_grade(grade)
    window = cohort.window("issue_handling") if cohort else None
    return window.ends_at if window else None


def file_appeal(user: User, student: Student, *, kind: str, description: str, record: Record | None = None,
                category: Category | None = None, at: datetime | None = None) -> Case:
    """A student's appeal on a published record (错录/多录) or on a missing one (少录), routed by who
    entered the data: flows (2)–(4) of SPEC §6."""
    at = at or now()
    try:
        description = (description or "").strip()
        errors = {}
        if kind not in ("error", "missing", "extra"):
            errors["kind"] = "申诉类型：请选择错录、多录或少录"
        if not description:
            errors["description"] = "申诉说明：必填，请写明哪里与实际不符"
        elif len(description) > MAX_TEXT:
            errors["description"] = f"申诉说明：不能超过{MAX_TEXT}个字（现有{len(description)}个）"
        grade = student.school_class.grade
        if record is not None:
            if record.student_id != student.id:
                raise policy.Denied("记录不存在或不在您的权限范围内。", 404)
            if kind == "missing":
                errors["kind"] = "申诉类型：对已有记录只能申诉错录或多录"
            if record.state not in PUBLISHED_STATES:
                raise WorkflowError(f"该记录状态为「{record.state_name}」，未公示，不能申诉。")
            category, origin, term = record.category, record.origin, record.term
        else:
            if kind != "missing":
                errors["kind"] = "申诉类型：未指定记录时只能申诉少录"
            if category is None:
                errors["category"] = "类别：请选择缺少的记录类别"
                origin = term = None
            else:
                levels = [r["level"] for r in category.entry if grade in r.get("grades", category.grades)]
                if not levels:
                    errors["category"] = f"类别：「{category.name}」不适用于{GRADE_NAMES[grade]}"
                origin = levels[0] if levels else None
            term = policy.current_term(student.school.district_id)
        if errors:
            raise FieldErrors(errors)
        if term is None:
            raise WorkflowError("当前没有进行中的学期。")
        flow, handler, corrector = ROUTES[origin]
        case = Case(term=term, flow=flow, kind=kind, student=student, record=record, category=category,
                    school_id=student.school_id, class_id=student.class_id, district_id=student.school.district_id,
                    handler_level=handler, corrector_level=corrector, filed_by=user, description=description,
                    state="open", due_at=_issue_handling_end(term, grade), handler_note="", corrector_note="")
        policy.require(user, "file", case, at)
        limit = max_open_appeals(student.school.district)
        open_now = db.session.execute(sa.select(sa.func.count(Case.id)).where(
            Case.filed_by_id == user.id, Case.state.in_(OPEN_CASE_STATES))).scalar_one()
        if open_now >= limit:
            raise WorkflowError(f"您已有{open_now}件申诉正在处理，每人同时最多{limit}件。请等待处理结果后再提交。")
        if record is not None and db.session.execute(sa.select(Case.id).where(
                Case.filed_by_id == user.id, Case.record_id == record.id, Case.state.in_(OPEN_CASE_STATES))).first():
            raise WorkflowError("您对该记录的申诉正在处理中，不能重复提交。")
        with acting("file", description):
            db.session.add(case)
            _commit("file")
        return case
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def proposal_ops(case: Case) -> list[str]:
    """What a correction may do: add the missing record, or edit / remove the one appealed."""
    if case.record_id is None:
        return ["create"]
    return ["edit", "delete"]


def _proposal(case: Case, proposal: dict, user: User) -> dict:
    op = (proposal or {}).get("op")
    if op not in proposal_ops(case):
        raise FieldErrors({"op": "修改方式：请选择"})
    result = {"op": op, "by": user.id, "record_id": case.record_id}
    if op == "delete":
        return result
    category, student = case.category, case.student
    level = case.record.origin if case.record is not None else case.corrector_level
    clean = validate_data(category.fields, proposal.get("data") or {})
    _check_where(category, level, student.school_class.grade, clean)
    _check_activities(category, student, case.term, clean)
    if op == "create":
        check_limits(category, student, case.term)
    result["data"] = clean
    return result


def _apply_proposal(case: Case) -> None:
    """The approved correction reaches the record (the only way a case changes one)."""
    proposal = case.proposal or {}
    op = proposal.get("op")
    record = case.record
    if op in ("edit", "delete") and record is None:
        raise WorkflowError("被申诉的记录已不存在，无法按修改方案更新。")
    if op == "edit":
        record.previous_data = dict(record.data or {})
        record.data = proposal["data"]
        record.state = "final" if record.origin == "student" else "corrected"
    elif op == "create":
        check_limits(case.category, case.student, case.term)
        origin = case.corrector_level
        case.record = Record(term=case.term, category=case.category, student=case.student,
                             school_id=case.student.school_id, origin=origin, entered_by_id=proposal.get("by"),
                             state="final" if origin == "student" else "corrected", data=proposal["data"])
        db.session.add(case.record)
    elif op == "delete":
        case.record = None
        db.session.delete(record)
    else:
        raise WorkflowError("该案件没有修改方案，不能审核通过。")


def case_action(user: User, case: Case, action: str, *, reason: str = "", proposal: dict | None = None,
                expected_version=None, at: datetime | None = None) -> Case:
    """accept / dismiss (handler), correct (the one who entered the data), approve / send_back (auditor)."""
    at = at or now()
    try:
        _require_fresh(user, action, case, at, expected_version)
        reason = (reason or "").strip()
        if action in ("dismiss", "send_back") and not reason:
            raise FieldErrors({"reason": "原因：必填，请写明驳回或退回的理由"})
        if len(reason) > MAX_TEXT:
            raise FieldErrors({"reason": f"原因：不能超过{MAX_TEXT}个字（现有{len(reason)}个）"})
        with acting(action, reason):
            if action == "correct":
                case.proposal = _proposal(case, proposal, user)
                case.corrector_note = reason
            elif action == "approve":
                _apply_proposal(case)
                case.handler_note = reason
            else:
                case.handler_note = reason
            case.state = case_transition_for(case, action).target
            if case.state in ("closed", "dismissed"):
                case.closed_at = at
            _commit(action)
        return case
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


# ---------------------------------------------------------------------------------------------
# The schedule: the district admin shifts a window or advances a phase, with a reason (SPEC §2)


def shift_window(user: User, window: PhaseWindow, *, starts_at: datetime, ends_at: datetime, reason: str,
                 at: datetime | None = None) -> PhaseWindow:
    reason = (reason or "").strip()
    if not reason:
        _fail(FieldErrors({"reason": "调整原因：必填，将记入操作记录"}))
    if ends_at <= starts_at:
        _fail(FieldErrors({"ends_at": "结束时间：须晚于开始时间"}))

    def apply(w: PhaseWindow) -> None:
        w.starts_at, w.ends_at = starts_at, ends_at

    save_object(user, window, "edit", apply, at=at, reason=reason)
    if window.phase == "issue_handling":
        # Open cases of the cohort are due when issue handling now ends.
        with acting("edit", reason):
            db.session.execute(sa.update(Case).where(cohort_cases(window.cohort, Case.state.in_(OPEN_CASE_STATES)))
                               .values(due_at=ends_at).execution_options(synchronize_session=False))
            _commit("edit")
    # The cohort's deadline jobs move with its windows (same job ids: nothing doubles).
    from jobs.deadlines import reschedule_quietly

    reschedule_quietly(window.cohort)
    return window


def advance_phase(user: User, window: PhaseWindow, edge: str, *, reason: str, at: datetime | None = None):
    """Open a phase now (edge "start") or close it now (edge "end")."""
    at = at or now()
    if edge == "start":
        if window.starts_at <= at:
            _fail(WorkflowError(f"「{window.name}」已经开始。"))
        return shift_window(user, window, starts_at=at, ends_at=max(window.ends_at, at), reason=reason, at=at)
    if edge == "end":
        if window.ends_at <= at:
            _fail(WorkflowError(f"「{window.name}」已经结束。"))
        if window.starts_at > at:
            _fail(WorkflowError(f"「{window.name}」尚未开始，不能提前结束。"))
        return shift_window(user, window, starts_at=window.starts_at, ends_at=at, reason=reason, at=at)
    _fail(WorkflowError("未知操作。"))
