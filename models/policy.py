"""Who may do what, where, when: the one place for permission and scope (DESIGN.md).

- ``scope(user, Model)`` is the SQL filter of what a user may see of a model. Every list, count,
  detail, export, lookup and bulk action query is filtered by it.
- ``check(user, action, obj, at)`` answers allowed-or-why-not for one object: role, scope, phase
  window, state. A refusal carries a sentence a clerk understands and the HTTP status to answer
  with: 404 when the object is outside the user's scope (it does not exist for them), 403 when it
  is theirs to see but not to change.

Record actions take their roles, windows and states from the workflow's transition table.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from models.accounts import RoleGrant, User
from models.archive import ArchiveEntry, SummaryUpload
from models.audit import AuditEvent
from models.base import db
from models.calendar import Cohort, PhaseWindow, Profile, Term
from models.cases import Case
from models.catalog import Activity, Category, Dimension
from models.changsha import (
    Committee,
    CommitteeMember,
    Complaint,
    EvidenceFile,
    EvidenceItem,
    MaterialReview,
    PeerRating,
    Pledge,
    Quota,
    QuotaAck,
    Rating,
    RatingFinal,
)
from models.clock import local, now
from models.contacts import Contact
from models.datapackage import DataPackage
from models.deadlines import DeadlineRun, Notification
from models.fields import MAX_ID
from models.org import NON_PARTICIPANT_STATUSES, City, District, School, SchoolClass, Student
from models.owners import owner_ids
from models.records import Record
from models.roles import CLERK_OF_LEVEL, LEVEL_NAMES, ROLES

# Every phase of the Changsha profile (seed/changsha.py PHASES; tests/test_complaints.py holds them equal).
CHANGSHA_PHASES = ("organisation", "training", "evidence", "results_import", "self_peer", "first_upload",
                   "quota_setting", "quota_release", "teacher_evaluation", "final_upload", "results")
EVERYONE = frozenset(ROLES)
STAFF = EVERYONE - {"student", "parent"}
SCHOOL_STAFF = frozenset({"school_leader", "school_admin", "school_clerk", "school_auditor", "principal"})
CLASS_STAFF = frozenset({"homeroom_teacher", "class_evaluator"})
UPPER = frozenset({"district_admin", "district_clerk", "district_auditor", "city_clerk", "city_auditor"})


@dataclass(frozen=True)
class Rule:
    roles: frozenset
    windows: tuple = ()  # any one of these phases must be open for the object's cohort


def _r(*roles, windows=()):
    return Rule(frozenset(roles), tuple(windows))


# What each model allows, by action. Record actions come from the workflow table instead.
RULES: dict[type, dict[str, Rule]] = {
    City: {"view": Rule(UPPER | {"district_admin"})},
    # 学籍导入: the district admin stands the district's schools, classes, students and accounts up from the
    # student register; one check on the district covers every row, which is looked up inside it.
    District: {"view": Rule(STAFF), "edit": _r("district_admin"), "import_register": _r("district_admin"),
               "print_reports": _r("district_admin")},
    School: {
        "view": Rule(STAFF),
        "create": _r("district_admin"),
        "edit": _r("district_admin", "school_admin"),
        "delete": _r("district_admin"),
        # 账号单 of the school's staff: (re)issues initial passwords of accounts not yet taken over.
        "print_slips": _r("district_admin", "school_admin"),
        # 进度统计 (views/dashboard.py): the district's or the school's progress figures, by school and class.
        "dashboard": _r("district_admin", "school_admin", "school_leader", "principal"),
        # A school's 纪实报告 / 确认单 as one batch.
        "print_reports": _r("district_admin", "school_admin", "school_leader", "principal", "school_clerk"),
        # 实证材料完成情况 (views/evidence.py): the school's completeness by class (Changsha).
        "track_evidence": Rule(SCHOOL_STAFF | {"school_committee", "district_admin", "district_leading_group"}),
    },
    SchoolClass: {
        "view": Rule(STAFF),
        "create": _r("district_admin", "school_admin"),
        "edit": _r("district_admin", "school_admin"),
        "delete": _r("district_admin"),
        # 账号单 of a class: its students, parents and teachers.
        "print_slips": _r("district_admin", "school_admin", "homeroom_teacher"),
        # 确认单 of a class (each with a QR code to the student's 纪实报告) and its report batches.
        "print_reports": _r("district_admin", "school_admin", "school_leader", "principal", "school_clerk",
                            "homeroom_teacher"),
        # 实证材料完成情况与催交清单 of a class: its teachers chase what is missing (seed 001, 5月24日前).
        "track_evidence": Rule(CLASS_STAFF | SCHOOL_STAFF | {"school_committee", "district_admin",
                                                             "district_leading_group"}),
    },
    Student: {
        "view": Rule(EVERYONE),  # students and parents: themselves / their child only (scope)
        "create": _r("district_admin", "school_admin"),
        "edit": _r("district_admin", "school_admin"),
        "delete": _r("district_admin"),
        # 预确认 of non-participants: only while the preparation window is open (SPEC §4).
        "preconfirm": _r("school_admin", "school_clerk", windows=("preparation",)),
    },
    Activity: {
        "view": Rule(EVERYONE),
        "create": _r("school_clerk", "district_clerk", windows=("preparation", "entry")),
        "edit": _r("school_clerk", "district_clerk", windows=("preparation", "entry")),
        "delete": _r("school_clerk", "district_clerk", windows=("preparation", "entry")),
    },
    Contact: {
        "view": _r("district_admin", "school_admin", "school_leader"),
        "create": _r("district_admin", "school_admin"),
        "edit": _r("district_admin", "school_admin"),
        "delete": _r("district_admin", "school_admin"),
    },
    User: {"view": _r("district_admin"), "create": _r("district_admin"), "edit": _r("district_admin"),
           # 账号解锁 (views/unlock.py): the homeroom teacher for the class's students and parents, the school
           # admin for the school's students, parents and staff, the district admin for every account.
           "unlock": _r("district_admin", "school_admin", "homeroom_teacher")},
    RoleGrant: {
        "view": _r("district_admin"),
        "create": _r("district_admin"),
        "edit": _r("district_admin"),
        "delete": _r("district_admin"),
    },
    Term: {"view": Rule(EVERYONE), "edit": _r("district_admin")},
    Cohort: {"view": Rule(EVERYONE)},
    PhaseWindow: {"view": Rule(EVERYONE), "edit": _r("district_admin")},
    Profile: {"view": Rule(EVERYONE)},
    Dimension: {"view": Rule(EVERYONE)},
    Category: {"view": Rule(EVERYONE)},
    AuditEvent: {"view": _r("district_admin", "school_admin")},
    # Deadline effects of the district's schedule: seen and re-run (catch-up, retry) by its admin.
    DeadlineRun: {"view": _r("district_admin"), "run": _r("district_admin")},
    # A user's inbox is theirs alone, whatever their role.
    Notification: {"view": Rule(EVERYONE), "edit": Rule(EVERYONE)},
    Record: {"view": Rule(EVERYONE)},
    # Appeals and problem data: auditors and clerks of the case's levels, school oversight, the district
    # admin; students see the cases they filed or that are theirs to correct (scope), parents their child's.
    Case: {"view": Rule(EVERYONE - {"homeroom_teacher", "class_evaluator"})},
    # 归档签字 (SPEC §7): the principal rates each student; the homeroom teacher or the school clerk records
    # the signatures on the 确认单; both only while the cohort's archive window is open. Students and
    # parents see their own entry (the result on the report).
    ArchiveEntry: {
        "view": Rule(EVERYONE - {"city_clerk", "city_auditor", "class_evaluator"}),
        "rate": _r("principal", windows=("archive",)),
        "sign": _r("homeroom_teacher", "school_clerk", windows=("archive",)),
    },
    # The signed and stamped 汇总表: uploaded by the principal, seen by the school's leadership and the district.
    SummaryUpload: {
        "view": _r("principal", "school_leader", "school_admin", "district_admin"),
        "create": _r("principal", windows=("archive",)),
    },
    # --- Changsha (SPEC §8) ---
    # Committees: the district admin forms the district's leading group, the school admin or principal the school's
    # committee and its class evaluation groups, while the organisation phase is open; their member lists are
    # published (公示) then. Everybody in the place sees a published list during its publication (views).
    Committee: {
        "view": Rule(STAFF),
        "edit": _r("district_admin", "school_admin", "principal", windows=("organisation",)),
    },
    CommitteeMember: {"view": Rule(STAFF)},
    # 诚信承诺书: every evaluator signs their own; admins see who has signed.
    Pledge: {"view": _r("district_admin", "school_admin", "principal", "district_leading_group", "school_committee")},
    EvidenceItem: {"view": Rule(EVERYONE)},
    # 实证材料: the student (or the parent, or the homeroom teacher for them) uploads while the evidence phase
    # is open; students check and complete them again in the self-evaluation phase.
    EvidenceFile: {
        "view": Rule(EVERYONE - {"city_clerk", "city_auditor"}),
        "create": _r("student", "parent", "homeroom_teacher", windows=("evidence", "self_peer")),
        "delete": _r("student", "parent", "homeroom_teacher", windows=("evidence", "self_peer")),
    },
    # 教师审核: a member of the class evaluation group checks each student's materials (integrity pledge first).
    MaterialReview: {
        "view": Rule(CLASS_STAFF | SCHOOL_STAFF | {"school_committee", "district_admin"}),
        "review_materials": _r("class_evaluator", windows=("self_peer",)),
    },
    # 维度插标: the city sets each school's quotas; the school receives and checks them (复核).
    Quota: {
        "view": Rule(SCHOOL_STAFF | {"class_evaluator", "school_committee", "district_admin", "district_leading_group",
                                     "city_clerk", "city_auditor"}),
        "edit": _r("city_clerk", windows=("quota_setting",)),
    },
    QuotaAck: {
        "view": Rule(SCHOOL_STAFF | {"school_committee", "district_admin", "city_clerk", "city_auditor"}),
        "create": _r("principal", "school_admin", windows=("quota_release",)),
    },
    # 教师评价: the class evaluation group rates every student on every dimension and finalises its class; the
    # principal finalises the school. Both refused beyond the quota (models/evaluation.py).
    Rating: {
        "view": Rule(CLASS_STAFF | SCHOOL_STAFF | {"school_committee", "district_admin", "district_leading_group"}),
        "rate": _r("class_evaluator", windows=("teacher_evaluation",)),
    },
    RatingFinal: {
        "view": Rule(CLASS_STAFF | SCHOOL_STAFF | {"school_committee", "district_admin", "district_leading_group"}),
        "finalise_class": _r("class_evaluator", windows=("teacher_evaluation",)),
        "finalise_school": _r("principal", windows=("teacher_evaluation",)),
    },
    # 举报申诉: students and parents report a problem in any phase of the Changsha timeline; the school's evaluation
    # committee takes it up and answers, the district's leading group may answer any school's (models/evaluation.py).
    Complaint: {
        "view": _r("student", "parent", "school_committee", "district_leading_group", "principal", "district_admin"),
        "complain": _r("student", "parent", windows=CHANGSHA_PHASES),
        "accept": _r("school_committee", "district_leading_group"),
        "answer": _r("school_committee", "district_leading_group"),
        "dismiss": _r("school_committee", "district_leading_group"),
    },
    # 学生互评: each student rates every classmate but themself; staff see the aggregates, no student sees them.
    PeerRating: {
        "view": Rule(CLASS_STAFF | SCHOOL_STAFF | {"school_committee"}),
        "peer_rate": _r("student", windows=("self_peer",)),
    },
    # 数据上报: the school admin, the principal or the district admin packages the school's data for the city data
    # centre while the kind's window is open (电子档案 5月26—27日, 最终评价 6月26—27日) and verifies it at any time.
    DataPackage: {
        "view": _r("school_admin", "principal", "school_leader", "school_committee", "district_admin",
                   "district_leading_group"),
        "package_evidence": _r("school_admin", "principal", "district_admin", windows=("first_upload",)),
        "package_final": _r("school_admin", "principal", "district_admin", windows=("final_upload",)),
        "verify": _r("school_admin", "principal", "district_admin"),
    },
}

ACTION_NAMES = {
    "view": "查看", "create": "新建", "edit": "修改", "delete": "删除", "preconfirm": "预确认", "run": "执行",
    "confirm": "确认", "reject": "确认不通过", "correct": "修改", "submit": "提交审阅", "review": "审阅",
    "return": "退回", "publish": "提交公示", "file": "提交申诉", "accept": "受理", "dismiss": "驳回",
    "approve": "审核通过", "send_back": "退回修改", "import_register": "导入学籍", "print_slips": "打印账号单",
    "rate": "评定", "sign": "登记签字", "print_reports": "打印确认单和纪实报告", "unlock": "解锁",
    "review_materials": "审核材料", "finalise_class": "班级评价定稿", "finalise_school": "学校评价定稿",
    "peer_rate": "互评", "track_evidence": "查看实证材料完成情况：",
    "package_evidence": "生成学生电子档案", "package_final": "生成最终评价", "verify": "校验",
    "complain": "提交", "answer": "答复",
}
MODEL_NAMES = {
    City: "市", District: "区", School: "学校", SchoolClass: "班级", Student: "学生", Activity: "活动项目",
    Contact: "联系人", User: "账号", RoleGrant: "角色授权", Term: "学期", Cohort: "年级组", PhaseWindow: "阶段时间",
    Profile: "评价方案", Dimension: "维度", Category: "记录类别", AuditEvent: "操作记录", Record: "记录",
    Case: "申诉/问题数据", DeadlineRun: "自动任务", Notification: "消息", ArchiveEntry: "归档评定与签字",
    SummaryUpload: "汇总表", Committee: "评价组织", CommitteeMember: "评价组织成员", Pledge: "诚信承诺书",
    EvidenceItem: "实证材料项目", EvidenceFile: "实证材料", MaterialReview: "材料审核", Quota: "插标比例",
    QuotaAck: "插标比例复核", Rating: "教师评价", RatingFinal: "评价定稿", PeerRating: "学生互评",
    DataPackage: "数据包", Complaint: "举报申诉",
}


class Denied(Exception):
    """A refusal: ``reason`` is shown to the user; ``status`` is 403 (not allowed) or 404 (not theirs)."""

    def __init__(self, reason: str, status: int = 403):
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    status: int = 200

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Decision(True)


# ---------------------------------------------------------------------------------------------
# Scope: SQL filters


def _schools_of(grant: RoleGrant):
    """School ids within a city/district/school grant, as something ``in_`` accepts."""
    kind = grant.scope_kind
    if kind == "city":
        return sa.select(School.id).join(District, School.district_id == District.id).where(
            District.city_id == grant.city_id
        )
    if kind == "district":
        return sa.select(School.id).where(School.district_id == grant.district_id)
    if kind == "school":
        return [grant.school_id]
    return None


def _districts_of(grant: RoleGrant):
    kind = grant.scope_kind
    if kind == "city":
        return sa.select(District.id).where(District.city_id == grant.city_id)
    if kind == "district":
        return [grant.district_id]
    if kind == "school":
        return sa.select(School.district_id).where(School.id == grant.school_id)
    if kind == "class":
        return (
            sa.select(School.district_id)
            .join(SchoolClass, SchoolClass.school_id == School.id)
            .where(SchoolClass.id == grant.class_id)
        )
    return sa.select(School.district_id).join(Student, Student.school_id == School.id).where(
        Student.id == grant.student_id
    )


def _school_of_lower(grant: RoleGrant):
    """The school of a class or student grant, as a scalar subquery."""
    if grant.scope_kind == "class":
        return sa.select(SchoolClass.school_id).where(SchoolClass.id == grant.class_id).scalar_subquery()
    return sa.select(Student.school_id).where(Student.id == grant.student_id).scalar_subquery()


def _by_school(col, grant: RoleGrant):
    schools = _schools_of(grant)
    if schools is None:
        return col == _school_of_lower(grant)
    if isinstance(schools, list):
        return col == schools[0]
    return col.in_(schools)


def _by_district(col, grant: RoleGrant):
    districts = _districts_of(grant)
    if isinstance(districts, list):
        return col == districts[0]
    return col.in_(districts)


def _students_of_class(class_id):
    return sa.select(Student.id).where(Student.class_id == class_id)


def _users_in_district(grant: RoleGrant):
    schools = _schools_of(grant) if grant.scope_kind in ("city", "district", "school") else None
    if schools is None:
        return sa.false()
    school_ids = schools if not isinstance(schools, list) else sa.select(School.id).where(School.id.in_(schools))
    inner = sa.select(RoleGrant.user_id).where(
        sa.or_(
            _by_district(RoleGrant.district_id, grant),
            RoleGrant.school_id.in_(school_ids),
            RoleGrant.class_id.in_(sa.select(SchoolClass.id).where(SchoolClass.school_id.in_(school_ids))),
            RoleGrant.student_id.in_(sa.select(Student.id).where(Student.school_id.in_(school_ids))),
        )
    )
    return inner


# The case level each role works on: auditors handle and audit, clerks correct (SPEC §6).
_CASE_HANDLER = {"school_auditor": "school", "district_auditor": "district", "city_auditor": "city"}
_CASE_CORRECTOR = {"school_clerk": "school", "district_clerk": "district", "city_clerk": "city"}


def _case_clause(grant: RoleGrant):
    kind, role = grant.scope_kind, grant.role
    if role == "student":
        # The cases they filed, and those on their own entries that they are to correct.
        return sa.or_(Case.filed_by_id == grant.user_id,
                      sa.and_(Case.student_id == grant.student_id, Case.corrector_level == "student"))
    if role == "parent":
        return Case.student_id == grant.student_id
    if kind == "city":
        where = Case.district_id.in_(_districts_of(grant))
    elif kind == "district":
        where = Case.district_id == grant.district_id
    elif kind == "school":
        where = Case.school_id == grant.school_id
    else:
        return sa.false()
    if role in _CASE_HANDLER:
        return sa.and_(where, Case.handler_level == _CASE_HANDLER[role])
    if role in _CASE_CORRECTOR:
        return sa.and_(where, Case.corrector_level == _CASE_CORRECTOR[role],
                       Case.state.notin_(("open", "dismissed")))
    return where


def _clause(grant: RoleGrant, model: type):
    kind = grant.scope_kind
    if model is Case:
        return _case_clause(grant)
    if model is Record:
        if kind == "class":
            return Record.student_id.in_(_students_of_class(grant.class_id))
        if kind == "student":
            return Record.student_id == grant.student_id
        return _by_school(Record.school_id, grant)
    if model is Student:
        if kind == "class":
            return Student.class_id == grant.class_id
        if kind == "student":
            return Student.id == grant.student_id
        return _by_school(Student.school_id, grant)
    if model is SchoolClass:
        if kind == "class":
            return SchoolClass.id == grant.class_id
        if kind == "student":
            return SchoolClass.id == sa.select(Student.class_id).where(Student.id == grant.student_id).scalar_subquery()
        return _by_school(SchoolClass.school_id, grant)
    if model is School:
        return _by_school(School.id, grant)
    if model is Contact:
        return _by_school(Contact.school_id, grant)
    if model is ArchiveEntry:
        if kind == "class":
            return ArchiveEntry.class_id == grant.class_id
        if kind == "student":
            return ArchiveEntry.student_id == grant.student_id
        return _by_school(ArchiveEntry.school_id, grant)
    if model is SummaryUpload:
        return _by_school(SummaryUpload.school_id, grant) if kind in ("city", "district", "school") else sa.false()
    if model is Activity:
        # A school's own catalogue and its district's; district and city staff see every school's.
        district_level = sa.and_(Activity.level == "district", _by_district(Activity.district_id, grant))
        if kind in ("city", "district"):
            return _by_district(Activity.district_id, grant)
        return sa.or_(district_level, _by_school(Activity.school_id, grant))
    if model is District:
        return _by_district(District.id, grant)
    if model is City:
        if kind == "city":
            return City.id == grant.city_id
        return City.id.in_(sa.select(District.city_id).where(_by_district(District.id, grant)))
    if model is Term:
        return _by_district(Term.district_id, grant)
    if model is DeadlineRun:
        return _by_district(DeadlineRun.district_id, grant)
    if model is Notification:
        return Notification.user_id == grant.user_id
    if model is Cohort:
        return Cohort.term_id.in_(sa.select(Term.id).where(_by_district(Term.district_id, grant)))
    if model is PhaseWindow:
        return PhaseWindow.cohort_id.in_(
            sa.select(Cohort.id).join(Term, Cohort.term_id == Term.id).where(_by_district(Term.district_id, grant))
        )
    if model is AuditEvent:
        if kind in ("city", "district"):
            return _by_district(AuditEvent.district_id, grant)
        return _by_school(AuditEvent.school_id, grant)
    if model is User:
        # Accounts with no grant yet belong to nobody's data; the admin who made one must grant it.
        no_grant = ~sa.exists(sa.select(RoleGrant.id).where(RoleGrant.user_id == User.id))
        return sa.or_(User.id.in_(_users_in_district(grant)), no_grant)
    if model is RoleGrant:
        return RoleGrant.user_id.in_(_users_in_district(grant))
    if model in (Profile, Dimension, Category, EvidenceItem):
        return sa.true()
    changsha = _changsha_clause(grant, model)
    if changsha is not None:
        return changsha
    return sa.false()


def _by_student(student_col, class_col, school_col, grant: RoleGrant):
    kind = grant.scope_kind
    if kind == "student":
        return student_col == grant.student_id
    if kind == "class":
        return class_col == grant.class_id
    return _by_school(school_col, grant)


def _changsha_clause(grant: RoleGrant, model: type):
    """Scope of the Changsha objects; None for any other model."""
    kind = grant.scope_kind
    if model is EvidenceFile:
        return _by_student(EvidenceFile.student_id, EvidenceFile.class_id, EvidenceFile.school_id, grant)
    if model is MaterialReview:
        return _by_student(MaterialReview.student_id, MaterialReview.class_id, MaterialReview.school_id, grant)
    if model is Rating:
        return _by_student(Rating.student_id, Rating.class_id, Rating.school_id, grant)
    if model is PeerRating:
        return _by_student(PeerRating.rater_id, PeerRating.class_id, PeerRating.school_id, grant)
    if model is Complaint:
        # The family its own; the school's and district's handlers every complaint of their place; no class staff
        # (a complaint may be about them).
        if kind == "class":
            return sa.false()
        return _by_student(Complaint.student_id, Complaint.class_id, Complaint.school_id, grant)
    if model is DataPackage:
        return _by_school(DataPackage.school_id, grant) if kind in ("city", "district", "school") else sa.false()
    if model is RatingFinal:
        if kind == "class":
            return RatingFinal.class_id == grant.class_id
        return _by_school(RatingFinal.school_id, grant) if kind != "student" else sa.false()
    if model in (Quota, QuotaAck):
        if kind in ("class", "student"):
            return model.school_id == _school_of_lower(grant)
        return _by_school(model.school_id, grant)
    if model is Committee:
        # A class sees its own group, its school's committee and its district's leading group; a school its
        # committee, its classes' groups and the district's; a district and a city everything in them.
        if kind in ("city", "district"):
            return _by_district(Committee.district_id, grant)
        if kind == "school":
            return sa.or_(Committee.school_id == grant.school_id,
                          sa.and_(Committee.level == "district", _by_district(Committee.district_id, grant)))
        if kind == "class":
            return sa.or_(Committee.class_id == grant.class_id,
                          sa.and_(Committee.level == "school", Committee.school_id == _school_of_lower(grant)),
                          sa.and_(Committee.level == "district", _by_district(Committee.district_id, grant)))
        return sa.false()
    if model is CommitteeMember:
        return CommitteeMember.committee_id.in_(sa.select(Committee.id).where(_changsha_clause(grant, Committee)))
    if model is Pledge:
        return sa.or_(Pledge.user_id == grant.user_id, _by_district(Pledge.district_id, grant)
                      if kind in ("city", "district") else Pledge.user_id.in_(_users_in_district(grant)))
    return None


def scope(user: User | None, model: type, action: str = "view"):
    """The filter of ``model`` rows this user may see (or act on with ``action``)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return sa.false()
    rule = RULES.get(model, {}).get(action)
    if rule is None:
        return sa.false()
    clauses = [_clause(g, model) for g in user.grants if g.role in rule.roles]
    if not clauses:
        return sa.false()
    return clauses[0] if len(clauses) == 1 else sa.or_(*clauses)


