"""Archive and sign-off (归档签字, SPEC §7, grade 9): the principal's 合格/不合格 per student, the signatures
on each student's 确认单, and the school's signed and stamped 汇总表.

One ``archive_entries`` row per student and term holds the result and the two signature dates; it is
created the first time anything is recorded for the student. ``summary_uploads`` keeps every scan a
school uploads (the newest counts); files live under ``instance/summaries/`` by content hash.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import TimestampMixin, UTCDateTime, db
from models.org import NON_PARTICIPANT_STATUSES, SchoolClass, Student

RESULTS = {"pass": "合格", "fail": "不合格"}
RESULTS_EN = {"pass": "Pass", "fail": "Fail"}


class ArchiveEntry(TimestampMixin, db.Model):
    __tablename__ = "archive_entries"
    __table_args__ = (
        sa.UniqueConstraint("student_id", "term_id"),
        sa.Index("ix_archive_entries_school_term", "school_id", "term_id"),
        sa.CheckConstraint("result IS NULL OR result IN ('pass', 'fail')", name="result_value"),
        # 不合格 always carries its reason (the form asks for it; the database holds the line too).
        sa.CheckConstraint("result IS NULL OR result = 'pass' OR (reason IS NOT NULL AND reason <> '')",
                           name="fail_reason"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    student_id: Mapped[int] = mapped_column(sa.ForeignKey("students.id"))
    # The student's school and class when the entry was made, for scope filters and progress by class.
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"))
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id"), index=True)
    result: Mapped[str | None] = mapped_column(sa.String(8), nullable=True)  # pass | fail
    reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    rated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    student_signed_on: Mapped[date | None] = mapped_column(sa.Date, nullable=True)
    parent_signed_on: Mapped[date | None] = mapped_column(sa.Date, nullable=True)
    signed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)  # who recorded it
    version_id: Mapped[int] = mapped_column(default=1)
    term = relationship("Term")
    student = relationship("Student")
    school = relationship("School")
    school_class = relationship("SchoolClass")
    rated_by = relationship("User", foreign_keys=[rated_by_id])
    signed_by = relationship("User", foreign_keys=[signed_by_id])

    __mapper_args__ = {"version_id_col": version_id}

    @property
    def result_name(self) -> str:
        return RESULTS.get(self.result or "", "")

    @property
    def signed(self) -> bool:
        return self.student_signed_on is not None and self.parent_signed_on is not None

    def __str__(self) -> str:
        return f"归档 · {self.student.name if self.student else self.student_id}"


class SummaryUpload(TimestampMixin, db.Model):
    """A school's signed and stamped 汇总表, as uploaded (PDF, JPG or PNG)."""

    __tablename__ = "summary_uploads"
    __table_args__ = (sa.Index("ix_summary_uploads_school_term", "school_id", "term_id", "id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"))
    filename: Mapped[str] = mapped_column(sa.String(255))  # as the uploader named it (shown, never used as a path)
    kind: Mapped[str] = mapped_column(sa.String(8))  # pdf | jpeg | png: what the content is
    size: Mapped[int] = mapped_column()
    sha256: Mapped[str] = mapped_column(sa.String(64))
    uploaded_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    term = relationship("Term")
    school = relationship("School")
    uploaded_by = relationship("User")

    def __str__(self) -> str:
        return f"汇总表 · {self.filename}"


# ---------------------------------------------------------------------------------------------
# The graduating cohort's progress (pages, the dashboard, and the 汇总表's readiness in the workflow)


def archive_grades(term) -> list[int]:
    """The grades whose cohort has an archive phase this term (Shanghai: grade 9). Profiles are data."""
    if term is None:
        return []
    return sorted({g for c in term.cohorts if c.window("archive") is not None for g in c.grades})


@dataclass
class Progress:
    total: int = 0
    rated: int = 0
    passed: int = 0
    failed: int = 0
    student_signed: int = 0
    parent_signed: int = 0
    signed: int = 0  # both signatures

    @property
    def pct(self) -> int:
        return int(100 * self.signed / self.total) if self.total else 0

    @property
    def rated_pct(self) -> int:
        return int(100 * self.rated / self.total) if self.total else 0

    @property
    def ready(self) -> bool:
        """Everyone rated and signed by both: the summary table can be printed."""
        return self.total > 0 and self.rated == self.total and self.signed == self.total

    def __add__(self, other: Progress) -> Progress:
        return Progress(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True)))


def progress(group_col, where: list, term_ids: list[int], grades: list[int]) -> dict:
    """Participating students of the archive grades and their entries of the given terms, counted per
    ``group_col`` (a class or a school id) in one statement."""
    e = ArchiveEntry
    both = sa.and_(e.student_signed_on.isnot(None), e.parent_signed_on.isnot(None))
    stmt = (
        sa.select(group_col, sa.func.count(Student.id), sa.func.count(e.result),
                  sa.func.count(sa.case((e.result == "pass", 1))), sa.func.count(sa.case((e.result == "fail", 1))),
                  sa.func.count(e.student_signed_on), sa.func.count(e.parent_signed_on),
                  sa.func.count(sa.case((both, 1))))
        .select_from(Student).join(SchoolClass, SchoolClass.id == Student.class_id)
        .outerjoin(e, sa.and_(e.student_id == Student.id, e.term_id.in_(term_ids)))
        .where(SchoolClass.grade.in_(grades), Student.status.notin_(NON_PARTICIPANT_STATUSES), *where)
        .group_by(group_col)
    )
    return {row[0]: Progress(*row[1:]) for row in db.session.execute(stmt).all()}
