"""A synthetic district (or city) at scale: N students over schools and classes shaped like the demo,
about 30 records per student across the Shanghai categories.

Rows go in through the driver in bulk: ``executemany`` on SQLite, ``COPY`` on PostgreSQL, never
ORM objects one by one; those bulk rows write no audit events (the profile, district and term rows
saved through the ORM are recorded as created by 系统).
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Callable

import sqlalchemy as sa

from models import Case, Category, City, District, Profile, Record, RoleGrant, School, SchoolClass, Student, User, db
from models.clock import now as clock_now
from seed import shanghai
from seed.demo import PASSWORD
from seed.loader import create_term, sync_profile

STUDENTS_PER_DISTRICT = 50_000
CLASSES_PER_GRADE = 10
CLASS_SIZE = 30
SUBJECTS = ["语文", "数学", "英语", "道德与法治", "历史", "地理", "物理", "化学", "生命科学", "信息科技", "音乐", "美术"]
RECORD_COLUMNS = ("id", "term_id", "category_id", "student_id", "school_id", "origin", "entered_by_id", "state", "data",
                  "version_id", "created_at", "updated_at")
CASE_COLUMNS = ("term_id", "flow", "kind", "student_id", "record_id", "category_id", "school_id", "class_id",
                "district_id", "handler_level", "corrector_level", "description", "state", "handler_note",
                "corrector_note", "due_at", "version_id", "created_at", "updated_at")
STUDENTS_PER_CASE = 5  # 10,000 appeal and problem cases in a district of 50,000 students
# Where a term stands after publication: most records confirmed, some rejected and corrected or not.
CLERK_STATES = (("confirmed", 85), ("entered", 6), ("rejected", 3), ("corrected", 4), ("problem", 2))
STUDENT_STATES = (("final", 80), ("draft", 10), ("submitted", 5), ("reviewed", 5))
CASE_STATES = (("open", 40), ("accepted", 20), ("corrected", 15), ("closed", 15), ("dismissed", 10))
ROUTE = {"school": (2, "school", "school"), "student": (2, "school", "student"), "district": (3, "district", "district")}


def _spread(table) -> list[str]:
    """A weighted table as 100 slots: one random index picks a value (random.choices is slower per call)."""
    slots = [value for value, weight in table for _ in range(weight)]
    assert len(slots) == 100
    return slots


_SLOTS = {id(t): _spread(t) for t in (CLERK_STATES, STUDENT_STATES, CASE_STATES)}


def _weighted(rng: random.Random, table) -> str:
    return _SLOTS[id(table)][int(rng.random() * 100)]


_JSON: dict = {}


def _dumps(data: dict) -> str:
    """JSON text of a record's data; the few distinct values are encoded once each."""
    key = tuple(data.items())
    text = _JSON.get(key)
    if text is None:
        text = _JSON[key] = json.dumps(data, ensure_ascii=False)
    return text


def _records_for(rng: random.Random, cats: dict, grade: int) -> list[tuple[str, str, str]]:
    """(category code, origin, data JSON) for one student: about 30, within every limit."""
    out = [("basic_course", "school", _dumps({"subject": s, "result": rng.choice(shanghai.GRADE_LEVELS)})) for s in SUBJECTS]
    for _ in range(3):
        out.append(("extended_course", "school", _dumps(
            {"course": rng.choice(["书法", "围棋", "创意编程", "英语戏剧"]), "hours": rng.randint(8, 32),
             "result": rng.choice(shanghai.GRADE_LEVELS)})))
    for _ in range(2):
        out.append(("inquiry_course", "school", _dumps(
            {"course": "城市探究", "topic": "社区调查", "result": rng.choice(shanghai.GRADE_LEVELS)})))
    for code in ("sports", "arts_activity", "science_activity", "health_activity", "defence_award"):
        for _ in range(2 if code != "defence_award" else 1):
            if code == "health_activity":
                data = {"name": "心理健康讲座", "content": None, "held_on": "2022-01-10"}
            else:
                data = {"name": "校运动会", "award": rng.choice(shanghai.AWARDS), "held_on": "2022-01-10"}
            out.append((code, "school", _dumps(data)))
    out.append(("arts_troupe", "school", _dumps({"troupe": "学生合唱团", "role": None})))
    out.append(("eaglet_badge", "school", _dumps({"badge": "阅读章", "awarded_on": "2021-12-01"})))
    subjects = ["艺术", "地理"] if grade == 9 else ["地理"]
    for s in subjects:
        out.append(("academic_exam", "school" if s == "艺术" else "district",
                    _dumps({"subject": s, "result": "合格"})))
    if grade == 9:
        out.append(("self_intro", "student", _dumps({"content": "我热爱集体，学习认真。"})))
    else:
        out.append(("typical_case", "student", _dumps({"title": "我当志愿者", "content": "……"})))
    return [(c, o, d) for c, o, d in out if c in cats and grade in cats[c][1]]


