"""The Changsha profile's own objects (SPEC §8, seed 001): committees and their published member lists,
integrity pledges, the evidence portfolio, the city's quotas, the class evaluation group's ratings, the
students' peer ratings, and the finalisation of a class or a school.

Which items, levels, phases and rules apply is profile data (seed/changsha.py, stored on ``profiles.rules``
and ``evidence_items``); these tables hold what people did. Every write goes through models/workflow.py.
"""
from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import JSONType, TimestampMixin, UTCDateTime, db

COMMITTEE_LEVELS = {"district": "区综合素质评价领导小组", "school": "学校综合素质评价委员会",
                    "class": "班级综合素质评价小组"}
COMMITTEE_LEVELS_EN = {"district": "District leading group", "school": "School evaluation committee",
                       "class": "Class evaluation group"}
# What a member is on the committee (their duty), by committee level.
MEMBER_KINDS = {
    "official": "教育局领导或科室成员",
    "principal": "校长",
    "grade_leader": "年级组长",
    "parent_rep": "家长代表",
    "community": "其他社会人士",
    "teacher": "任课教师",
    "other": "其他成员",
}
KINDS_OF_LEVEL = {
    "district": ("official", "principal", "other"),
    "school": ("principal", "grade_leader", "parent_rep", "community", "teacher", "other"),
    "class": ("teacher",),
}


