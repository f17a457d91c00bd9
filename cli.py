"""``flask cqe …``: the project's commands (seed the demo, sync a profile)."""
from __future__ import annotations

import time

import click
import sqlalchemy as sa
from flask.cli import AppGroup

from models import District, db

cqe = AppGroup("cqe", help="CQE commands.")


@cqe.command("seed-demo")
@click.option("--students-per-class", default=30, show_default=True, type=int)
@click.option("--seed", "seed_value", default=2022, show_default=True, type=int)
@click.option("--reset", is_flag=True, help="Drop and rebuild the schema first (history included).")
def seed_demo_command(students_per_class: int, seed_value: int, reset: bool) -> None:
    """Build the demo district (re-runnable: does nothing if the database already has data)."""
    from seed.demo import PASSWORD, seed_demo

    if reset:
        # History is append-only (rows cannot be deleted), so a demo reset rebuilds the schema.
        from flask_migrate import upgrade

        db.session.remove()
        db.drop_all()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        upgrade()
    elif db.session.execute(sa.select(District.id).limit(1)).first():
        click.echo("The database already holds a district; nothing to do (use --reset to rebuild the demo).")
        return
    from seed.changsha_demo import seed_changsha

    started = time.perf_counter()
    counts = seed_demo(students_per_class=students_per_class, seed=seed_value)
    db.session.commit()
    elapsed = time.perf_counter() - started
    click.echo(f"Demo seeded in {elapsed:.1f}s: {counts['schools']} schools, {counts['classes']} classes, "
               f"{counts['students']} students, {counts['records']} records, {counts['users']} accounts "
               f"(password {PASSWORD}).")
    # The second profile side by side: 长沙市岳麓区 on the Changsha profile's 2017 timeline.
    cs = seed_changsha()
    db.session.commit()
    click.echo(f"Changsha demo district (岳麓区, 2017 timeline): {cs['schools']} schools, {cs['classes']} classes, "
               f"{cs['students']} students, {cs['users']} accounts (cs_admin, cs_yl01_principal, cs_yl01c1_eval1, "
               f"cs_yl01c1n01 …).")


@cqe.command("seed-scale")
@click.option("--students", required=True, type=int, help="How many students (one district per 50,000).")
@click.option("--seed", "seed_value", default=1, show_default=True, type=int)
def seed_scale_command(students: int, seed_value: int) -> None:
    """A synthetic district or city of N students with about 30 records each, inserted in bulk."""
    from seed.scale import seed_scale

    with click.progressbar(length=students, label="学生", show_pos=True) as bar:
        counts = seed_scale(students, seed=seed_value, progress=bar.update)
        db.session.commit()
    click.echo(f"{counts['students']:,} students, {counts['records']:,} records in {counts['districts']} district(s), "
               f"{counts['schools']} schools: {counts['seconds']:.1f}s, {counts['records_per_second']:,.0f} records/s")


@cqe.command("sync-profile")
def sync_profile_command() -> None:
    """Load the Shanghai profile's categories and phases into the database (idempotent)."""
    from seed import shanghai
    from seed.loader import sync_profile

    profile = sync_profile(shanghai)
    db.session.commit()
    click.echo(f"Profile {profile.code}: {len(shanghai.CATEGORIES)} categories.")


EFFECT_CHOICES = ["auto-confirm", "escalate", "lock-participants", "open-publication", "close-appeals",
                  "flag-overdue", "remind-student-entry", "remind-confirmation", "remind-correction",
                  "remind-issue-handling"]


@cqe.command("deadline")
@click.argument("effect", type=click.Choice(EFFECT_CHOICES))
@click.option("--district", "district_code", required=True, help="District code, e.g. bs.")
@click.option("--cohort", "cohort_code", required=True, help="Cohort code of the current term, e.g. g9 or g6_8.")
def deadline_command(effect: str, district_code: str, cohort_code: str) -> None:
    """Apply one deadline effect by hand, e.g. 逾期默认通过 (auto-confirm) or 升级为问题数据 (escalate).

    Every effect happens once per cohort (a second run changes nothing) and refuses before its time."""
    from models import Cohort, Term, deadlines

    cohort = db.session.execute(
        sa.select(Cohort).join(Term, Cohort.term_id == Term.id).join(District, Term.district_id == District.id)
        .where(District.code == district_code, Term.is_current.is_(True), Cohort.code == cohort_code)
    ).scalar_one_or_none()
    if cohort is None:
        raise click.ClickException(f"No cohort {cohort_code!r} in the current term of district {district_code!r}.")
    code = effect.replace("-", "_")
    try:
        done = deadlines.run(code, cohort.id, trigger="cli")
    except deadlines.NotDue as exc:
        raise click.ClickException(exc.message) from None
    name = deadlines.EFFECTS[code].name
    if done is None:
        click.echo(f"{cohort.name} · {name}: already done, nothing changed.")
    else:
        click.echo(f"{cohort.name} · {name}: {deadlines.EFFECTS[code].summary(done.counts)} (run {done.id}, "
                   f"{done.seconds:.2f}s).")