def _bulk(conn, table: sa.Table, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert plain tuples through the driver: COPY on PostgreSQL, executemany elsewhere."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})", rows)


def _seed_cases(conn, rng: random.Random, term, district_id: int, school_id: int, student_ids: list[int],
                class_ids: list[int], rows: list[tuple], stamp) -> int:
    """Appeals on one published record of every fifth student (problem data for problem records)."""
    chosen = {sid: cid for sid, cid in list(zip(student_ids, class_ids, strict=True))[::STUDENTS_PER_CASE]}
    picked: dict[int, list] = {}
    for rid, _term, cat, sid, _school, origin, _by, state, *_ in rows:
        if sid in chosen and state in ("confirmed", "corrected", "final", "problem"):
            picked.setdefault(sid, []).append((rid, cat, origin, state))
    due = term.cohorts[0].window("issue_handling").ends_at.replace(tzinfo=None)
    if conn.dialect.name == "sqlite":
        due = due.strftime("%Y-%m-%d %H:%M:%S.%f")
    cases = []
    for sid, options in picked.items():
        rid, cat, origin, state = rng.choice(options)
        flow, handler, corrector = (1, "district", "school") if state == "problem" else ROUTE[origin]
        cases.append((term.id, flow, "problem" if flow == 1 else rng.choice(("error", "extra")), sid, rid, cat,
                      school_id, chosen[sid], district_id, handler, corrector, "成绩录入有误，请核实",
                      _weighted(rng, CASE_STATES), "", "", due, 1, stamp, stamp))
    _bulk(conn, Case.__table__, CASE_COLUMNS, cases)
    return len(cases)


class _LoadWithoutSecondaryIndexes:
    """On PostgreSQL, COPY into ``records`` and ``cases`` runs without their secondary indexes and foreign
    keys, which are rebuilt (and validated) once at the end: one sort per index instead of an index update
    and five key look-ups per row."""

    TABLES = (Record.__table__, Case.__table__)

    def __init__(self, conn):
        self.conn = conn
        self.active = conn.dialect.name == "postgresql"

    def __enter__(self):
        if self.active:
            for table in self.TABLES:
                for fk in table.foreign_key_constraints:
                    self.conn.exec_driver_sql(f'ALTER TABLE {table.name} DROP CONSTRAINT IF EXISTS "{fk.name}"')
                for index in table.indexes:
                    self.conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{index.name}"')
        return self

    def __exit__(self, *exc):
        if self.active and exc[0] is None:
            for table in self.TABLES:
                for index in table.indexes:
                    index.create(self.conn)
                for fk in table.foreign_key_constraints:
                    self.conn.execute(sa.schema.AddConstraint(fk))
                self.conn.exec_driver_sql(f"ANALYZE {table.name}")
        return False


def seed_scale(students: int, seed: int = 1, progress: Callable[[int], None] | None = None) -> dict:
    """Seed ``students`` students (one district per 50,000); returns counts and records per second."""
    started = time.perf_counter()
    with _LoadWithoutSecondaryIndexes(db.session.connection()):
        counts = _seed_scale(students, seed, progress)
    db.session.flush()
    elapsed = time.perf_counter() - started  # index rebuilds included
    return {**counts, "seconds": elapsed, "records_per_second": counts["records"] / elapsed if elapsed else 0.0}