def visible(user: User, obj) -> bool:
    """Whether the object exists for this user (it is inside their view scope)."""
    model = type(obj)
    pk = sa.inspect(model).primary_key[0]
    ident = sa.inspect(obj).identity
    if ident is None:
        return False
    stmt = sa.select(pk).where(pk == ident[0]).where(scope(user, model))
    return db.session.execute(stmt).first() is not None


def get_scoped(user: User, model: type, ident):
    """Load one object through the user's scope; None when it does not exist for them."""
    pk = sa.inspect(model).primary_key[0]
    try:
        ident = pk.type.python_type(ident)
    except (TypeError, ValueError):
        return None
    if isinstance(ident, int) and not 0 < ident <= MAX_ID:
        return None  # beyond any id (and beyond what the database could even compare)
    return db.session.execute(sa.select(model).where(pk == ident).where(scope(user, model))).scalar_one_or_none()


# ---------------------------------------------------------------------------------------------
# Checks on one object


def contains(grant: RoleGrant, obj) -> bool:
    """Whether a grant's scope holds an object (saved or about to be saved)."""
    owner = owner_ids(obj)
    return owner.get(grant.scope_kind) == grant.scope_id and grant.scope_id is not None


def _role_names(roles) -> str:
    return "、".join(ROLES[r].name for r in sorted(roles, key=list(ROLES).index))


