"""Evaluation records: one lifecycle table; each category's own fields live in ``data`` (JSON),
validated against the category's field specs (see forms/fields.py and workflow)."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import JSONType, TimestampMixin, db

RECORD_STATES = {
    "draft": "草稿",
    "entered": "已录入",
}


class Record(TimestampMixin, db.Model):
    __tablename__ = "records"
    __table_args__ = (
        # The list pages: a school's records of one category in one term, newest first.
        sa.Index("ix_records_school_term_category", "school_id", "term_id", "category_id", "id"),
        # Limits and a student's own page.
        sa.Index("ix_records_student_term_category", "student_id", "term_id", "category_id"),
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

    def __str__(self) -> str:
        return f"{self.category.name} · {self.student.name}"
