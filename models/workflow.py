"""The record lifecycle as a table of transitions, and the one function family that performs them.

Each public function here: checks policy (role, scope, window, state), validates, applies the
change, lets the audit hook write the history in the same transaction, and commits — or rolls
back and raises, leaving nothing half-saved. Nothing else changes a record's state or data.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import SimpleNamespace

import sqlalchemy as sa
from sqlalchemy.orm.exc import StaleDataError

from models import policy
from models.accounts import User
from models.archive import RESULTS as ARCHIVE_RESULTS
from models.archive import ArchiveEntry, SummaryUpload, archive_grades
from models.archive import progress as archive_progress
from models.audit import acting, current_actor
from models.base import db
from models.calendar import PhaseWindow, Term
from models.cases import CASE_STATES, OPEN_CASE_STATES, ROUTES, Case
from models.catalog import Activity, Category
from models.clock import local, now
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


def concurrent_write(exc: Exception) -> bool:
    """Whether the database refused a write because another connection was writing at the same moment.

    SQLite (the embedded default) has one writer at a time, and a transaction that has read before trying
    to write cannot wait for the other writer (its snapshot is already stale): the write fails at once with
    SQLITE_BUSY ("database is locked"). For the person saving this is a concurrent save, like a stale
    version on PostgreSQL: nothing of theirs was written, and they may retry after a refresh."""
    orig = getattr(exc, "orig", None)
    if not isinstance(exc, sa.exc.OperationalError) or orig is None:
        return False
    return getattr(orig, "sqlite_errorname", "").startswith("SQLITE_BUSY") or "database is locked" in str(orig)


def _commit(action: str, reason: str = "") -> None:
    try:
        db.session.commit()
    except StaleDataError:
        db.session.rollback()
        raise Conflict("该记录刚被他人修改，您的修改未保存。请刷新后重试。") from None
    except sa.exc.IntegrityError as exc:
        db.session.rollback()
        raise FieldErrors(_integrity_message(exc)) from None
    except Exception as exc:
        db.session.rollback()
        if concurrent_write(exc):
            raise Conflict("有其他人正在同时保存，您的修改未保存。请刷新后重试。") from None
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


def add_records(chunks: Iterable[list[dict]], reason: str) -> int:
    """Insert checked new records (``RecordBatch.prepare``'s rows), chunk by chunk, in ONE transaction:
    every row or, when anything fails on the way (a chunk's rows, the database, the job's time limit),
    none. ``chunks`` may be a generator that reads and checks the next chunk of a file while this writes.

    Set-based, for an import of 100,000 rows: a chunk's records go in with one statement (COPY on
    PostgreSQL, its ids drawn from the sequence first; a multi-row INSERT … RETURNING on SQLite) and
    their history rows with another. Those are the rows the audit hook writes for a record saved
    through the ORM — one per record: who (the current actor), when, from where, "create", the reason,
    every column as "after" — so each record's history page says who imported it."""
    actor = current_actor()
    at = now()
    stored_at = at.astimezone(UTC).replace(tzinfo=None)  # how UTCDateTime stores it
    districts: dict[int, int] = {}
    count = 0
    try:
        conn = db.session.connection()
        postgres = conn.dialect.name == "postgresql"
        if not postgres:
            stored_at = stored_at.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's own SQLite format
        for rows in chunks:
            if not rows:
                continue
            if postgres:
                ids = conn.exec_driver_sql(
                    "SELECT nextval(pg_get_serial_sequence('records', 'id')) FROM generate_series(1, %s)",
                    (len(rows),)).scalars().all()
                written = [{**_NEW_RECORD, **row, "id": ident} for ident, row in zip(ids, rows, strict=True)]
                _copy(conn, "records", _RECORD_INSERT, [
                    tuple(json.dumps(r[k]) if k == "data" else stored_at if k in _STAMPS else r[k] for k in _RECORD_INSERT)
                    for r in written])
            else:
                # RETURNING in no particular order: SQLite batches such INSERTs only unordered.
                returning = sa.insert(Record.__table__).returning(*(c for _, c in _SNAPSHOT))
                written = [dict(zip(_SNAPSHOT_KEYS, r, strict=True)) for r in conn.execute(returning, [
                    {**row, "version_id": 1, "created_at": at, "updated_at": at} for row in rows])]
            missing = {r["school_id"] for r in written} - districts.keys()
            if missing:
                districts.update(conn.execute(sa.select(School.id, School.district_id).where(
                    School.id.in_(missing))).all())
            action = actor.action or "create"
            _copy(conn, "audit_events", _AUDIT_INSERT, [
                (stored_at, actor.user_id, actor.name, actor.ip, "Record", str(r["id"]), districts[r["school_id"]],
                 r["school_id"], action, reason, "null", json.dumps({k: r[k] for k in _SNAPSHOT_KEYS}))
                for r in written])
            count += len(written)
        _commit("create", reason)
        return count
    except BaseException as exc:
        db.session.rollback()
        # A student or term deleted since the check: the driver's own error when COPY or executemany met it.
        if isinstance(exc, (sa.exc.IntegrityError, db.engine.dialect.loaded_dbapi.IntegrityError)):
            raise FieldErrors(_integrity_message(exc)) from None
        raise


