"""The scope matrix: every role × every admin view × every endpoint kind, with an object inside the
user's scope and one outside it. Outside answers 404 (or is simply absent from lists, exports,
lookups and bulk actions); inside-but-not-allowed answers 403 with a reason; a refused request
leaves the database exactly as it was.

Expectations here are written by hand from SPEC §1, not read from models/policy.py.
"""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from conftest import table_fingerprint

from models import (
    Activity,
    AuditEvent,
    Category,
    City,
    Cohort,
    Contact,
    District,
    PhaseWindow,
    Record,
    RoleGrant,
    School,
    SchoolClass,
    Student,
    Term,
    User,
    db,
)
from seed import shanghai

# role → (demo username, kind of scope)
USERS = {
    "district_admin": ("admin", "district"),
    "district_clerk": ("district_clerk", "district"),
    "district_auditor": ("district_auditor", "district"),
    "city_clerk": ("city_clerk", "city"),
    "city_auditor": ("city_auditor", "city"),
    "school_leader": ("s1_leader", "school"),
    "school_admin": ("s1_admin", "school"),
    "school_clerk": ("s1_clerk", "school"),
    "school_auditor": ("s1_auditor", "school"),
    "principal": ("s1_principal", "school"),
    "homeroom_teacher": ("s1_g9c1_teacher", "class"),
    "class_evaluator": ("s1_g9c1_evaluator", "class"),
    "student": ("s1g9c1n01", "student"),
    "parent": ("p_s1g9c1n01", "student"),
}
STAFF = set(USERS) - {"student", "parent"}
ENTERING_ROLE = {"school": "school_clerk", "district": "district_clerk", "city": "city_clerk", "student": "student"}

# view endpoint → (who may open it, who may edit an in-scope object through it)
MODEL_VIEWS = {
    "students": (STAFF, {"district_admin", "school_admin"}),
    "preconfirm": ({"school_admin", "school_clerk"}, {"school_admin", "school_clerk"}),
    "schools": (STAFF, {"district_admin", "school_admin"}),
    "classes": (STAFF, {"district_admin", "school_admin"}),
    "contacts": ({"district_admin", "school_admin", "school_leader"}, {"district_admin", "school_admin"}),
    "activities": (STAFF, {"school_clerk"}),
    "terms": (STAFF, {"district_admin"}),
    "windows": (STAFF, {"district_admin"}),
    "categories": (STAFF, set()),
    "users": ({"district_admin"}, {"district_admin"}),
    "grants": ({"district_admin"}, {"district_admin"}),
    "audit": ({"district_admin", "school_admin"}, set()),
}
STUDENT_WRITES = {c["code"] for c in shanghai.CATEGORIES if any(r["level"] == "student" for r in c["entry"])}
CATEGORY_CODES = [c["code"] for c in shanghai.CATEGORIES]


def _one(stmt):
    return db.session.execute(stmt).scalars().first()


@pytest.fixture
def anchors(session):
    """Ids of the objects the matrix uses: n01 (s1, 九年级1班) and its neighbours at each scope level."""
    s1 = _one(sa.select(School).where(School.code == "bs01"))
    s2 = _one(sa.select(School).where(School.code == "bs02"))
    other_school = _one(sa.select(School).where(School.code == "zz01"))
    g9c1 = _one(sa.select(SchoolClass).where(SchoolClass.school_id == s1.id, SchoolClass.grade == 9,
                                             SchoolClass.number == 1))
    g9c2 = _one(sa.select(SchoolClass).where(SchoolClass.school_id == s1.id, SchoolClass.grade == 9,
                                             SchoolClass.number == 2))
    n01 = _one(sa.select(User).where(User.username == "s1g9c1n01")).grants[0].student
    n02 = _one(sa.select(User).where(User.username == "s1g9c1n02")).grants[0].student
    return {"s1": s1, "s2": s2, "other": other_school, "g9c1": g9c1, "g9c2": g9c2, "n01": n01, "n02": n02}


def _student_of(a, kind):
    """The student whose objects are outside a scope of this kind (n01 is always inside)."""
    if kind == "student":
        return a["n02"]
    if kind == "class":
        return a["g9c2"].students[0]
    if kind == "school":
        return a["s2"].classes[0].students[0]
    return a["other"].classes[0].students[0]


