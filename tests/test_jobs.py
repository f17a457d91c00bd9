"""Jobs run on real Redis through RQ; without Redis they run inline."""
from __future__ import annotations

import pytest


def test_probe_job_runs_on_rq(app, session, redis_conn):
    from rq import Queue, SimpleWorker

    from jobs.health import probe

    queue = Queue("default", connection=redis_conn)
    job = queue.enqueue(probe, "ci", job_timeout=probe.job_timeout)
    assert queue.count == 1
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    job.refresh()
    assert job.is_finished, job.latest_result()
    result = job.return_value()
    assert result["ok"] is True and result["students"] > 0 and result["note"] == "ci"


def test_enqueue_goes_to_redis_when_configured(app, session, redis_conn):
    from jobs.health import probe

    with app.test_request_context():
        job = probe.enqueue("x", job_id="probe-test")
    assert job.id == "probe-test"
    assert job.timeout == 30


def test_inline_without_redis(app, session):
    from jobs.health import probe

    saved = app.config["REDIS_URL"]
    app.config["REDIS_URL"] = None
    try:
        with app.test_request_context():
            result = probe.enqueue("inline")
        assert result["ok"] is True and result["note"] == "inline"
    finally:
        app.config["REDIS_URL"] = saved


def test_healthz(client, redis_conn):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"database": "ok", "redis": "ok"}


@pytest.mark.parametrize("path", ["/healthz"])
def test_healthz_without_login(client, path):
    assert client.get(path).status_code == 200
