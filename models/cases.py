"""Appeals and problem data (SPEC §6): one case table, routed by who entered the data.

A case carries the correction it proposes (``proposal``) until the auditor approves it: the record
itself changes only on approval.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import JSONType, TimestampMixin, UTCDateTime, db

CASE_STATES = {
    "open": "待处理",
    "accepted": "待修改",
    "corrected": "待审核",
    "closed": "已办结",
    "dismissed": "已驳回",
}
OPEN_CASE_STATES = ("open", "accepted", "corrected")
FLOWS = {
    1: "问题数据",
    2: "申诉：校级或学生录入",
    3: "申诉：区级录入",
    4: "申诉：市级录入",
}
FLOWS_EN = {1: "Problem data", 2: "Appeal: school or student data", 3: "Appeal: district data",
            4: "Appeal: city data"}
APPEAL_KINDS = {"error": "错录", "missing": "少录", "extra": "多录", "problem": "确认不通过逾期未修改"}

# origin of the data → (flow, handling level, correcting level) — SPEC §6's routing table.
ROUTES = {
    "school": (2, "school", "school"),
    "student": (2, "school", "student"),
    "district": (3, "district", "district"),
    "city": (4, "city", "city"),
}
PROBLEM_ROUTE = (1, "district", "school")


class Case(TimestampMixin, db.Model):
    __tablename__ = "cases"
    __table_args__ = (
        # Auditor queues: a school's / district's cases of one handling level by state.
        sa.Index("ix_cases_school_handler_state", "school_id", "handler_level", "state"),
        sa.Index("ix_cases_district_handler_state", "district_id", "handler_level", "state"),
        # The per-student bound on open appeals, and a student's own list.
        sa.Index("ix_cases_filed_by_id_state", "filed_by_id", "state"),
        sa.Index("ix_cases_student_id", "student_id"),
        # One problem case per record.
        sa.Index("uq_cases_problem_record", "record_id", unique=True, postgresql_where=sa.text("flow = 1"),
                 sqlite_where=sa.text("flow = 1")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    flow: Mapped[int] = mapped_column(sa.SmallInteger)
    kind: Mapped[str] = mapped_column(sa.String(16))  # error | missing | extra | problem
    student_id: Mapped[int] = mapped_column(sa.ForeignKey("students.id"))
    record_id: Mapped[int | None] = mapped_column(sa.ForeignKey("records.id", ondelete="SET NULL"), nullable=True)
    category_id: Mapped[int] = mapped_column(sa.ForeignKey("categories.id"))
    # Where the student is: queues filter by these without joins.
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"))
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id"))
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"))
    handler_level: Mapped[str] = mapped_column(sa.String(16))  # school | district | city
    corrector_level: Mapped[str] = mapped_column(sa.String(16))  # school | district | city | student
    filed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    state: Mapped[str] = mapped_column(sa.String(16), default="open")
    # {"op": "edit" | "create" | "delete", "data": {...}}: applied to the record on approval.
    proposal: Mapped[dict | None] = mapped_column(JSONType, nullable=True)
    # The latest reason given by the handler (dismissal) or the auditor (sent back) and the corrector's note.
    handler_note: Mapped[str] = mapped_column(sa.Text, default="")
    corrector_note: Mapped[str] = mapped_column(sa.Text, default="")
    # The end of issue handling for the student's cohort: open after it means overdue.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The deadline run that created it (escalation to problem data) and the one that found it still
    # open when issue handling ended (逾期未办结); see models/deadlines.py.
    deadline_run_id: Mapped[int | None] = mapped_column(nullable=True)
    overdue_run_id: Mapped[int | None] = mapped_column(nullable=True)
    version_id: Mapped[int] = mapped_column(default=1)
    term = relationship("Term")
    student = relationship("Student")
    record = relationship("Record")
    category = relationship("Category")
    school = relationship("School")
    school_class = relationship("SchoolClass")
    filed_by = relationship("User")

    __mapper_args__ = {"version_id_col": version_id}

    @property
    def state_name(self) -> str:
        return CASE_STATES.get(self.state, self.state)

    @property
    def flow_name(self) -> str:
        return FLOWS.get(self.flow, str(self.flow))

    @property
    def kind_name(self) -> str:
        return APPEAL_KINDS.get(self.kind, self.kind)

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_CASE_STATES

    def overdue(self, at: datetime) -> bool:
        return self.is_open and self.due_at is not None and at >= self.due_at

    def __str__(self) -> str:
        return f"#{self.id} {self.flow_name} · {self.category.name if self.category else ''}"
