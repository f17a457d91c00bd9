"""Deadline effects on RQ: each effect of each cohort is one job scheduled at its window boundary with
``enqueue_at`` and a deterministic id (``cqe-deadline-<effect>-<cohort>``), so saving a schedule again
moves the job instead of adding one. A minute tick catches up anything a down queue missed; without
Redis the web process runs the same tick itself (jobs/ticker.py).
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from jobs import app_context, job, progress, queue
from models import deadlines
from models.clock import now

log = logging.getLogger(__name__)

EFFECT_TIMEOUT = 1800  # a million-record auto-confirm takes seconds; half an hour is the hard stop
TICK_TIMEOUT = 3600


def job_id(code: str, cohort_id: int) -> str:
    return f"cqe-deadline-{code}-{cohort_id}"


@job(timeout=EFFECT_TIMEOUT)
@app_context
def apply_effect(code: str, cohort_id: int) -> dict:
    """The scheduled job: apply the effect if it is due and not yet done."""
    try:
        done = deadlines.run(code, cohort_id, trigger="rq")
    except deadlines.NotDue as exc:
        # Its window was moved later and this job could not be moved (it had started): the job of
        # the new time, or the minute tick, applies it then.
        return {"status": "not_due", "message": exc.message}
    if done is None:
        return {"status": "already_done"}
    return {"status": "done", "run_id": done.id, "counts": done.counts}


@job(timeout=TICK_TIMEOUT)
@app_context
def tick_job(district_id: int | None = None) -> dict:
    """Apply everything due and not yet done (a batch job: reports progress per effect)."""
    results = deadlines.tick(district_id=district_id, trigger="rq", progress=progress)
    return summarize(results)


@job(timeout=60)
@app_context
def minute_tick() -> dict:
    """The worker's own clock: tick now, then schedule the next minute (one job id per minute, so
    several workers starting at once do not multiply it)."""
    result = summarize(deadlines.tick(trigger="tick"))
    schedule_next_tick()
    return result


def summarize(results) -> dict:
    return {"applied": [(e.effect.code, e.cohort.id, r.counts) for e, r, err in results if r is not None],
            "errors": [(e.effect.code, e.cohort.id, err) for e, r, err in results if err]}


def schedule_next_tick(at: datetime | None = None) -> None:
    q = queue()
    if q is None:
        return
    nxt = (at or datetime.now().astimezone()).replace(second=0, microsecond=0) + timedelta(minutes=1)
    q.enqueue_at(nxt, minute_tick, job_id=f"cqe-tick-{nxt.astimezone().strftime('%Y%m%d%H%M')}",
                 job_timeout=60, result_ttl=600, failure_ttl=24 * 3600)


def schedule_cohort(cohort, *, q=None) -> dict:
    """(Re)schedule every effect of a cohort: future and not-done ones at their boundary, due and not
    done ones now; done ones have no job. Returns {job id: scheduled instant or None}."""
    q = q or queue()
    if q is None:
        return {}
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    runs = deadlines.runs_of([cohort.id])
    at = now()
    out = {}
    for effect in deadlines.EFFECTS.values():
        due = effect.due_at(cohort)
        jid = job_id(effect.code, cohort.id)
        run = runs.get((effect.code, cohort.id))
        try:
            existing = Job.fetch(jid, connection=q.connection)
        except NoSuchJobError:
            existing = None
        if existing is not None:
            if existing.get_status(refresh=False) == JobStatus.STARTED:
                out[jid] = None  # running now; it either applies the effect or reschedules itself
                continue
            existing.delete()
        if due is None or (run is not None and run.status == "done"):
            out[jid] = None
            continue
        when = max(due, at)
        q.enqueue_at(when, apply_effect, effect.code, cohort.id, job_id=jid, job_timeout=EFFECT_TIMEOUT,
                     result_ttl=7 * 24 * 3600, failure_ttl=30 * 24 * 3600,
                     description=f"{cohort.name} · {effect.name}")
        out[jid] = when
    return out


def schedule_all(district_id: int | None = None) -> int:
    """Schedule the effects of every current cohort; safe to repeat (what the worker does at start)."""
    q = queue()
    if q is None:
        return 0
    n = 0
    for cohort in deadlines.cohorts_of_current_terms(district_id):
        n += sum(1 for when in schedule_cohort(cohort, q=q).values() if when is not None)
    return n


def reschedule_quietly(cohort) -> str:
    """After a schedule change is committed: move its jobs. Redis being down must not fail the save —
    the tick applies whatever is due once the queue is back (or the web process ticks without it)."""
    try:
        schedule_cohort(cohort)
        return ""
    except Exception as exc:  # noqa: BLE001 - redis.ConnectionError, timeouts: reported, not raised
        log.warning("could not schedule the deadlines of cohort %s: %s", cohort.id, exc)
        return str(exc)


def scheduled_jobs(cohort_ids) -> dict[str, datetime]:
    """Job id → the instant RQ will run it, for the effects waiting in its scheduled registry."""
    q = queue()
    if q is None:
        return {}
    from datetime import UTC

    from rq.registry import ScheduledJobRegistry

    key = ScheduledJobRegistry(queue=q).key
    ids = [job_id(code, cid) for cid in cohort_ids for code in deadlines.EFFECTS]
    pipe = q.connection.pipeline()
    for jid in ids:
        pipe.zscore(key, jid)
    scores = pipe.execute()
    return {jid: datetime.fromtimestamp(score, UTC) for jid, score in zip(ids, scores, strict=True)
            if score is not None}
