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

    return redis.Redis.from_url(url)


def queue(name: str = "default"):
    from rq import Queue

    conn = redis_connection()
    return Queue(name, connection=conn) if conn is not None else None


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
