"""The rules of the cycle one at a time: every window boundary at the exact minute for both cohorts,
who sees whose report, appeal bounds, non-participants, the homeroom-audit setting, window shifts
with a reason, stale saves of a case."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import category as _cat
from conftest import student_of as _student
from conftest import table_fingerprint
from conftest import user as _user

from models import AuditEvent, Case, Cohort, District, PhaseWindow, Record, Term, db, policy, workflow
from models.clock import now
from settings import parse_instant


def _record(student, code, state, origin=None):
    cat = _cat(code)
    term = policy.current_term(student.school.district_id)
    origin = origin or cat.entry[0]["level"]
    rec = Record(term=term, category=cat, student=student, school_id=student.school_id, origin=origin,
                 state=state, data={})
    db.session.add(rec)
    db.session.commit()
    return rec


def _case(student, record, state="open", flow=2, handler="school", corrector="school", filed_by=None):
    term = policy.current_term(student.school.district_id)
    case = Case(term=term, flow=flow, kind="error", student=student, record=record, category=record.category,
                school_id=student.school_id, class_id=student.class_id, district_id=student.school.district_id,
                handler_level=handler, corrector_level=corrector, filed_by=filed_by, description="测试",
                state=state, handler_note="", corrector_note="")
    db.session.add(case)
    db.session.commit()
    return case


# --- every window boundary, both cohorts ---------------------------------------------------------
# phase → (who acts, how to build the object the action is checked on)
SEED_WINDOWS = {
    "g9": {"preparation": ("2022-02-28 08:00", "2022-03-14 08:00"), "entry": ("2022-02-28 08:00", "2022-03-21 16:00"),
           "student_entry": ("2022-02-28 08:00", "2022-03-30 08:00"),
           "confirmation": ("2022-03-22 08:00", "2022-03-28 16:00"),
           "correction": ("2022-03-22 08:00", "2022-03-29 16:00"),
           "publication": ("2022-03-30 08:00", "2022-04-07 16:00"),
           "issue_handling": ("2022-03-30 08:00", "2022-04-12 16:00")},
    "g6_8": {"issue_handling": ("2022-03-30 08:00", "2022-05-27 16:00")},
}
STUDENTS = {"g9": "s1g9c1n01", "g6_8": "s1g7c1n01"}


def _boundary_case(phase, username):
    """(user, action, object) whose check is governed by exactly this phase's window."""
    student = _student(username)
    if phase == "preparation":
        return _user("s1_admin"), "preconfirm", student
    if phase == "entry":
        rec = Record(term=policy.current_term(student.school.district_id), category=_cat("honour_title"),
                     student=student, school_id=student.school_id, origin="school", state="entered", data={})
        return _user("s1_clerk"), "create", rec
    if phase == "student_entry":
        code = "self_intro" if student.school_class.grade == 9 else "typical_case"
        return _user(username), "submit", _record(student, code, "draft")
    if phase == "confirmation":
        return _user(username), "confirm", _record(student, "basic_course", "entered")
    if phase == "correction":
        return _user("s1_clerk"), "correct", _record(student, "basic_course", "rejected")
    if phase == "publication":
        return _user(username), "file", Case(student=student, state="open")
    rec = _record(student, "basic_course", "confirmed")
    return _user("s1_auditor"), "accept", _case(student, rec)


@pytest.mark.parametrize("cohort,phase", [(c, p) for c in ("g9", "g6_8") for p in SEED_WINDOWS["g9"]])
def test_every_window_boundary_at_the_minute(session, cohort, phase):
    start, end = SEED_WINDOWS[cohort].get(phase, SEED_WINDOWS["g9"][phase])
    user, action, obj = _boundary_case(phase, STUDENTS[cohort])
    start, end = parse_instant(start), parse_instant(end)
    minute = timedelta(minutes=1)
    expected = {start - minute: False, start: True, end - minute: True, end: False}
    got = {t: bool(policy.check(user, action, obj, t)) for t in expected}
    assert got == expected, f"{cohort} {phase}: {got}"
    refusal = policy.check(user, action, obj, end)
    phase_name = obj_phase_name(phase)
    assert phase_name in refusal.reason and "已结束" in refusal.reason
    assert policy.fmt(end) in refusal.reason


def obj_phase_name(phase):
    from seed import shanghai

    return next(p["name"] for p in shanghai.PHASES if p["code"] == phase)


