"""The Changsha evaluation workflow (SPEC §8): committees and their publication, integrity pledges, the class
evaluation group's review of materials, the city's quotas and the schools' check of them, teacher ratings under
the quota, the finalisation of a class and of a school, and the students' peer ratings.

Every function here follows models/workflow.py: policy decides (role, scope, phase window), the change is applied
and committed with its history in one transaction, or nothing is saved and a sentence says why.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from models import policy
from models.accounts import RoleGrant, User
from models.audit import acting
from models.base import db
from models.calendar import Term
from models.catalog import Dimension
from models.changsha import (
    KINDS_OF_LEVEL,
    MEMBER_KINDS,
    Committee,
    CommitteeMember,
    Complaint,
    MaterialReview,
    PeerRating,
    Pledge,
    Quota,
    QuotaAck,
    Rating,
    RatingFinal,
)
from models.clock import local, now
from models.fields import FieldErrors
from models.org import NON_PARTICIPANT_STATUSES, District, School, SchoolClass, Student
from models.workflow import MAX_TEXT, WorkflowError, _commit, _fail

PROFILE = "changsha"


# ---------------------------------------------------------------------------------------------
# The term and the profile's rules


def changsha_term(district_id: int) -> Term:
    """The district's current term, which must run the Changsha profile."""
    term = policy.current_term(district_id)
    if term is None:
        raise WorkflowError("当前没有进行中的学期。")
    if term.profile.code != PROFILE:
        raise WorkflowError(f"本区当前学期使用「{term.profile.name}」，没有这项工作。")
    return term


def rules(term: Term) -> dict:
    return term.profile.rules or {}


def level_codes(term: Term) -> list[str]:
    return [lv["code"] for lv in rules(term).get("levels", [])]


def dimensions(term: Term) -> list[Dimension]:
    return list(db.session.execute(
        sa.select(Dimension).where(Dimension.profile_id == term.profile_id).order_by(Dimension.position)).scalars())


def participants(class_ids: list[int]) -> list[Student]:
    return list(db.session.execute(
        sa.select(Student).where(Student.class_id.in_(class_ids), Student.status.notin_(NON_PARTICIPANT_STATUSES))
        .order_by(Student.class_id, Student.id)).scalars())


def _deny(decision: policy.Decision):
    raise policy.Denied(decision.reason, decision.status)


def _require(user: User, action: str, obj, at: datetime) -> None:
    decision = policy.check(user, action, obj, at)
    if not decision:
        _deny(decision)


# ---------------------------------------------------------------------------------------------
# Committees (机构设立): members, the rules of each kind of committee, the published member list


def working_days_end(start: date, days: int) -> date:
    """The last day of a period of ``days`` working days (Monday to Friday) that starts on ``start``
    (a start on a weekend begins on the next Monday)."""
    day = start
    while day.weekday() >= 5:
        day += timedelta(days=1)
    counted = 1
    while counted < days:
        day += timedelta(days=1)
        if day.weekday() < 5:
            counted += 1
    return day


def committee_of(term: Term, level: str, *, district: District | None = None, school: School | None = None,
                 klass: SchoolClass | None = None) -> Committee:
    """The one committee of a place (new, not yet added, when there is none)."""
    if level == "class":
        school = klass.school
    if level in ("class", "school"):
        district = school.district
    where = [Committee.term_id == term.id, Committee.level == level, Committee.district_id == district.id,
             Committee.school_id == school.id if school is not None and level != "district"
             else Committee.school_id.is_(None),
             Committee.class_id == klass.id if klass is not None and level == "class" else Committee.class_id.is_(None)]
    found = db.session.execute(sa.select(Committee).where(*where)).scalar_one_or_none()
    if found is not None:
        return found
    return Committee(term=term, level=level, district=district, district_id=district.id,
                     school=school if level != "district" else None,
                     school_class=klass if level == "class" else None)


def _years_ago(day: date, days: int) -> date:
    return day - timedelta(days=days)


