"""Deadlines that act on their own (SPEC §4–§6, DESIGN "Jobs"): what happens when a phase window opens
or closes, computed from the schedule, each effect done exactly once per cohort.

An effect is a few set-based statements (never a Python loop over rows) in one transaction that also
claims the effect's row in ``deadline_runs`` (unique per effect and cohort): a second run, a rerun after
a crash, or a worker and ``flask cqe tick`` racing each other all end with the effect applied once.
History of a bulk effect is one audit event for the run; every row it changed carries the run's id.

Gates never wait for these effects: whether a phase is open is decided by the clock against the
windows (to the minute, even while the queue is down). The effects do what the clock alone cannot:
move states (auto-confirm, escalate), keep the moment on record (the locked non-participant list,
the appeals received, the cases left overdue) and tell people (the inbox).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from models.accounts import RoleGrant
from models.audit import AuditEvent, acting
from models.base import JSONType, UTCDateTime, db
from models.calendar import Cohort, Term
from models.cases import OPEN_CASE_STATES, PROBLEM_ROUTE, Case
from models.clock import now
from models.org import NON_PARTICIPANT_STATUSES, District, School, SchoolClass, Student
from models.records import CLERK_ORIGINS, Record
from models.roles import CLERK_OF_LEVEL

MAX_AUTO_ATTEMPTS = 3  # a failing effect is retried by the tick this often, then waits for the admin


class DeadlineRun(db.Model):
    """One deadline effect of one cohort, done (with its counts) or failed (with the error)."""

    __tablename__ = "deadline_runs"
    __table_args__ = (sa.UniqueConstraint("effect", "cohort_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    effect: Mapped[str] = mapped_column(sa.String(32))
    cohort_id: Mapped[int] = mapped_column(sa.ForeignKey("cohorts.id"))
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"), index=True)
    status: Mapped[str] = mapped_column(sa.String(16))  # done | failed
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the window boundary it belongs to
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the app clock when it ran (or failed)
    seconds: Mapped[float] = mapped_column(sa.Float, default=0.0)
    trigger: Mapped[str] = mapped_column(sa.String(16), default="tick")  # rq | tick | admin | cli
    counts: Mapped[dict] = mapped_column(JSONType, default=dict)
    attempts: Mapped[int] = mapped_column(default=1)
    error: Mapped[str] = mapped_column(sa.Text, default="")


class Notification(db.Model):
    """A message in a user's inbox: a reminder of pending work before a deadline, or news of a phase.
    The text is rendered from ``kind`` in the reader's language (views/inbox.py)."""

    __tablename__ = "notifications"
    __table_args__ = (sa.Index("ix_notifications_user_id_id", "user_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(32))
    cohort_id: Mapped[int | None] = mapped_column(sa.ForeignKey("cohorts.id"), nullable=True)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("deadline_runs.id"), nullable=True)
    count: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class NotDue(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Effect:
    code: str
    phase: str
    edge: str  # "start" | "end" of the phase window
    name: str
    name_en: str
    reason: str  # the history's reason for the run
    offset: timedelta = timedelta(0)  # reminders: 24 hours before the edge

    def due_at(self, cohort: Cohort) -> datetime | None:
        window = cohort.window(self.phase)
        if window is None:
            return None
        return (window.starts_at if self.edge == "start" else window.ends_at) + self.offset

    def summary(self, counts: dict, lang: str = "zh") -> str:
        """What it did, in a line ("已自动确认 12,345 条")."""
        table = SUMMARIES_EN if lang == "en" else SUMMARIES
        if counts.get("late"):
            return "Deadline already passed: no reminder sent" if lang == "en" else "截止时间已过，未发送提醒"
        return table[self.code].format(**{k: f"{v:,}" for k, v in counts.items() if isinstance(v, int)})


DAY = timedelta(hours=24)
EFFECTS: dict[str, Effect] = {e.code: e for e in [
    Effect("lock_participants", "preparation", "end", "锁定不参与填报名单", "Lock the non-participant list",
           "填报准备结束，不参与填报学生名单锁定"),
    Effect("remind_student_entry", "student_entry", "end", "学生填报截止前提醒", "Reminder before student entry closes",
           "学生填报截止前24小时提醒", -DAY),
    Effect("remind_confirmation", "confirmation", "end", "确认截止前提醒", "Reminder before confirmation closes",
           "确认截止前24小时提醒", -DAY),
    Effect("auto_confirm", "confirmation", "end", "逾期默认通过", "Confirm by default",
           "确认期结束，逾期未确认，系统默认通过"),
    Effect("remind_correction", "correction", "end", "修改截止前提醒", "Reminder before corrections close",
           "确认不通过数据修改截止前24小时提醒", -DAY),
    Effect("escalate", "correction", "end", "升级为问题数据", "Escalate to problem data",
           "确认不通过的数据逾期未修改，升级为问题数据"),
    Effect("open_publication", "publication", "start", "开放同班公示", "Open publication",
           "公示开始，开放本人及同班同学的纪实报告"),
    Effect("close_appeals", "publication", "end", "关闭申诉受理", "Close appeal intake", "公示结束，停止受理申诉"),
    Effect("remind_issue_handling", "issue_handling", "end", "问题处理截止前提醒",
           "Reminder before issue handling closes", "问题处理截止前24小时提醒", -DAY),
    Effect("flag_overdue", "issue_handling", "end", "标记逾期未办结", "Flag overdue cases",
           "问题处理结束，仍未办结的申诉和问题数据标记为逾期"),
]}
SUMMARIES = {
    "lock_participants": "名单已锁定：参与 {participants} 人，不参与 {non_participants} 人",
    "remind_student_entry": "已提醒 {users} 人",
    "remind_confirmation": "已提醒 {users} 人",
    "auto_confirm": "已自动确认 {records} 条",
    "remind_correction": "已提醒 {users} 人",
    "escalate": "已升级为问题数据 {records} 条",
    "open_publication": "已通知 {users} 人",
    "close_appeals": "已停止受理：本期申诉 {appeals} 件，其中未办结 {open} 件",
    "remind_issue_handling": "已提醒 {users} 人",
    "flag_overdue": "逾期未办结 {cases} 件",
}
SUMMARIES_EN = {
    "lock_participants": "List locked: {participants} taking part, {non_participants} not",
    "remind_student_entry": "{users} reminded",
    "remind_confirmation": "{users} reminded",
    "auto_confirm": "{records} confirmed by default",
    "remind_correction": "{users} reminded",
    "escalate": "{records} became problem data",
    "open_publication": "{users} told",
    "close_appeals": "Intake closed: {appeals} appeals, {open} still open",
    "remind_issue_handling": "{users} reminded",
    "flag_overdue": "{cases} cases overdue",
}


# ---------------------------------------------------------------------------------------------
# The schedule


def cohorts_of_current_terms(district_id: int | None = None) -> list[Cohort]:
    q = sa.select(Cohort).join(Term, Term.id == Cohort.term_id).where(Term.is_current.is_(True))
    if district_id is not None:
        q = q.where(Term.district_id == district_id)
    return list(db.session.execute(q.order_by(Term.district_id, Cohort.position, Cohort.id)).scalars())


def runs_of(cohort_ids) -> dict[tuple[str, int], DeadlineRun]:
    ids = list(cohort_ids)
    if not ids:
        return {}
    rows = db.session.execute(sa.select(DeadlineRun).where(DeadlineRun.cohort_id.in_(ids))).scalars()
    return {(r.effect, r.cohort_id): r for r in rows}


@dataclass
class Entry:
    """One effect of one cohort on the schedule, with its run if it ran."""
    effect: Effect
    cohort: Cohort
    due_at: datetime
    run: DeadlineRun | None

    @property
    def done(self) -> bool:
        return self.run is not None and self.run.status == "done"

    def state(self, at: datetime) -> str:
        if self.done:
            return "done"
        if self.run is not None:
            return "failed"
        return "due" if self.due_at <= at else "scheduled"


def schedule(district_id: int | None = None) -> list[Entry]:
    """Every effect of the current terms' cohorts, in time order."""
    cohorts = cohorts_of_current_terms(district_id)
    runs = runs_of(c.id for c in cohorts)
    entries = []
    for cohort in cohorts:
        for effect in EFFECTS.values():
            due = effect.due_at(cohort)
            if due is not None:
                entries.append(Entry(effect, cohort, due, runs.get((effect.code, cohort.id))))
    entries.sort(key=lambda e: (e.due_at, e.cohort.id, list(EFFECTS).index(e.effect.code)))
    return entries


def pending(at: datetime, district_id: int | None = None) -> list[Entry]:
    """What is due and not done (failed ones while they have attempts left)."""
    return [e for e in schedule(district_id) if e.due_at <= at and not e.done
            and (e.run is None or e.run.attempts < MAX_AUTO_ATTEMPTS)]


# ---------------------------------------------------------------------------------------------
# Running an effect


def run(code: str, cohort_id: int, *, at: datetime | None = None, trigger: str = "cli") -> DeadlineRun | None:
    """Apply one effect once. Returns its run, or None when it was already done (by anyone).

    Raises NotDue before its time. A failure rolls everything back, is recorded on the run's row
    (status failed, error, attempts) and re-raised."""
    at = at or now()
    effect = EFFECTS[code]
    cohort = db.session.get(Cohort, cohort_id)
    due = effect.due_at(cohort) if cohort is not None else None
    if due is None:
        raise NotDue(f"没有「{effect.name}」所需的阶段时间。")
    if at < due:
        raise NotDue(f"{cohort.name}的「{effect.name}」在 {_fmt(due)} 执行，尚未到时间。")
    started = time.perf_counter()
    district_id = cohort.term.district_id
    try:
        run_id = _claim(effect, cohort, district_id, due, at, trigger)
    except IntegrityError:
        db.session.rollback()  # another process claimed it first and committed: done, once
        return None
    if run_id is None:
        db.session.rollback()
        return None
    try:
        if effect.offset and at >= due - effect.offset:
            counts = {"users": 0, "late": 1}  # a reminder caught up after its deadline would mislead
        else:
            counts = IMPLEMENTATIONS[code](run_id, cohort, at)
        seconds = time.perf_counter() - started
        db.session.execute(sa.update(DeadlineRun).where(DeadlineRun.id == run_id).values(
            status="done", counts=counts, seconds=round(seconds, 3), error=""))
        db.session.execute(sa.insert(AuditEvent).values(
            at=at, actor_id=None, actor_name="系统", ip="", object_type="DeadlineRun", object_id=str(run_id),
            district_id=district_id, school_id=None, action=code, reason=effect.reason,
            before=BEFORE.get(code), after={**AFTER.get(code, {}), "cohort": cohort.name, **counts}))
        _fault_point(code)
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        _record_failure(effect, cohort_id, district_id, due, at, trigger, exc)
        raise
    return db.session.get(DeadlineRun, run_id)


def _claim(effect: Effect, cohort: Cohort, district_id: int, due: datetime, at: datetime, trigger: str) -> int | None:
    """Claim the effect inside the current transaction: the run row comes first, so a concurrent run
    waits on (or fails at) its unique key before doing any work."""
    existing = db.session.execute(sa.select(DeadlineRun.id, DeadlineRun.status).where(
        DeadlineRun.effect == effect.code, DeadlineRun.cohort_id == cohort.id)).first()
    values = dict(status="done", due_at=due, ran_at=at, trigger=trigger)
    if existing is None:
        return db.session.execute(sa.insert(DeadlineRun).values(
            effect=effect.code, cohort_id=cohort.id, district_id=district_id, counts={}, attempts=1, error="",
            seconds=0.0, **values).returning(DeadlineRun.id)).scalar_one()
    if existing.status == "done":
        return None
    claimed = db.session.execute(sa.update(DeadlineRun).where(
        DeadlineRun.id == existing.id, DeadlineRun.status == "failed").values(
        attempts=DeadlineRun.attempts + 1, **values)).rowcount
    return existing.id if claimed else None


def _record_failure(effect, cohort_id, district_id, due, at, trigger, exc) -> None:
    message = f"{type(exc).__name__}: {exc}"[:2000]
    try:
        with acting("deadline_failed", f"「{effect.name}」执行失败，已回滚：{message[:200]}"):
            existing = db.session.execute(sa.select(DeadlineRun).where(
                DeadlineRun.effect == effect.code, DeadlineRun.cohort_id == cohort_id)).scalar_one_or_none()
            if existing is None:
                db.session.add(DeadlineRun(effect=effect.code, cohort_id=cohort_id, district_id=district_id,
                                           status="failed", due_at=due, ran_at=at, trigger=trigger, counts={},
                                           attempts=1, error=message))
            elif existing.status == "failed":
                existing.attempts += 1
                existing.error, existing.ran_at, existing.trigger = message, at, trigger
            db.session.commit()
    except Exception:  # noqa: BLE001 - the database itself may be what failed; the tick retries
        db.session.rollback()


def _fault_point(code: str) -> None:
    """Fault injection for the crash tests: with CQE_FAULT_PAUSE=<effect>:<seconds>, pause after the
    effect's statements and before its commit, announcing it in the file CQE_FAULT_MARK."""
    spec = os.environ.get("CQE_FAULT_PAUSE", "")
    if not spec or spec.split(":")[0] != code:
        return
    mark = os.environ.get("CQE_FAULT_MARK")
    if mark:
        with open(mark, "w") as fh:
            fh.write("paused")
    time.sleep(float(spec.split(":")[1]))


def _fmt(dt: datetime) -> str:
    from models.clock import local

    return local(dt).strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------------------------------------
# The effects: each takes (run id, cohort, at) and returns its counts


def cohort_students(cohort: Cohort):
    """Students of the cohort's grades in its term's district."""
    return (sa.select(Student.id).join(SchoolClass, SchoolClass.id == Student.class_id)
            .join(School, School.id == SchoolClass.school_id)
            .where(SchoolClass.grade.in_(list(cohort.grades)), School.district_id == cohort.term.district_id))


def cohort_records(cohort: Cohort, *where):
    classes = sa.select(SchoolClass.id).where(SchoolClass.grade.in_(list(cohort.grades)))
    return sa.and_(Record.term_id == cohort.term_id, Record.student_id.in_(
        sa.select(Student.id).where(Student.class_id.in_(classes))), *where)


def cohort_cases(cohort: Cohort, *where):
    classes = sa.select(SchoolClass.id).where(SchoolClass.grade.in_(list(cohort.grades)))
    return sa.and_(Case.term_id == cohort.term_id, Case.class_id.in_(classes), *where)


def _move(where, run_id: int, target: str, at: datetime) -> int:
    return db.session.execute(sa.update(Record).where(where).values(
        state=target, version_id=Record.version_id + 1, updated_at=at, deadline_run_id=run_id
    ).execution_options(synchronize_session=False)).rowcount


def _auto_confirm(run_id: int, cohort: Cohort, at: datetime) -> dict:
    where = cohort_records(cohort, Record.state == "entered", Record.origin.in_(CLERK_ORIGINS))
    return {"records": _move(where, run_id, "confirmed", at)}


def _escalate(run_id: int, cohort: Cohort, at: datetime) -> dict:
    """Flow (1): school-entered records still rejected after the clerks' deadline become problem data,
    each with a case for the district auditor."""
    where = cohort_records(cohort, Record.state == "rejected", Record.origin == "school")
    flow, handler, corrector = PROBLEM_ROUTE
    due = cohort.window("issue_handling")
    cols = ["term_id", "flow", "kind", "student_id", "record_id", "category_id", "school_id", "class_id",
            "district_id", "handler_level", "corrector_level", "description", "state", "handler_note",
            "corrector_note", "due_at", "created_at", "updated_at", "version_id", "deadline_run_id"]
    select = (
        sa.select(
            Record.term_id, sa.literal(flow), sa.literal("problem"), Record.student_id, Record.id,
            Record.category_id, Record.school_id, Student.class_id, School.district_id, sa.literal(handler),
            sa.literal(corrector), sa.func.coalesce(Record.reject_reason, ""), sa.literal("open"),
            sa.literal(""), sa.literal(""), sa.literal(due.ends_at if due else None, UTCDateTime()),
            sa.literal(at, UTCDateTime()), sa.literal(at, UTCDateTime()), sa.literal(1), sa.literal(run_id),
        )
        .select_from(Record).join(Student, Student.id == Record.student_id)
        .join(School, School.id == Record.school_id).where(where)
    )
    cases = db.session.execute(sa.insert(Case.__table__).from_select(cols, select).execution_options(
        preserve_rowcount=True)).rowcount  # psycopg reports -1 for INSERT … SELECT without it
    return {"records": _move(where, run_id, "problem", at), "cases": cases}


def _lock_participants(run_id: int, cohort: Cohort, at: datetime) -> dict:
    rows = db.session.execute(sa.select(Student.status, sa.func.count()).where(
        Student.id.in_(cohort_students(cohort))).group_by(Student.status)).all()
    by_status = {status: n for status, n in rows}
    out = sum(n for s, n in by_status.items() if s in NON_PARTICIPANT_STATUSES)
    return {"participants": sum(by_status.values()) - out, "non_participants": out,
            **{f"status_{s}": n for s, n in sorted(by_status.items()) if s in NON_PARTICIPANT_STATUSES}}


def _close_appeals(run_id: int, cohort: Cohort, at: datetime) -> dict:
    appeals = cohort_cases(cohort, Case.flow != PROBLEM_ROUTE[0])
    total, still_open = db.session.execute(sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((Case.state.in_(OPEN_CASE_STATES), 1), else_=0)), 0)
    ).where(appeals)).one()
    return {"appeals": int(total), "open": int(still_open)}


