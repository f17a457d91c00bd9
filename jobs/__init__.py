"""Background jobs. One decorator fixes queue, timeout and TTLs; arguments are ids, never ORM objects.

With ``REDIS_URL`` set, jobs go to RQ (``rq worker --with-scheduler`` runs them); without it (the
embedded default) they run in-process at once, so ``make run`` needs nothing else.
"""
from __future__ import annotations

import functools

from flask import current_app

DEFAULT_TIMEOUT = 600  # seconds: no job runs unbounded
RESULT_TTL = 24 * 3600
FAILURE_TTL = 7 * 24 * 3600


def redis_connection():
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    import redis

    # Short timeouts: a Redis that is down must cost a page a moment, never hang it.
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)


def queue(name: str = "default"):
    from rq import Queue

    conn = redis_connection()
    return Queue(name, connection=conn) if conn is not None else None


def live_queue(name: str = "default"):
    """The queue when Redis is configured and answers now; None otherwise (then do the work in the request)."""
    try:
        q = queue(name)
        if q is not None:
            q.connection.ping()
        return q
    except Exception:  # noqa: BLE001 - Redis down
        return None


def job(timeout: int = DEFAULT_TIMEOUT, queue_name: str = "default"):
    """Mark a plain function as a job: ``fn.enqueue(*ids)`` runs it on RQ, or inline without Redis."""

    def wrap(fn):
        @functools.wraps(fn)
        def enqueue(*args, job_id: str | None = None):
            q = queue(queue_name)
            if q is None:
                return fn(*args)
            return q.enqueue(fn, *args, job_id=job_id, job_timeout=timeout, result_ttl=RESULT_TTL,
                             failure_ttl=FAILURE_TTL)

        fn.enqueue = enqueue
        fn.job_timeout = timeout
        return fn

    return wrap


def app_context(fn):
    """Run a job inside an app context (a worker process builds its own app)."""

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        from flask import has_app_context

        if has_app_context():
            return fn(*args, **kwargs)
        from app import create_app

        with create_app().app_context():
            return fn(*args, **kwargs)

    return inner


def progress(done: int, total: int, label: str = "") -> None:
    """Report a batch job's progress (shown as a progress bar); a no-op outside an RQ job."""
    from rq import get_current_job

    current = get_current_job()
    if current is None:
        return
    current.meta["progress"] = {"done": done, "total": total, "label": label}
    current.save_meta()


def status(job_id: str) -> dict | None:
    """A job's state for the progress bar: status, progress, result or error; None if unknown."""
    q = queue()
    if q is None:
        return None
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus
    from rq.registry import StartedJobRegistry

    try:
        found = Job.fetch(job_id, connection=q.connection)
    except NoSuchJobError:
        return None
    state = found.get_status(refresh=False)
    if state == JobStatus.STARTED:
        # A worker killed mid-job (SIGKILL, out of memory, a lost machine) leaves its job "started". RQ
        # calls it abandoned (failed) once the job's heartbeat has lapsed (about 90 s), but only when a
        # worker's maintenance next runs (every 10 minutes). Ask now: the page can then say the job failed
        # and offer to run it again, instead of showing a progress bar that never moves.
        StartedJobRegistry(found.origin, connection=q.connection).cleanup()
        state = found.get_status(refresh=True)
    result = found.return_value() if state == "finished" else None
    return {"id": found.id, "status": str(state.value if hasattr(state, "value") else state),
            "progress": found.meta.get("progress"), "user_id": found.meta.get("user_id"), "result": result,
            "error": "任务失败，请查看后台任务日志。" if state == "failed" else ""}
