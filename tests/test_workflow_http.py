"""Entry through the pages as users do it: students' own entries, pre-confirmation and its window,
the homeroom-audit setting and its lock, a stale edit refused with a message."""
from __future__ import annotations

import re

import sqlalchemy as sa
from conftest import csrf_from, table_fingerprint

from models import Activity, AuditEvent, Category, Record, School, Student, User, db


def _user(name):
    return db.session.execute(sa.select(User).where(User.username == name)).scalar_one()


def _cat(code):
    return db.session.execute(sa.select(Category).where(Category.code == code)).scalar_one()


def test_student_writes_own_activity_record(client, login_as, at):
    at("2022-03-10 20:00")
    login_as("s1g9c1n01")
    me = _user("s1g9c1n01").grants[0].student
    db.session.execute(sa.delete(Record).where(Record.student_id == me.id,
                                               Record.category_id == _cat("moral_activity").id))
    db.session.commit()
    page = client.get("/admin/records/moral_activity/new/").get_data(as_text=True)
    assert 'name="student"' not in page  # a student writes about themself only
    other_school = db.session.execute(sa.select(Activity).where(Activity.school_id != me.school_id,
                                                                Activity.level == "school")).scalars().first()
    assert f'value="{other_school.id}"' not in page  # only their school's and district's catalogue
    own = db.session.execute(sa.select(Activity).where(Activity.school_id == me.school_id)).scalars().first()
    resp = client.post("/admin/records/moral_activity/new/",
                       data={"csrf_token": csrf_from(page), "activity_id": own.id, "role": "志愿者", "hours": "3"})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:400]
    rec = db.session.execute(sa.select(Record).where(Record.student_id == me.id,
                                                     Record.category_id == _cat("moral_activity").id)).scalar_one()
    assert rec.origin == "student" and rec.state == "draft" and rec.data["activity_id"] == own.id


def test_student_cannot_pick_another_schools_activity(client, login_as, at):
    at("2022-03-10 20:00")
    login_as("s1g9c1n01")
    me = _user("s1g9c1n01").grants[0].student
    db.session.execute(sa.delete(Record).where(Record.student_id == me.id,
                                               Record.category_id == _cat("moral_activity").id))
    db.session.commit()
    other = db.session.execute(sa.select(Activity).where(Activity.school_id != me.school_id,
                                                         Activity.level == "school")).scalars().first()
    page = client.get("/admin/records/moral_activity/new/").get_data(as_text=True)
    before = table_fingerprint()
    resp = client.post("/admin/records/moral_activity/new/",
                       data={"csrf_token": csrf_from(page), "activity_id": other.id, "role": "志愿者"})
    assert resp.status_code == 200 and "请从本校或本区的活动项目中选择" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert table_fingerprint() == before


def test_preconfirm_only_in_preparation(client, login_as, at):
    student = db.session.execute(
        sa.select(Student).join(School).where(School.code == "bs01", Student.status == "enrolled")).scalars().first()
    at("2022-03-14 07:59")
    token = login_as("s1_clerk")
    resp = client.post(f"/admin/preconfirm/edit/?id={student.id}", data={"csrf_token": token, "status": "suspended"})
    assert resp.status_code == 302
    db.session.expire_all()
    assert db.session.get(Student, student.id).status == "suspended"
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.object_type == "Student",
                                                           AuditEvent.object_id == str(student.id),
                                                           AuditEvent.action == "preconfirm")).scalar_one()
    assert event.before == {"status": "enrolled"} and event.after == {"status": "suspended"}

    at("2022-03-14 08:00")  # the list locks when preparation ends
    resp = client.get(f"/admin/preconfirm/edit/?id={student.id}")
    assert resp.status_code == 403
    assert "填报准备" in resp.get_data(as_text=True) and "已结束" in resp.get_data(as_text=True)
    before = table_fingerprint()
    resp = client.post(f"/admin/preconfirm/edit/?id={student.id}", data={"csrf_token": token, "status": "enrolled"})
    assert resp.status_code == 403
    db.session.expire_all()
    assert table_fingerprint() == before