def add_member(user: User, committee: Committee, *, name: str, kind: str, duty: str = "",
               member: User | None = None, elected_on: date | None = None, teaching_since: date | None = None,
               at: datetime | None = None) -> CommitteeMember:
    """Add a member to a committee that has not been published yet, by the rules of its kind."""
    at = at or now()
    today = local(at).date()
    name = (name or "").strip() or (member.display_name if member else "")
    duty = (duty or "").strip()
    try:
        _require(user, "edit", committee, at)
        if committee.published:
            raise WorkflowError("名单已公示，不能再修改。")
        errors = {}
        if not name:
            errors["name"] = "姓名：必填"
        elif len(name) > 64:
            errors["name"] = "姓名：不能超过64个字"
        if len(duty) > 64:
            errors["duty"] = "职务：不能超过64个字"
        if kind not in KINDS_OF_LEVEL[committee.level]:
            allowed = "、".join(MEMBER_KINDS[k] for k in KINDS_OF_LEVEL[committee.level])
            errors["kind"] = f"成员类别：{committee.level_name}的成员只能是{allowed}"
        if errors:
            raise FieldErrors(errors)
        r = rules(committee.term)
        existing = list(committee.members)
        if member is not None and any(m.user_id == member.id for m in existing):
            raise FieldErrors({"user": f"{name}已是{committee.level_name}成员"})
        if committee.level == "class":
            size = r.get("class_group_size", 5)
            if len(existing) >= size:
                raise WorkflowError(f"班级评价小组已有{size}位成员，不能再增加。")
            class_id = committee.school_class.id if committee.school_class is not None else committee.class_id
            if member is None or not any(g.role == "class_evaluator" and g.class_id == class_id
                                         for g in member.grants):
                raise FieldErrors({"user": f"{name}：须是有本班「班级评价小组成员」账号的教师"})
            if teaching_since is None:
                raise FieldErrors({"teaching_since": "任教本班起始日期：必填"})
            min_days = r.get("class_group_min_teaching_days", 365)
            if teaching_since > _years_ago(today, min_days):
                raise FieldErrors({"teaching_since": f"{name}自{teaching_since.isoformat()}起任教本班，不满1年，"
                                                     "不能担任班级评价小组成员"})
        if kind == "parent_rep":
            if elected_on is None:
                raise FieldErrors({"elected_on": "家长代表须经家长会选举：请填写选举日期"})
            if elected_on > today:
                raise FieldErrors({"elected_on": "选举日期：不能晚于今天"})
            limit = r.get("parent_representatives", 2)
            if sum(m.kind == "parent_rep" for m in existing) >= limit:
                raise WorkflowError(f"家长代表为{limit}名，已满。")
        row = CommitteeMember(committee=committee, user=member, name=name, kind=kind, duty=duty,
                              elected_on=elected_on if kind == "parent_rep" else None,
                              teaching_since=teaching_since if committee.level == "class" else None)
        with acting("edit", f"{committee.level_name}增加成员：{name}"):
            db.session.add(committee)
            db.session.add(row)
            _commit("edit")
        return row
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def remove_member(user: User, row: CommitteeMember, *, at: datetime | None = None) -> None:
    at = at or now()
    committee = row.committee
    try:
        _require(user, "edit", committee, at)
        if committee.published:
            raise WorkflowError("名单已公示，不能再修改。")
        with acting("edit", f"{committee.level_name}移除成员：{row.name}"):
            committee.members.remove(row)
            _commit("edit")
    except (policy.Denied, WorkflowError) as exc:
        _fail(exc)


def committee_problems(committee: Committee) -> list[str]:
    """What keeps a committee's list from being published (empty: complete)."""
    r = rules(committee.term)
    members = list(committee.members)
    kinds = [m.kind for m in members]
    problems = []
    if committee.level == "class":
        size = r.get("class_group_size", 5)
        if len(members) != size:
            problems.append(f"班级评价小组须由{size}位任教本班1年以上的教师组成（现有{len(members)}位）。")
    elif committee.level == "school":
        if "principal" not in kinds:
            problems.append("学校评价委员会须有校长。")
        if "grade_leader" not in kinds:
            problems.append("学校评价委员会须有年级组长。")
        reps = r.get("parent_representatives", 2)
        if kinds.count("parent_rep") != reps:
            problems.append(f"学校评价委员会须有家长会选举的家长代表{reps}名（现有{kinds.count('parent_rep')}名）。")
    elif not members:
        problems.append("领导小组还没有成员。")
    return problems


