"""Profiles, terms, cohorts and their phase windows (SPEC §2). Windows are [starts_at, ends_at)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import JSONType, UTCDateTime, db


class Profile(db.Model):
    """A way of running the evaluation (Shanghai, Changsha): its categories and phases are data."""

    __tablename__ = "profiles"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    # Phase codes with their names, in order: [{"code": ..., "name": ..., "name_en": ...}, ...]
    phases: Mapped[list] = mapped_column(JSONType, default=list)
    # Profile-wide rules that are not categories: grade levels, committee sizes, the pledge text (Changsha).
    rules: Mapped[dict] = mapped_column(JSONType, default=dict)

    def phase_name(self, code: str) -> str:
        for p in self.phases:
            if p["code"] == code:
                return p["name"]
        return code

    def __str__(self) -> str:
        return self.name


class Term(db.Model):
    """学年 + 学期 of one district, run under one profile."""

    __tablename__ = "terms"
    __table_args__ = (sa.UniqueConstraint("district_id", "school_year", "semester"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"), index=True)
    profile_id: Mapped[int] = mapped_column(sa.ForeignKey("profiles.id"))
    school_year: Mapped[int] = mapped_column(sa.SmallInteger)  # 2021 means 2021学年
    semester: Mapped[int] = mapped_column(sa.SmallInteger)  # 1 or 2
    is_current: Mapped[bool] = mapped_column(default=False)
    district = relationship("District")
    profile = relationship("Profile")
    cohorts = relationship("Cohort", back_populates="term", order_by="Cohort.position")

    @property
    def name(self) -> str:
        return f"{self.school_year}学年第{'一' if self.semester == 1 else '二'}学期"

    def cohort_for_grade(self, grade: int) -> Cohort | None:
        for cohort in self.cohorts:
            if grade in cohort.grades:
                return cohort
        return None

    def __str__(self) -> str:
        return self.name


class Cohort(db.Model):
    """Grades that share one schedule within a term (grade 9; grades 6–8)."""

    __tablename__ = "cohorts"
    __table_args__ = (sa.UniqueConstraint("term_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"), index=True)
    code: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(64))
    grades: Mapped[list] = mapped_column(JSONType)
    position: Mapped[int] = mapped_column(default=0)
    term = relationship("Term", back_populates="cohorts")
    windows = relationship("PhaseWindow", back_populates="cohort", order_by="(PhaseWindow.starts_at, PhaseWindow.id)")

    def window(self, phase: str) -> PhaseWindow | None:
        """The cohort's window of a phase. A profile may name its own phase for a generic one (Changsha enters
        school data in "results_import" where the record workflow asks for "entry"): ``rules["phase_of"]``."""
        for w in self.windows:
            if w.phase == phase:
                return w
        alias = ((self.term.profile.rules or {}).get("phase_of") or {}).get(phase) if self.term else None
        if alias and alias != phase:
            return self.window(alias)
        return None

    def __str__(self) -> str:
        return f"{self.term.name} · {self.name}"


class PhaseWindow(db.Model):
    """One phase of one cohort: open from starts_at (inclusive) to ends_at (exclusive)."""

    __tablename__ = "phase_windows"
    __table_args__ = (
        sa.UniqueConstraint("cohort_id", "phase"),
        sa.CheckConstraint("ends_at > starts_at", name="ordered"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    cohort_id: Mapped[int] = mapped_column(sa.ForeignKey("cohorts.id"), index=True)
    phase: Mapped[str] = mapped_column(sa.String(32))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    version_id: Mapped[int] = mapped_column(default=1)
    cohort = relationship("Cohort", back_populates="windows")

    __mapper_args__ = {"version_id_col": version_id}

    def is_open(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at

    @property
    def name(self) -> str:
        return self.cohort.term.profile.phase_name(self.phase)

    def __str__(self) -> str:
        return f"{self.cohort.name} · {self.name}"
