"""举报申诉 in the Changsha profile (SPEC §8; seed 001: 举报申诉制度): students and parents file in any phase of the
timeline, the school's evaluation committee takes the complaint up and answers it or says why not (the district's
leading group may do so for any school), each step with its reason in the history; nobody outside sees it."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from conftest import user
from test_changsha import klass, students_of

from models import AuditEvent, Complaint, db, evaluation, policy
from models.clock import local
from models.fields import FieldErrors
from models.policy import Denied
from models.workflow import WorkflowError
from seed import changsha

TEXT = "评价小组有成员在互评前要求同学统一给某人打A，请学校核查。"


def count() -> int:
    return db.session.execute(sa.select(sa.func.count(Complaint.id))).scalar_one()


def file_via_page(client, token, about="conduct", description=TEXT):
    return client.post("/cs/complaints", data={"csrf_token": token, "about": about, "description": description})


def test_every_changsha_phase_is_a_filing_window():
    assert policy.CHANGSHA_PHASES == tuple(p["code"] for p in changsha.PHASES)


def test_a_student_files_the_committee_takes_it_up_and_answers(cs, client, login_as, at):
    at("2017-05-15 10:00")
    token = login_as("cs_yl01c1n01")
    page = client.get("/cs/complaints").get_data(as_text=True)
    assert 'id="complaint-form"' in page and "评价人员的工作" in page
    resp = file_via_page(client, token)
    assert resp.status_code == 302 and count() == 1
    c = db.session.execute(sa.select(Complaint)).scalar_one()
    assert (c.state, c.about, c.student.name) == ("open", "conduct", students_of(klass("yl01", 1))[0].name)
    # due five working days on: Mon 15 May → end of Fri 19 May (Beijing), i.e. 20 May 00:00
    assert local(c.due_at).strftime("%Y-%m-%d %H:%M") == "2017-05-20 00:00"
    assert f'data-complaint="{c.id}"' in client.get("/cs/complaints").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": token})

    token = login_as("cs_yl01_committee")
    listing = client.get("/cs/complaints?state=open").get_data(as_text=True)
    assert f'data-complaint="{c.id}"' in listing
    detail = client.get(f"/cs/complaint/{c.id}").get_data(as_text=True)
    assert TEXT in detail and 'id="complaint-accept"' in detail and 'id="complaint-dismiss"' in detail
    version = re.search(r'name="version" value="(\d+)"', detail).group(1)
    assert client.post(f"/cs/complaint/{c.id}/accept", data={"csrf_token": token, "version": version}).status_code == 302
    db.session.expire_all()
    assert c.state == "accepted"
    # answering needs the answer itself; a stale form changes nothing
    client.post(f"/cs/complaint/{c.id}/answer", data={"csrf_token": token, "version": str(c.version_id), "reason": ""})
    db.session.expire_all()
    assert c.state == "accepted"
    client.post(f"/cs/complaint/{c.id}/answer", data={"csrf_token": token, "version": version, "reason": "旧表单"})
    db.session.expire_all()
    assert c.state == "accepted" and c.handler_note == ""
    resp = client.post(f"/cs/complaint/{c.id}/answer", data={"csrf_token": token, "version": str(c.version_id),
                                                             "reason": "经核查属实，已对相关成员批评教育并重新组织互评。"})
    assert resp.status_code == 302
    db.session.expire_all()
    assert c.state == "closed" and c.closed_at is not None and c.handled_by_id == user("cs_yl01_committee").id
    events = db.session.execute(sa.select(AuditEvent).where(AuditEvent.object_type == "Complaint",
                                                            AuditEvent.object_id == str(c.id))
                                .order_by(AuditEvent.id)).scalars().all()
    assert [e.action for e in events] == ["complain", "accept", "answer"]
    assert events[-1].reason == "经核查属实，已对相关成员批评教育并重新组织互评。"
    client.post("/logout", data={"csrf_token": token})
    # the filer and the parent read the answer
    for name in ("cs_yl01c1n01", "p_cs_yl01c1n01"):
        token = login_as(name)
        detail = client.get(f"/cs/complaint/{c.id}").get_data(as_text=True)
        assert "重新组织互评" in detail and "已办结" in detail and 'id="complaint-accept"' not in detail
        client.post("/logout", data={"csrf_token": token})


def test_scope_nobody_outside_sees_or_handles(cs, client, login_as, at):
    at("2017-05-15 10:00")
    mine = evaluation.file_complaint(user("cs_yl01c1n01"), students_of(klass("yl01", 1))[0], about="rating",
                                     description=TEXT)
    other_school = evaluation.file_complaint(user("cs_yl02c1n01"), students_of(klass("yl02", 1))[0],
                                             about="evidence", description=TEXT)
    cases = {  # who → (sees yl01's, sees yl02's)
        "cs_yl01c1n01": (True, False), "p_cs_yl01c1n01": (True, False), "cs_yl01c1n02": (False, False),
        "cs_yl01_committee": (True, False), "cs_yl01_principal": (True, False), "cs_leader": (True, True),
        "cs_admin": (True, True), "cs_yl02_committee": (False, True),
    }
    for name, (sees_mine, sees_other) in cases.items():
        token = login_as(name)
        for c, sees in ((mine, sees_mine), (other_school, sees_other)):
            assert client.get(f"/cs/complaint/{c.id}").status_code == (200 if sees else 404), (name, c.id)
        client.post("/logout", data={"csrf_token": token})
    for name in ("cs_yl01c1_teacher", "cs_yl01c1_eval1", "s1_clerk"):  # class staff: it may be about them
        token = login_as(name)
        assert client.get(f"/cs/complaint/{mine.id}").status_code in (403, 404), name
        client.post("/logout", data={"csrf_token": token})
    # only handlers act: the principal sees but may not answer; the other school's committee cannot reach it
    with pytest.raises(Denied):
        evaluation.complaint_action(user("cs_yl01_principal"), mine, "dismiss", reason="不属实")
    token = login_as("cs_yl02_committee")
    before = (mine.state, mine.version_id)
    assert client.post(f"/cs/complaint/{mine.id}/dismiss", data={"csrf_token": token, "reason": "x"}).status_code == 404
    db.session.expire_all()
    assert (mine.state, mine.version_id) == before
    # the district's leading group may answer any school's
    evaluation.complaint_action(user("cs_leader"), other_school, "dismiss", reason="与评价工作无关。")
    assert other_school.state == "dismissed"


def test_bad_input_and_limits_save_nothing(cs, at, app):
    at("2017-05-15 10:00")
    me, st = user("cs_yl01c1n01"), students_of(klass("yl01", 1))[0]
    for about, text, field in (("", TEXT, "about"), ("x", TEXT, "about"), ("rating", "太短", "description"),
                               ("rating", "字" * 501, "description"), ("rating", "含有\x00控制字符的说明文字很长很长", "description")):
        with pytest.raises(FieldErrors) as exc:
            evaluation.file_complaint(me, st, about=about, description=text)
        assert field in exc.value.errors
    assert count() == 0
    # someone else's child: refused
    with pytest.raises(Denied):
        evaluation.file_complaint(me, students_of(klass("yl01", 1))[1], about="rating", description=TEXT)
    # the district's limit of open appeals per person applies to complaints too
    for _ in range(3):
        evaluation.file_complaint(me, st, about="other", description=TEXT)
    with pytest.raises(WorkflowError) as exc:
        for _ in range(10):
            evaluation.file_complaint(me, st, about="other", description=TEXT)
    assert "每人同时最多" in exc.value.message
    # after the timeline (results end) nothing is filed
    at("2018-07-02 10:00")
    with pytest.raises(Denied):
        evaluation.file_complaint(user("p_cs_yl01c1n01"), st, about="rating", description=TEXT)


def test_the_family_page_needs_csrf_and_staff_cannot_file(cs, client, login_as, at):
    at("2017-05-15 10:00")
    login_as("cs_yl01c1n01")
    assert client.post("/cs/complaints", data={"about": "rating", "description": TEXT}).status_code == 400
    assert count() == 0
    token = login_as("cs_yl01_committee")
    assert file_via_page(client, token).status_code == 403 and count() == 0
    assert "举报申诉处理" in client.get("/admin/changsha/").get_data(as_text=True)