def publish_committee(user: User, committee: Committee, *, days: int, starts_on: date | None = None,
                      at: datetime | None = None) -> Committee:
    """Publish the member list (公示) for ``days`` working days from ``starts_on`` (default today)."""
    at = at or now()
    today = local(at).date()
    try:
        _require(user, "edit", committee, at)
        if committee.published:
            raise WorkflowError(f"名单已于{committee.published_from.isoformat()}公示。")
        low, high = rules(committee.term).get("publication_working_days", [3, 5])
        if not isinstance(days, int) or not low <= days <= high:
            raise FieldErrors({"days": f"公示天数：须为{low}至{high}个工作日"})
        starts_on = starts_on or today
        if starts_on < today:
            raise FieldErrors({"starts_on": "公示开始日期：不能早于今天"})
        problems = committee_problems(committee)
        if problems:
            raise WorkflowError("名单还不能公示：" + "".join(problems))
        committee.published_from = starts_on
        committee.published_until = working_days_end(starts_on, days)
        committee.published_by_id = user.id
        with acting("publish", f"公示{committee.level_name}名单（{days}个工作日）"):
            db.session.add(committee)
            _commit("publish")
        return committee
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def on_public_display(committee: Committee, at: datetime | None = None) -> bool:
    """Whether the list is in its publication period today (Beijing date)."""
    if not committee.published:
        return False
    today = local(at or now()).date()
    return committee.published_from <= today <= committee.published_until


# ---------------------------------------------------------------------------------------------
# Integrity pledges (诚信承诺书)


def pledge_text(term: Term) -> str:
    return rules(term).get("pledge_text", "")


def has_pledged(user: User, term: Term) -> bool:
    return db.session.execute(sa.select(Pledge.id).where(Pledge.term_id == term.id, Pledge.user_id == user.id)
                              ).first() is not None


def _evaluator_grants(user: User) -> list[RoleGrant]:
    return [g for g in user.grants if g.role in ("class_evaluator", "school_committee", "district_leading_group")]


def sign_pledge(user: User, term: Term, signed_name: str, *, at: datetime | None = None) -> Pledge:
    """The evaluator signs the pledge by typing their name; once per term."""
    at = at or now()
    signed_name = (signed_name or "").strip()
    try:
        if not _evaluator_grants(user):
            raise policy.Denied("只有参与评价的人员（评价小组、评价委员会、领导小组成员）需要签署诚信承诺书。", 403)
        if term.profile.code != PROFILE or not pledge_text(term):
            raise WorkflowError("本学期的评价方案没有诚信承诺书。")
        if has_pledged(user, term):
            raise WorkflowError("您已签署本学期的诚信承诺书。")
        if signed_name != user.display_name.strip():
            raise FieldErrors({"signed_name": f"签名：请输入您的姓名「{user.display_name}」"})
        pledge = Pledge(term_id=term.id, user_id=user.id, district_id=term.district_id, signed_at=at,
                        text_sha256=hashlib.sha256(pledge_text(term).encode()).hexdigest(), signed_name=signed_name)
        with acting("sign_pledge", "签署诚信承诺书"):
            db.session.add(pledge)
            _commit("sign_pledge")
        return pledge
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def require_pledge(user: User, term: Term) -> None:
    if not has_pledged(user, term):
        raise policy.Denied("请先签署诚信承诺书，才能审核材料或评价学生。", 403)


def is_group_member(user: User, term: Term, class_id: int, at: datetime | None = None) -> bool:
    """Whether the user sits on the class's evaluation group and its list has been published (公示 begun)."""
    today = local(at or now()).date()
    return db.session.execute(
        sa.select(CommitteeMember.id).join(Committee, CommitteeMember.committee_id == Committee.id).where(
            Committee.term_id == term.id, Committee.level == "class", Committee.class_id == class_id,
            Committee.published_from.is_not(None), Committee.published_from <= today,
            CommitteeMember.user_id == user.id)
    ).first() is not None


def require_group_member(user: User, term: Term, klass: SchoolClass, at: datetime | None = None) -> None:
    """Reviewing and rating a class is its evaluation group's work: five teachers who have taught the class a year,
    on a list that was published (the role alone is not enough)."""
    if not is_group_member(user, term, klass.id, at):
        raise policy.Denied(f"只有{klass}班级评价小组（名单已公示）的成员才能审核材料和评价本班学生。", 403)


# ---------------------------------------------------------------------------------------------
# Teacher review of materials (教师审核学生材料)