def test_homeroom_audit_setting_locks_after_first_student_activity(client, login_as, at):
    at("2022-03-01 09:00")
    school = db.session.execute(sa.select(School).where(School.code == "bs01")).scalar_one()
    token = login_as("s1_admin")
    db.session.execute(sa.delete(Record).where(Record.school_id == school.id,
                                               Record.category_id == _cat("moral_activity").id))
    db.session.commit()
    resp = client.post(f"/admin/schools/edit/?id={school.id}", data={"csrf_token": token})  # unchecked = off
    assert resp.status_code == 302
    db.session.expire_all()
    assert db.session.get(School, school.id).homeroom_audit is False
    # a student enters an activity record: the setting locks
    student = db.session.execute(sa.select(Student).where(Student.school_id == school.id,
                                                          Student.status == "enrolled")).scalars().first()
    act = db.session.execute(sa.select(Activity).where(Activity.school_id == school.id)).scalars().first()
    db.session.add(Record(term_id=act.term_id, category=_cat("moral_activity"), student=student,
                          school_id=school.id, origin="student", state="draft", data={"activity_id": act.id}))
    db.session.commit()
    resp = client.post(f"/admin/schools/edit/?id={school.id}",
                       data={"csrf_token": token, "homeroom_audit": "y"})
    assert resp.status_code == 200 and "该设置已锁定" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(School, school.id).homeroom_audit is False


def test_stale_form_save_is_refused_and_nothing_lost(client, login_as, at):
    at("2022-03-01 09:00")
    token = login_as("s1_clerk")
    rec = db.session.execute(sa.select(Record).join(Category).where(
        Category.code == "sports", Record.school_id == db.session.execute(
            sa.select(School.id).where(School.code == "bs01")).scalar())).scalars().first()
    page = client.get(f"/admin/records/sports/edit/?id={rec.id}").get_data(as_text=True)
    version = re.search(r'name="version"[^>]*value="(\d+)"|value="(\d+)"[^>]*name="version"', page)
    version = next(g for g in version.groups() if g)
    form = {"csrf_token": token, "version": version, "name": "甲", "award": "一等奖", "held_on": "2022-01-01"}
    assert client.post(f"/admin/records/sports/edit/?id={rec.id}", data=form).status_code == 302
    form.update(name="乙")  # a second save from the same (now stale) page
    resp = client.post(f"/admin/records/sports/edit/?id={rec.id}", data=form)
    assert resp.status_code == 200 and "已被他人修改" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Record, rec.id).data["name"] == "甲"


def test_school_admin_home_says_what_waits(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("s1_admin")
    html = client.get("/admin/").get_data(as_text=True)
    assert "预确认开放至 2022-03-14 08:00" in html
    assert "已填写 4/4 类联系人" in html
    at("2022-03-14 08:00")
    assert "预确认开放至" not in client.get("/admin/").get_data(as_text=True)


def test_district_admin_creates_an_account_that_can_log_in(client, login_as):
    token = login_as("admin")
    page = client.get("/admin/users/new/").get_data(as_text=True)
    assert 'name="new_password"' in page
    resp = client.post("/admin/users/new/", data={"csrf_token": token, "username": "new_clerk",
                                                  "display_name": "新录入员", "active": "y"})
    assert resp.status_code == 200 and "新账号必须设置密码" in resp.get_data(as_text=True)
    resp = client.post("/admin/users/new/", data={"csrf_token": token, "username": "new_clerk",
                                                  "display_name": "新录入员", "active": "y",
                                                  "new_password": "a-long-password"})
    assert resp.status_code == 200 and "须同时包含字母和数字" in resp.get_data(as_text=True)  # /password's rules
    resp = client.post("/admin/users/new/", data={"csrf_token": token, "username": "new_clerk",
                                                  "display_name": "新录入员", "active": "y",
                                                  "new_password": "a-long-password-2022"})
    assert resp.status_code == 302
    user = _user("new_clerk")
    assert user.check_password("a-long-password-2022") and "a-long-password" not in user.password_hash
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.object_type == "User",
                                                           AuditEvent.object_id == str(user.id))).scalars().first()
    assert "a-long-password" not in str(event.after)
