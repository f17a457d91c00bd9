"""Limits and grade rules (SPEC §3), enforced through the workflow with messages naming the limit."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from conftest import csrf_from, table_fingerprint

from models import Category, Record, Student, Term, User, db, workflow
from models.fields import FieldErrors
from models.policy import Denied


def _user(name):
    return db.session.execute(sa.select(User).where(User.username == name)).scalar_one()


def _cat(code):
    return db.session.execute(sa.select(Category).where(Category.code == code)).scalar_one()


def _fresh_student(grade, school_code="bs01"):
    """A participating student of the grade with no records of the categories under test."""
    from models import School, SchoolClass

    stmt = (sa.select(Student).join(SchoolClass).join(School)
            .where(School.code == school_code, SchoolClass.grade == grade, Student.status == "enrolled"))
    return db.session.execute(stmt).scalars().first()


def _clear(student, code):
    db.session.execute(sa.delete(Record).where(Record.student_id == student.id,
                                               Record.category_id == _cat(code).id))
    db.session.commit()


ACTIVITY = {"name": "定向越野", "award": "一等奖", "held_on": "2022-01-10"}


def test_per_term_limit_two(session, at):
    at("2022-03-01 09:00")
    clerk, student = _user("s1_clerk"), _fresh_student(8)
    _clear(student, "sports")
    for _ in range(2):
        workflow.create_record(clerk, _cat("sports"), student, dict(ACTIVITY))
    with pytest.raises(FieldErrors) as err:
        workflow.create_record(clerk, _cat("sports"), student, dict(ACTIVITY))
    assert "每学期最多录入2条" in err.value.message and student.name in err.value.message
    assert db.session.execute(sa.select(sa.func.count(Record.id)).where(
        Record.student_id == student.id, Record.category_id == _cat("sports").id)).scalar() == 2


def test_one_eaglet_badge_per_school_year_across_terms(session, at):
    at("2022-03-01 09:00")
    clerk, student = _user("s1_clerk"), _fresh_student(6)
    _clear(student, "eaglet_badge")
    term = db.session.execute(sa.select(Term).where(Term.is_current.is_(True),
                                                    Term.district_id == student.school.district_id)).scalar_one()
    # A badge from the other term of the same school year counts against the limit.
    spring = Term(district_id=term.district_id, profile_id=term.profile_id, school_year=2021, semester=2)
    db.session.add(spring)
    db.session.flush()
    db.session.add(Record(term=spring, category=_cat("eaglet_badge"), student=student, school_id=student.school_id,
                          origin="school", state="entered", data={"badge": "环保章", "awarded_on": "2022-06-01"}))
    db.session.commit()
    with pytest.raises(FieldErrors) as err:
        workflow.create_record(clerk, _cat("eaglet_badge"), student, {"badge": "科技章", "awarded_on": "2022-03-01"})
    assert "每学年只能录入1条" in err.value.message


def test_grade_rule_inquiry_report_is_grade_nine_only(session, at):
    at("2022-03-01 09:00")
    with pytest.raises(FieldErrors) as err:
        workflow.create_record(_user("s1_clerk"), _cat("inquiry_report"), _fresh_student(7),
                               {"title": "t", "summary": "s"})
    assert "仅适用于九年级" in err.value.message


def test_school_clerk_enters_only_grade_nine_arts_exam(session, at):
    at("2022-03-01 09:00")
    clerk = _user("s1_clerk")
    with pytest.raises(FieldErrors) as err:
        workflow.create_record(clerk, _cat("academic_exam"), _fresh_student(9), {"subject": "物理", "result": "合格"})
    assert "艺术" in err.value.errors["subject"]
    with pytest.raises(Denied):
        workflow.create_record(clerk, _cat("academic_exam"), _fresh_student(8), {"subject": "艺术", "result": "合格"})
    rec = workflow.create_record(clerk, _cat("academic_exam"), _fresh_student(9), {"subject": "艺术", "result": "合格"})
    assert rec.origin == "school"


def test_non_participant_gets_no_records(session, at):
    at("2022-03-01 09:00")
    student = db.session.execute(sa.select(Student).where(Student.status != "enrolled")).scalars().first()
    assert student is not None
    with pytest.raises(FieldErrors) as err:
        workflow.create_record(_user("s1_clerk") if student.school.code == "bs01" else _user("admin"),
                               _cat("honour_title"), student,
                               {"title": "三好学生", "level": "校级", "issuer": "学校", "awarded_on": "2022-01-01"})
    assert "不参与填报" in err.value.message


def test_bad_field_names_the_field(session, at):
    at("2022-03-01 09:00")
    with pytest.raises(FieldErrors) as err:
        workflow.create_record(_user("s1_clerk"), _cat("sports"), _fresh_student(8),
                               {"name": "", "award": "特等奖", "held_on": "2022-13-01"})
    assert set(err.value.errors) == {"name", "award", "held_on"}
    assert err.value.errors["award"].startswith("获奖情况")


def test_limit_through_the_form_shows_message_and_saves_nothing(client, login_as, at):
    at("2022-03-01 09:00")
    token = login_as("s1_clerk")
    student = _fresh_student(8)
    _clear(student, "sports")
    for _ in range(2):
        workflow.create_record(_user("s1_clerk"), _cat("sports"), student, dict(ACTIVITY))
    before = table_fingerprint()
    resp = client.post("/admin/records/sports/new/", data={"csrf_token": token, "student": student.id, **ACTIVITY})
    assert resp.status_code == 200
    assert "每学期最多录入2条" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert table_fingerprint() == before


def test_create_through_the_form_is_audited(client, login_as, at):
    from models import AuditEvent

    at("2022-03-01 09:00")
    token = login_as("s1_clerk")
    student = _fresh_student(9)
    _clear(student, "science_activity")
    resp = client.post("/admin/records/science_activity/new/",
                       data={"csrf_token": token, "student": student.id, "name": "机器人", "award": "二等奖",
                             "held_on": "2022-01-05"})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    rec = db.session.execute(sa.select(Record).where(Record.student_id == student.id,
                                                     Record.category_id == _cat("science_activity").id)).scalar_one()
    assert rec.data == {"name": "机器人", "award": "二等奖", "held_on": "2022-01-05"}
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.object_type == "Record",
                                                           AuditEvent.object_id == str(rec.id))).scalar_one()
    assert event.action == "create" and event.actor_name and event.after["data"]["name"] == "机器人"
    assert event.school_id == student.school_id


def test_entry_outside_window_says_which_window(client, login_as, at):
    at("2022-03-21 16:00")  # entry closed at this minute
    login_as("s1_clerk")
    resp = client.get("/admin/records/sports/new/")
    assert resp.status_code == 403
    text = resp.get_data(as_text=True)
    assert "填报" in text and "2022-03-21 16:00" in text and "已结束" in text


def test_stale_edit_is_refused(session, at):
    at("2022-03-01 09:00")
    clerk, student = _user("s1_clerk"), _fresh_student(8)
    _clear(student, "sports")
    rec = workflow.create_record(clerk, _cat("sports"), student, dict(ACTIVITY))
    version = rec.version_id
    workflow.update_record(clerk, rec, {**ACTIVITY, "award": "二等奖"}, expected_version=version)
    with pytest.raises(workflow.Conflict) as err:
        workflow.update_record(clerk, rec, {**ACTIVITY, "award": "三等奖"}, expected_version=version)
    assert "已被他人修改" in err.value.message
    db.session.refresh(rec)
    assert rec.data["award"] == "二等奖"


def test_csrf_missing_token_refused_everywhere(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    rec = db.session.execute(sa.select(Record).where(Record.origin == "school")).scalars().first()
    student = _fresh_student(9)
    before = table_fingerprint()
    for url, data in [
        ("/admin/records/sports/new/", {"student": student.id, **ACTIVITY}),
        (f"/admin/records/{rec.category.code}/delete/", {"id": rec.id}),
        ("/admin/contacts/ajax/update/", {"list_form_pk": 1, "notes": "x"}),
        ("/admin/activities/action/", {"action": "delete", "rowid": [1]}),
        ("/logout", {}),
    ]:
        resp = client.post(url, data=data)
        assert resp.status_code == 400, (url, resp.status_code)
        assert "CSRF" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert table_fingerprint() == before


def test_csrf_wrong_token_refused(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    resp = client.post("/admin/records/sports/new/", data={"csrf_token": "forged", "name": "x"})
    assert resp.status_code == 400


def test_login_next_only_to_this_site(client, session):
    page = client.get("/login?next=https://evil.example/x")
    token = csrf_from(page.get_data(as_text=True))
    for target, expected in [("https://evil.example/x", "/admin/"), ("//evil.example/x", "/admin/"),
                             ("/admin/students/", "/admin/students/")]:
        client.post("/logout", data={"csrf_token": token})
        token = csrf_from(client.get("/login").get_data(as_text=True))
        resp = client.post("/login", data={"username": "admin", "password": "cqe2022", "next": target,
                                           "csrf_token": token})
        assert resp.status_code == 302
        assert resp.headers["Location"].endswith(expected) and "evil" not in resp.headers["Location"]
        token = csrf_from(client.get("/admin/").get_data(as_text=True))


def test_wrong_password_refused(client, session):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    resp = client.post("/login", data={"username": "admin", "password": "nope", "csrf_token": token})
    assert resp.status_code == 200 and "用户名或密码错误" in resp.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_history_is_append_only_in_the_database(session):
    from models import AuditEvent

    event = db.session.execute(sa.select(AuditEvent).limit(1)).scalar_one()
    for statement in (sa.update(AuditEvent).where(AuditEvent.id == event.id).values(action="x"),
                      sa.delete(AuditEvent).where(AuditEvent.id == event.id)):
        with pytest.raises(sa.exc.DBAPIError) as err:
            with db.session.begin_nested():
                db.session.execute(statement)
        assert "append-only" in str(err.value)
    with pytest.raises(RuntimeError):
        event.action = "x"
        db.session.flush()
    db.session.rollback()
