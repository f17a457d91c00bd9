"""Deadlines on a real RQ worker process (`flask cqe worker --burst`), against committed data in a
database of their own (a worker is another process: it cannot see a test's rolled-back transaction):
a scheduled effect fires at its time and not before; re-saving a schedule doubles nothing; a worker
killed in the middle of an effect leaves the database as it was, and the rerun ends exactly where an
uninterrupted run ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import IN_CI, REDIS_URL, ROOT, _reset_schema, own_database_url, rolled_back_session

from app import create_app
from models import AuditEvent, Case, Cohort, District, Record, Term, User, db, deadlines, workflow
from models.deadlines import DeadlineRun

pytestmark = pytest.mark.skipif(not REDIS_URL and not IN_CI, reason="REDIS_URL not set (local run without Redis)")


def _redis_url() -> str:
    """A Redis database of its own: jobs left by other tests must never reach this worker."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(REDIS_URL)
    own = "/13" if parts.path == "/14" else "/14"
    return urlunsplit(parts._replace(path=own))


@pytest.fixture(scope="module")
def wapp(tmp_path_factory):
    import redis

    url = own_database_url(tmp_path_factory, "worker")
    redis_url = _redis_url()
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": True, "SECRET_KEY": "test-secret",
                      "REDIS_URL": redis_url, "CQE_NOW": None, "SERVER_NAME": None})
    with app.app_context():
        _reset_schema(app)
        from seed.demo import seed_demo

        seed_demo(students_per_class=3)
        db.session.commit()
        db.session.remove()
    app.config["CQE_TEST_URLS"] = (url, redis_url)
    yield app
    conn.flushdb()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def wctx(wapp):
    with wapp.app_context():
        yield wapp
        db.session.remove()


def _worker(wapp, *, pin: str | None = None, fault: str | None = None, mark: str | None = None, wait=True):
    url, redis_url = wapp.config["CQE_TEST_URLS"]
    env = {k: v for k, v in os.environ.items() if k not in ("CQE_NOW", "CQE_FAULT_PAUSE", "CQE_FAULT_MARK")}
    env.update(DATABASE_URL=url, REDIS_URL=redis_url, FLASK_APP="app", SECRET_KEY="test-secret")
    if pin:
        env["CQE_NOW"] = pin
    if fault:
        env["CQE_FAULT_PAUSE"], env["CQE_FAULT_MARK"] = fault, mark
    cmd = [sys.executable, "-m", "flask", "cqe", "worker", "--burst", "--no-tick"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)
    if wait:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, out
        return out
    return proc


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _wait_gone(pid: int) -> None:
    deadline = time.time() + 30
    while os.path.exists(f"/proc/{pid}") and time.time() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return  # a zombie holds nothing
        except OSError:
            return
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), f"process {pid} survived SIGKILL"


def _cohort(code: str) -> Cohort:
    return db.session.execute(sa.select(Cohort).join(Term).join(District, Term.district_id == District.id).where(
        District.code == "bs", Term.is_current.is_(True), Cohort.code == code)).scalar_one()


def _admin() -> User:
    return db.session.execute(sa.select(User).where(User.username == "admin")).scalar_one()


def _fresh() -> None:
    """End the session's transaction: on SQLite a reader keeps its snapshot until then."""
    db.session.rollback()


def _run(code: str, cohort_id: int) -> DeadlineRun | None:
    _fresh()
    return db.session.execute(sa.select(DeadlineRun).where(DeadlineRun.effect == code,
                                                           DeadlineRun.cohort_id == cohort_id)).scalar_one_or_none()


def _scheduled(conn) -> dict[str, float]:
    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    key = ScheduledJobRegistry(queue=Queue("default", connection=conn)).key
    return {k.decode(): s for k, s in conn.zrange(key, 0, -1, withscores=True)}


def test_a_scheduled_effect_fires_at_its_time_once(wctx):
    import redis

    from jobs.deadlines import job_id

    conn = redis.Redis.from_url(wctx.config["REDIS_URL"])
    cohort = _cohort("g9")
    window = cohort.window("confirmation")
    pending = db.session.execute(sa.select(sa.func.count(Record.id)).where(deadlines.cohort_records(
        cohort, Record.state == "entered", Record.origin.in_(deadlines.CLERK_ORIGINS)))).scalar_one()
    assert pending > 0
    # Confirmation now ends a few seconds from now (wall clock); saving it three times — the last one
    # moving it — leaves one job, at the last time.
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
    admin = _admin()
    workflow.shift_window(admin, window, starts_at=window.starts_at, ends_at=end + timedelta(minutes=5), reason="a")
    workflow.shift_window(admin, window, starts_at=window.starts_at, ends_at=end + timedelta(minutes=5), reason="b")
    workflow.shift_window(admin, window, starts_at=window.starts_at, ends_at=end, reason="c")
    jid = job_id("auto_confirm", cohort.id)
    scheduled = _scheduled(conn)
    assert scheduled[jid] == end.timestamp()
    assert sum(1 for k in scheduled if k.startswith("cqe-deadline-auto_confirm-")) == 1

    out = _worker(wctx)  # before its time: the past effects run, auto-confirm waits
    assert _run("auto_confirm", cohort.id) is None
    assert _run("lock_participants", cohort.id) is not None, out
    assert jid in _scheduled(conn)
    time.sleep(max(0.0, end.timestamp() - time.time()) + 1.5)
    _worker(wctx)
    run = _run("auto_confirm", cohort.id)
    assert run is not None and run.status == "done" and run.trigger == "rq"
    assert run.counts == {"records": pending} and run.ran_at >= end and run.due_at == end
    assert db.session.execute(sa.select(sa.func.count(Record.id)).where(
        Record.deadline_run_id == run.id, Record.state == "confirmed")).scalar_one() == pending
    assert jid not in _scheduled(conn)
    _worker(wctx)  # nothing left: still one run, one event
    assert db.session.execute(sa.select(sa.func.count(AuditEvent.id)).where(
        AuditEvent.object_type == "DeadlineRun", AuditEvent.object_id == str(run.id))).scalar_one() == 1