def review_materials(user: User, student: Student, *, authentic: bool, complete: bool, note: str = "",
                     at: datetime | None = None) -> MaterialReview:
    at = at or now()
    note = (note or "").strip()
    try:
        term = changsha_term(student.school.district_id)
        probe = db.session.execute(sa.select(MaterialReview).where(
            MaterialReview.term_id == term.id, MaterialReview.student_id == student.id,
            MaterialReview.reviewer_id == user.id)).scalar_one_or_none()
        row = probe or MaterialReview(term=term, student=student, school_id=student.school_id,
                                      class_id=student.class_id, reviewer_id=user.id)
        _require(user, "review_materials", row, at)
        require_pledge(user, term)
        require_group_member(user, term, student.school_class, at)
        if not (authentic and complete) and not note:
            raise FieldErrors({"note": "说明：材料不真实或不完整时，请写明问题，以便反馈给班主任和家长"})
        if len(note) > MAX_TEXT:
            raise FieldErrors({"note": f"说明：不能超过{MAX_TEXT}个字（现有{len(note)}个）"})
        row.authentic, row.complete, row.note = bool(authentic), bool(complete), note
        with acting("review_materials", note):
            db.session.add(row)
            _commit("review_materials")
        return row
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


# ---------------------------------------------------------------------------------------------
# Quotas (维度插标)


def quota_cap(max_percent: int, students: int) -> int:
    """How many of ``students`` may be at a level capped at ``max_percent`` %: rounded down, never up
    (30 % of 43 is 12.9: 12 students)."""
    return (max_percent * students) // 100


def quotas_of(term: Term, school_id: int) -> dict[int, dict[str, int]]:
    """{dimension_id: {level: max_percent}} of a school."""
    out: dict[int, dict[str, int]] = defaultdict(dict)
    for q in db.session.execute(sa.select(Quota).where(Quota.term_id == term.id, Quota.school_id == school_id)
                                ).scalars():
        out[q.dimension_id][q.level] = q.max_percent
    return dict(out)


def set_quotas(user: User, school: School, table: dict[str, dict[str, int]], *, at: datetime | None = None) -> int:
    """The city sets a school's quotas: {dimension code: {level: max percent}}; all or nothing."""
    at = at or now()
    try:
        term = changsha_term(school.district_id)
        dims = {d.code: d for d in dimensions(term)}
        levels = level_codes(term)
        existing = {(q.dimension_id, q.level): q for q in db.session.execute(
            sa.select(Quota).where(Quota.term_id == term.id, Quota.school_id == school.id)).scalars()}
        _require(user, "edit", Quota(term=term, school=school, school_id=school.id), at)
        errors = {}
        rows = []
        for code, by_level in table.items():
            dim = dims.get(code)
            if dim is None:
                errors[code] = f"维度「{code}」不存在"
                continue
            for level, percent in by_level.items():
                label = f"{dim.name} {level}"
                if level not in levels:
                    errors[f"{code}.{level}"] = f"{label}：等级只能是{'、'.join(levels)}"
                elif isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
                    errors[f"{code}.{level}"] = f"{label}：比例须为0至100的整数（%）"
                else:
                    rows.append((dim, level, percent))
        if errors:
            raise FieldErrors(errors)
        changed = 0
        with acting("edit", f"设定{school.name}的插标比例"):
            for dim, level, percent in rows:
                q = existing.get((dim.id, level))
                if q is None:
                    q = Quota(term_id=term.id, school_id=school.id, dimension_id=dim.id, level=level)
                    db.session.add(q)
                if q.max_percent != percent:
                    q.max_percent, q.set_by_id = percent, user.id
                    changed += 1
            if changed:
                # Changed numbers must be received and checked again.
                db.session.execute(sa.delete(QuotaAck).where(QuotaAck.term_id == term.id,
                                                             QuotaAck.school_id == school.id))
            _commit("edit")
        return changed
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def acknowledge_quotas(user: User, school: School, *, at: datetime | None = None) -> QuotaAck:
    """The school received and checked its quotas (接受数据并复核)."""
    at = at or now()
    try:
        term = changsha_term(school.district_id)
        ack = QuotaAck(term_id=term.id, term=term, school=school, school_id=school.id, confirmed_by_id=user.id,
                       confirmed_at=at)
        _require(user, "create", ack, at)
        if not quotas_of(term, school.id):
            raise WorkflowError("市中招办尚未下发本校的插标比例。")
        if quotas_acknowledged(term, school.id):
            raise WorkflowError("本校已复核插标比例。")
        with acting("create", "接收并复核插标比例"):
            db.session.add(ack)
            _commit("create")
        return ack
    except (policy.Denied, WorkflowError) as exc:
        _fail(exc)


