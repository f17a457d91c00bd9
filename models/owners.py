"""Where an object sits in the organisation tree: the ids of its city, district, school, class
and student. Policy uses it to test whether a grant's scope contains an object (saved or not);
the audit log uses it to file each event under its district and school."""
from __future__ import annotations


def _school_chain(school) -> dict:
    if school is None:
        return {}
    district = school.district
    return {"city": district.city_id if district else None, "district": school.district_id, "school": school.id}


def _rel(obj, name: str, fk: str, model):
    """The related object, loaded by id when only the foreign key has been set so far."""
    value = getattr(obj, name)
    if value is None and getattr(obj, fk, None) is not None:
        from models.base import db

        value = db.session.get(model, getattr(obj, fk))
    return value


def owner_ids(obj) -> dict:
    from models.accounts import RoleGrant, User
    from models.calendar import Cohort, PhaseWindow, Term
    from models.catalog import Activity
    from models.contacts import Contact
    from models.org import City, District, School, SchoolClass, Student
    from models.records import Record

    if isinstance(obj, City):
        return {"city": obj.id}
    if isinstance(obj, District):
        return {"city": obj.city_id, "district": obj.id}
    if isinstance(obj, School):
        return {**_school_chain(obj), "school": obj.id, "district": obj.district_id}
    if isinstance(obj, SchoolClass):
        return {**_school_chain(_rel(obj, "school", "school_id", School)), "class": obj.id}
    if isinstance(obj, Student):
        klass = _rel(obj, "school_class", "class_id", SchoolClass)
        school = _rel(klass, "school", "school_id", School) if klass else None
        return {**_school_chain(school), "class": obj.class_id, "student": obj.id}
    from models.cases import Case

    if isinstance(obj, (Record, Case)):
        student = _rel(obj, "student", "student_id", Student)
        return owner_ids(student) if student is not None else {}
    if isinstance(obj, Contact):
        return _school_chain(_rel(obj, "school", "school_id", School))
    if isinstance(obj, Activity):
        school = _rel(obj, "school", "school_id", School)
        if school is not None:
            return _school_chain(school)
        district = _rel(obj, "district", "district_id", District)
        return owner_ids(district) if district is not None else {}
    if isinstance(obj, Term):
        district = _rel(obj, "district", "district_id", District)
        return owner_ids(district) if district is not None else {}
    if isinstance(obj, Cohort):
        term = _rel(obj, "term", "term_id", Term)
        return owner_ids(term) if term is not None else {}
    if isinstance(obj, PhaseWindow):
        cohort = _rel(obj, "cohort", "cohort_id", Cohort)
        return owner_ids(cohort) if cohort is not None else {}
    if isinstance(obj, RoleGrant):
        for name, fk, model in (("student", "student_id", Student), ("school_class", "class_id", SchoolClass),
                                ("school", "school_id", School), ("district", "district_id", District),
                                ("city", "city_id", City)):
            target = _rel(obj, name, fk, model)
            if target is not None:
                return owner_ids(target)
        return {}
    from models.archive import ArchiveEntry, SummaryUpload

    if isinstance(obj, ArchiveEntry):
        student = _rel(obj, "student", "student_id", Student)
        return owner_ids(student) if student is not None else {}
    if isinstance(obj, SummaryUpload):
        return _school_chain(_rel(obj, "school", "school_id", School))
    from models.changsha import (
        Committee,
        CommitteeMember,
        Complaint,
        EvidenceFile,
        MaterialReview,
        PeerRating,
        Pledge,
        Quota,
        QuotaAck,
        Rating,
        RatingFinal,
    )

    if isinstance(obj, (EvidenceFile, MaterialReview, Rating, Complaint)):
        student = _rel(obj, "student", "student_id", Student)
        return owner_ids(student) if student is not None else {}
    if isinstance(obj, PeerRating):
        rater = _rel(obj, "rater", "rater_id", Student)
        return owner_ids(rater) if rater is not None else {}
    if isinstance(obj, (Committee, RatingFinal)):
        klass = _rel(obj, "school_class", "class_id", SchoolClass)
        if klass is not None:
            return owner_ids(klass)
        school = _rel(obj, "school", "school_id", School)
        if school is not None:
            return _school_chain(school)
        if isinstance(obj, Committee):
            district = _rel(obj, "district", "district_id", District)
            return owner_ids(district) if district is not None else {}
        return {}
    if isinstance(obj, CommitteeMember):
        committee = _rel(obj, "committee", "committee_id", Committee)
        return owner_ids(committee) if committee is not None else {}
    if isinstance(obj, (Quota, QuotaAck)):
        return _school_chain(_rel(obj, "school", "school_id", School))
    if isinstance(obj, Pledge):
        district = _rel(obj, "district", "district_id", District)
        return owner_ids(district) if district is not None else {}
    from models.datapackage import DataPackage

    if isinstance(obj, DataPackage):
        return _school_chain(_rel(obj, "school", "school_id", School))
    from models.deadlines import DeadlineRun

    if isinstance(obj, DeadlineRun):
        return {"district": obj.district_id}
    if isinstance(obj, User):
        # A user belongs where their grants are; the first grant decides (accounts are per district).
        for grant in obj.grants:
            return owner_ids(grant)
        return {}
    return {}
