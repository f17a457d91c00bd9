"""Evaluation records: one lifecycle table; each category's own fields live in ``data`` (JSON),
validated against the category's field specs (see models/fields.py and workflow)."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import JSONType, TimestampMixin, db

RECORD_STATES = {
    # Student-written (自我介绍/典型事例, 团、队等德育活动, 探究学习报告)
    "draft": "草稿",
    "submitted": "待班主任审阅",
    "reviewed": "班主任已审阅",
    "final": "已提交公示",
    # Clerk-entered (校级/区级/市级)
    "entered": "已录入",
    "confirmed": "已确认",
    "rejected": "确认不通过",
    "corrected": "已修改",
    "problem": "问题数据",
}
# What publication shows (SPEC §6): confirmed, corrected or submitted-for-publication data.
PUBLISHED_STATES = ("confirmed", "corrected", "final")
# States in which a record waits for someone's action (the queues' index holds these only).
# Who enters data that students confirm (as opposed to what students write themselves).
CLERK_ORIGINS = frozenset({"school", "district", "city"})
PENDING_STATES = ("draft", "submitted", "reviewed", "entered", "rejected", "problem")
PENDING_SQL = "state IN (" + ", ".join(f"'{s}'" for s in PENDING_STATES) + ")"


class Record(TimestampMixin, db.Model):
    __tablename__ = "records"
    __table_args__ = (
        # The list pages: a school's records of one category in one term, newest first.
        sa.Index("ix_records_school_term_category", "school_id", "term_id", "category_id", "id"),
        # Limits and a student's own page.
        sa.Index("ix_records_student_term_category", "student_id", "term_id", "category_id"),
        # Queues: a school's records still waiting for someone (rejected → correction queue, submitted →
        # review queue, entered → to confirm, drafts). Partial: published records (the bulk of a term) are
        # not in it, so moving a million records to "confirmed" at a deadline adds nothing to it.
        sa.Index("ix_records_school_state", "school_id", "state",
                 postgresql_where=sa.text(PENDING_SQL), sqlite_where=sa.text(PENDING_SQL)),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    category_id: Mapped[int] = mapped_column(sa.ForeignKey("categories.id"))
    student_id: Mapped[int] = mapped_column(sa.ForeignKey("students.id"))
    # The student's school at entry time, kept for scope filters without a join.
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"))
    origin: Mapped[str] = mapped_column(sa.String(16))  # school | district | city | student
    entered_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    state: Mapped[str] = mapped_column(sa.String(24))
    data: Mapped[dict] = mapped_column(JSONType, default=dict)
    # The homeroom teacher's latest comment on a student's entry (审阅意见 / 退回原因).
    review_comment: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    # The student's reason for 确认不通过.
    reject_reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    # The data before the last correction, so the student sees what was corrected.
    previous_data: Mapped[dict | None] = mapped_column(JSONType, nullable=True)
    # The deadline run that last changed it in bulk (auto-confirm, escalation): its one history event
    # tells who, when and from what (models/deadlines.py). No foreign key: runs are never deleted, and
    # a million-row UPDATE should not check one per row.
    deadline_run_id: Mapped[int | None] = mapped_column(nullable=True)
    version_id: Mapped[int] = mapped_column(default=1)
    term = relationship("Term")
    category = relationship("Category")
    student = relationship("Student")
    school = relationship("School")
    entered_by = relationship("User")

    __mapper_args__ = {"version_id_col": version_id}

    @property
    def state_name(self) -> str:
        return RECORD_STATES.get(self.state, self.state)

    @property
    def is_published(self) -> bool:
        return self.state in PUBLISHED_STATES

    def __str__(self) -> str:
        return f"{self.category.name} · {self.student.name}"