def _seed_scale(students: int, seed: int, progress: Callable[[int], None] | None) -> dict:
    rng = random.Random(seed)
    profile: Profile = sync_profile(shanghai)
    cats = {c.code: (c.id, set(c.grades)) for c in db.session.execute(
        sa.select(Category).where(Category.profile_id == profile.id)).scalars()}
    password_hash = User(username="x", display_name="x", password_hash="")
    password_hash.set_password(PASSWORD)
    password_hash = password_hash.password_hash

    city = db.session.execute(sa.select(City).where(City.code == "scale")).scalar_one_or_none()
    if city is None:
        city = City(code="scale", name="规模测试市")
        db.session.add(city)
    n_districts = max(1, -(-students // STUDENTS_PER_DISTRICT))
    per_school = 4 * CLASSES_PER_GRADE * CLASS_SIZE
    remaining, school_no, student_no, record_count, case_count = students, 0, 0, 0, 0
    # Record ids are given here, so cases can point at records without reading them back.
    next_id = db.session.execute(sa.select(sa.func.coalesce(sa.func.max(Record.id), 0))).scalar_one()
    conn = db.session.connection()
    stamp = clock_now().replace(tzinfo=None)
    if conn.dialect.name == "sqlite":
        stamp = stamp.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's own SQLite format, no per-row adapter
    for d in range(n_districts):
        district = District(code=f"scale{d + 1:02d}", name=f"规模测试区{d + 1}", city=city, settings={})
        db.session.add(district)
        db.session.flush()
        term = create_term(district, profile, 2021, 1, shanghai.SCHEDULE_2021_1, is_current=True)
        district_students = min(remaining, STUDENTS_PER_DISTRICT)
        remaining -= district_students
        clerk_ids = {}
        users = [{"username": f"scale{d + 1:02d}_district_clerk", "display_name": "区级录入员",
                  "password_hash": password_hash, "active": True}]
        district_clerk = db.session.execute(sa.insert(User).returning(User.id), users).scalar_one()
        db.session.execute(sa.insert(RoleGrant), [{"user_id": district_clerk, "role": "district_clerk",
                                                    "district_id": district.id}])
        made = 0
        while made < district_students:
            school_no += 1
            size = min(per_school, district_students - made)
            school_id = db.session.execute(sa.insert(School).returning(School.id), [{
                "district_id": district.id, "code": f"sc{school_no:05d}", "name": f"规模测试第{school_no}中学",
                "homeroom_audit": True, "version_id": 1}]).scalar_one()
            uname = f"sc{school_no:05d}_clerk"
            clerk_ids[school_id] = db.session.execute(sa.insert(User).returning(User.id), [{
                "username": uname, "display_name": "校级录入员", "password_hash": password_hash,
                "active": True}]).scalar_one()
            db.session.execute(sa.insert(RoleGrant), [{"user_id": clerk_ids[school_id], "role": "school_clerk",
                                                        "school_id": school_id}])
            classes = [(g, c) for g in (6, 7, 8, 9) for c in range(1, CLASSES_PER_GRADE + 1)]
            class_ids = db.session.execute(
                sa.insert(SchoolClass).returning(SchoolClass.id, sort_by_parameter_order=True),
                [{"school_id": school_id, "grade": g, "number": c} for g, c in classes]).scalars().all()
            student_rows, grades = [], []
            for i in range(size):
                (grade, _), class_id = classes[i % len(classes)], class_ids[i % len(classes)]
                student_no += 1
                student_rows.append({"xjh": f"S{student_no:017d}", "name": f"学生{student_no}",
                                     "gender": "男" if i % 2 else "女", "class_id": class_id, "school_id": school_id,
                                     "status": "enrolled", "version_id": 1,
                                     "created_at": clock_now(), "updated_at": clock_now()})
                grades.append(grade)
            student_ids = db.session.execute(
                sa.insert(Student).returning(Student.id, sort_by_parameter_order=True), student_rows).scalars().all()
            # the school's auditor, for the benchmark's appeal queue
            auditor = db.session.execute(sa.insert(User).returning(User.id), [{
                "username": f"sc{school_no:05d}_auditor", "display_name": "校级审核员",
                "password_hash": password_hash, "active": True}]).scalar_one()
            db.session.execute(sa.insert(RoleGrant), [{"user_id": auditor, "role": "school_auditor",
                                                        "school_id": school_id}])
            # one account for the school's first student, for the benchmark's student home page
            stu_user = db.session.execute(sa.insert(User).returning(User.id), [{
                "username": f"sc{school_no:05d}_student", "display_name": student_rows[0]["name"],
                "password_hash": password_hash, "active": True}]).scalar_one()
            db.session.execute(sa.insert(RoleGrant), [{"user_id": stu_user, "role": "student",
                                                        "student_id": student_ids[0]}])
            rows = []
            term_id, school_clerk = term.id, clerk_ids[school_id]
            random_state = rng.random
            clerk_slots, student_slots = _SLOTS[id(CLERK_STATES)], _SLOTS[id(STUDENT_STATES)]
            for sid, grade in zip(student_ids, grades, strict=True):
                for code, origin, data in _records_for(rng, cats, grade):
                    if origin == "student":
                        entered_by, state = None, student_slots[int(random_state() * 100)]
                    else:
                        entered_by = school_clerk if origin == "school" else district_clerk
                        state = clerk_slots[int(random_state() * 100)]
                    next_id += 1
                    rows.append((next_id, term_id, cats[code][0], sid, school_id, origin, entered_by, state, data, 1,
                                 stamp, stamp))
            _bulk(conn, Record.__table__, RECORD_COLUMNS, rows)
            record_count += len(rows)
            case_count += _seed_cases(conn, rng, term, district.id, school_id, student_ids,
                                      [r["class_id"] for r in student_rows], rows, stamp)
            made += size
            if progress:
                progress(size)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('records', 'id'), {max(next_id, 1)})")
    return {"students": students, "records": record_count, "cases": case_count, "districts": n_districts,
            "schools": school_no}
