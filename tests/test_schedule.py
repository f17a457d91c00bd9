"""The 2021学年第一学期 schedule of SPEC §2, read back at the exact boundary minutes (Beijing time)."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import Cohort, District, Term, db
from settings import parse_instant

EXPECTED = {
    "g9": {
        "preparation": ("2022-02-28 08:00", "2022-03-14 08:00"),
        "entry": ("2022-02-28 08:00", "2022-03-21 16:00"),
        "student_entry": ("2022-02-28 08:00", "2022-03-30 08:00"),
        "confirmation": ("2022-03-22 08:00", "2022-03-28 16:00"),
        "correction": ("2022-03-22 08:00", "2022-03-29 16:00"),
        "publication": ("2022-03-30 08:00", "2022-04-07 16:00"),
        "issue_handling": ("2022-03-30 08:00", "2022-04-12 16:00"),
        "archive": ("2022-04-13 08:00", "2022-05-10 16:00"),
    },
    "g6_8": {
        "preparation": ("2022-02-28 08:00", "2022-03-14 08:00"),
        "entry": ("2022-02-28 08:00", "2022-03-21 16:00"),
        "student_entry": ("2022-02-28 08:00", "2022-03-30 08:00"),
        "confirmation": ("2022-03-22 08:00", "2022-03-28 16:00"),
        "correction": ("2022-03-22 08:00", "2022-03-29 16:00"),
        "publication": ("2022-03-30 08:00", "2022-04-07 16:00"),
        "issue_handling": ("2022-03-30 08:00", "2022-05-27 16:00"),
    },
}
MINUTE = timedelta(minutes=1)


def _cohort(code):
    return db.session.execute(
        sa.select(Cohort).join(Term).join(District).where(District.code == "bs", Cohort.code == code)
    ).scalar_one()


@pytest.mark.parametrize("code", ["g9", "g6_8"])
def test_windows_exactly_as_seed(session, code):
    cohort = _cohort(code)
    assert {w.phase for w in cohort.windows} == set(EXPECTED[code])
    for phase, (start, end) in EXPECTED[code].items():
        w = cohort.window(phase)
        assert w.starts_at == parse_instant(start), phase
        assert w.ends_at == parse_instant(end), phase


@pytest.mark.parametrize("code", ["g9", "g6_8"])
def test_boundaries_at_the_minute(session, code):
    cohort = _cohort(code)
    for phase, (start, end) in EXPECTED[code].items():
        w = cohort.window(phase)
        s, e = parse_instant(start), parse_instant(end)
        assert not w.is_open(s - MINUTE), f"{phase} open before {start}"
        assert w.is_open(s), f"{phase} not open at {start} (inclusive)"
        assert w.is_open(e - MINUTE), f"{phase} closed before {end}"
        assert not w.is_open(e), f"{phase} still open at {end} (closes at the minute)"


def test_only_grade_nine_archives(session):
    assert _cohort("g9").window("archive") is not None
    assert _cohort("g6_8").window("archive") is None
    assert _cohort("g9").grades == [9] and _cohort("g6_8").grades == [6, 7, 8]


def test_stored_in_utc_shown_in_beijing(session):
    w = _cohort("g9").window("entry")
    assert w.starts_at.utcoffset() == timedelta(0)
    assert (w.starts_at.hour, w.starts_at.minute) == (0, 0)  # 08:00 Beijing = 00:00 UTC


def test_home_page_shows_phase_and_time_left(client, login_as, at):
    at("2022-03-25 09:00")
    login_as("s1g9c1n01")
    html = client.get("/admin/").get_data(as_text=True)
    assert "当前阶段" in html and "确认" in html
    assert "2022-03-28 16:00" in html and "3天7小时" in html


def test_migrations_match_the_models(session):
    """The schema built by the migrations is the schema the models declare (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    ctx = MigrationContext.configure(db.session.connection(), opts={"compare_type": True})
    assert compare_metadata(ctx, db.metadata) == []