# --- who sees whose report -------------------------------------------------------------------------
def test_reports_classmates_only_and_parents_only_their_child(client, login_as, at):
    at("2022-04-01 09:00")
    a, b = _student("s1g9c1n01"), _student("s1g9c1n02")
    other_class, other_school = _student("s1g9c2n01"), _student("s2g9c1n01")
    published = _record(a, "honour_title", "confirmed")
    published.data = {"title": "公示的称号", "level": "校级", "issuer": "本校", "awarded_on": "2022-01-01"}
    hidden = _record(a, "basic_course", "rejected")
    hidden.data = {"subject": "数学", "result": "不合格"}
    db.session.commit()
    login_as("s1g9c1n02")
    page = client.get(f"/me/report/{a.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "公示的称号" in html and "不合格" not in html  # only published data
    assert a.xjh not in html and "家长" not in html  # nothing else about the classmate
    classmates = client.get("/me/class").get_data(as_text=True)
    assert a.name in classmates and other_class.name not in classmates
    login_as("s1g9c2n01")  # another class of the same school
    assert client.get(f"/me/report/{a.id}").status_code == 404
    assert client.get(f"/me/appeal/{a.id}").status_code == 404
    login_as("s2g9c1n01")
    assert client.get(f"/me/report/{a.id}").status_code == 404
    login_as("p_s1g9c1n01")  # a parent: their child, nobody else
    assert "公示的称号" in client.get("/me/report").get_data(as_text=True)
    assert client.get(f"/me/report/{b.id}").status_code == 404
    assert client.get(f"/me/report/{other_school.id}").status_code == 404
    assert client.get("/me/class").status_code == 302
    assert client.get(f"/me/appeal/{a.id}").status_code == 403  # appeals are the student's own act
    assert client.get("/admin/cases/").status_code == 403


def test_family_pages_are_not_for_staff(client, login_as):
    login_as("s1_clerk")
    assert client.get("/me/records").status_code == 403


# --- appeals: bounded, attributable, on published data only -----------------------------------------
def test_open_appeals_are_bounded_per_student(session, at):
    at("2022-04-01 09:00")
    a, b = _student("s1g9c1n01"), _student("s1g9c1n02")
    filer = _user("s1g9c1n02")
    district = db.session.get(District, a.school.district_id)
    district.settings = {**district.settings, "max_open_appeals": 2}
    db.session.commit()
    records = [_record(a, "honour_title", "confirmed") for _ in range(3)]
    first = workflow.file_appeal(filer, a, kind="error", description="一", record=records[0])
    workflow.file_appeal(filer, a, kind="error", description="二", record=records[1])
    before = table_fingerprint()
    with pytest.raises(workflow.WorkflowError) as err:
        workflow.file_appeal(filer, a, kind="error", description="三", record=records[2])
    assert "最多2件" in err.value.message
    db.session.expire_all()
    assert table_fingerprint() == before
    workflow.case_action(_user("s1_auditor"), first, "dismiss", reason="与事实相符")
    with pytest.raises(workflow.WorkflowError) as err:  # the same record twice while its appeal is open
        workflow.file_appeal(filer, a, kind="error", description="再次", record=records[1])
    assert "不能重复提交" in err.value.message
    workflow.file_appeal(filer, a, kind="error", description="三", record=records[2])  # room again
    assert db.session.execute(sa.select(sa.func.count(Case.id)).where(Case.filed_by_id == filer.id,
                                                                      Case.student_id == b.id)).scalar() == 0


def test_appeal_needs_published_record_and_a_description(session, at):
    at("2022-04-01 09:00")
    a = _student("s1g9c1n01")
    filer = _user("s1g9c1n01")
    draft = _record(a, "self_intro", "draft")
    with pytest.raises(workflow.WorkflowError) as err:
        workflow.file_appeal(filer, a, kind="error", description="x", record=draft)
    assert "未公示" in err.value.message
    confirmed = _record(a, "honour_title", "confirmed")
    with pytest.raises(workflow.FieldErrors) as err:
        workflow.file_appeal(filer, a, kind="error", description="  ", record=confirmed)
    assert "申诉说明：必填" in err.value.message


def test_non_participants_get_no_confirmation_or_appeal(session, at):
    at("2022-03-23 09:00")
    a = _student("s1g9c1n01")
    rec = _record(a, "honour_title", "entered")
    a.status = "suspended"
    db.session.commit()
    decision = policy.check(_user("s1g9c1n01"), "confirm", rec)
    assert not decision and "不参与填报" in decision.reason
    at("2022-04-01 09:00")
    assert not policy.check(_user("s1g9c1n02"), "file", Case(student=a, state="open"))


# --- the homeroom-audit setting ---------------------------------------------------------------------
def test_without_homeroom_audit_students_publish_activity_directly(session, at):
    at("2022-03-05 09:00")
    a = _student("s1g9c1n01")
    rec = _record(a, "moral_activity", "draft")
    me = _user("s1g9c1n01")
    assert workflow.transition_for(rec, "submit") is not None and workflow.transition_for(rec, "publish") is None
    a.school.homeroom_audit = False
    db.session.commit()
    db.session.expire_all()
    assert workflow.transition_for(rec, "submit") is None
    workflow.record_action(me, rec, "publish")
    assert rec.state == "final"
    # 自我介绍 is always reviewed, whatever the setting
    intro = _record(a, "self_intro", "draft")
    assert workflow.transition_for(intro, "publish") is None


# --- the schedule: shifts and early phases, with a reason in the history -----------------------------
def _window(code, phase):
    return db.session.execute(
        sa.select(PhaseWindow).join(Cohort).join(Term).join(District, Term.district_id == District.id)
        .where(District.code == "bs", Cohort.code == code, PhaseWindow.phase == phase)).scalar_one()


def test_district_admin_shifts_a_window_with_a_reason(client, login_as, at):
    at("2022-03-01 09:00")
    window = _window("g9", "confirmation")
    token = login_as("admin")
    url = f"/admin/windows/edit/?id={window.id}"
    form = {"csrf_token": token, "starts_at": "2022-03-23 08:00", "ends_at": "2022-03-29 16:00"}
    before = table_fingerprint()
    resp = client.post(url, data=form)
    assert resp.status_code == 200 and "调整原因：必填" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert table_fingerprint() == before
    resp = client.post(url, data={**form, "reason": "因疫情推迟一天"})
    assert resp.status_code == 302
    db.session.expire_all()
    assert policy.fmt(window.starts_at) == "2022-03-23 08:00"
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.object_type == "PhaseWindow",
                                                           AuditEvent.object_id == str(window.id))
                               .order_by(AuditEvent.id.desc())).scalars().first()
    assert event.reason == "因疫情推迟一天" and event.before["starts_at"].startswith("2022-03-22T00:00")
    login_as("s1_clerk")
    assert client.post(url, data={**form, "reason": "x"}).status_code == 403