def _flag_overdue(run_id: int, cohort: Cohort, at: datetime) -> dict:
    n = db.session.execute(sa.update(Case).where(cohort_cases(
        cohort, Case.state.in_(OPEN_CASE_STATES), Case.overdue_run_id.is_(None))).values(
        overdue_run_id=run_id).execution_options(synchronize_session=False)).rowcount
    return {"cases": n}


# --- the inbox: one INSERT … SELECT per audience, one message per user with their count


NOTIFICATION_COLUMNS = ["user_id", "kind", "cohort_id", "run_id", "count", "due_at", "created_at"]


def _notify(kind: str, run_id: int, cohort: Cohort, due: datetime | None, at: datetime, select) -> int:
    """``select`` yields (user_id, count) rows; each becomes one message."""
    sub = select.subquery()
    return db.session.execute(sa.insert(Notification.__table__).from_select(NOTIFICATION_COLUMNS, sa.select(
        sub.c[0], sa.literal(kind), sa.literal(cohort.id), sa.literal(run_id), sub.c[1],
        sa.literal(due, UTCDateTime()), sa.literal(at, UTCDateTime())))
        .execution_options(preserve_rowcount=True)).rowcount


def _per_user(role: str, target, join_on, where):
    """(user_id, how many ``target`` rows) of the holders of ``role`` whose scope matches the rows."""
    return (sa.select(RoleGrant.user_id, sa.func.count(target.id))
            .select_from(RoleGrant).join(target, join_on)
            .where(RoleGrant.role == role, where).group_by(RoleGrant.user_id))