# A new record's history row holds every column but the timestamps (models/audit.py ``_snapshot``).
_SNAPSHOT = [(a.key, a.columns[0]) for a in sa.inspect(Record).column_attrs if a.key not in ("created_at", "updated_at")]
_SNAPSHOT_KEYS = [key for key, _ in _SNAPSHOT]
_NEW_RECORD = {key: None for key in _SNAPSHOT_KEYS} | {"version_id": 1}
_STAMPS = ("created_at", "updated_at")
_RECORD_INSERT = ("id", "term_id", "category_id", "student_id", "school_id", "origin", "entered_by_id", "state", "data",
                  "version_id", "created_at", "updated_at")
_AUDIT_INSERT = ("at", "actor_id", "actor_name", "ip", "object_type", "object_id", "district_id", "school_id", "action",
                 "reason", "before", "after")


def _copy(conn, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Plain tuples into a table through the driver: COPY on PostgreSQL, executemany on SQLite (the
    JSON and time columns already in their stored form)."""
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()
        with cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)


class RecordBatch:
    """``prepare_record`` for many new records of one category entered by one user (an import): the
    same checks and messages, at a cost per row of a few dict look-ups instead of an ORM object, a
    policy check and queries.

    Students are plain rows (id, name, class_id, school_id, status) read by 学籍号; ``load`` answers,
    for a chunk of them, what needs the database, and ``prepare`` checks each row:

    - Scope: ``policy.scope(user, Student)`` depends only on a student's school and class (and on the
      student for a student or parent grant: then per student), so it is asked once per class, in one
      query for the classes a chunk brings first. It never joins the chunk's query: without planner
      statistics (a freshly loaded database, SQLite always) such a join walks every student in scope.
    - What depends only on the student's class, school and status — the category's grades,
      participation, the user's entry level, the district's current term, and ``policy.require``
      (role, scope, the entry window of the class's cohort) — is decided once per class by the first
      half of ``prepare_record`` (``_admit``). A class that fails it is checked row by row by
      ``prepare_record`` itself, so each row has its own message.
    - The limits count the database once per chunk, for the students met first in it, plus the rows the
      caller accepted before (``earlier``); fields, grade rules and activities are checked per row by the
      form's own functions."""

    def __init__(self, user: User, category: Category, *, at: datetime | None = None):
        self.user, self.category, self.at = user, category, at or now()
        # What the per-row checks read of the category, as plain attributes (an ORM attribute costs more).
        self._spec = SimpleNamespace(**{k: getattr(category, k) for k in (
            "id", "name", "grades", "entry", "fields", "per_term_limit", "per_year_limit")})
        self._limited = bool(category.per_term_limit or category.per_year_limit)
        self._activities = any(f["type"] == "activity" for f in category.fields)
        self._per_student = any(g.scope_kind == "student" for g in user.grants)
        self._visible: dict[tuple, bool] = {}
        self._gates: dict[tuple, tuple | None] = {}
        self._districts: dict[int, int] = {}  # school id → district id
        self._terms: dict[int, Term | None] = {}  # district id → current term
        self._counts: dict[int, tuple[int, int]] = {}  # student id → (this term, this school year) in the database
        self._held: list = []  # objects the session's (weak) identity map must keep: no query per row

    def _key(self, student) -> tuple:
        return student.class_id, student.school_id, student.status, student.id if self._per_student else None

    def _term(self, student) -> Term | None:
        district_id = self._districts[student.school_id]
        if district_id not in self._terms:
            term = self._terms[district_id] = policy.current_term(district_id)
            if term is not None and self._activities:
                self._held += db.session.execute(sa.select(Activity).where(Activity.term_id == term.id)).scalars().all()
        return self._terms[district_id]

    def load(self, students) -> None:
        """Ask the database what a chunk of students needs: scope (per class), districts, limit counts."""
        first = {}
        for s in students:
            key = self._key(s)
            if key not in self._visible:
                first.setdefault(key, s.id)
        if first:
            seen = set(db.session.execute(sa.select(Student.id).where(
                Student.id.in_(first.values()), policy.scope(self.user, Student))).scalars())
            self._visible.update({key: sid in seen for key, sid in first.items()})
        schools = {s.school_id for s in students} - self._districts.keys()
        if schools:
            self._districts.update(db.session.execute(sa.select(School.id, School.district_id).where(
                School.id.in_(schools))).all())
        if self._limited:
            self._load_counts(students)

    def _load_counts(self, students) -> None:
        """The records the limits count, for the students not met before: a query per term."""
        by_term: dict[int, list[int]] = {}
        terms = {}
        for s in students:
            if s.id not in self._counts and (term := self._term(s)) is not None:
                by_term.setdefault(term.id, []).append(s.id)
                terms[term.id] = term
        category = self.category
        for term_id, ids in by_term.items():
            term = terms[term_id]
            base = (sa.select(Record.student_id, sa.func.count(Record.id))
                    .where(Record.category_id == category.id, Record.student_id.in_(ids)).group_by(Record.student_id))
            in_term = dict(db.session.execute(base.where(Record.term_id == term.id)).all()) \
                if category.per_term_limit else {}
            in_year = dict(db.session.execute(base.where(Record.term_id.in_(sa.select(Term.id).where(
                Term.district_id == term.district_id, Term.school_year == term.school_year)))).all()) \
                if category.per_year_limit else {}
            for sid in ids:
                self._counts[sid] = (in_term.get(sid, 0), in_year.get(sid, 0))

    def visible(self, student) -> bool:
        """Whether the user's scope holds the student (``load`` asked)."""
        return self._visible[self._key(student)]

    def _admit(self, student: Student) -> tuple | None:
        """The first half of ``prepare_record`` for a class: (level, term, grade), or None when it refuses."""
        self._held += [student, student.school_class, student.school]
        grade = student.school_class.grade
        try:
            _check_student(self.category, student)
            levels = entry_levels(self.user, self.category, grade)
            term = self._term(student)
            if not levels or term is None:
                return None
            record = Record(term=term, category=self.category, student=student, school_id=student.school_id,
                            origin=levels[0], entered_by=self.user, state=INITIAL_STATE[levels[0]], data={})
            policy.require(self.user, "create", record, self.at)
        except (FieldErrors, policy.Denied):
            return None
        return levels[0], term, grade

    def _check_limits(self, student, term: Term, earlier: int) -> None:
        """``check_limits`` with the counts of ``load``; the same messages."""
        category = self._spec
        in_term, in_year = self._counts.get(student.id) or (0, 0)
        if category.per_term_limit and in_term + earlier >= category.per_term_limit:
            raise FieldErrors({None: (
                f"「{category.name}」每学期最多录入{category.per_term_limit}条：{student.name}本学期已有{in_term + earlier}条。"
            )})
        if category.per_year_limit and in_year + earlier >= category.per_year_limit:
            raise FieldErrors({None: (
                f"「{category.name}」每学年只能录入{category.per_year_limit}条：{student.name}"
                f"{term.school_year}学年已有{in_year + earlier}条。"
            )})

    def prepare(self, student, data: dict, earlier: int = 0) -> dict:
        """The new record's column values, or FieldErrors / policy.Denied / WorkflowError as
        ``prepare_record`` raises them, for a student ``visible`` to the user."""
        key = self._key(student)
        gate = self._gates.get(key, False)
        if gate is False:
            gate = self._gates[key] = self._admit(db.session.get(Student, student.id))
        if gate is None:
            record = prepare_record(self.user, self.category, db.session.get(Student, student.id), data, at=self.at,
                                    earlier=earlier, term=self._term(student), in_scope=True)
            level, term, clean = record.origin, record.term, record.data
        else:
            level, term, grade = gate
            spec = self._spec
            clean = validate_data(spec.fields, data)
            _check_where(spec, level, grade, clean)
            if self._activities:
                _check_activities(spec, SimpleNamespace(school_id=student.school_id, school=SimpleNamespace(
                    district_id=self._districts[student.school_id])), term, clean)
            if self._limited:
                self._check_limits(student, term, earlier)
        return {"term_id": term.id, "category_id": self._spec.id, "student_id": student.id,
                "school_id": student.school_id, "origin": level, "entered_by_id": self.user.id,
                "state": INITIAL_STATE[level], "data": clean}


def update_record(user: User, record: Record, data: dict, *, expected_version: int | None = None,
                  at: datetime | None = None, reason: str = "") -> Record:
    """Edit a record's fields: an edit in its entry window, or the clerk's correction of a rejected one."""
    try:
        change = prepare_update(user, record, data, expected_version=expected_version, at=at)
        if change.changes:
            with acting(change.action, reason):
                change.apply()
                _commit(change.action)
        return record
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


@dataclass
class Update:
    """A checked edit of one record, not applied yet (``prepare_update``)."""

    record: Record
    action: str  # edit | correct
    data: dict
    target: str

    @property
    def changes(self) -> bool:
        return self.data != self.record.data or self.target != self.record.state

    def apply(self) -> None:
        if self.action == "correct":
            self.record.previous_data = dict(self.record.data or {})
        self.record.data = self.data
        self.record.state = self.target


def prepare_update(user: User, record: Record, data: dict, *, expected_version: int | None = None,
                   at: datetime | None = None, in_scope: bool = False) -> Update:
    """Every check of an edit (version, policy and window, fields, grade rules) without applying it;
    ``in_scope``: the record was loaded through the user's scope (a batch's one query)."""
    at = at or now()
    action = "correct" if record.state == "rejected" else "edit"
    _require_fresh(user, action, record, at, expected_version, in_scope)
    clean = validate_data(record.category.fields, data)
    _check_where(record.category, record.origin, record.student.school_class.grade, clean)
    _check_activities(record.category, record.student, record.term, clean)
    return Update(record, action, clean, transition_for(record, action).target)


def save_records(records: list[Record], updates: list[Update], reason: str) -> tuple[int, int]:
    """Save checked new records and checked edits together, in one transaction (the grid): each
    change with its own history row under its own action; a record changed by someone else since it
    was checked fails the whole save (nothing half-saved)."""
    updates = [u for u in updates if u.changes]
    try:
        if records:
            with acting("create", reason):
                db.session.add_all(records)
                db.session.flush()
        for action in ("edit", "correct"):
            batch = [u for u in updates if u.action == action]
            if batch:
                with acting(action, reason):
                    for u in batch:
                        u.apply()
                    db.session.flush()
        _commit("save")
        return len(records), len(updates)
    except StaleDataError:
        db.session.rollback()
        raise Conflict("有记录刚被他人修改，本次保存未写入任何数据。请刷新后重试。") from None
    except (FieldErrors, WorkflowError) as exc:
        _fail(exc)
    except Exception as exc:
        db.session.rollback()
        if concurrent_write(exc):
            raise Conflict("有其他人正在同时保存，本次保存未写入任何数据。请刷新后重试。") from None
        raise


def _require_fresh(user: User, action: str, obj, at: datetime, expected_version, in_scope: bool = False) -> None:
    """Policy for one action on an object the user opened at ``expected_version``: a stale page is told
    that somebody else changed the object (before any state or window reason), never applied.
    ``in_scope``: the caller loaded ``obj`` through the user's scope."""
    if sa.inspect(obj).persistent and (in_scope or policy.visible(user, obj)):
        _check_version(obj, expected_version)
    policy.require(user, action, obj, at, in_scope=in_scope)


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


# ---------------------------------------------------------------------------------------------
# Archive and sign-off (SPEC §7): the principal's result, the 确认单 signatures, the 汇总表 scan


def archive_entries(students: list[Student], term: Term) -> dict[int, ArchiveEntry]:
    """Each student's entry of the term, new (not yet added) where none exists."""
    found = {e.student_id: e for e in db.session.execute(sa.select(ArchiveEntry).where(
        ArchiveEntry.term_id == term.id, ArchiveEntry.student_id.in_([s.id for s in students]))).scalars()}
    for s in students:
        if s.id not in found:
            found[s.id] = ArchiveEntry(term=term, student=s, school_id=s.school_id, class_id=s.class_id)
    return found


def _archive_batch(user: User, students: list[Student], action: str, apply, reason: str,
                   at: datetime | None) -> int:
    """Check ``action`` on every student's entry, then apply and commit all of them together (or none)."""
    at = at or now()
    if not students:
        raise WorkflowError("请选择学生。")
    try:
        by_term: dict[int, list[Student]] = {}
        terms: dict[int, Term] = {}
        for s in students:
            if not s.participates:
                raise policy.Denied(f"{s.name}已预确认为不参与评价（{STUDENT_STATUSES[s.status]}）。", 403)
            term = policy.current_term(s.school.district_id)
            if term is None:
                raise WorkflowError("当前没有进行中的学期。")
            terms[term.id] = term
            by_term.setdefault(term.id, []).append(s)
        changed = 0
        with acting(action, reason):
            with db.session.no_autoflush:
                for term_id, group in by_term.items():
                    entries = archive_entries(group, terms[term_id])
                    for s in group:
                        entry = entries[s.id]
                        decision = policy.check(user, action, entry, at)
                        if not decision:
                            raise policy.Denied(f"{s.name}：{decision.reason}", decision.status)
                        changed += bool(apply(entry))
                        db.session.add(entry)
            _commit(action, reason)
        return changed
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def rate_students(user: User, students: list[Student], result: str, reason: str = "", *,
                  at: datetime | None = None) -> int:
    """The principal's 合格/不合格, for one student or many at once; 不合格 needs its reason."""
    reason = (reason or "").strip()
    if result not in ARCHIVE_RESULTS:
        _fail(FieldErrors({"result": "评定结果：请选择「合格」或「不合格」"}))
    if result == "fail" and not reason:
        _fail(FieldErrors({"reason": "不合格原因：必填"}))
    if len(reason) > MAX_TEXT:
        _fail(FieldErrors({"reason": f"不合格原因：不能超过{MAX_TEXT}个字（现有{len(reason)}个）"}))
    at = at or now()

    def apply(entry: ArchiveEntry) -> bool:
        new_reason = reason if result == "fail" else None
        if entry.result == result and entry.reason == new_reason:
            return False
        entry.result, entry.reason, entry.rated_by, entry.rated_at = result, new_reason, user, at
        return True

    return _archive_batch(user, students, "rate", apply, reason, at)


def record_signatures(user: User, students: list[Student], *, student_on: date | None = None,
                      parent_on: date | None = None, clear: bool = False, at: datetime | None = None) -> int:
    """Record the date the student and/or the parent signed the 确认单 (offline), one by one or in bulk;
    ``clear`` takes a wrongly recorded signature back. Dates may not lie in the future."""
    at = at or now()
    today = local(at).date()
    for label, value in (("学生签字日期", student_on), ("家长签字日期", parent_on)):
        if value is not None and value > today:
            _fail(FieldErrors({None: f"{label}：不能晚于今天（{today.isoformat()}）"}))
    if not clear and student_on is None and parent_on is None:
        _fail(FieldErrors({None: "请填写学生或家长的签字日期"}))

    def apply(entry: ArchiveEntry) -> bool:
        before = (entry.student_signed_on, entry.parent_signed_on)
        if clear:
            entry.student_signed_on = entry.parent_signed_on = None
        else:
            entry.student_signed_on = student_on or entry.student_signed_on
            entry.parent_signed_on = parent_on or entry.parent_signed_on
        if (entry.student_signed_on, entry.parent_signed_on) == before:
            return False
        entry.signed_by = user
        return True

    return _archive_batch(user, students, "sign", apply, "撤销签字登记" if clear else "", at)


def save_summary_upload(user: User, upload: SummaryUpload, *, at: datetime | None = None) -> SummaryUpload:
    """Record a principal's signed and stamped 汇总表 (the file is stored by the caller, by content hash)."""
    at = at or now()
    try:
        policy.require(user, "create", upload, at)
        school_id, term = upload.school_id or upload.school.id, upload.term  # the upload is not flushed yet
        done = archive_progress(Student.school_id, [Student.school_id == school_id], [term.id],
                                archive_grades(term)).get(school_id)
        if done is None or not done.ready:
            raise WorkflowError("还不能上传汇总表：须全部参与评价的学生已评定，且学生和家长均已签字。")
        with acting("create", "上传签字盖章的汇总表"):
            db.session.add(upload)
            _commit("create")
        return upload
    except (policy.Denied, WorkflowError) as exc:
        _fail(exc)


def unlock_accounts(user: User, targets: list[User]) -> int:
    """Lift the lock-out of accounts (账号解锁): all-or-nothing, each checked by policy, in the history."""
    for target in targets:
        decision = policy.check_unlock(user, target)
        if not decision:
            raise policy.Denied(decision.reason, decision.status)
    changed = 0
    with acting("unlock", "解除登录锁定"):
        for target in targets:
            if target.locked_until is None and not target.failed_logins:
                continue
            target.locked_until = None
            target.failed_logins = 0
            changed += 1
        _commit("unlock")
    return changed