def test_advance_a_phase_early(client, login_as, at):
    at("2022-03-20 10:00")
    window = _window("g6_8", "confirmation")
    student = _student("s1g7c1n01")
    rec = _record(student, "basic_course", "entered")
    assert not policy.check(_user("s1g7c1n01"), "confirm", rec)
    token = login_as("admin")
    resp = client.post("/admin/windows/advance/", data={"csrf_token": token, "id": window.id, "edge": "start",
                                                        "reason": "提前开始确认"})
    assert resp.status_code == 302
    db.session.expire_all()
    assert window.starts_at == now() and policy.check(_user("s1g7c1n01"), "confirm", rec)
    assert not policy.check(_user("s1g9c1n01"), "confirm", _record(_student("s1g9c1n01"), "basic_course", "entered"))
    resp = client.post("/admin/windows/advance/", data={"csrf_token": token, "id": window.id, "edge": "end",
                                                        "reason": ""})
    assert resp.status_code == 302
    db.session.expire_all()
    assert window.ends_at > now()  # no reason, no change


def test_shifting_issue_handling_moves_open_cases_due_dates(session, at):
    at("2022-04-01 09:00")
    a = _student("s1g9c1n01")
    case = workflow.file_appeal(_user("s1g9c1n01"), a, kind="error", description="x",
                                record=_record(a, "honour_title", "confirmed"))
    window = _window("g9", "issue_handling")
    assert case.due_at == window.ends_at
    later = parse_instant("2022-04-20 16:00")
    workflow.shift_window(_user("admin"), window, starts_at=window.starts_at, ends_at=later, reason="延长处理期")
    db.session.expire_all()
    assert case.due_at == later


