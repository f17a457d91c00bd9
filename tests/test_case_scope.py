"""Who sees which case, in the queue, on its page and through its actions: each role the cases of its
level inside its scope (SPEC §1, §6), written out by hand; everything else answers 404 and changes
nothing."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from conftest import table_fingerprint

from models import Case, Category, Record, User, db, policy
from settings import parse_instant

ROLES = {
    "district_admin": "admin", "district_clerk": "district_clerk", "district_auditor": "district_auditor",
    "city_clerk": "city_clerk", "city_auditor": "city_auditor", "school_leader": "s1_leader",
    "school_admin": "s1_admin", "school_clerk": "s1_clerk", "school_auditor": "s1_auditor",
    "principal": "s1_principal", "homeroom_teacher": "s1_g9c1_teacher", "class_evaluator": "s1_g9c1_evaluator",
    "student": "s1g9c1n01", "parent": "p_s1g9c1n01",
}
# case name → (student username, flow, handler level, corrector level)
CASES = {
    "s1_flow2": ("s1g9c1n01", 2, "school", "school"),
    "s1_flow2_student": ("s1g9c1n01", 2, "school", "student"),
    "s1_flow1": ("s1g9c1n02", 1, "district", "school"),
    "s1_flow3": ("s1g9c1n02", 3, "district", "district"),
    "s1_flow4": ("s1g9c1n02", 4, "city", "city"),
    "s2_flow2": ("s2g9c1n01", 2, "school", "school"),
    "s2_flow3": ("s2g9c1n01", 3, "district", "district"),
    "zz_flow3": (None, 3, "district", "district"),  # another city's district
    "zz_flow4": (None, 4, "city", "city"),
}
ALL = set(CASES)
S1 = {"s1_flow2", "s1_flow2_student", "s1_flow1", "s1_flow3", "s1_flow4"}
DISTRICT = S1 | {"s2_flow2", "s2_flow3"}
# role → the cases it sees (hand-written from SPEC §6's routing table)
SEES = {
    "district_admin": DISTRICT,
    "district_clerk": {"s1_flow3", "s2_flow3"},
    "district_auditor": {"s1_flow1", "s1_flow3", "s2_flow3"},
    "city_clerk": {"s1_flow4"},
    "city_auditor": {"s1_flow4"},
    "school_leader": S1, "school_admin": S1, "principal": S1,
    "school_clerk": {"s1_flow2", "s1_flow1"},
    "school_auditor": {"s1_flow2", "s1_flow2_student"},
    "homeroom_teacher": set(), "class_evaluator": set(),
    "student": {"s1_flow2_student"},  # their own entry to correct (none filed by them here)
    "parent": {"s1_flow2", "s1_flow2_student"},  # their child's
}
QUEUE = {r for r in ROLES if r not in ("homeroom_teacher", "class_evaluator", "student", "parent")}


@pytest.fixture
def cases(session):
    made = {}
    for name, (username, flow, handler, corrector) in CASES.items():
        if username is None:
            student = db.session.execute(sa.text("SELECT id FROM students WHERE xjh LIKE 'ZZ9%' LIMIT 1")).scalar()
            from models import Student

            student = db.session.get(Student, student)
        else:
            student = db.session.execute(sa.select(User).where(User.username == username)).scalar_one() \
                .grants[0].student
        cat = db.session.execute(sa.select(Category).where(Category.code == "honour_title")).scalar_one()
        origin = {"school": "school", "student": "student", "district": "district", "city": "city"}[corrector]
        rec = Record(term=policy.current_term(student.school.district_id), category=cat, student=student,
                     school_id=student.school_id, origin=origin, state="confirmed", data={})
        case = Case(term=rec.term, flow=flow, kind="error", student=student, record=rec, category=cat,
                    school_id=student.school_id, class_id=student.class_id, district_id=student.school.district_id,
                    handler_level=handler, corrector_level=corrector, description=f"案件{name}", state="accepted",
                    handler_note="", corrector_note="")
        db.session.add_all([rec, case])
        db.session.commit()
        made[name] = case.id
    return made


@pytest.mark.parametrize("role", list(ROLES))
def test_case_scope(client, login_as, at, cases, role):
    at("2022-04-01 09:00")
    token = login_as(ROLES[role])
    expected = SEES[role]
    queue = client.get("/admin/cases/?page_size=100")
    if role in QUEUE:
        html = queue.get_data(as_text=True)
        shown = {name for name, ident in cases.items() if f'/cases/{ident}"' in html}
        assert shown == expected, f"{role}: queue shows {sorted(shown)}"
        export = client.get("/admin/cases/export/csv/").get_data(as_text=True)
        assert {n for n, i in cases.items() if f"\n{i}," in export} == expected
    else:
        assert queue.status_code == 403
    for name, ident in cases.items():
        status = client.get(f"/cases/{ident}").status_code
        assert status == (200 if name in expected else 404), (role, name, status)
    for name in ALL - expected:
        before = table_fingerprint()
        for action in ("accept", "dismiss", "correct", "approve", "send_back"):
            resp = client.post(f"/cases/{cases[name]}/{action}", data={"csrf_token": token, "reason": "x"})
            assert resp.status_code == 404, (role, name, action, resp.status_code)
        if role in QUEUE:  # a bulk action with ids outside the scope touches nothing
            client.post("/admin/cases/action/", data={"csrf_token": token, "action": "accept",
                                                      "rowid": [cases[name]]})
        db.session.expire_all()
        assert table_fingerprint() == before, f"{role} changed case {name}"


def test_bulk_accept_and_dismiss_with_a_reason(client, login_as, at, cases):
    at("2022-04-01 09:00")
    for name in ("s1_flow2", "s1_flow2_student"):
        case = db.session.get(Case, cases[name])
        case.state = "open"
    db.session.commit()
    token = login_as("s1_auditor")
    ids = [cases["s1_flow2"], cases["s1_flow2_student"], cases["s2_flow2"]]
    resp = client.post("/admin/cases/action/", data={"csrf_token": token, "action": "dismiss", "rowid": ids})
    assert resp.status_code == 302 and "/admin/cases/dismiss/" in resp.headers["Location"]
    form = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "案件s1_flow2" in form and "案件s2_flow2" not in form  # another school's id is dropped
    kept = ",".join(str(i) for i in ids)
    client.post("/admin/cases/dismiss/", data={"csrf_token": token, "ids": kept, "reason": ""})
    db.session.expire_all()
    assert db.session.get(Case, cases["s1_flow2"]).state == "open"  # no reason, nothing dismissed
    client.post("/admin/cases/dismiss/", data={"csrf_token": token, "ids": str(cases["s1_flow2"]),
                                               "reason": "与事实相符"})
    client.post("/admin/cases/action/", data={"csrf_token": token, "action": "accept", "rowid": ids})
    db.session.expire_all()
    assert db.session.get(Case, cases["s1_flow2"]).state == "dismissed"
    assert db.session.get(Case, cases["s1_flow2"]).handler_note == "与事实相符"
    assert db.session.get(Case, cases["s1_flow2_student"]).state == "accepted"
    assert db.session.get(Case, cases["s2_flow2"]).state == "accepted"  # untouched (it was accepted before)
    assert db.session.get(Case, cases["s2_flow2"]).version_id == 1


def test_record_details_page_shows_its_history(client, login_as, at, session):
    at("2022-03-01 09:00")
    token = login_as("s1_clerk")
    student = db.session.execute(sa.select(User).where(User.username == "s1g9c1n01")).scalar_one().grants[0].student
    resp = client.post("/admin/records/honour_title/new/", data={
        "csrf_token": token, "student": student.id, "title": "历史测试称号", "level": "校级", "issuer": "本校",
        "awarded_on": "2022-01-01"})
    assert resp.status_code == 302
    rec = db.session.execute(sa.select(Record).where(Record.student_id == student.id)
                             .order_by(Record.id.desc())).scalars().first()
    html = client.get(f"/admin/records/honour_title/details/?id={rec.id}").get_data(as_text=True)
    assert "处理记录" in html and "历史测试称号" in html and "录入" in html and "127.0.0.1" in html


def test_queue_presets_filter_by_state_and_age(client, login_as, at, cases):
    at("2022-04-01 09:00")
    case = db.session.get(Case, cases["s1_flow2"])
    case.state, case.created_at = "open", parse_instant("2022-04-01 09:00")
    db.session.commit()
    login_as("s1_auditor")
    html = client.get("/admin/cases/").get_data(as_text=True)
    assert "flt0_4=open" in html and "flt0_7=1" in html
    open_only = client.get("/admin/cases/?flt0_4=open").get_data(as_text=True)
    assert f'/cases/{cases["s1_flow2"]}"' in open_only and f'/cases/{cases["s1_flow2_student"]}"' not in open_only
    at("2022-04-09 09:00")  # filed at 04-01: more than a week old
    old = client.get("/admin/cases/?flt0_6=7").get_data(as_text=True)
    assert f'/cases/{cases["s1_flow2"]}"' in old
    at("2022-04-05 09:00")
    assert f'/cases/{cases["s1_flow2"]}"' not in client.get("/admin/cases/?flt0_6=7").get_data(as_text=True)