def _state(cohort_id: int) -> dict:
    """What an effect leaves behind, without the ids a database hands out (run ids, sequence values)."""
    _fresh()
    records = db.session.execute(sa.select(Record.id, Record.state, Record.version_id,
                                           Record.deadline_run_id.is_not(None)).order_by(Record.id)).all()
    runs = db.session.execute(sa.select(DeadlineRun.effect, DeadlineRun.cohort_id, DeadlineRun.status,
                                        DeadlineRun.counts).order_by(DeadlineRun.effect, DeadlineRun.cohort_id)).all()
    events = db.session.execute(sa.select(AuditEvent.action, AuditEvent.reason).where(
        AuditEvent.object_type == "DeadlineRun").order_by(AuditEvent.action)).all()
    cases = db.session.execute(sa.select(sa.func.count(Case.id))).scalar_one()
    return {"records": [tuple(r) for r in records], "runs": [tuple(r) for r in runs],
            "events": [tuple(e) for e in events], "cases": cases}


def _uninterrupted(cohort_id: int, at: datetime) -> dict:
    """The state an uninterrupted auto-confirm gives, computed in a transaction that is rolled back."""
    conn = db.engine.connect()
    outer = conn.begin()
    try:
        with rolled_back_session(conn):
            assert deadlines.run("auto_confirm", cohort_id, at=at) is not None
            return _state(cohort_id)
    finally:
        outer.rollback()
        conn.close()


def test_a_worker_killed_mid_effect_changes_nothing_and_the_rerun_completes_once(wctx, tmp_path):
    import redis
    from rq import Queue

    from jobs.deadlines import apply_effect, job_id

    cohort = _cohort("g6_8")
    at_iso = "2022-03-28T16:00:00+08:00"  # the worker's clock: confirmation of grades 6–8 just ended
    at = datetime.fromisoformat(at_iso)
    before = _state(cohort.id)
    expected = _uninterrupted(cohort.id, at)
    assert _state(cohort.id) == before and expected != before

    conn = redis.Redis.from_url(wctx.config["REDIS_URL"])
    conn.flushdb()
    queue = Queue("default", connection=conn)
    queue.enqueue(apply_effect, "auto_confirm", cohort.id, job_id=job_id("auto_confirm", cohort.id), job_timeout=600)
    mark = str(tmp_path / "paused")
    proc = _worker(wctx, pin=at_iso, fault="auto_confirm:120", mark=mark, wait=False)
    deadline = time.time() + 120
    while not os.path.exists(mark):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < deadline, "the worker never reached the middle of the effect"
        time.sleep(0.1)
    # The effect's statements have run (records moved, run row, history event), uncommitted: kill the
    # worker and its work horse (RQ puts the horse in a session of its own), as a crash would.
    horses = _children(proc.pid)
    assert horses, "the job runs in a forked work horse"
    for pid in horses:
        os.kill(pid, signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    for pid in horses:
        _wait_gone(pid)
    assert _state(cohort.id) == before
    # The rerun finishes exactly as an uninterrupted run would have.
    assert deadlines.run("auto_confirm", cohort.id, at=at, trigger="tick") is not None
    after = _state(cohort.id)
    assert after["records"] == expected["records"]
    assert [r for r in after["runs"] if r[0] == "auto_confirm"] == [r for r in expected["runs"] if r[0] == "auto_confirm"]
    assert [e for e in after["events"] if e[0] == "auto_confirm"] == [e for e in expected["events"] if e[0] == "auto_confirm"]
    # And the worker, run again, finds nothing more to do.
    _worker(wctx, pin=at_iso)
    assert _state(cohort.id)["records"] == expected["records"]


def test_without_redis_the_web_process_ticks_by_itself(wapp):
    """The embedded default: no worker, no Redis; the ticker thread applies whatever is due."""
    from jobs import ticker

    with wapp.app_context():
        due = len(deadlines.pending(datetime.now(UTC)))
    assert due > 0
    stop = ticker.start(wapp, interval=0.5)
    assert stop is not None and ticker.start(wapp) is None  # one ticker per process
    try:
        deadline = time.time() + 60
        with wapp.app_context():
            while deadlines.pending(datetime.now(UTC)):
                assert time.time() < deadline, "the ticker did not catch up"
                db.session.remove()
                time.sleep(0.2)
            runs = db.session.execute(sa.select(DeadlineRun.trigger, DeadlineRun.status)).all()
            assert {r.status for r in runs} == {"done"} and "tick" in {r.trigger for r in runs}
            db.session.remove()
    finally:
        ticker.reset()
