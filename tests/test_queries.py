"""No N+1: the statements one list page runs do not grow with the rows it shows."""
from __future__ import annotations

import contextlib

import pytest
import sqlalchemy as sa

from models import Activity, Category, Record, School, Student, Term, db


@contextlib.contextmanager
def statements():
    seen = []

    def listener(conn, cursor, statement, params, context, executemany):
        seen.append(statement)

    engines = {db.engine}
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        yield seen
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", listener)


def _add_rows(code: str, n: int) -> None:
    cat = db.session.execute(sa.select(Category).where(Category.code == code)).scalar_one()
    school = db.session.execute(sa.select(School).where(School.code == "bs01")).scalar_one()
    term = db.session.execute(sa.select(Term).where(Term.district_id == school.district_id,
                                                    Term.is_current.is_(True))).scalar_one()
    students = db.session.execute(sa.select(Student).where(Student.school_id == school.id)).scalars().all()
    acts = db.session.execute(sa.select(Activity.id).where(Activity.school_id == school.id)).scalars().all()
    rows = []
    for i in range(n):
        data = {"activity_id": acts[i % len(acts)], "role": "参与者", "hours": 1} if code == "moral_activity" else \
            {"name": f"比赛{i}", "award": "一等奖", "held_on": "2022-01-01"}
        rows.append({"term_id": term.id, "category_id": cat.id, "student_id": students[i % len(students)].id,
                     "school_id": school.id, "origin": cat.entry[0]["level"],
                     "state": "draft" if cat.entry[0]["level"] == "student" else "entered", "data": data,
                     "version_id": 1})
    db.session.execute(sa.insert(Record), rows)
    db.session.commit()


@pytest.mark.parametrize("code", ["sports", "moral_activity"])
def test_list_page_statement_count_is_constant(client, login_as, at, code):
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    url = f"/admin/records/{code}/?page_size=100"
    client.get(url)  # warm caches
    db.session.commit()  # the test shares one session with its requests: start both measurements alike
    with statements() as few:
        assert client.get(url).status_code == 200
    _add_rows(code, 90)  # commits too
    with statements() as many:
        html = client.get(url).get_data(as_text=True)
    assert html.count('class="col-klass"') > 90
    assert len(many) == len(few), (len(few), len(many))


def _listed(html: str) -> int:
    import re

    return int(re.search(r"(?:列表|List)\s*\((\d+)\)", html).group(1))


def test_district_wide_list_reuses_its_count(client, login_as, at):
    """A district-wide list does not count the district's records on every request: its count is reused
    for a while (views/counts.py); a school's list counts on each request."""
    at("2022-03-01 09:00")
    login_as("admin")
    first = _listed(client.get("/admin/records/sports/").get_data(as_text=True))
    with statements() as seen:
        again = _listed(client.get("/admin/records/sports/").get_data(as_text=True))
    assert again == first and not [s for s in seen if "count(" in s.lower() and "FROM records" in s]
    _add_rows("sports", 3)
    assert _listed(client.get("/admin/records/sports/").get_data(as_text=True)) == first  # reused
    login_as("s1_clerk")
    with statements() as seen:
        school = _listed(client.get("/admin/records/sports/").get_data(as_text=True))
    assert [s for s in seen if "count(" in s.lower() and "records" in s]
    from views import counts

    counts._counts.clear()
    login_as("admin")
    assert _listed(client.get("/admin/records/sports/").get_data(as_text=True)) == first + 3 > school