def _school_outside(a, kind):
    return a["other"] if kind in ("city", "district") else a["s2"]


def _record(category_code, student):
    """A record of the category about the student (made directly if the demo has none)."""
    cat = _one(sa.select(Category).where(Category.code == category_code))
    rec = _one(sa.select(Record).where(Record.category_id == cat.id, Record.student_id == student.id))
    if rec is None:
        term = _one(sa.select(Term).where(Term.district_id == student.school.district_id, Term.is_current.is_(True)))
        level = cat.entry[0]["level"]
        rec = Record(term=term, category=cat, student=student, school_id=student.school_id, origin=level,
                     state="draft" if level == "student" else "entered", data={})
        db.session.add(rec)
        db.session.commit()
    return rec


def _pair(endpoint, a, kind):
    """(object inside the scope, object outside it) for a view; outside is None where none can exist."""
    out_student = _student_of(a, kind)
    out_school = _school_outside(a, kind)
    if endpoint in ("students", "preconfirm"):
        return a["n01"], out_student
    if endpoint == "schools":
        return a["s1"], out_school
    if endpoint == "classes":
        return a["g9c1"], (a["g9c2"] if kind == "class" else out_student.school_class)
    if endpoint == "contacts":
        return (_one(sa.select(Contact).where(Contact.school_id == a["s1"].id)),
                _one(sa.select(Contact).where(Contact.school_id == out_school.id)))
    if endpoint == "activities":
        return (_one(sa.select(Activity).where(Activity.school_id == a["s1"].id)),
                _one(sa.select(Activity).where(Activity.school_id == out_school.id)))
    if endpoint in ("terms", "windows", "users", "grants", "audit"):
        own_district, other_district = a["s1"].district_id, a["other"].district_id
        if endpoint == "terms":
            return [_one(sa.select(Term).where(Term.district_id == d)) for d in (own_district, other_district)]
        if endpoint == "windows":
            return [_one(sa.select(PhaseWindow).join(Cohort).join(Term).where(Term.district_id == d))
                    for d in (own_district, other_district)]
        if endpoint == "users":
            return [_one(sa.select(User).where(User.username == u)) for u in ("s1_clerk", "zz_clerk")]
        if endpoint == "grants":
            return [_one(sa.select(RoleGrant).join(User).where(User.username == u)) for u in ("s1_clerk", "zz_clerk")]
        if endpoint == "audit":
            return (_one(sa.select(AuditEvent).where(AuditEvent.school_id == a["s1"].id)),
                    _one(sa.select(AuditEvent).where(AuditEvent.school_id == out_school.id)))
    if endpoint == "categories":
        return _one(sa.select(Category)), None
    code = endpoint[len("cat_"):]
    grades = next(c["grades"] for c in shanghai.CATEGORIES if c["code"] == code)
    inside_student = a["n01"]
    if 9 not in grades:
        # A grades 6–8 category: n01's class is grade 9, so a class or student scope holds none of its
        # records; 七年级(1)班 is then the outside. School and wider scopes use 七年级(1)班 as the inside.
        g7c1 = next(c for c in a["s1"].classes if c.grade == 7 and c.number == 1)
        if kind in ("class", "student"):
            return None, _record(code, g7c1.students[0])
        out_student = next(c for c in out_student.school.classes if c.grade == 7).students[0]
        inside_student = g7c1.students[0]
    return _record(code, inside_student), _record(code, out_student)


def _id_shown(html: str, ident) -> bool:
    return re.search(rf"[?&;]id={ident}(&|\"|')", html) is not None or f'value="{ident}"' in html


def _search(endpoint, obj) -> str:
    """A search narrowing a long list to the object (lists page at 100 rows)."""
    if endpoint.startswith("cat_"):
        return f"&search={obj.student.xjh}"
    term = {"students": "xjh", "preconfirm": "xjh", "schools": "code", "users": "username"}.get(endpoint)
    if term:
        return f"&search={getattr(obj, term)}"
    if endpoint == "grants":
        return f"&search={obj.user.username}"
    if endpoint == "audit":
        return f"&search={obj.object_id}"
    return ""


def _pk(obj):
    return sa.inspect(obj).identity[0]