def _record_scope_clause(role: str):
    """How a clerk's grant matches a record's school (school / district / city clerks)."""
    if role == "school_clerk":
        return RoleGrant.school_id == Record.school_id
    school_district = sa.select(School.district_id).where(School.id == Record.school_id).scalar_subquery()
    if role == "district_clerk":
        return RoleGrant.district_id == school_district
    # One level of correlation (a subquery inside a subquery would not correlate to the record).
    school_city = (sa.select(District.city_id).join(School, School.district_id == District.id)
                   .where(School.id == Record.school_id).scalar_subquery())
    return RoleGrant.city_id == school_city


def _remind_confirmation(run_id: int, cohort: Cohort, at: datetime) -> dict:
    end = cohort.window("confirmation").ends_at
    where = cohort_records(cohort, Record.state == "entered", Record.origin.in_(CLERK_ORIGINS))
    users = _notify("confirm", run_id, cohort, end, at, _per_user(
        "student", Record, RoleGrant.student_id == Record.student_id, where))
    return {"users": users}


def _remind_correction(run_id: int, cohort: Cohort, at: datetime) -> dict:
    end = cohort.window("correction").ends_at
    users = 0
    for role, origin in (("school_clerk", "school"), ("district_clerk", "district"), ("city_clerk", "city")):
        where = cohort_records(cohort, Record.state == "rejected", Record.origin == origin)
        users += _notify("correct", run_id, cohort, end, at, _per_user(role, Record, _record_scope_clause(role), where))
    return {"users": users}


