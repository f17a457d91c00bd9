"""Deadlines act on their own (issue 5): every effect once, at its minute, set-based, with one history
event per run; reminders in the inbox; the schedule on RQ; catch-up by tick; pages without Redis."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import csrf_from, table_fingerprint, user
from conftest import student_of as _student
from test_cycle_rules import _case, _record, _window

from models import AuditEvent, Case, Cohort, District, Record, Term, db, deadlines, workflow
from models.clock import now
from models.deadlines import EFFECTS, DeadlineRun, Notification


def _cohort(code: str) -> Cohort:
    return db.session.execute(sa.select(Cohort).join(Term).join(District, Term.district_id == District.id).where(
        District.code == "bs", Term.is_current.is_(True), Cohort.code == code)).scalar_one()


def _runs(effect: str | None = None) -> list[DeadlineRun]:
    q = sa.select(DeadlineRun).order_by(DeadlineRun.id)
    if effect:
        q = q.where(DeadlineRun.effect == effect)
    return list(db.session.execute(q).scalars())


def _run_events(run_id: int) -> list[AuditEvent]:
    return list(db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.object_type == "DeadlineRun", AuditEvent.object_id == str(run_id))).scalars())


@pytest.mark.parametrize("code", sorted(EFFECTS))
def test_every_effect_happens_once_from_its_exact_minute(session, at, code):
    cohort = _cohort("g9")
    due = EFFECTS[code].due_at(cohort)
    at(due - timedelta(minutes=1))
    with pytest.raises(deadlines.NotDue) as refused:
        deadlines.run(code, cohort.id)
    assert "尚未到时间" in refused.value.message
    assert _runs(code) == []
    assert all(e.effect.code != code or e.cohort.id != cohort.id for e, _, _ in deadlines.tick())
    at(due)
    done = deadlines.run(code, cohort.id)
    assert done is not None and done.status == "done" and done.due_at == due and done.ran_at == due
    assert len(_run_events(done.id)) == 1
    before = table_fingerprint()
    assert deadlines.run(code, cohort.id) is None  # again: a no-op
    assert deadlines.run(code, cohort.id, at=due + timedelta(days=30)) is None
    db.session.expire_all()
    assert table_fingerprint() == before
    assert [r.id for r in _runs(code) if r.cohort_id == cohort.id] == [done.id]


def test_auto_confirm_is_one_event_and_every_record_carries_the_run(session, at, client, login_as):
    at("2022-03-26 10:00")
    a = _student("s1g9c1n01")
    entered = _record(a, "honour_title", "entered")
    rejected = _record(a, "basic_course", "rejected")
    confirmed = _record(a, "academic_exam", "confirmed", origin="district")
    g7 = _record(_student("s1g7c1n01"), "honour_title", "entered")
    cohort = _cohort("g9")
    pending_ids = set(db.session.execute(sa.select(Record.id).where(deadlines.cohort_records(
        cohort, Record.state == "entered", Record.origin.in_(deadlines.CLERK_ORIGINS)))).scalars())
    assert entered.id in pending_ids and len(pending_ids) > 10
    events_before = db.session.execute(sa.select(sa.func.count(AuditEvent.id))).scalar_one()

    with pytest.raises(deadlines.NotDue):
        deadlines.auto_confirm(cohort.id)
    at("2022-03-28 16:00")
    n = deadlines.auto_confirm(cohort.id)
    assert n == len(pending_ids)
    db.session.expire_all()
    run = _runs("auto_confirm")[0]
    assert run.counts == {"records": n} and run.trigger == "cli"
    moved = db.session.execute(sa.select(Record).where(Record.deadline_run_id == run.id)).scalars().all()
    assert {r.id for r in moved} == pending_ids and all(r.state == "confirmed" for r in moved)
    assert (rejected.state, confirmed.state, g7.state) == ("rejected", "confirmed", "entered")
    assert rejected.deadline_run_id is None and g7.deadline_run_id is None
    # One history row for the whole run, not one per record.
    assert db.session.execute(sa.select(sa.func.count(AuditEvent.id))).scalar_one() == events_before + 1
    event = _run_events(run.id)[0]
    assert (event.actor_name, event.action, event.before) == ("系统", "auto_confirm", {"state": "entered"})
    assert event.after["records"] == n and event.after["state"] == "confirmed"
    assert event.at == now() and event.reason == "确认期结束，逾期未确认，系统默认通过"

    # The record's history answers who, when and from what, through its run.
    login_as("s1_clerk")
    page = client.get(f"/history/record/{entered.id}").get_data(as_text=True)
    assert "逾期默认通过" in page and "2022-03-28 16:00" in page and "系统" in page
    assert "已录入" in page and "已确认" in page


def test_escalation_creates_problem_cases_stamped_with_the_run(session, at, client, login_as):
    at("2022-03-25 10:00")
    a = _student("s1g9c1n01")
    school_rejected = _record(a, "basic_course", "rejected")
    school_rejected.reject_reason = "成绩录错"
    district_rejected = _record(a, "academic_exam", "rejected", origin="district")
    db.session.commit()
    at("2022-03-29 15:59")
    with pytest.raises(deadlines.NotDue):
        deadlines.escalate(_cohort("g9").id)
    at("2022-03-29 16:00")
    assert deadlines.escalate(_cohort("g9").id) == 1
    db.session.expire_all()
    run = _runs("escalate")[0]
    assert run.counts == {"records": 1, "cases": 1}
    case = db.session.execute(sa.select(Case).where(Case.record_id == school_rejected.id)).scalar_one()
    assert (case.flow, case.handler_level, case.state, case.deadline_run_id) == (1, "district", "open", run.id)
    assert case.description == "成绩录错" and case.due_at == _window("g9", "issue_handling").ends_at
    assert (school_rejected.state, school_rejected.deadline_run_id) == ("problem", run.id)
    assert district_rejected.state == "rejected"  # not the school's: no problem data
    login_as("district_auditor")
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "升级为问题数据" in page


def test_overdue_flag_and_appeal_intake_counts(session, at):
    at("2022-04-01 09:00")
    a = _student("s1g9c1n01")
    open_case = _case(a, _record(a, "honour_title", "confirmed"))
    closed = _case(a, _record(a, "basic_course", "confirmed"), state="closed")
    g7_case = _case(_student("s1g7c1n01"), _record(_student("s1g7c1n01"), "honour_title", "confirmed"))
    at(_window("g9", "publication").ends_at)
    appeals = deadlines.run("close_appeals", _cohort("g9").id)
    assert appeals.counts == {"appeals": 2, "open": 1}
    at(_window("g9", "issue_handling").ends_at)
    run = deadlines.run("flag_overdue", _cohort("g9").id)
    assert run.counts == {"cases": 1}
    db.session.expire_all()
    assert (open_case.overdue_run_id, closed.overdue_run_id, g7_case.overdue_run_id) == (run.id, None, None)


def test_participant_list_is_kept_when_preparation_ends(session, at):
    at("2022-03-01 09:00")
    a = _student("s1g9c1n01")
    a.status = "left"
    db.session.commit()
    at(_window("g9", "preparation").ends_at)
    run = deadlines.run("lock_participants", _cohort("g9").id)
    total = db.session.execute(sa.select(sa.func.count()).select_from(
        deadlines.cohort_students(_cohort("g9")).subquery())).scalar_one()
    assert run.counts["non_participants"] >= 1 and run.counts["status_left"] >= 1
    assert run.counts["participants"] + run.counts["non_participants"] == total


# --- reminders -----------------------------------------------------------------------------------


def _inbox(username: str) -> list[Notification]:
    return list(db.session.execute(sa.select(Notification).where(
        Notification.user_id == user(username).id).order_by(Notification.id)).scalars())


def test_reminders_go_24_hours_before_to_those_with_pending_work(session, at, client, login_as):
    at("2022-03-23 09:00")
    a, b = _student("s1g9c1n01"), _student("s1g9c1n02")
    # a has clerk records waiting for confirmation; b confirmed all of theirs.
    workflow.confirm_all(user("s1g9c1n02"), b)
    pending_a = len(workflow.records_awaiting(user("s1g9c1n01"), a, "confirm"))
    assert pending_a > 0 and workflow.records_awaiting(user("s1g9c1n02"), b, "confirm") == []
    end = _window("g9", "confirmation").ends_at
    at(end - timedelta(hours=24, minutes=1))
    assert all(e.effect.code != "remind_confirmation" for e, _, _ in deadlines.tick())
    at(end - timedelta(hours=24))
    deadlines.tick()
    [msg] = _inbox("s1g9c1n01")
    assert (msg.kind, msg.count, msg.due_at) == ("confirm", pending_a, end)
    assert _inbox("s1g9c1n02") == [] and _inbox("p_s1g9c1n01") == []
    assert _inbox("s1_clerk") == []  # nothing rejected yet: nothing to correct

    login_as("s1g9c1n01")
    home = client.get("/me/records").get_data(as_text=True)
    assert 'id="cqe-inbox"' in home and '<span class="badge badge-light">1</span>' in home
    page = client.get("/inbox").get_data(as_text=True)
    assert f"您有 {pending_a} 条记录尚未确认" in page and "2022-03-28 16:00" in page and "默认通过" in page
    assert client.post("/inbox/read", data={"csrf_token": csrf_from(page)}).status_code == 302
    assert '<span class="badge badge-light">' not in client.get("/inbox").get_data(as_text=True)
    login_as("s1g9c1n02")
    assert "暂无消息" in client.get("/inbox").get_data(as_text=True)


def test_clerk_teacher_and_auditor_reminders(session, at):
    at("2022-03-25 10:00")
    a = _student("s1g9c1n01")
    _record(a, "basic_course", "rejected")
    _record(a, "honour_title", "rejected")
    _record(a, "academic_exam", "rejected", origin="district")
    entry = _record(a, "self_intro", "submitted", origin="student")
    assert entry.id
    at(_window("g9", "correction").ends_at - timedelta(hours=24))
    deadlines.run("remind_correction", _cohort("g9").id)
    assert [(m.kind, m.count) for m in _inbox("s1_clerk")] == [("correct", 2)]
    assert [(m.kind, m.count) for m in _inbox("district_clerk")] == [("correct", 1)]
    assert _inbox("s2_clerk") == [] and _inbox("city_clerk") == []
    at(_window("g9", "student_entry").ends_at - timedelta(hours=24))
    deadlines.run("remind_student_entry", _cohort("g9").id)
    assert ("review", 1) in [(m.kind, m.count) for m in _inbox("s1_g9c1_teacher")]
    assert all(m.kind != "review" for m in _inbox("s1_g9c2_teacher"))
    at("2022-04-01 09:00")
    _case(a, _record(a, "eaglet_badge", "confirmed"))
    _case(a, _record(a, "academic_exam", "confirmed", origin="district"), flow=3, handler="district",
          corrector="district", state="accepted")
    at(_window("g9", "issue_handling").ends_at - timedelta(hours=24))
    deadlines.run("remind_issue_handling", _cohort("g9").id)
    assert [(m.kind, m.count) for m in _inbox("s1_auditor")] == [("handle", 1)]
    assert [(m.kind, m.count) for m in _inbox("district_clerk")][-1] == ("fix", 1)
    assert _inbox("s2_auditor") == []


def test_a_reminder_caught_up_after_its_deadline_is_not_sent(session, at):
    end = _window("g9", "confirmation").ends_at
    at(end)  # the queue was down for a day: the reminder's moment and the deadline both passed
    run = deadlines.run("remind_confirmation", _cohort("g9").id)
    assert run.counts == {"users": 0, "late": 1} and _inbox("s1g9c1n01") == []
    assert EFFECTS["remind_confirmation"].summary(run.counts) == "截止时间已过，未发送提醒"


def test_publication_start_tells_students_and_parents(session, at):
    at(_window("g9", "publication").starts_at)
    run = deadlines.run("open_publication", _cohort("g9").id)
    assert [m.kind for m in _inbox("s1g9c1n01")] == ["published"]
    assert [m.kind for m in _inbox("p_s1g9c1n01")] == ["published_parent"]
    assert _inbox("s1g9c2n04") == [] == _inbox("p_s1g9c2n04")  # the last of every (2)班 does not take part
    assert _inbox("s1g7c1n01") == []  # grade 7 publishes on its own schedule
    assert run.counts["users"] >= 2


# --- catch-up, failures ----------------------------------------------------------------------------


def test_tick_catches_up_everything_due_in_time_order_once(session, at, data_app):
    at("2022-04-20 09:00")
    results = deadlines.tick()
    done = [(e.effect.code, e.cohort.code) for e, r, err in results if r is not None]
    assert ("auto_confirm", "g9") in done and ("flag_overdue", "g9") in done and not any(err for _, _, err in results)
    dues = [e.due_at for e, _, _ in results]
    assert dues == sorted(dues)
    assert deadlines.tick() == []
    # The command does the same and says so.
    runner = data_app.test_cli_runner()
    out = runner.invoke(args=["cqe", "tick", "--now", "2022-04-20T09:00"])
    assert out.exit_code == 0 and "Nothing due." in out.output


def test_tick_command_applies_what_is_due_at_the_given_instant(session, data_app):
    runner = data_app.test_cli_runner()
    out = runner.invoke(args=["cqe", "tick", "--now", "2022-03-28T16:00", "--district", "bs"])
    assert out.exit_code == 0, out.output
    assert "九年级 · 逾期默认通过: 已自动确认" in out.output
    assert "六至八年级 · 逾期默认通过: 已自动确认" in out.output  # both cohorts confirm until 03-28 16:00
    assert "升级为问题数据" not in out.output  # 03-29 16:00: not yet
    assert runner.invoke(args=["cqe", "tick", "--district", "zz"]).exit_code != 0


def test_a_failing_effect_changes_nothing_is_recorded_and_retried(session, at, monkeypatch):
    at("2022-03-28 16:00")
    cohort = _cohort("g9")
    real = deadlines.IMPLEMENTATIONS["auto_confirm"]

    def broken(run_id, cohort, at):
        real(run_id, cohort, at)  # the records move … and then the effect fails
        raise RuntimeError("disk full")

    monkeypatch.setitem(deadlines.IMPLEMENTATIONS, "auto_confirm", broken)
    entered_before = db.session.execute(sa.select(sa.func.count(Record.id)).where(Record.state == "entered")).scalar()
    with pytest.raises(RuntimeError):
        deadlines.run("auto_confirm", cohort.id)
    db.session.expire_all()
    assert db.session.execute(sa.select(sa.func.count(Record.id)).where(Record.state == "entered")).scalar() == entered_before
    [failed] = _runs("auto_confirm")
    assert (failed.status, failed.attempts) == ("failed", 1) and "disk full" in failed.error
    # The failure is in the history (nothing else is: the effect rolled back).
    assert [(e.action, e.after["status"]) for e in _run_events(failed.id)] == [("deadline_failed", "failed")]
    monkeypatch.setitem(deadlines.IMPLEMENTATIONS, "auto_confirm", real)
    results = {e.effect.code: r for e, r, _ in deadlines.tick() if e.cohort.id == cohort.id}
    assert results["auto_confirm"].id == failed.id
    db.session.expire_all()
    assert (failed.status, failed.attempts, failed.error) == ("done", 2, "")
    assert failed.counts["records"] > 0
    assert [e.action for e in _run_events(failed.id)] == ["deadline_failed", "auto_confirm"]


# --- the district admin's page --------------------------------------------------------------------


def test_deadlines_page_shows_done_due_and_scheduled(client, login_as, at):
    at("2022-03-28 16:00")
    deadlines.run("auto_confirm", _cohort("g9").id, trigger="tick")
    run = _runs("auto_confirm")[0]
    at("2022-03-29 16:30")
    login_as("admin")
    page = client.get("/admin/deadlines/").get_data(as_text=True)
    assert f"已自动确认 {run.counts['records']:,} 条 · 2022-03-28 16:00" in page
    assert "已到期，待补执行" in page and "待执行" in page and "立即补执行全部到期任务" in page
    # Run one due effect from the page.
    resp = client.post("/admin/deadlines/run", data={"csrf_token": csrf_from(page), "effect": "escalate",
                                                      "cohort_id": _cohort("g9").id})
    assert resp.status_code == 302
    assert _runs("escalate")[0].trigger == "admin"
    for other in ("s1_admin", "district_clerk", "s1g9c1n01", "city_auditor"):
        login_as(other)
        assert client.get("/admin/deadlines/").status_code == 403
        token = csrf_from(client.get("/inbox").get_data(as_text=True))
        assert client.post("/admin/deadlines/catch-up", data={"csrf_token": token}).status_code == 403


def test_catch_up_runs_as_a_job_with_progress(client, login_as, at, redis_conn):
    from rq import Queue, SimpleWorker

    at("2022-04-20 09:00")
    login_as("admin")
    page = client.get("/admin/deadlines/").get_data(as_text=True)
    resp = client.post("/admin/deadlines/catch-up", data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 302 and "job=" in resp.location
    job_id = resp.location.split("job=")[1]
    page = client.get(resp.location).get_data(as_text=True)
    assert 'id="cqe-job-bar"' in page
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "queued"
    SimpleWorker([Queue("default", connection=redis_conn)], connection=redis_conn).work(burst=True)
    info = client.get(f"/jobs/{job_id}").get_json()
    assert info["status"] == "finished" and info["progress"]["done"] == info["progress"]["total"] > 0
    assert info["result"]["errors"] == [] and len(info["result"]["applied"]) == info["progress"]["total"]
    login_as("district_clerk")
    assert client.get(f"/jobs/{job_id}").status_code == 404  # not theirs


# --- RQ schedule ------------------------------------------------------------------------------------


def _scheduled(redis_conn) -> dict[str, float]:
    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    key = ScheduledJobRegistry(queue=Queue("default", connection=redis_conn)).key
    return {k.decode(): s for k, s in redis_conn.zrange(key, 0, -1, withscores=True)}


def test_saving_a_schedule_moves_its_jobs_and_doubles_nothing(session, at, redis_conn):
    from jobs.deadlines import job_id

    at("2022-03-01 09:00")
    window = _window("g9", "confirmation")
    cohort = window.cohort
    admin = user("admin")
    workflow.shift_window(admin, window, starts_at=window.starts_at, ends_at=window.ends_at + timedelta(hours=1),
                          reason="延长一小时")
    first = _scheduled(redis_conn)
    jid = job_id("auto_confirm", cohort.id)
    assert first[jid] == (window.ends_at).timestamp()
    # Jobs of every effect of the cohort; the due ones (preparation ended) now.
    assert {job_id(code, cohort.id) for code in EFFECTS} <= set(first)
    workflow.shift_window(admin, window, starts_at=window.starts_at, ends_at=window.ends_at, reason="再次保存")
    assert _scheduled(redis_conn) == first
    later = window.ends_at + timedelta(days=1)
    workflow.shift_window(admin, window, starts_at=window.starts_at, ends_at=later, reason="顺延一天")
    moved = _scheduled(redis_conn)
    assert set(moved) == set(first) and moved[jid] == later.timestamp()
    assert moved[job_id("remind_confirmation", cohort.id)] == (later - timedelta(hours=24)).timestamp()
    from rq import Queue

    assert Queue("default", connection=redis_conn).count == 0
    # Once done, an effect has no job any more.
    at(later)
    deadlines.run("auto_confirm", cohort.id)
    from jobs.deadlines import schedule_cohort

    schedule_cohort(cohort)
    assert jid not in _scheduled(redis_conn)


def test_scheduled_job_applies_its_effect_when_run(session, at, redis_conn):
    from rq import Queue, SimpleWorker

    from jobs.deadlines import apply_effect

    cohort = _cohort("g9")
    queue = Queue("default", connection=redis_conn)
    at("2022-03-28 15:59")
    job = queue.enqueue(apply_effect, "auto_confirm", cohort.id)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert job.return_value()["status"] == "not_due" and _runs("auto_confirm") == []
    at("2022-03-28 16:00")
    job = queue.enqueue(apply_effect, "auto_confirm", cohort.id)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert job.return_value()["status"] == "done" and _runs("auto_confirm")[0].trigger == "rq"
    job = queue.enqueue(apply_effect, "auto_confirm", cohort.id)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert job.return_value() == {"status": "already_done"}


# --- Redis down ------------------------------------------------------------------------------------

PAGES = {
    "admin": ["/admin/", "/admin/deadlines/", "/admin/windows/", "/admin/cases/", "/admin/records/honour_title/",
              "/admin/audit/", "/inbox", "/admin/users/"],
    "s1_clerk": ["/admin/", "/admin/records/honour_title/", "/admin/corrections/", "/inbox"],
    "s1g9c1n01": ["/me/records", "/me/report", "/me/class", "/me/appeals", "/inbox"],
}


@pytest.fixture
def redis_down(app, data_app):
    saved = app.config["REDIS_URL"], data_app.config["REDIS_URL"]
    app.config["REDIS_URL"] = data_app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"
    yield
    app.config["REDIS_URL"], data_app.config["REDIS_URL"] = saved


def test_without_redis_every_page_works_a_schedule_saves_and_tick_catches_up(client, login_as, at, redis_down):
    at("2022-03-28 17:00")
    for username, urls in PAGES.items():
        login_as(username)
        for url in urls:
            resp = client.get(url)
            assert resp.status_code == 200, (username, url, resp.status_code)
    login_as("admin")
    page = client.get("/admin/deadlines/").get_data(as_text=True)
    assert "Redis 无法连接" in page
    window = _window("g6_8", "issue_handling")
    url = f"/admin/windows/edit/?id={window.id}"
    resp = client.post(url, data={"csrf_token": csrf_from(client.get(url).get_data(as_text=True)),
                                  "starts_at": "2022-04-08 08:00", "ends_at": "2022-04-22 16:00",
                                  "reason": "延长问题处理"})
    assert resp.status_code == 302
    db.session.expire_all()
    assert policy_fmt(window.ends_at) == "2022-04-22 16:00"
    # The catch-up button works without the queue, in the request.
    resp = client.post("/admin/deadlines/catch-up", data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 302 and "job=" not in resp.location
    assert {r.effect for r in _runs()} >= {"lock_participants", "auto_confirm", "remind_confirmation"}
    bs = _cohort("g9").term.district_id
    assert deadlines.tick(district_id=bs) == []  # the admin's district is caught up; the other city is not theirs
    assert {e.cohort.term.district_id for e, _, _ in deadlines.tick()} == {_other_district_id()}


def _other_district_id() -> int:
    return db.session.execute(sa.select(District.id).where(District.code != "bs")).scalars().first()


def policy_fmt(dt) -> str:
    from models import policy

    return policy.fmt(dt)