def _expect_unchanged(client, method, url, data, status, before=None):
    before = before or table_fingerprint()
    resp = client.post(url, data=data) if method == "POST" else client.get(url)
    assert resp.status_code == status, (url, resp.status_code, resp.get_data(as_text=True)[:400])
    db.session.expire_all()
    assert table_fingerprint() == before, f"{method} {url} changed the database"
    return resp


def _may_edit_record(role, record, username) -> bool:
    if ENTERING_ROLE.get(record.origin) != role:
        return False
    if role == "student":
        return record.student.id == db.session.execute(
            sa.select(RoleGrant.student_id).join(User).where(User.username == username)).scalar()
    return True


VIEWS = list(MODEL_VIEWS) + [f"cat_{c}" for c in CATEGORY_CODES]


def _base_url(endpoint):
    if endpoint.startswith("cat_"):
        return f"/admin/records/{endpoint[4:]}"
    return f"/admin/{endpoint}"


@pytest.mark.parametrize("endpoint", VIEWS)
@pytest.mark.parametrize("role", list(USERS))
def test_scope_matrix(client, login_as, anchors, at, role, endpoint):
    at("2022-03-01 09:00")  # preparation and entry are both open
    username, kind = USERS[role]
    inside, outside = _pair(endpoint, anchors, kind)
    assert inside is not None or outside is not None
    base = _base_url(endpoint)
    token = login_as(username)

    if endpoint.startswith("cat_"):
        code = endpoint[4:]
        own_grade = anchors["n01"].school_class.grade
        grades = next(c["grades"] for c in shanghai.CATEGORIES if c["code"] == code)
        accessible = role in STAFF or (role == "student" and code in STUDENT_WRITES and own_grade in grades)
        editable = _may_edit_record(role, inside, username) if accessible and inside is not None else False
    else:
        who, editors = MODEL_VIEWS[endpoint]
        accessible, editable = role in who, role in editors

    if inside is None and accessible:
        # Nothing of this category can be inside the scope: the list shows none of the outside rows.
        html = client.get(f"{base}/?page_size=100").get_data(as_text=True)
        assert not _id_shown(html, _pk(outside))
        assert client.get(f"{base}/details/?id={_pk(outside)}").status_code == 404
        _expect_unchanged(client, "POST", f"{base}/delete/", {"id": _pk(outside), "csrf_token": token}, 404)
        return
    in_id = _pk(inside) if inside is not None else _pk(outside)
    out_id = _pk(outside) if outside is not None else None

    if not accessible:
        for url in (f"{base}/", f"{base}/details/?id={in_id}", f"{base}/edit/?id={in_id}", f"{base}/export/csv/"):
            resp = client.get(url)
            assert resp.status_code == 403, (url, resp.status_code)
        _expect_unchanged(client, "POST", f"{base}/delete/", {"id": in_id, "csrf_token": token}, 403)
        return

    # list and count: the inside object is listed, the outside one is not
    html = client.get(f"{base}/?page_size=100{_search(endpoint, inside)}").get_data(as_text=True)
    if role != "student" or endpoint.startswith("cat_"):
        assert _id_shown(html, in_id), f"{endpoint}: {role} does not see the object in their scope"
    if out_id is not None:
        assert not _id_shown(html, out_id), f"{endpoint}: {role} sees an object outside their scope"

    # details
    assert client.get(f"{base}/details/?id={in_id}").status_code in (200, 302)
    if out_id is not None:
        assert client.get(f"{base}/details/?id={out_id}").status_code == 404

    # edit form
    resp = client.get(f"{base}/edit/?id={in_id}")
    assert resp.status_code == (200 if editable else 403), (endpoint, role, resp.status_code)
    if not editable:
        assert "reason" in resp.get_data(as_text=True)
    if out_id is not None:
        assert client.get(f"{base}/edit/?id={out_id}").status_code == 404
        _expect_unchanged(client, "POST", f"{base}/edit/?id={out_id}", {"csrf_token": token}, 404)
        _expect_unchanged(client, "POST", f"{base}/delete/", {"id": out_id, "csrf_token": token}, 404)
        # bulk action with an id of another scope: nothing happens to it
        _expect_unchanged(client, "POST", f"{base}/action/",
                          {"action": "delete", "rowid": [out_id], "csrf_token": token}, 302)
        # inline edit
        _expect_unchanged(client, "POST", f"{base}/ajax/update/",
                          {"list_form_pk": out_id, "notes": "x", "organiser": "x", "csrf_token": token},
                          404 if endpoint in ("contacts", "activities") else 404)
    if not editable:
        _expect_unchanged(client, "POST", f"{base}/edit/?id={in_id}", {"csrf_token": token}, 403)
        _expect_unchanged(client, "POST", f"{base}/delete/", {"id": in_id, "csrf_token": token}, 403)

    # export: scoped like the list
    resp = client.get(f"{base}/export/csv/")
    if resp.status_code == 200 and out_id is not None and endpoint.startswith("cat_"):
        body = resp.get_data(as_text=True)
        assert outside.student.xjh not in body
        assert inside.student.xjh in body


