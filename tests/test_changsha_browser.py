"""The Changsha pages in Debian's Chromium, on a database of this module's own: a student fills the peer sheet on a
phone (one screen, no sideways scrolling of the page, saved and counted), and a member of the class evaluation group
rates the class on a desktop, sees the distribution turn red over the quota, and finalises through the confirmation
dialog (cqe.js data-confirm under the CSP). Screenshots in tests/artifacts/."""
from __future__ import annotations

import os
from datetime import date

import pytest
import sqlalchemy as sa
from conftest import ARTIFACTS, browser_login, console_problems, demo_app, dispose, serving

from models import PeerRating, RatingFinal, School, SchoolClass, User, clock, db, evaluation
from seed import changsha

DIMS = [d["code"] for d in changsha.DIMENSIONS]


@pytest.fixture(scope="module")
def cs_app(tmp_path_factory):
    with demo_app(tmp_path_factory, "changsha") as app:
        from seed.changsha_demo import seed_changsha

        seed_changsha(class_sizes={"yl01": [6]})
        db.session.commit()
        u = lambda name: db.session.execute(sa.select(User).where(User.username == name)).scalar_one()  # noqa: E731
        school = db.session.execute(sa.select(School).where(School.code == "yl01")).scalar_one()
        klass = db.session.execute(sa.select(SchoolClass).where(SchoolClass.school_id == school.id)).scalar_one()
        term = evaluation.changsha_term(school.district_id)
        try:
            clock.pin("2017-03-20 09:00")
            group = evaluation.committee_of(term, "class", klass=klass)
            for j in range(1, 6):
                evaluation.add_member(u("cs_yl01_admin"), group, name="", kind="teacher",
                                      member=u(f"cs_yl01c1_eval{j}"), teaching_since=date(2015, 9, 1))
            evaluation.publish_committee(u("cs_yl01_admin"), group, days=3)
            evaluation.sign_pledge(u("cs_yl01c1_eval1"), term, u("cs_yl01c1_eval1").display_name)
            clock.pin("2017-06-03 10:00")
            evaluation.set_quotas(u("cs_city"), school, {code: {"A": 20, "B": 50} for code in DIMS})
            clock.pin("2017-06-14 10:00")
            evaluation.acknowledge_quotas(u("cs_yl01_principal"), school)
        finally:
            clock.pin(None)
        app.config["CS_CLASS_ID"] = klass.id
    yield app
    dispose(app)


@pytest.fixture(scope="module")
def live(cs_app):
    with serving(cs_app) as base:
        yield base


def _count(app, model) -> int:
    with app.app_context():
        n = db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar()
        db.session.remove()
        return n


def test_peer_sheet_on_a_phone(cs_app, live, browser):
    os.makedirs(ARTIFACTS, exist_ok=True)
    clock.pin("2017-05-15 19:00")
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    page = context.new_page()
    problems = console_problems(page)
    try:
        browser_login(page, live, "cs_yl01c1n01")
        page.goto(f"{live}/cs/peer")
        selects = page.locator("#peer-sheet select")
        assert selects.count() == 5 * 6  # five classmates (not oneself) × six dimensions
        assert page.evaluate("document.documentElement.scrollWidth") <= 391
        # The whole sheet fits: no sideways scrolling inside its box either, and each picker wide enough for a letter.
        assert page.evaluate("(() => { const t = document.querySelector('#peer-sheet');"
                             " return t.scrollWidth <= t.parentElement.clientWidth; })()")
        assert page.evaluate("Math.min(...[...document.querySelectorAll('#peer-sheet select')]"
                             ".map(s => s.getBoundingClientRect().width))") >= 36
        for i in range(selects.count()):
            selects.nth(i).select_option("B" if i % 3 else "A")
        with page.expect_navigation():
            page.locator("button[type=submit]", has_text="保存互评").click()
        assert "互评已保存" in page.inner_text("body") and "已评 30 / 30 项" in page.inner_text("body")
        page.screenshot(path=os.path.join(ARTIFACTS, "changsha-peer-phone.png"), full_page=True)
        assert _count(cs_app, PeerRating) == 30
        assert problems == [], problems
    finally:
        context.close()
        clock.pin(None)


def test_rating_sheet_finalises_within_the_quota(cs_app, live, browser):
    clock.pin("2017-06-19 10:00")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    problems = console_problems(page)
    dialogs: list[str] = []
    try:
        browser_login(page, live, "cs_yl01c1_eval1")
        page.goto(f"{live}/cs/rate/{cs_app.config['CS_CLASS_ID']}")
        rows = page.locator("#rate-sheet tbody tr")
        assert rows.count() == 6
        # Two A's of six on every dimension: over the cap of one (20 % of 6).
        for r in range(6):
            for d in range(6):
                rows.nth(r).locator("select").nth(d).select_option("A" if r < 2 else "C")
        with page.expect_navigation():
            page.locator("button[value=save]").click()
        assert page.locator("#distribution td.table-danger").count() == 6
        # Finalise asks first; accepted, the server refuses and names the quota.
        page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
        with page.expect_navigation():
            page.locator("button[value=finalise]").click()
        assert dialogs and "定稿" in dialogs[0]
        assert "A等：2人，超过插标上限1人（20%×6人）" in page.inner_text("body")
        assert _count(cs_app, RatingFinal) == 0
        rows.nth(1).locator("select").nth(0).wait_for()
        for d in range(6):
            rows.nth(1).locator("select").nth(d).select_option("B")
        with page.expect_navigation():
            page.locator("button[value=save]").click()
        assert page.locator("#distribution td.table-danger").count() == 0
        with page.expect_navigation():
            page.locator("button[value=finalise]").click()
        assert page.locator("#class-final").count() == 1 and _count(cs_app, RatingFinal) == 1
        page.screenshot(path=os.path.join(ARTIFACTS, "changsha-rate.png"), full_page=True)
        assert problems == [], problems
    finally:
        context.close()
        clock.pin(None)