def quotas_acknowledged(term: Term, school_id: int) -> bool:
    return db.session.execute(sa.select(QuotaAck.id).where(QuotaAck.term_id == term.id,
                                                           QuotaAck.school_id == school_id)).first() is not None


@dataclass
class QuotaLine:
    dimension: Dimension
    level: str
    max_percent: int | None
    count: int
    students: int

    @property
    def cap(self) -> int | None:
        return None if self.max_percent is None else quota_cap(self.max_percent, self.students)

    @property
    def exceeded(self) -> bool:
        return self.cap is not None and self.count > self.cap

    @property
    def message(self) -> str:
        return (f"「{self.dimension.name}」{self.level}等：{self.count}人，超过插标上限{self.cap}人"
                f"（{self.max_percent}%×{self.students}人）")


def distribution(term: Term, school_id: int, class_id: int | None = None) -> list[QuotaLine]:
    """The running distribution of ratings against the school's quota, for a class or the whole school:
    one line per dimension and level, with the count, the cap and whether it is exceeded."""
    where = [Student.school_id == school_id, Student.status.notin_(NON_PARTICIPANT_STATUSES),
             SchoolClass.grade.in_(_graduating_grades(term))]
    if class_id is not None:
        where.append(Student.class_id == class_id)
    students = db.session.execute(sa.select(sa.func.count(Student.id)).join(SchoolClass, Student.class_id ==
                                                                            SchoolClass.id).where(*where)).scalar()
    counts = defaultdict(int)
    for dim_id, level, n in db.session.execute(
            sa.select(Rating.dimension_id, Rating.level, sa.func.count(Rating.id))
            .join(Student, Rating.student_id == Student.id).join(SchoolClass, Student.class_id == SchoolClass.id)
            .where(Rating.term_id == term.id, *where).group_by(Rating.dimension_id, Rating.level)):
        counts[(dim_id, level)] = n
    quotas = quotas_of(term, school_id)
    return [QuotaLine(d, level, quotas.get(d.id, {}).get(level), counts[(d.id, level)], students)
            for d in dimensions(term) for level in level_codes(term)]


def _graduating_grades(term: Term) -> list[int]:
    grades = sorted({g for c in term.cohorts for g in c.grades})
    return grades or [9]


# ---------------------------------------------------------------------------------------------
# Teacher evaluation (教师评价) and finalisation


def _final(term: Term, school_id: int, class_id: int | None) -> RatingFinal | None:
    return db.session.execute(sa.select(RatingFinal).where(
        RatingFinal.term_id == term.id, RatingFinal.school_id == school_id,
        RatingFinal.class_id == class_id if class_id is not None else RatingFinal.class_id.is_(None))
    ).scalar_one_or_none()