class Committee(TimestampMixin, db.Model):
    """One committee of a term: the district's leading group, a school's committee or a class's group."""

    __tablename__ = "committees"
    __table_args__ = (
        sa.UniqueConstraint("term_id", "level", "district_id", "school_id", "class_id"),
        sa.CheckConstraint("level IN ('district', 'school', 'class')", name="level_value"),
        sa.CheckConstraint("published_until IS NULL OR published_until >= published_from", name="publication"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    level: Mapped[str] = mapped_column(sa.String(8))
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"), index=True)
    # A district's group has neither school nor class; a school's committee no class. (NULLs never collide in a
    # unique constraint, so the workflow finds the one committee of a place before it makes a new one.)
    school_id: Mapped[int | None] = mapped_column(sa.ForeignKey("schools.id"), nullable=True, index=True)
    class_id: Mapped[int | None] = mapped_column(sa.ForeignKey("classes.id"), nullable=True, index=True)
    # The member list's publication (公示): the first and the last day, both Beijing dates.
    published_from: Mapped[date | None] = mapped_column(sa.Date, nullable=True)
    published_until: Mapped[date | None] = mapped_column(sa.Date, nullable=True)
    published_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    version_id: Mapped[int] = mapped_column(default=1)
    term = relationship("Term")
    district = relationship("District")
    school = relationship("School")
    school_class = relationship("SchoolClass")
    members = relationship("CommitteeMember", back_populates="committee", order_by="CommitteeMember.id",
                           cascade="all, delete-orphan")

    __mapper_args__ = {"version_id_col": version_id}

    @property
    def level_name(self) -> str:
        return COMMITTEE_LEVELS[self.level]

    @property
    def published(self) -> bool:
        return self.published_from is not None

    def __str__(self) -> str:
        where = self.school_class or self.school or self.district
        return f"{where} · {self.level_name}" if where else self.level_name


class CommitteeMember(TimestampMixin, db.Model):
    __tablename__ = "committee_members"
    __table_args__ = (sa.UniqueConstraint("committee_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    committee_id: Mapped[int] = mapped_column(sa.ForeignKey("committees.id", ondelete="CASCADE"), index=True)
    # Staff members act in the system; parent representatives and community members may have no account.
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(16))
    duty: Mapped[str] = mapped_column(sa.String(64), default="")  # as printed on the list, e.g. 组长、物理教师
    elected_on: Mapped[date | None] = mapped_column(sa.Date, nullable=True)  # parent representatives
    teaching_since: Mapped[date | None] = mapped_column(sa.Date, nullable=True)  # class evaluators
    committee = relationship("Committee", back_populates="members")
    user = relationship("User")

    @property
    def kind_name(self) -> str:
        return MEMBER_KINDS.get(self.kind, self.kind)

    def __str__(self) -> str:
        return f"{self.name}（{self.kind_name}）"


class Pledge(db.Model):
    """诚信承诺书, signed in the system by an evaluator for a term; the text signed is kept by its digest."""

    __tablename__ = "pledges"
    __table_args__ = (sa.UniqueConstraint("term_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"), index=True)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    text_sha256: Mapped[str] = mapped_column(sa.String(64))
    signed_name: Mapped[str] = mapped_column(sa.String(64))  # the name the evaluator typed as signature
    term = relationship("Term")
    user = relationship("User")
    district = relationship("District")

    def __str__(self) -> str:
        return f"诚信承诺书 · {self.signed_name}"


class EvidenceItem(db.Model):
    """One of the profile's required evidence items (实证材料), e.g. 23 in Changsha 2017."""

    __tablename__ = "evidence_items"
    __table_args__ = (sa.UniqueConstraint("profile_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(sa.ForeignKey("profiles.id"))
    dimension_id: Mapped[int] = mapped_column(sa.ForeignKey("dimensions.id"))
    code: Mapped[str] = mapped_column(sa.String(48))
    name: Mapped[str] = mapped_column(sa.String(128))
    name_en: Mapped[str] = mapped_column(sa.String(160), default="")
    position: Mapped[int] = mapped_column(default=0)
    min_files: Mapped[int] = mapped_column(default=1)
    max_files: Mapped[int] = mapped_column(default=1)
    formats: Mapped[list] = mapped_column(JSONType)  # ["pdf", "jpeg", "png"]: what the content must be
    max_bytes: Mapped[int] = mapped_column()
    dimension = relationship("Dimension")

    def __str__(self) -> str:
        return self.name


class EvidenceFile(TimestampMixin, db.Model):
    """A file a student (or their teacher) uploaded for an evidence item; stored by content hash."""

    __tablename__ = "evidence_files"
    __table_args__ = (sa.Index("ix_evidence_files_student_term", "student_id", "term_id", "item_id"),
                      sa.Index("ix_evidence_files_school_term", "school_id", "term_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    student_id: Mapped[int] = mapped_column(sa.ForeignKey("students.id"))
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"))
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id"), index=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("evidence_items.id"))
    filename: Mapped[str] = mapped_column(sa.String(255))  # as uploaded (shown, never used as a path)
    kind: Mapped[str] = mapped_column(sa.String(8))  # pdf | jpeg | png: what the content is
    size: Mapped[int] = mapped_column()
    sha256: Mapped[str] = mapped_column(sa.String(64))
    uploaded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    term = relationship("Term")
    student = relationship("Student")
    item = relationship("EvidenceItem")
    uploaded_by = relationship("User")

    def __str__(self) -> str:
        return f"{self.item.name if self.item else '实证材料'} · {self.filename}"


class MaterialReview(TimestampMixin, db.Model):
    """A class evaluator's check of one student's materials: authentic and complete (教师审核)."""

    __tablename__ = "material_reviews"
    __table_args__ = (sa.UniqueConstraint("term_id", "student_id", "reviewer_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    student_id: Mapped[int] = mapped_column(sa.ForeignKey("students.id"), index=True)
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"))
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    authentic: Mapped[bool] = mapped_column()
    complete: Mapped[bool] = mapped_column()
    note: Mapped[str] = mapped_column(sa.Text, default="")
    version_id: Mapped[int] = mapped_column(default=1)
    term = relationship("Term")
    student = relationship("Student")
    reviewer = relationship("User")

    __mapper_args__ = {"version_id_col": version_id}

    def __str__(self) -> str:
        return f"材料审核 · {self.student.name if self.student else self.student_id}"


class Quota(db.Model):
    """维度插标: at most ``max_percent`` % of a school's students at ``level`` on a dimension."""

    __tablename__ = "quotas"
    __table_args__ = (
        sa.UniqueConstraint("term_id", "school_id", "dimension_id", "level"),
        sa.CheckConstraint("max_percent >= 0 AND max_percent <= 100", name="percent"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"), index=True)
    dimension_id: Mapped[int] = mapped_column(sa.ForeignKey("dimensions.id"))
    level: Mapped[str] = mapped_column(sa.String(4))
    max_percent: Mapped[int] = mapped_column(sa.SmallInteger)
    set_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    version_id: Mapped[int] = mapped_column(default=1)
    term = relationship("Term")
    school = relationship("School")
    dimension = relationship("Dimension")

    __mapper_args__ = {"version_id_col": version_id}

    def __str__(self) -> str:
        return f"{self.dimension.name if self.dimension else ''} {self.level} ≤ {self.max_percent}%"


class QuotaAck(db.Model):
    """The school received and checked its quotas (各学校接受数据并复核)."""

    __tablename__ = "quota_acks"
    __table_args__ = (sa.UniqueConstraint("term_id", "school_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"))
    confirmed_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    term = relationship("Term")
    school = relationship("School")

    def __str__(self) -> str:
        return f"插标比例确认 · {self.school.name if self.school else self.school_id}"


class Rating(TimestampMixin, db.Model):
    """The class evaluation group's grade level for one student on one dimension (教师评价)."""

    __tablename__ = "ratings"
    __table_args__ = (sa.UniqueConstraint("term_id", "student_id", "dimension_id"),
                      sa.Index("ix_ratings_class_term", "class_id", "term_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    student_id: Mapped[int] = mapped_column(sa.ForeignKey("students.id"))
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"), index=True)
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id"))
    dimension_id: Mapped[int] = mapped_column(sa.ForeignKey("dimensions.id"))
    level: Mapped[str] = mapped_column(sa.String(4))
    rated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    version_id: Mapped[int] = mapped_column(default=1)
    term = relationship("Term")
    student = relationship("Student")
    dimension = relationship("Dimension")

    __mapper_args__ = {"version_id_col": version_id}

    def __str__(self) -> str:
        return f"评价 · {self.student.name if self.student else self.student_id} · {self.level}"


class RatingFinal(db.Model):
    """A class's (class_id set) or a school's (class_id NULL) ratings finalised: no more changes."""

    __tablename__ = "rating_finals"
    __table_args__ = (sa.UniqueConstraint("term_id", "school_id", "class_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"))
    class_id: Mapped[int | None] = mapped_column(sa.ForeignKey("classes.id"), nullable=True)
    finalised_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    finalised_at: Mapped[datetime] = mapped_column(UTCDateTime())
    term = relationship("Term")
    school = relationship("School")
    school_class = relationship("SchoolClass")

    def __str__(self) -> str:
        return f"评价定稿 · {self.school_class or self.school}"


class PeerRating(db.Model):
    """One student's grade level for a classmate on one dimension (学生互评); never for themself."""

    __tablename__ = "peer_ratings"
    __table_args__ = (
        sa.UniqueConstraint("term_id", "rater_id", "ratee_id", "dimension_id"),
        sa.CheckConstraint("rater_id <> ratee_id", name="not_self"),
        sa.Index("ix_peer_ratings_ratee", "ratee_id", "term_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id"), index=True)
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"))
    rater_id: Mapped[int] = mapped_column(sa.ForeignKey("students.id"))
    ratee_id: Mapped[int] = mapped_column(sa.ForeignKey("students.id"))
    dimension_id: Mapped[int] = mapped_column(sa.ForeignKey("dimensions.id"))
    level: Mapped[str] = mapped_column(sa.String(4))
    term = relationship("Term")
    rater = relationship("Student", foreign_keys=[rater_id])
    ratee = relationship("Student", foreign_keys=[ratee_id])

    def __str__(self) -> str:
        return f"互评 · {self.level}"


COMPLAINT_ABOUT = {"rating": "评价结果", "evidence": "实证材料", "conduct": "评价人员的工作", "other": "其他"}
COMPLAINT_ABOUT_EN = {"rating": "Evaluation result", "evidence": "Evidence", "conduct": "An evaluator's conduct",
                      "other": "Other"}
COMPLAINT_STATES = {"open": "待受理", "accepted": "处理中", "closed": "已办结", "dismissed": "不予受理"}
COMPLAINT_STATES_EN = {"open": "Waiting", "accepted": "Being handled", "closed": "Answered", "dismissed": "Not taken up"}
OPEN_COMPLAINT_STATES = ("open", "accepted")


class Complaint(TimestampMixin, db.Model):
    """举报申诉 (SPEC §8, seed 001: 举报申诉制度): a student or parent reports a problem with the evaluation; the
    school's evaluation committee takes it up and answers it (or says why not), the district's leading group
    sees every school's and may answer in its place. Each step with its reason in the history."""

    __tablename__ = "complaints"
    __table_args__ = (
        sa.CheckConstraint("state IN ('open', 'accepted', 'closed', 'dismissed')", name="state_value"),
        sa.Index("ix_complaints_school_state", "school_id", "state"),
        sa.Index("ix_complaints_filed_by_state", "filed_by_id", "state"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"), index=True)
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"))
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id"))
    student_id: Mapped[int] = mapped_column(sa.ForeignKey("students.id"), index=True)
    filed_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    about: Mapped[str] = mapped_column(sa.String(16))
    description: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.String(16), default="open")
    handler_note: Mapped[str] = mapped_column(sa.Text, default="")
    handled_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    version_id: Mapped[int] = mapped_column(default=1)
    term = relationship("Term")
    school = relationship("School")
    school_class = relationship("SchoolClass")
    student = relationship("Student")
    filed_by = relationship("User", foreign_keys=[filed_by_id])
    handled_by = relationship("User", foreign_keys=[handled_by_id])

    __mapper_args__ = {"version_id_col": version_id}

    @property
    def about_name(self) -> str:
        return COMPLAINT_ABOUT.get(self.about, self.about)

    @property
    def state_name(self) -> str:
        return COMPLAINT_STATES.get(self.state, self.state)

    def __str__(self) -> str:
        return f"举报申诉 #{self.id}"
