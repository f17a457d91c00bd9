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
    started = time.perf_counter()
    counts = seed_demo(students_per_class=students_per_class, seed=seed_value)
    db.session.commit()
    elapsed = time.perf_counter() - started
    click.echo(f"Demo seeded in {elapsed:.1f}s: {counts['schools']} schools, {counts['classes']} classes, "
               f"{counts['students']} students, {counts['records']} records, {counts['users']} accounts "
               f"(password {PASSWORD}).")


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


@cqe.command("deadline")
@click.argument("effect", type=click.Choice(["auto-confirm", "escalate"]))
@click.option("--district", "district_code", required=True, help="District code, e.g. bs.")
@click.option("--cohort", "cohort_code", required=True, help="Cohort code of the current term, e.g. g9 or g6_8.")
def deadline_command(effect: str, district_code: str, cohort_code: str) -> None:
    """Apply a deadline's effect by hand: 逾期默认通过 (auto-confirm) or 升级为问题数据 (escalate).

    Both are set-based and idempotent (a second run changes nothing) and refuse before their window ends."""
    from models import Cohort, Term, workflow

    cohort = db.session.execute(
        sa.select(Cohort).join(Term, Cohort.term_id == Term.id).join(District, Term.district_id == District.id)
        .where(District.code == district_code, Term.is_current.is_(True), Cohort.code == cohort_code)
    ).scalar_one_or_none()
    if cohort is None:
        raise click.ClickException(f"No cohort {cohort_code!r} in the current term of district {district_code!r}.")
    try:
        if effect == "auto-confirm":
            n = workflow.auto_confirm(cohort.id)
            click.echo(f"{cohort.name}: {n} records confirmed by default.")
        else:
            n = workflow.escalate_problem_data(cohort.id)
            click.echo(f"{cohort.name}: {n} rejected school records became problem data.")
    except workflow.WorkflowError as exc:
        raise click.ClickException(exc.message) from None


def register_cli(app) -> None:
    app.cli.add_command(cqe)