def test_student_picker_lookup_offers_only_own_school(client, login_as, anchors, at):
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    resp = client.get("/admin/records/sports/ajax/lookup/?name=student&query=&limit=1000")
    assert resp.status_code == 200
    ids = {row[0] for row in resp.get_json()}
    own = set(db.session.execute(sa.select(Student.id).where(Student.school_id == anchors["s1"].id,
                                                             Student.status == "enrolled")).scalars())
    assert ids and ids <= own
    other = db.session.execute(sa.select(Student.id).where(Student.school_id != anchors["s1"].id)).scalars().all()
    assert not ids & set(other)


def test_relationship_dropdown_offers_only_scope(client, login_as, anchors):
    login_as("s1_admin")
    html = client.get("/admin/classes/new/").get_data(as_text=True)
    assert anchors["s1"].name in html
    assert anchors["s2"].name not in html


def test_anonymous_is_sent_to_login(client, anchors):
    for url in ("/admin/", "/admin/students/", "/admin/records/sports/"):
        resp = client.get(url)
        assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_unused_models_are_reachable(session):
    # Guard the matrix's own fixture: the foreign city exists, so "outside" is never vacuous.
    assert db.session.execute(sa.select(sa.func.count(City.id))).scalar() >= 2
    assert db.session.execute(sa.select(sa.func.count(District.id))).scalar() >= 2


def _menu_links(html: str) -> set[str]:
    return set(re.findall(r'href="(/admin/[^"?]*)"', html))


@pytest.mark.parametrize("role", list(USERS))
def test_menu_holds_only_what_the_role_may_use(client, login_as, anchors, at, role):
    at("2022-03-01 09:00")
    username, _ = USERS[role]
    login_as(username)
    links = _menu_links(client.get("/admin/").get_data(as_text=True))
    for endpoint in VIEWS:
        url = _base_url(endpoint) + "/"
        if endpoint.startswith("cat_"):
            code = endpoint[4:]
            grades = next(c["grades"] for c in shanghai.CATEGORIES if c["code"] == code)
            expected = role in STAFF or (role == "student" and code in STUDENT_WRITES and 9 in grades)
        else:
            expected = role in MODEL_VIEWS[endpoint][0]
        assert (url in links) == expected, f"{role}: menu {'lacks' if expected else 'shows'} {url}"


@pytest.mark.parametrize("username,scope", [("s1_clerk", "school"), ("admin", "district"), ("s1_g9c1_teacher", "class")])
def test_list_count_is_the_scoped_count(client, login_as, anchors, at, username, scope):
    at("2022-03-01 09:00")
    login_as(username)
    cat = _one(sa.select(Category).where(Category.code == "basic_course"))
    stmt = sa.select(sa.func.count(Record.id)).join(Student, Record.student_id == Student.id).where(
        Record.category_id == cat.id)
    if scope == "school":
        stmt = stmt.where(Student.school_id == anchors["s1"].id)
    elif scope == "district":
        stmt = stmt.where(Student.school_id.in_(sa.select(School.id).where(
            School.district_id == anchors["s1"].district_id)))
    else:
        stmt = stmt.where(Student.class_id == anchors["g9c1"].id)
    expected = db.session.execute(stmt).scalar()
    html = client.get("/admin/records/basic_course/").get_data(as_text=True)
    shown = re.search(r"(?:列表|List)\s*\((\d+)\)", html)
    assert shown and int(shown.group(1)) == expected > 0