def cohort_of(obj, at: datetime | None = None) -> list[Cohort]:
    """The cohorts whose schedule governs an object: the student's grade's, or every cohort of the term."""
    student = None
    if isinstance(obj, Student):
        student = obj
    elif isinstance(obj, (Record, Case, ArchiveEntry, EvidenceFile, MaterialReview, Rating, Complaint)):
        student = obj.student
    elif isinstance(obj, PeerRating):
        student = obj.rater
    term = getattr(obj, "term", None)
    if isinstance(obj, SummaryUpload) and term is not None:
        # A school's 汇总表 belongs to the graduating cohort: the one with an archive phase.
        return [c for c in term.cohorts if c.window("archive") is not None]
    if term is None:
        district_id = owner_ids(obj).get("district")
        if district_id is None:
            return []
        term = current_term(district_id)
    if term is None:
        return []
    if student is not None:
        cohort = term.cohort_for_grade(student.school_class.grade)
        return [cohort] if cohort else []
    return list(term.cohorts)


def _current_terms(user: User) -> list[tuple[int, str]]:
    """(id, profile code) of the current terms in the user's scope, in id order; one query per request."""
    from flask import g, has_app_context

    cache = g.setdefault("cqe_current_terms", {}) if has_app_context() else {}
    key = getattr(user, "id", None)
    if key not in cache:
        cache[key] = [tuple(row) for row in db.session.execute(
            sa.select(Term.id, Profile.code).join(Profile, Term.profile_id == Profile.id)
            .where(scope(user, Term), Term.is_current.is_(True)).order_by(Term.id))]
    return cache[key]


