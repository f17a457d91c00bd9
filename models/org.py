"""The organisation tree of SPEC §1: city → district → school → class → student."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import JSONType, TimestampMixin, db

GRADE_NAMES = {6: "六年级", 7: "七年级", 8: "八年级", 9: "九年级"}

STUDENT_STATUSES = {
    "enrolled": "在籍",
    "left": "离校",
    "suspended": "休学",
    "transferred": "转学",
}
NON_PARTICIPANT_STATUSES = ("left", "suspended", "transferred")


class City(db.Model):
    __tablename__ = "cities"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    districts = relationship("District", back_populates="city")

    def __str__(self) -> str:
        return self.name


class District(db.Model):
    __tablename__ = "districts"
    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(sa.ForeignKey("cities.id"), index=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(64))
    # District-wide settings (e.g. the bound on a student's open appeals), edited by the district admin.
    settings: Mapped[dict] = mapped_column(JSONType, default=dict)
    city = relationship("City", back_populates="districts")
    schools = relationship("School", back_populates="district")

    def __str__(self) -> str:
        return self.name


class School(TimestampMixin, db.Model):
    __tablename__ = "schools"
    id: Mapped[int] = mapped_column(primary_key=True)
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"), index=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    # 团、队等德育活动审核设置: homeroom teachers audit students' activity records (default on, SPEC §4).
    homeroom_audit: Mapped[bool] = mapped_column(default=True)
    version_id: Mapped[int] = mapped_column(default=1)
    district = relationship("District", back_populates="schools")
    classes = relationship("SchoolClass", back_populates="school", order_by="(SchoolClass.grade, SchoolClass.number)")

    __mapper_args__ = {"version_id_col": version_id}

    def __str__(self) -> str:
        return self.name


class SchoolClass(db.Model):
    __tablename__ = "classes"
    __table_args__ = (
        sa.UniqueConstraint("school_id", "grade", "number"),
        sa.CheckConstraint("grade BETWEEN 6 AND 9", name="grade_range"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"), index=True)
    grade: Mapped[int] = mapped_column(sa.SmallInteger)
    number: Mapped[int] = mapped_column(sa.SmallInteger)
    school = relationship("School", back_populates="classes")
    students = relationship("Student", back_populates="school_class", order_by="Student.xjh")

    @property
    def name(self) -> str:
        return f"{GRADE_NAMES.get(self.grade, self.grade)}({self.number})班"

    def __str__(self) -> str:
        return self.name


class Student(TimestampMixin, db.Model):
    __tablename__ = "students"
    __table_args__ = (sa.Index("ix_students_school_id_class_id", "school_id", "class_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    xjh: Mapped[str] = mapped_column(sa.String(32), unique=True)  # 学籍号
    name: Mapped[str] = mapped_column(sa.String(64))
    gender: Mapped[str] = mapped_column(sa.String(1))  # 男 / 女
    class_id: Mapped[int] = mapped_column(sa.ForeignKey("classes.id"), index=True)
    # Kept equal to the class's school (set on flush): scope filters use it without a join.
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"))
    status: Mapped[str] = mapped_column(sa.String(16), default="enrolled")
    # 考号 (Changsha): the results lookup finds a student by it, so it is unique (NULL for profiles without one).
    exam_number: Mapped[str | None] = mapped_column(sa.String(32), nullable=True, unique=True, index=True)
    version_id: Mapped[int] = mapped_column(default=1)
    school_class = relationship("SchoolClass", back_populates="students")
    school = relationship("School")

    __mapper_args__ = {"version_id_col": version_id}

    @property
    def grade(self) -> int:
        return self.school_class.grade

    @property
    def participates(self) -> bool:
        return self.status not in NON_PARTICIPANT_STATUSES

    @property
    def status_name(self) -> str:
        return STUDENT_STATUSES.get(self.status, self.status)

    def __str__(self) -> str:
        return f"{self.name}（{self.school_class.name if self.school_class else ''}）"


@sa.event.listens_for(Student, "before_insert")
@sa.event.listens_for(Student, "before_update")
def _student_school_follows_class(mapper, connection, target: Student) -> None:
    if target.class_id is not None:
        target.school_id = connection.execute(
            sa.select(SchoolClass.school_id).where(SchoolClass.id == target.class_id)
        ).scalar_one()