# --- concurrency on cases ---------------------------------------------------------------------------
def test_stale_case_action_is_refused(session, at):
    at("2022-04-01 09:00")
    a = _student("s1g9c1n01")
    case = _case(a, _record(a, "honour_title", "confirmed"))
    version = case.version_id
    workflow.case_action(_user("s1_auditor"), case, "accept", expected_version=version)
    with pytest.raises(workflow.Conflict):
        workflow.case_action(_user("s1_auditor"), case, "dismiss", reason="x", expected_version=version)


def test_deadline_command_applies_once_and_not_early(data_app, session, at):
    a = _student("s1g9c1n01")
    rec = _record(a, "honour_title", "entered")
    runner = data_app.test_cli_runner()
    at("2022-03-28 15:59")
    early = runner.invoke(args=["cqe", "deadline", "auto-confirm", "--district", "bs", "--cohort", "g9"])
    assert early.exit_code != 0 and "尚未到时间" in early.output
    db.session.expire_all()
    assert rec.state == "entered"
    at("2022-03-28 16:00")
    done = runner.invoke(args=["cqe", "deadline", "auto-confirm", "--district", "bs", "--cohort", "g9"])
    assert done.exit_code == 0 and "已自动确认" in done.output
    db.session.expire_all()
    assert rec.state == "confirmed"
    again = runner.invoke(args=["cqe", "deadline", "auto-confirm", "--district", "bs", "--cohort", "g9"])
    assert again.exit_code == 0 and "already done, nothing changed" in again.output


def test_extra_record_appeal_removes_the_record_on_approval_only(session, at):
    at("2022-04-01 09:00")
    a = _student("s1g9c1n01")
    rec = _record(a, "honour_title", "confirmed")
    rec_id = rec.id
    case = workflow.file_appeal(_user("s1g9c1n02"), a, kind="extra", description="没有这个称号", record=rec)
    auditor, clerk = _user("s1_auditor"), _user("s1_clerk")
    workflow.case_action(auditor, case, "accept")
    assert workflow.proposal_ops(case) == ["edit", "delete"]
    workflow.case_action(clerk, case, "correct", proposal={"op": "delete"}, reason="确认多录")
    assert db.session.get(Record, rec_id) is not None  # not yet
    workflow.case_action(auditor, case, "approve")
    db.session.expire_all()
    assert db.session.get(Record, rec_id) is None
    assert case.state == "closed" and case.record_id is None and case.proposal["record_id"] == rec_id
    gone = db.session.execute(sa.select(AuditEvent).where(AuditEvent.object_type == "Record",
                                                          AuditEvent.object_id == str(rec_id),
                                                          AuditEvent.action == "approve")).scalar_one()
    assert gone.after is None and gone.before["state"] == "confirmed"


def test_correction_is_validated_like_an_entry(session, at):
    at("2022-04-01 09:00")
    a = _student("s1g9c1n01")
    rec = _record(a, "basic_course", "confirmed")
    case = _case(a, rec, state="accepted")
    before = table_fingerprint()
    with pytest.raises(workflow.FieldErrors) as err:
        workflow.case_action(_user("s1_clerk"), case, "correct",
                             proposal={"op": "edit", "data": {"subject": "数学", "result": "满分"}})
    assert "成绩等第" in err.value.message and "不是可选值" in err.value.message
    db.session.expire_all()
    assert table_fingerprint() == before


def test_district_admin_sets_the_appeal_bound(client, login_as, at):
    at("2022-03-01 09:00")
    district = db.session.execute(sa.select(District).where(District.code == "bs")).scalar_one()
    token = login_as("admin")
    url = f"/admin/districts/edit/?id={district.id}"
    assert 'value="5"' in client.get(url).get_data(as_text=True)
    resp = client.post(url, data={"csrf_token": token, "max_open_appeals": "0"})
    assert resp.status_code == 200 and "须为1至100" in resp.get_data(as_text=True)
    assert client.post(url, data={"csrf_token": token, "max_open_appeals": "2"}).status_code == 302
    db.session.expire_all()
    assert workflow.max_open_appeals(district) == 2 and district.settings["contacts_due"]
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.object_type == "District")
                               .order_by(AuditEvent.id.desc())).scalars().first()
    assert event.before["settings"]["max_open_appeals"] == 5 and event.after["settings"]["max_open_appeals"] == 2
    login_as("s1_admin")
    assert client.get(url).status_code == 403
    login_as("zz_clerk")
    assert client.get(url).status_code == 404