def current_term_ids(user: User) -> list[int]:
    """Ids of the current terms in the user's scope, as literals: a filter ``term_id IN (5)`` lets the
    planner walk the (school, term, category, id) index in order, where ``IN (SELECT …)`` may not."""
    return [term_id for term_id, _code in _current_terms(user)]


def profile_codes(user: User) -> frozenset[str]:
    """The profiles the user's districts run this term (a city's staff may see both)."""
    return frozenset(code for _id, code in _current_terms(user))


def runs_phase(user: User, phase: str) -> bool:
    """Whether a profile the user's districts run this term has the phase (归档签字 is Shanghai's, not Changsha's):
    menus of a phase's pages show only where the phase exists."""
    from flask import g, has_request_context

    codes = profile_codes(user)
    if not codes:
        return False
    cache = g.setdefault("cqe_profile_phases", {}) if has_request_context() else {}
    if codes not in cache:
        cache[codes] = frozenset(p["code"] for phases in db.session.execute(
            sa.select(Profile.phases).where(Profile.code.in_(codes))).scalars() for p in phases or [])
    return phase in cache[codes]


def uses_field_type(user: User, kind: str) -> bool:
    """Whether a category of a profile the user's districts run this term has a field of this type (the activity
    catalogue, 项目管理, serves the categories that pick an activity; a profile without them has no use for it)."""
    codes = profile_codes(user)
    if not codes:
        return False
    return any(f.get("type") == kind for fields in db.session.execute(
        sa.select(Category.fields).join(Profile, Category.profile_id == Profile.id).where(Profile.code.in_(codes))
    ).scalars() for f in fields or [])


