"""What a user's home page says: current phase and time left for their cohorts, what waits, counts."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from flask_babel import gettext as _

from models import policy
from models.accounts import User
from models.base import db
from models.calendar import Cohort, Term
from models.cases import OPEN_CASE_STATES, Case
from models.catalog import Category
from models.clock import local, now
from models.contacts import Contact
from models.fields import display_value
from models.org import NON_PARTICIPANT_STATUSES, School, Student
from models.records import RECORD_STATES, Record
from models.roles import ROLES
from views.counts import count
from views.i18n import pick


def time_left(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return _("%(d)s天%(h)s小时", d=days, h=hours)
    if hours:
        return _("%(h)s小时%(m)s分钟", h=hours, m=mins)
    return _("%(m)s分钟", m=mins)


def _user_grades(user: User) -> set[int] | None:
    """The grades a class- or student-scoped user belongs to; None for school-wide and above."""
    grades = set()
    for g in user.grants:
        if g.scope_kind == "class" and g.school_class:
            grades.add(g.school_class.grade)
        elif g.scope_kind == "student" and g.student:
            grades.add(g.student.school_class.grade)
        else:
            return None
    return grades


def _phase(window) -> str:
    names = {p["code"]: p for p in window.cohort.term.profile.phases}
    spec = names.get(window.phase, {})
    return pick(spec.get("name", window.phase), spec.get("name_en"))


def cohort_status(cohort: Cohort, at: datetime) -> dict:
    open_now, upcoming = [], None
    for w in cohort.windows:
        if w.is_open(at):
            open_now.append({"name": _phase(w), "phase": w.phase, "ends": local(w.ends_at), "left": time_left(w.ends_at - at)})
        elif w.starts_at > at and (upcoming is None or w.starts_at < upcoming["starts_at"]):
            upcoming = {"name": _phase(w), "starts_at": w.starts_at, "starts": local(w.starts_at),
                        "in": time_left(w.starts_at - at)}
    return {"cohort": cohort, "open": open_now, "upcoming": upcoming}


def _count(stmt, wide: bool = False) -> int:
    return count(stmt, wide)


def _queue_counts(user: User, roles: set, records_in_scope, counts: list, waiting: list, at,
                  open_phases: set, wide: bool) -> None:
    """What waits in the user's queues (SPEC §5–§6): cases to handle or audit, rejected records to
    correct, entries to review, records to confirm."""
    cases = sa.select(sa.func.count(Case.id)).where(policy.scope(user, Case))
    if roles & {"school_auditor", "district_auditor", "city_auditor"}:
        to_handle = _count(cases.where(Case.state == "open"), wide)
        to_audit = _count(cases.where(Case.state == "corrected"), wide)
        overdue = _count(cases.where(Case.state.in_(OPEN_CASE_STATES), Case.due_at <= at), wide)
        counts += [(_("待处理申诉"), to_handle), (_("待审核修改"), to_audit), (_("逾期未办结"), overdue)]
        if to_handle or to_audit:
            waiting.append(_("申诉与问题数据：%(h)s 件待处理，%(a)s 件待审核。", h=to_handle, a=to_audit))
    if roles & {"school_clerk", "district_clerk", "city_clerk"}:
        levels = [lvl for lvl, role in (("school", "school_clerk"), ("district", "district_clerk"),
                                        ("city", "city_clerk")) if role in roles]
        rejected = _count(records_in_scope.where(Record.state == "rejected", Record.origin.in_(levels)), wide)
        to_fix = _count(cases.where(Case.state == "accepted"), wide)
        counts += [(_("确认不通过待修改"), rejected), (_("申诉待修改"), to_fix)]
        if rejected and "correction" in open_phases:
            waiting.append(_("学生确认不通过的记录 %(n)s 条，须在修改截止前完成修改。", n=rejected))
        if to_fix:
            waiting.append(_("已受理的申诉或问题数据 %(n)s 件等待您修改。", n=to_fix))
    if "homeroom_teacher" in roles:
        to_review = _count(records_in_scope.where(Record.state == "submitted"))
        counts.append((_("待审阅的学生填报"), to_review))
        if to_review:
            waiting.append(_("本班学生提交的填报 %(n)s 条等待您审阅。", n=to_review))
    if "student" in roles:
        to_confirm = _count(records_in_scope.where(Record.state == "entered")) if "confirmation" in open_phases else 0
        reviewed = _count(records_in_scope.where(Record.state == "reviewed"))
        if to_confirm:
            waiting.append(_("有 %(n)s 条记录等待您确认（确认期内未操作的，期满默认通过）。", n=to_confirm))
        if reviewed:
            waiting.append(_("班主任已审阅 %(n)s 条填报：请提交公示，或修改后再次提交审阅。", n=reviewed))
        to_fix = _count(cases.where(Case.state == "accepted", Case.corrector_level == "student"))
        if to_fix:
            waiting.append(_("有 %(n)s 件申诉需要您修改本人填报的内容。", n=to_fix))


def home_context(user: User) -> dict:
    at = now()
    terms = db.session.execute(
        sa.select(Term).where(policy.scope(user, Term), Term.is_current.is_(True))
    ).scalars().all()
    grades = _user_grades(user)
    cohorts = [c for t in terms for c in t.cohorts if grades is None or set(c.grades) & grades]
    term_ids = [t.id for t in terms]
    records_in_scope = sa.select(sa.func.count(Record.id)).where(policy.scope(user, Record), Record.term_id.in_(term_ids))

    counts, waiting = [], []
    roles = user.roles
    wide = any(g.scope_kind in ("district", "city") for g in user.grants)
    staff = bool(roles & policy.STAFF)
    if staff:
        counts.append((_("学生"), _count(sa.select(sa.func.count(Student.id)).where(policy.scope(user, Student)),
                                          wide)))
        counts.append((_("不参与填报学生"), _count(sa.select(sa.func.count(Student.id)).where(
            policy.scope(user, Student), Student.status.in_(NON_PARTICIPANT_STATUSES)), wide)))
        counts.append((_("本学期记录"), _count(records_in_scope, wide)))
    if roles & {"school_clerk", "district_clerk", "city_clerk"}:
        level = {"school_clerk": "school", "district_clerk": "district", "city_clerk": "city"}
        mine = [level[r] for r in roles if r in level]
        counts.append((_("本级录入记录"), _count(records_in_scope.where(Record.origin.in_(mine)), wide)))
    if "district_admin" in roles:
        schools = _count(sa.select(sa.func.count(School.id)).where(policy.scope(user, School)))
        with_contacts = _count(sa.select(sa.func.count(sa.distinct(Contact.school_id))).where(policy.scope(user, Contact)))
        counts.append((_("学校"), schools))
        waiting.append(_("联系信息表（附件3）：%(done)s/%(total)s 所学校已填报", done=with_contacts, total=schools))
    if roles & {"school_admin", "school_clerk"}:
        for status in (cohort_status(c, at) for c in cohorts):
            prep = next((w for w in status["open"] if w["phase"] == "preparation"), None)
            if prep:
                waiting.append(_("%(cohort)s：不参与填报学生（离校、休学、转学）的预确认开放至 %(end)s，之后名单锁定。",
                                 cohort=status["cohort"].name, end=prep["ends"].strftime("%Y-%m-%d %H:%M")))
    if "school_admin" in roles:
        kinds = db.session.execute(sa.select(sa.func.count(sa.distinct(Contact.kind)))
                                   .where(policy.scope(user, Contact))).scalar_one()
        waiting.append(_("本校联系信息表（附件3）：已填写 %(n)s/4 类联系人。", n=kinds))
    if roles & {"homeroom_teacher", "student"}:
        drafts = _count(records_in_scope.where(Record.state == "draft"))
        if drafts:
            if "homeroom_teacher" in roles:
                waiting.append(_("本班学生有 %(n)s 条自填记录尚在草稿中，须在公示开始前完成。", n=drafts))
            else:
                waiting.append(_("您有 %(n)s 条自填记录尚在草稿中，须在公示开始前完成。", n=drafts))

    open_phases = {w.phase for c in cohorts for w in c.windows if w.is_open(at)}
    _queue_counts(user, roles, records_in_scope, counts, waiting, at, open_phases, wide)

    own = []
    if roles & {"student", "parent"}:
        rows = db.session.execute(
            sa.select(Record, Category).join(Category, Record.category_id == Category.id)
            .where(policy.scope(user, Record), Record.term_id.in_(term_ids))
            .order_by(Category.position, Record.id)
        ).all()
        for record, category in rows:
            shown = [(f["label"], display_value(f, (record.data or {}).get(f["name"]))) for f in category.fields]
            own.append({"category": category.name, "fields": shown,
                        "state": RECORD_STATES.get(record.state, record.state), "record": record})

    return {
        "at": local(at),
        "grants": [(ROLES[g.role].name, str(g.scope_object)) for g in user.grants],
        "cohorts": [cohort_status(c, at) for c in cohorts],
        "counts": counts,
        "waiting": waiting,
        "own_records": own,
        "is_family": not staff,
        "counts_cached": wide,
    }