def _remind_student_entry(run_id: int, cohort: Cohort, at: datetime) -> dict:
    end = cohort.window("student_entry").ends_at
    unsent = cohort_records(cohort, Record.origin == "student", Record.state.in_(("draft", "reviewed")))
    users = _notify("submit", run_id, cohort, end, at, _per_user(
        "student", Record, RoleGrant.student_id == Record.student_id, unsent))
    waiting = cohort_records(cohort, Record.origin == "student", Record.state == "submitted")
    class_of = sa.select(Student.class_id).where(Student.id == Record.student_id).scalar_subquery()
    users += _notify("review", run_id, cohort, end, at, _per_user(
        "homeroom_teacher", Record, RoleGrant.class_id == class_of, waiting))
    return {"users": users}


def _remind_issue_handling(run_id: int, cohort: Cohort, at: datetime) -> dict:
    end = cohort.window("issue_handling").ends_at
    users = 0
    for level in ("school", "district", "city"):
        scope = {"school": RoleGrant.school_id == Case.school_id,
                 "district": RoleGrant.district_id == Case.district_id,
                 "city": RoleGrant.city_id == sa.select(District.city_id).where(
                     District.id == Case.district_id).scalar_subquery()}[level]
        handle = cohort_cases(cohort, Case.handler_level == level, Case.state.in_(("open", "corrected")))
        users += _notify("handle", run_id, cohort, end, at, _per_user(f"{level}_auditor", Case, scope, handle))
        fix = cohort_cases(cohort, Case.corrector_level == level, Case.state == "accepted")
        users += _notify("fix", run_id, cohort, end, at, _per_user(
            CLERK_OF_LEVEL[level], Case, scope, fix))
    own = cohort_cases(cohort, Case.corrector_level == "student", Case.state == "accepted")
    users += _notify("fix", run_id, cohort, end, at, _per_user(
        "student", Case, RoleGrant.student_id == Case.student_id, own))
    return {"users": users}