def current_term(district_id: int) -> Term | None:
    """The district's current term; looked up once per request (a page asks several times)."""
    from flask import g, has_request_context

    cache = g.setdefault("cqe_current_term", {}) if has_request_context() else None
    if cache is not None and district_id in cache:
        return cache[district_id]
    term = db.session.execute(
        sa.select(Term).where(Term.district_id == district_id, Term.is_current.is_(True))
    ).scalar_one_or_none()
    if cache is not None:
        cache[district_id] = term
    return term


def fmt(dt: datetime) -> str:
    return local(dt).strftime("%Y-%m-%d %H:%M")


def window_decision(cohorts: list[Cohort], phases: tuple, at: datetime, what: str) -> Decision:
    """Allowed when one of the phases is open for every given cohort; else say which window applies."""
    if not phases:
        return ALLOW
    if not cohorts:
        return Decision(False, f"{what}：当前没有进行中的学期安排。", 403)
    for cohort in cohorts:
        windows = [cohort.window(p) for p in phases]
        windows = [w for w in windows if w is not None]
        if any(w.is_open(at) for w in windows):
            continue
        if not windows:
            return Decision(False, f"{what}：{cohort.name}没有此阶段。", 403)
        w = windows[0]
        when = "尚未开始" if at < w.starts_at else "已结束"
        return Decision(
            False,
            f"{what}只能在「{w.name}」阶段进行（{cohort.name}：{fmt(w.starts_at)} 至 {fmt(w.ends_at)}），该阶段{when}。",
            403,
        )
    return ALLOW


