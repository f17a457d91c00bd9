"""Load a profile module (seed/shanghai.py, seed/changsha.py) into the database, and lay out a term's schedule.

Both are idempotent: re-running updates rows by their codes and never duplicates them. They only
flush; the caller commits.
"""
from __future__ import annotations

import sqlalchemy as sa

from models import Category, Cohort, Dimension, District, EvidenceItem, PhaseWindow, Profile, Term, db
from settings import parse_instant


def sync_profile(module) -> Profile:
    profile = db.session.execute(sa.select(Profile).where(Profile.code == module.CODE)).scalar_one_or_none()
    if profile is None:
        profile = Profile(code=module.CODE)
        db.session.add(profile)
    profile.name = module.NAME
    profile.phases = list(module.PHASES)
    profile.rules = dict(getattr(module, "RULES", {}))
    db.session.flush()

    dimensions = {}
    for position, spec in enumerate(module.DIMENSIONS):
        dim = db.session.execute(
            sa.select(Dimension).where(Dimension.profile_id == profile.id, Dimension.code == spec["code"])
        ).scalar_one_or_none()
        if dim is None:
            dim = Dimension(profile_id=profile.id, code=spec["code"])
            db.session.add(dim)
        dim.name, dim.name_en, dim.position = spec["name"], spec.get("name_en", ""), position
        dimensions[spec["code"]] = dim
    db.session.flush()

    for position, spec in enumerate(module.CATEGORIES):
        cat = db.session.execute(
            sa.select(Category).where(Category.profile_id == profile.id, Category.code == spec["code"])
        ).scalar_one_or_none()
        if cat is None:
            cat = Category(profile_id=profile.id, code=spec["code"])
            db.session.add(cat)
        cat.dimension_id = dimensions[spec["dimension"]].id
        cat.name, cat.name_en, cat.position = spec["name"], spec.get("name_en", ""), position
        cat.grades = list(spec["grades"])
        cat.entry = list(spec["entry"])
        cat.per_term_limit = spec.get("per_term_limit")
        cat.per_year_limit = spec.get("per_year_limit")
        cat.fields = list(spec["fields"])
    db.session.flush()

    for position, spec in enumerate(getattr(module, "EVIDENCE_ITEMS", [])):
        item = db.session.execute(
            sa.select(EvidenceItem).where(EvidenceItem.profile_id == profile.id, EvidenceItem.code == spec["code"])
        ).scalar_one_or_none()
        if item is None:
            item = EvidenceItem(profile_id=profile.id, code=spec["code"])
            db.session.add(item)
        item.dimension_id = dimensions[spec["dimension"]].id
        item.name, item.name_en, item.position = spec["name"], spec.get("name_en", ""), position
        item.min_files, item.max_files = spec["min_files"], spec["max_files"]
        item.formats, item.max_bytes = list(spec["formats"]), spec["max_bytes"]
    db.session.flush()
    return profile


def create_term(district: District, profile: Profile, school_year: int, semester: int, schedule: dict,
                is_current: bool = True) -> Term:
    """The term with one cohort per schedule entry and its phase windows (Beijing-time strings)."""
    term = db.session.execute(
        sa.select(Term).where(Term.district_id == district.id, Term.school_year == school_year,
                              Term.semester == semester)
    ).scalar_one_or_none()
    if term is None:
        term = Term(district_id=district.id, profile_id=profile.id, school_year=school_year, semester=semester)
        db.session.add(term)
    if is_current:
        db.session.execute(sa.update(Term).where(Term.district_id == district.id).values(is_current=False))
    term.is_current = is_current
    db.session.flush()
    for position, (code, spec) in enumerate(schedule.items()):
        cohort = db.session.execute(
            sa.select(Cohort).where(Cohort.term_id == term.id, Cohort.code == code)
        ).scalar_one_or_none()
        if cohort is None:
            cohort = Cohort(term_id=term.id, code=code)
            db.session.add(cohort)
        cohort.name, cohort.grades, cohort.position = spec["name"], list(spec["grades"]), position
        db.session.flush()
        for phase, (start, end) in spec["windows"].items():
            window = db.session.execute(
                sa.select(PhaseWindow).where(PhaseWindow.cohort_id == cohort.id, PhaseWindow.phase == phase)
            ).scalar_one_or_none()
            if window is None:
                window = PhaseWindow(cohort_id=cohort.id, phase=phase)
                db.session.add(window)
            window.starts_at, window.ends_at = parse_instant(start), parse_instant(end)
    db.session.flush()
    db.session.refresh(term)
    return term