@cqe.command("tick")
@click.option("--now", "now_iso", default=None, help="Apply what is due at this instant (ISO; naive = Beijing time).")
@click.option("--district", "district_code", default=None, help="Only this district.")
def tick_command(now_iso: str | None, district_code: str | None) -> None:
    """Apply every deadline effect that is due and not yet done (catch-up after any outage)."""
    from models import deadlines
    from settings import parse_instant

    at = parse_instant(now_iso) if now_iso else None
    district_id = None
    if district_code:
        district_id = db.session.execute(sa.select(District.id).where(District.code == district_code)).scalar()
        if district_id is None:
            raise click.ClickException(f"No district {district_code!r}.")
    results = deadlines.tick(at, district_id, trigger="cli")
    if not results:
        click.echo("Nothing due.")
    failed = 0
    for entry, done, error in results:
        label = f"{entry.cohort.name} · {entry.effect.name}"
        if done is not None:
            click.echo(f"{label}: {entry.effect.summary(done.counts)}")
        elif error:
            failed += 1
            click.echo(f"{label}: FAILED {error}", err=True)
        else:
            click.echo(f"{label}: already done")
    if failed:
        raise SystemExit(1)


@cqe.command("evidence-sweep")
@click.option("--days", default=7, show_default=True, type=float,
              help="Only stored files untouched for this many days (uploads in progress are younger).")
@click.option("--dry-run", is_flag=True, help="Count what would go; remove nothing.")
def evidence_sweep_command(days: float, dry_run: bool) -> None:
    """Remove evidence bytes no file refers to any more (taken off, or an upload that failed); cron it daily."""
    from datetime import timedelta

    from models.evidence import size_text, sweep_orphans

    result = sweep_orphans(timedelta(days=days), dry_run=dry_run)
    verb = "Would remove" if dry_run else "Removed"
    click.echo(f"{verb} {result.removed} unreferenced file(s), {size_text(result.removed_bytes)}; "
               f"kept {result.referenced} in use and {result.kept_young} unreferenced younger than {days:g} day(s).")


@cqe.command("worker")
@click.option("--burst", is_flag=True, help="Run what is queued and due, then exit.")
@click.option("--tick/--no-tick", default=True, show_default=True,
              help="Schedule every current deadline and catch up at start, then tick every minute "
                   "(--no-tick: only run what is already queued).")
@click.option("--queue", "queue_names", multiple=True, default=["default"], show_default=True)
def worker_command(burst: bool, tick: bool, queue_names: tuple[str, ...]) -> None:
    """rq worker --with-scheduler, inside the app: schedules every current deadline, catches up, runs jobs."""
    import os

    from flask import current_app
    from rq import Queue, Worker

    from jobs import redis_connection
    from jobs.deadlines import minute_tick, schedule_all

    conn = redis_connection()
    if conn is None:
        raise click.ClickException("REDIS_URL is not set: without Redis the web process runs the deadlines itself.")
    engine = db.engine
    # Work horses are forked: each must open its own database connections, never reuse the parent's.
    os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
    queues = [Queue(name, connection=conn) for name in queue_names]
    if tick:
        click.echo(f"Scheduled {schedule_all()} deadline job(s).")
        queues[0].enqueue(minute_tick, job_id="cqe-tick-start", job_timeout=60, result_ttl=600)
    db.session.remove()
    current_app.logger.info("worker on %s", ", ".join(queue_names))
    Worker(queues, connection=conn).work(with_scheduler=True, burst=burst)


def register_cli(app) -> None:
    app.cli.add_command(cqe)