def check(user: User, action: str, obj, at: datetime | None = None, *, rule: Rule | None = None,
          in_scope: bool = False) -> Decision:
    """Allowed-or-why-not for ``action`` on ``obj`` at instant ``at`` (default: the app clock).
    ``in_scope``: the caller loaded ``obj`` through ``scope(user, type(obj))`` (no second lookup)."""
    at = at or now()
    model = type(obj)
    saved = sa.inspect(obj).persistent
    if saved and not in_scope and not visible(user, obj):
        return Decision(False, "记录不存在或不在您的权限范围内。", 404)
    if rule is None:
        if model is Record and action != "view":
            from models.workflow import record_rule

            rule, why = record_rule(user, action, obj)
            if rule is None:
                return Decision(False, why, 403)
        elif model is Case and action != "view":
            from models.workflow import case_rule

            rule, why = case_rule(user, action, obj)
            if rule is None:
                return Decision(False, why, 403)
        else:
            rule = RULES.get(model, {}).get(action)
            if rule is not None and model is Activity and action != "view":
                # A catalogue is kept by the clerks of its own level (校级/区级项目管理).
                rule = Rule(rule.roles & {CLERK_OF_LEVEL.get(obj.level)}, rule.windows)
    what = f"{ACTION_NAMES.get(action, action)}{MODEL_NAMES.get(model, model.__name__)}"
    if rule is None or not user.has_role(*rule.roles):
        return Decision(False, f"您的角色不能{what}。", 403)
    if action == "view":
        return ALLOW
    if model is Case and action == "file":
        # A student appeals on their own data or a classmate's published data (SPEC §6).
        if not obj.student.participates or not report_visible(user, obj.student):
            return Decision(False, "只能对本人或同班同学的公示数据申诉。", 403)
    elif model is User and not obj.grants:
        pass  # an account without grants belongs to nobody's data yet; each grant is checked on its own
    elif not any(g.role in rule.roles and contains(g, obj) for g in user.grants):
        if not saved:
            return Decision(False, f"{what}：对象不在您的管理范围内（需要：{_role_names(rule.roles)}）。", 403)
        return Decision(False, f"您的角色不能{what}（需要：{_role_names(rule.roles)}）。", 403)
    return window_decision(cohort_of(obj, at), rule.windows, at, what)


