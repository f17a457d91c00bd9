"""The profile's record categories as data (SPEC §3), and the activity catalogues."""
from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import JSONType, TimestampMixin, db


class Dimension(db.Model):
    __tablename__ = "dimensions"
    __table_args__ = (sa.UniqueConstraint("profile_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(sa.ForeignKey("profiles.id"))
    code: Mapped[str] = mapped_column(sa.String(32))
    name: Mapped[str] = mapped_column(sa.String(64))
    name_en: Mapped[str] = mapped_column(sa.String(128), default="")
    position: Mapped[int] = mapped_column(default=0)
    categories = relationship("Category", back_populates="dimension", order_by="Category.position")

    def __str__(self) -> str:
        return self.name


class Category(db.Model):
    """A kind of record. ``entry`` lists who enters it: [{"level": "school", "grades": [9], "where": {...}}]."""

    __tablename__ = "categories"
    __table_args__ = (sa.UniqueConstraint("profile_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    profile_id: Mapped[int] = mapped_column(sa.ForeignKey("profiles.id"))
    dimension_id: Mapped[int] = mapped_column(sa.ForeignKey("dimensions.id"))
    code: Mapped[str] = mapped_column(sa.String(48))
    name: Mapped[str] = mapped_column(sa.String(64))
    name_en: Mapped[str] = mapped_column(sa.String(128), default="")
    position: Mapped[int] = mapped_column(default=0)
    grades: Mapped[list] = mapped_column(JSONType)
    entry: Mapped[list] = mapped_column(JSONType)
    per_term_limit: Mapped[int | None] = mapped_column(nullable=True)
    per_year_limit: Mapped[int | None] = mapped_column(nullable=True)
    fields: Mapped[list] = mapped_column(JSONType)
    dimension = relationship("Dimension", back_populates="categories")

    def __str__(self) -> str:
        return self.name


class Activity(TimestampMixin, db.Model):
    """An entry of the 团、队等德育活动 catalogue (校级/区级项目管理) that students pick from."""

    __tablename__ = "activities"
    __table_args__ = (sa.Index("ix_activities_term_id_level", "term_id", "level"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    level: Mapped[str] = mapped_column(sa.String(16))  # school | district
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"))
    school_id: Mapped[int | None] = mapped_column(sa.ForeignKey("schools.id"), nullable=True, index=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    organiser: Mapped[str] = mapped_column(sa.String(128), default="")
    held_on: Mapped[date | None] = mapped_column(nullable=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    version_id: Mapped[int] = mapped_column(default=1)
    term = relationship("Term")
    district = relationship("District")
    school = relationship("School")

    __mapper_args__ = {"version_id_col": version_id}

    def __str__(self) -> str:
        prefix = "区级" if self.level == "district" else "校级"
        return f"[{prefix}] {self.name}"