def _open_publication(run_id: int, cohort: Cohort, at: datetime) -> dict:
    end = cohort.window("publication").ends_at
    taking_part = sa.select(Student.id).where(Student.id.in_(cohort_students(cohort)),
                                              Student.status.not_in(NON_PARTICIPANT_STATUSES))
    users = 0
    for role, kind in (("student", "published"), ("parent", "published_parent")):
        users += _notify(kind, run_id, cohort, end, at, sa.select(RoleGrant.user_id, sa.literal(0)).where(
            RoleGrant.role == role, RoleGrant.student_id.in_(taking_part)).group_by(RoleGrant.user_id))
    return {"users": users}


IMPLEMENTATIONS = {
    "lock_participants": _lock_participants,
    "remind_student_entry": _remind_student_entry,
    "remind_confirmation": _remind_confirmation,
    "auto_confirm": _auto_confirm,
    "remind_correction": _remind_correction,
    "escalate": _escalate,
    "open_publication": _open_publication,
    "close_appeals": _close_appeals,
    "remind_issue_handling": _remind_issue_handling,
    "flag_overdue": _flag_overdue,
}
# The state change a run made, for its history event.
BEFORE = {"auto_confirm": {"state": "entered"}, "escalate": {"state": "rejected"}}
AFTER = {"auto_confirm": {"state": "confirmed"}, "escalate": {"state": "problem"}}