def require(user: User, action: str, obj, at: datetime | None = None, **kw) -> None:
    decision = check(user, action, obj, at, **kw)
    if not decision:
        raise Denied(decision.reason, decision.status)


def district_ids(user: User, model: type, action: str = "view") -> list[int]:
    """The districts in which the user may do ``action`` on ``model`` (pages that work per district)."""
    rule = RULES.get(model, {}).get(action)
    clauses = [_by_district(District.id, g) for g in user.grants if rule and g.role in rule.roles]
    if not clauses:
        return []
    return list(db.session.execute(sa.select(District.id).where(sa.or_(*clauses)).order_by(District.id)).scalars())


def can(user: User, action: str, model: type) -> bool:
    """Whether any of the user's roles may ever do ``action`` on ``model`` (menus, buttons)."""
    rule = RULES.get(model, {}).get(action)
    return bool(rule) and user.has_role(*rule.roles)


# ---------------------------------------------------------------------------------------------
# Categories: who enters what


def entry_rules_for(user: User, category: Category) -> list[dict]:
    """The category's entry rules this user holds a role for."""
    return [r for r in category.entry if user.has_role(CLERK_OF_LEVEL[r["level"]])]


def entry_rule(category: Category, level: str, grade: int) -> dict | None:
    for r in category.entry:
        if r["level"] == level and grade in r.get("grades", category.grades):
            return r
    return None


