"""纪实报告 (documentary report, SPEC §7): what a student's report holds, as plain data for the web page,
the PDF and the batch. Only published records (confirmed, corrected, submitted for publication); grouped
by term, then by the profile's dimensions; the self-introduction / typical case as text; the principal's
合格/不合格 when given. A graduate's report (grade 9) holds every term of grades 6–9 in one document.

The same function feeds every output, so the web page, the PDF and the QR page cannot disagree.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

from models.archive import ArchiveEntry
from models.base import db
from models.calendar import Term
from models.catalog import Activity, Category, Dimension
from models.fields import display_value
from models.org import GRADE_NAMES, Student
from models.records import PUBLISHED_STATES, Record
from models.roles import LEVEL_NAMES

GRADUATE_GRADE = 9
TEXT_DIMENSION = "self"  # 自我介绍与典型事例: shown as prose, not as a table


@dataclass
class Item:
    record_id: int
    category: str
    level: str
    fields: list[tuple[str, str]]


@dataclass
class Section:
    code: str
    name: str
    items: list[Item] = field(default_factory=list)

    @property
    def prose(self) -> bool:
        return self.code == TEXT_DIMENSION


@dataclass
class TermReport:
    term_id: int
    name: str  # 2021学年第一学期（九年级）
    sections: list[Section]
    result: str = ""  # 合格 / 不合格, when the principal has rated
    result_reason: str = ""

    @property
    def count(self) -> int:
        return sum(len(s.items) for s in self.sections)


@dataclass
class Report:
    student_id: int
    name: str
    gender: str
    xjh: str
    school: str
    klass: str
    district: str
    graduate: bool
    terms: list[TermReport]

    @property
    def count(self) -> int:
        return sum(t.count for t in self.terms)


def _grade_in(student: Student, current: Term, term: Term) -> int | None:
    """The student's grade in an earlier term: the current grade minus the school years between."""
    grade = student.school_class.grade - (current.school_year - term.school_year)
    return grade if grade in GRADE_NAMES else None


def terms_of(student: Student, graduate: bool | None = None) -> list[Term]:
    """The terms a report covers: the current one, or for a graduate every term of the district up to
    now in which the student has published records (and the current one)."""
    current = db.session.execute(sa.select(Term).where(
        Term.district_id == student.school.district_id, Term.is_current.is_(True))).scalar_one_or_none()
    if current is None:
        return []
    if graduate is None:
        graduate = student.school_class.grade == GRADUATE_GRADE
    if not graduate:
        return [current]
    earlier = db.session.execute(sa.select(Term).where(
        Term.id.in_(sa.select(Record.term_id).where(Record.student_id == student.id,
                                                    Record.state.in_(PUBLISHED_STATES)).distinct()),
        Term.district_id == current.district_id,
        sa.or_(Term.school_year < current.school_year,
               sa.and_(Term.school_year == current.school_year, Term.semester < current.semester)))
    ).scalars().all()
    return sorted({*earlier, current}, key=lambda t: (t.school_year, t.semester))


def build(student: Student, *, graduate: bool | None = None, terms: list[Term] | None = None) -> Report:
    """A student's 纪实报告. Non-participants (预确认为不参与) have no records, and get an empty report."""
    if graduate is None:
        graduate = student.school_class.grade == GRADUATE_GRADE
    terms = terms if terms is not None else terms_of(student, graduate)
    current = next((t for t in terms if t.is_current), terms[-1] if terms else None)
    term_ids = [t.id for t in terms]
    rows = []
    if term_ids and student.participates:
        rows = db.session.execute(
            sa.select(Record, Category, Dimension)
            .join(Category, Record.category_id == Category.id).join(Dimension, Category.dimension_id == Dimension.id)
            .where(Record.student_id == student.id, Record.term_id.in_(term_ids),
                   Record.state.in_(PUBLISHED_STATES))
            .order_by(Dimension.position, Category.position, Record.id)
        ).all()
    activity_ids = {r.data.get(f["name"]) for r, c, _ in rows for f in c.fields
                    if f["type"] == "activity" and r.data and r.data.get(f["name"]) is not None}
    # Held while the report is built: display_value looks activities up through the session's identity map.
    held = db.session.execute(sa.select(Activity).where(Activity.id.in_(activity_ids))).scalars().all() \
        if activity_ids else []
    entries = {e.term_id: e for e in db.session.execute(sa.select(ArchiveEntry).where(
        ArchiveEntry.student_id == student.id, ArchiveEntry.term_id.in_(term_ids))).scalars()} if term_ids else {}
    by_term: dict[int, dict[int, Section]] = {t.id: {} for t in terms}
    for record, category, dimension in rows:
        section = by_term[record.term_id].setdefault(dimension.id, Section(dimension.code, dimension.name))
        data = record.data or {}
        section.items.append(Item(record.id, category.name, LEVEL_NAMES.get(record.origin, record.origin),
                                  [(f["label"], display_value(f, data.get(f["name"]))) for f in category.fields]))
    del held
    out = []
    for term in terms:
        grade = _grade_in(student, current, term) if current else None
        name = f"{term.name}（{GRADE_NAMES[grade]}）" if grade else term.name
        entry = entries.get(term.id)
        out.append(TermReport(term.id, name, list(by_term[term.id].values()),
                              result=entry.result_name if entry and entry.result else "",
                              result_reason=(entry.reason or "") if entry and entry.result == "fail" else ""))
    school = student.school
    return Report(student.id, student.name, student.gender, student.xjh, school.name, student.school_class.name,
                  school.district.name, graduate, out)