def auto_confirm(cohort_id: int, *, at: datetime | None = None, trigger: str = "cli") -> int:
    """逾期默认通过 now (or at ``at``): how many records it confirmed (0 when already done)."""
    done = run("auto_confirm", cohort_id, at=at, trigger=trigger)
    return done.counts["records"] if done else 0


def escalate(cohort_id: int, *, at: datetime | None = None, trigger: str = "cli") -> int:
    """升级为问题数据 now: how many rejected school records became problem data (0 when already done)."""
    done = run("escalate", cohort_id, at=at, trigger=trigger)
    return done.counts["records"] if done else 0


def tick(at: datetime | None = None, district_id: int | None = None, *, trigger: str = "tick",
         progress=None) -> list[tuple[Entry, DeadlineRun | None, str]]:
    """Apply everything due and not yet done, oldest first. Returns (entry, run, error) per effect tried;
    one effect failing does not stop the others."""
    at = at or now()
    results = []
    todo = pending(at, district_id)
    for i, entry in enumerate(todo):
        if progress:
            progress(i, len(todo), entry.effect.name)
        try:
            results.append((entry, run(entry.effect.code, entry.cohort.id, at=at, trigger=trigger), ""))
        except NotDue as exc:
            results.append((entry, None, exc.message))
        except Exception as exc:  # noqa: BLE001 - recorded on the run row; the next tick retries
            results.append((entry, None, f"{type(exc).__name__}: {exc}"))
    if progress:
        progress(len(todo), len(todo), "")
    return results