def save_ratings(user: User, entries: list[tuple[Student, str, str]], *, at: datetime | None = None) -> int:
    """The class evaluation group's levels: [(student, dimension code, level)], all or nothing. A rating may
    go beyond the quota for a while (the page shows it); finalising refuses that."""
    at = at or now()
    try:
        if not entries:
            raise WorkflowError("没有要保存的评价。")
        changed = 0
        with acting("rate", "教师评价"), db.session.no_autoflush:
            terms, dims_of, existing, members = {}, {}, {}, set()
            for student, code, level in entries:
                district_id = student.school.district_id
                if district_id not in terms:
                    term = changsha_term(district_id)
                    terms[district_id] = term
                    dims_of[district_id] = {d.code: d for d in dimensions(term)}
                    require_pledge(user, term)
                term, dims = terms[district_id], dims_of[district_id]
                if not student.participates:
                    raise policy.Denied(f"{student.name}不参与评价。", 403)
                dim = dims.get(code)
                if dim is None:
                    raise FieldErrors({code: f"{student.name}：维度「{code}」不存在"})
                if level not in level_codes(term):
                    raise FieldErrors({f"{student.id}.{code}": f"{student.name}「{dim.name}」：等级只能是"
                                                               f"{'、'.join(level_codes(term))}"})
                key = (term.id, student.id)
                if key not in existing:
                    existing[key] = {r.dimension_id: r for r in db.session.execute(sa.select(Rating).where(
                        Rating.term_id == term.id, Rating.student_id == student.id)).scalars()}
                row = existing[key].get(dim.id) or Rating(term=term, student=student, school_id=student.school_id,
                                                           class_id=student.class_id, dimension=dim)
                _require(user, "rate", row, at)
                if (term.id, student.class_id) not in members:
                    require_group_member(user, term, student.school_class, at)
                    members.add((term.id, student.class_id))
                if _final(term, student.school_id, student.class_id) is not None:
                    raise WorkflowError(f"{student.school_class}的评价已定稿，不能再修改。")
                if not quotas_acknowledged(term, student.school_id):
                    raise WorkflowError("学校尚未接收并复核插标比例，暂不能评价。")
                if row.level != level:
                    row.level, row.rated_by_id = level, user.id
                    db.session.add(row)
                    existing[key][dim.id] = row
                    changed += 1
            _commit("rate")
        return changed
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def missing_ratings(term: Term, class_ids: list[int]) -> int:
    """How many (student, dimension) ratings of these classes are still missing."""
    students = participants(class_ids)
    done = db.session.execute(sa.select(sa.func.count(Rating.id)).where(
        Rating.term_id == term.id, Rating.student_id.in_([s.id for s in students]))).scalar()
    return len(students) * len(dimensions(term)) - done


def finalise_class(user: User, klass: SchoolClass, *, at: datetime | None = None) -> RatingFinal:
    """The class evaluation group finalises its class: everyone rated on every dimension, within the quota."""
    at = at or now()
    try:
        term = changsha_term(klass.school.district_id)
        final = RatingFinal(term_id=term.id, term=term, school_id=klass.school_id, school=klass.school,
                            class_id=klass.id, school_class=klass, finalised_by_id=user.id, finalised_at=at)
        _require(user, "finalise_class", final, at)
        require_pledge(user, term)
        require_group_member(user, term, klass, at)
        if _final(term, klass.school_id, klass.id) is not None:
            raise WorkflowError(f"{klass}的评价已定稿。")
        missing = missing_ratings(term, [klass.id])
        if missing:
            raise WorkflowError(f"还有{missing}项评价未完成，不能定稿。")
        over = [line.message for line in distribution(term, klass.school_id, klass.id) if line.exceeded]
        if over:
            raise WorkflowError("超过插标比例，不能定稿：" + "；".join(over) + "。")
        with acting("finalise_class", f"{klass}评价定稿"):
            db.session.add(final)
            _commit("finalise_class")
        return final
    except (policy.Denied, WorkflowError) as exc:
        _fail(exc)


def finalise_school(user: User, school: School, *, at: datetime | None = None) -> RatingFinal:
    """The principal finalises the school: every class finalised, the school's distribution within the quota."""
    at = at or now()
    try:
        term = changsha_term(school.district_id)
        final = RatingFinal(term_id=term.id, term=term, school_id=school.id, school=school, class_id=None,
                            finalised_by_id=user.id, finalised_at=at)
        _require(user, "finalise_school", final, at)
        if _final(term, school.id, None) is not None:
            raise WorkflowError(f"{school.name}的评价已定稿。")
        classes = db.session.execute(sa.select(SchoolClass).where(
            SchoolClass.school_id == school.id, SchoolClass.grade.in_(_graduating_grades(term)))
            .order_by(SchoolClass.grade, SchoolClass.number)).scalars().all()
        pending = [str(c) for c in classes if participants([c.id]) and _final(term, school.id, c.id) is None]
        if pending:
            raise WorkflowError("以下班级尚未定稿：" + "、".join(pending) + "。")
        over = [line.message for line in distribution(term, school.id) if line.exceeded]
        if over:
            raise WorkflowError("全校超过插标比例，不能定稿：" + "；".join(over) + "。")
        with acting("finalise_school", f"{school.name}评价定稿"):
            db.session.add(final)
            _commit("finalise_school")
        return final
    except (policy.Denied, WorkflowError) as exc:
        _fail(exc)