def level_name(level: str) -> str:
    return LEVEL_NAMES.get(level, level)


# ---------------------------------------------------------------------------------------------
# Publication: whose published report a user may read (SPEC §6)


def classmates_decision(student: Student, at: datetime | None = None) -> Decision:
    """Whether the student's class is in publication (公示) now: only then do classmates see each other's
    published data (SPEC §6); before and after, a student sees their own report only. The refusal names
    the window."""
    term = current_term(student.school.district_id)
    cohort = term.cohort_for_grade(student.school_class.grade) if term is not None else None
    return window_decision([cohort] if cohort is not None else [], ("publication",), at or now(), "查看同班同学的公示数据")


def classmates_published(student: Student, at: datetime | None = None) -> bool:
    return bool(classmates_decision(student, at))


def report_scope(user: User):
    """The students whose published reports this user may read: a student themself, and their class
    during publication (published data only); a parent their child; staff the students in their scope."""
    if user is None or not getattr(user, "is_authenticated", False):
        return sa.false()
    clauses = []
    for g in user.grants:
        if g.role == "student":
            own = db.session.get(Student, g.student_id)
            if own is not None and classmates_published(own):
                clauses.append(Student.class_id == own.class_id)
            else:
                clauses.append(Student.id == g.student_id)
        elif g.role == "parent":
            clauses.append(Student.id == g.student_id)
        else:
            clauses.append(_clause(g, Student))
    if not clauses:
        return sa.false()
    return sa.and_(sa.or_(*clauses), Student.status.notin_(NON_PARTICIPANT_STATUSES))


def unlock_scope(user: User):
    """The accounts this user may unlock (SQL filter on User). Whose lock-out is whose to lift follows
    the people one looks after: a homeroom teacher's class (students and parents), a school admin's school
    (students, parents, class and school staff), a district admin's district (everyone in it)."""
    rule = RULES[User]["unlock"]
    clauses = []
    for g in user.grants if user is not None and getattr(user, "is_authenticated", False) else ():
        if g.role not in rule.roles:
            continue
        if g.role == "homeroom_teacher":
            students = sa.select(Student.id).where(Student.class_id == g.class_id)
            clauses.append(User.id.in_(sa.select(RoleGrant.user_id).where(
                RoleGrant.role.in_(("student", "parent")), RoleGrant.student_id.in_(students))))
        elif g.role == "school_admin":
            classes = sa.select(SchoolClass.id).where(SchoolClass.school_id == g.school_id)
            students = sa.select(Student.id).where(Student.school_id == g.school_id)
            clauses.append(User.id.in_(sa.select(RoleGrant.user_id).where(sa.or_(
                RoleGrant.school_id == g.school_id, RoleGrant.class_id.in_(classes),
                RoleGrant.student_id.in_(students)))))
        else:
            clauses.append(User.id.in_(_users_in_district(g)))
    if not clauses:
        return sa.false()
    # Nobody unlocks themselves (a locked account cannot sign in to try anyway).
    return sa.and_(sa.or_(*clauses), User.id != user.id)


def check_unlock(user: User, target: User) -> Decision:
    """May ``user`` lift ``target``'s lock-out? 404 outside their people, 403 for a role that unlocks none."""
    if not user.has_role(*RULES[User]["unlock"].roles):
        return Decision(False, "您的角色不能解锁账号。", 403)
    found = db.session.execute(sa.select(User.id).where(User.id == target.id, unlock_scope(user))).first()
    if found is None:
        return Decision(False, "账号不存在或不在您的管理范围内。", 404)
    return ALLOW


def sees_register_data(user: User, student: Student) -> bool:
    """Personal data minimisation: the register data (学籍号) on a report is for the student, their parents
    and staff; a classmate reading it during publication sees the name and the published records only."""
    for g in user.grants:
        if g.role in ("student", "parent"):
            if g.student_id == student.id:
                return True
        else:
            return True  # staff reach a report only through report_visible, i.e. inside their scope
    return False


def report_visible(user: User, student: Student) -> bool:
    """Whether ``user`` may read ``student``'s published report; asked once per request (a report page asks
    when it opens the student and again when it offers the appeal)."""
    from flask import g, has_request_context

    cache = g.setdefault("cqe_report_visible", {}) if has_request_context() else {}
    key = (getattr(user, "id", None), student.id)
    if key not in cache:
        cache[key] = db.session.execute(
            sa.select(Student.id).where(Student.id == student.id, report_scope(user))
        ).first() is not None
    return cache[key]
