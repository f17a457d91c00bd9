"""The scale seeder: bulk-inserted rows that obey the same rules as rows entered through the app."""
from __future__ import annotations

import sqlalchemy as sa

from models import Category, District, Record, School, Student, db
from models.fields import validate_data


def test_seed_scale_rows_are_valid_and_within_limits(session):
    from seed.scale import seed_scale

    counts = seed_scale(students=250, seed=7)
    db.session.flush()
    district = db.session.execute(sa.select(District).where(District.code == "scale01")).scalar_one()
    schools = db.session.execute(sa.select(School.id).where(School.district_id == district.id)).scalars().all()
    assert counts["students"] == 250 and counts["schools"] == len(schools) == 1
    n_students = db.session.execute(sa.select(sa.func.count(Student.id)).where(Student.school_id.in_(schools))).scalar()
    assert n_students == 250
    records = db.session.execute(sa.select(Record).where(Record.school_id.in_(schools))).scalars().all()
    assert len(records) == counts["records"] and 25 * 250 <= len(records) <= 35 * 250
    cats = {c.id: c for c in db.session.execute(sa.select(Category)).scalars()}
    per = {}
    for r in records:
        cat = cats[r.category_id]
        assert validate_data(cat.fields, r.data) == r.data
        assert r.student.school_class.grade in cat.grades
        per[(r.student_id, cat.id)] = per.get((r.student_id, cat.id), 0) + 1
    for (_, cat_id), n in per.items():
        limit = cats[cat_id].per_term_limit or cats[cat_id].per_year_limit
        assert limit is None or n <= limit, (cats[cat_id].code, n)
    # Where a term stands after publication: confirmations, rejections, corrections, and about one case
    # for every fifth student, each on a record of that student and routed by who entered it.
    from models import Case

    states = {r.state for r in records}
    assert {"confirmed", "rejected", "corrected", "final"} <= states
    cases = db.session.execute(sa.select(Case).where(Case.school_id.in_(schools))).scalars().all()
    assert len(cases) == counts["cases"] and 40 <= len(cases) <= 50
    by_id = {r.id: r for r in records}
    for case in cases:
        record = by_id[case.record_id]
        assert record.student_id == case.student_id and case.class_id == record.student.class_id
        assert (case.flow, case.handler_level) == ((1, "district") if record.state == "problem" else
                                                   {"school": (2, "school"), "student": (2, "school"),
                                                    "district": (3, "district")}[record.origin])