def published_result(student: Student, at: datetime | None = None) -> dict[str, str] | None:
    """The student's result as published (公布评价结果): {dimension name: level} once the school's ratings
    are finalised and the results phase of the student's cohort has begun; None before."""
    at = at or now()
    term = policy.current_term(student.school.district_id)
    if term is None or term.profile.code != PROFILE:
        return None
    cohort = term.cohort_for_grade(student.school_class.grade)
    window = cohort.window("results") if cohort else None
    if window is None or at < window.starts_at:
        return None
    if _final(term, student.school_id, None) is None:
        return None
    levels = {r.dimension_id: r.level for r in db.session.execute(sa.select(Rating).where(
        Rating.term_id == term.id, Rating.student_id == student.id)).scalars()}
    return {d.name: levels.get(d.id, "") for d in dimensions(term)}


# ---------------------------------------------------------------------------------------------
# Peer evaluation (学生互评)


def classmates(student: Student) -> list[Student]:
    """Whom a student rates: every participating classmate except themself."""
    return [s for s in participants([student.class_id]) if s.id != student.id]


def save_peer_ratings(user: User, rater: Student, table: dict[int, dict[str, str]], *,
                      at: datetime | None = None) -> int:
    """A student's ratings of classmates: {classmate id: {dimension code: level}}; all or nothing.
    Partial sheets may be saved and completed later within the window."""
    at = at or now()
    try:
        term = changsha_term(rater.school.district_id)
        _require(user, "peer_rate", PeerRating(term=term, rater=rater, class_id=rater.class_id,
                                               school_id=rater.school_id), at)
        if not rater.participates:
            raise policy.Denied("您不参与本次评价。", 403)
        mates = {s.id: s for s in classmates(rater)}
        dims = {d.code: d for d in dimensions(term)}
        levels = level_codes(term)
        errors = {}
        for ratee_id, by_dim in table.items():
            if ratee_id == rater.id:
                errors[str(ratee_id)] = "不能评价自己"
                continue
            if ratee_id not in mates:
                errors[str(ratee_id)] = "只能评价本班同学"
                continue
            for code, level in by_dim.items():
                if code not in dims:
                    errors[f"{ratee_id}.{code}"] = f"{mates[ratee_id].name}：维度「{code}」不存在"
                elif level not in levels:
                    errors[f"{ratee_id}.{code}"] = (f"{mates[ratee_id].name}「{dims[code].name}」：等级只能是"
                                                    f"{'、'.join(levels)}")
        if errors:
            raise FieldErrors(errors)
        existing = {(p.ratee_id, p.dimension_id): p for p in db.session.execute(sa.select(PeerRating).where(
            PeerRating.term_id == term.id, PeerRating.rater_id == rater.id)).scalars()}
        changed = 0
        with acting("peer_rate", "学生互评"):
            for ratee_id, by_dim in table.items():
                for code, level in by_dim.items():
                    dim = dims[code]
                    row = existing.get((ratee_id, dim.id))
                    if row is None:
                        row = PeerRating(term_id=term.id, class_id=rater.class_id, school_id=rater.school_id,
                                         rater_id=rater.id, ratee_id=ratee_id, dimension_id=dim.id, level=level)
                        db.session.add(row)
                        changed += 1
                    elif row.level != level:
                        row.level = level
                        changed += 1
            _commit("peer_rate")
        return changed
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def peer_progress(rater: Student, term: Term) -> tuple[int, int]:
    """(ratings given, ratings due) of one student's peer sheet."""
    due = len(classmates(rater)) * len(dimensions(term))
    given = db.session.execute(sa.select(sa.func.count(PeerRating.id)).join(
        Student, PeerRating.ratee_id == Student.id).where(
        PeerRating.term_id == term.id, PeerRating.rater_id == rater.id,
        Student.status.notin_(NON_PARTICIPANT_STATUSES), Student.class_id == rater.class_id)).scalar()
    return given, due


def peer_summary(term: Term, class_id: int) -> dict[int, dict[int, dict[str, int]]]:
    """{ratee id: {dimension id: {level: how many classmates gave it}}} of a class, in one query."""
    out: dict[int, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for ratee_id, dim_id, level, n in db.session.execute(
            sa.select(PeerRating.ratee_id, PeerRating.dimension_id, PeerRating.level, sa.func.count(PeerRating.id))
            .where(PeerRating.term_id == term.id, PeerRating.class_id == class_id)
            .group_by(PeerRating.ratee_id, PeerRating.dimension_id, PeerRating.level)):
        out[ratee_id][dim_id][level] = n
    return {k: dict(v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# 举报申诉: complaints filed by students and parents, taken up and answered by the school's committee

COMPLAINT_WORKING_DAYS = 5  # an answer is due within five working days of filing (the profile may say otherwise)
COMPLAINT_MAX = 500  # characters of a description (the form says so)
COMPLAINT_TRANSITIONS = {  # action → (states it may start from, state it leads to)
    "accept": (("open",), "accepted"),
    "answer": (("open", "accepted"), "closed"),
    "dismiss": (("open", "accepted"), "dismissed"),
}


def file_complaint(user: User, student: Student, *, about: str, description: str,
                   at: datetime | None = None) -> Complaint:
    """A student (or a parent for their child) reports a problem with the evaluation; due within the profile's
    working days; at most the district's limit of open appeals per person at once."""
    from models.changsha import COMPLAINT_ABOUT, OPEN_COMPLAINT_STATES
    from models.fields import text_problem
    from models.workflow import max_open_appeals

    at = at or now()
    try:
        description = (description or "").strip()
        errors = {}
        if about not in COMPLAINT_ABOUT:
            errors["about"] = "举报申诉事项：请选择"
        if len(description) < 10:
            errors["description"] = "情况说明：请写清楚情况（至少10个字）"
        elif len(description) > COMPLAINT_MAX:
            errors["description"] = f"情况说明：不能超过{COMPLAINT_MAX}个字（现有{len(description)}个）"
        elif text_problem(description):
            errors["description"] = f"情况说明：{text_problem(description)}"
        if errors:
            raise FieldErrors(errors)
        term = changsha_term(student.school.district_id)
        days = int(rules(term).get("complaint_working_days", COMPLAINT_WORKING_DAYS))
        due_day = working_days_end(local(at).date(), days)
        due_at = datetime.combine(due_day + timedelta(days=1), datetime.min.time(), tzinfo=local(at).tzinfo)
        complaint = Complaint(term=term, district_id=student.school.district_id, school_id=student.school_id,
                              class_id=student.class_id, student=student, filed_by_id=user.id, about=about,
                              description=description, state="open", handler_note="", due_at=due_at)
        _require(user, "complain", complaint, at)
        if not student.participates:
            raise WorkflowError(f"{student.name}不参与本次综合素质评价。")
        limit = max_open_appeals(student.school.district)
        open_now = db.session.execute(sa.select(sa.func.count(Complaint.id)).where(
            Complaint.filed_by_id == user.id, Complaint.state.in_(OPEN_COMPLAINT_STATES))).scalar_one()
        if open_now >= limit:
            raise WorkflowError(f"您已有{open_now}件举报申诉正在处理，每人同时最多{limit}件。请等待答复后再提交。")
        with acting("complain", description):
            db.session.add(complaint)
            _commit("complain")
        return complaint
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def complaint_action(user: User, complaint: Complaint, action: str, *, reason: str = "", expected_version=None,
                     at: datetime | None = None) -> Complaint:
    """受理 (accept), 答复 (answer: the reply to the filer, closes it) or 不予受理 (dismiss, with the reason)."""
    from models.workflow import Conflict

    at = at or now()
    try:
        if action not in COMPLAINT_TRANSITIONS:
            raise WorkflowError("未知操作。")
        sources, target = COMPLAINT_TRANSITIONS[action]
        _require(user, action, complaint, at)
        if expected_version is not None and str(expected_version) != str(complaint.version_id):
            raise Conflict("该举报申诉刚被他人处理，您的操作未保存。请刷新后重试。")
        if complaint.state not in sources:
            raise WorkflowError(f"该举报申诉当前状态为「{complaint.state_name}」，不能{policy.ACTION_NAMES[action]}。")
        reason = (reason or "").strip()
        if action in ("answer", "dismiss") and not reason:
            raise FieldErrors({"reason": "答复：必填，请写明处理结果" if action == "answer" else "原因：必填，请写明不予受理的理由"})
        if len(reason) > MAX_TEXT:
            raise FieldErrors({"reason": f"答复：不能超过{MAX_TEXT}个字（现有{len(reason)}个）"})
        with acting(action, reason):
            complaint.state = target
            complaint.handled_by_id = user.id
            if reason:
                complaint.handler_note = reason
            if target in ("closed", "dismissed"):
                complaint.closed_at = at
            _commit(action)
        return complaint
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)
