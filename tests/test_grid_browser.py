"""The roster grid in a real browser (Debian's Chromium, Playwright): a clerk pastes a 30×3 block copied
from Excel (tab-separated, CRLF), sees the one bad cell's error, fixes it from the keyboard, saves, reloads
and sees the data. Runs against a database of its own on a live server (the browser's requests commit)."""
from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from conftest import ARTIFACTS, browser_login, demo_app, dispose, serving

from models import Category, Record, School, SchoolClass, Student, clock, db

STUDENTS = 30


@pytest.fixture(scope="module")
def grid_app(tmp_path_factory):
    with demo_app(tmp_path_factory, "grid") as app:
        school = db.session.execute(sa.select(School).where(School.code == "bs01")).scalar_one()
        klass = SchoolClass(school=school, grade=6, number=9)
        db.session.add(klass)
        for i in range(STUDENTS):
            db.session.add(Student(xjh=f"G3101132010099{i:04d}", name=f"测试生{i + 1:02d}", gender="男女"[i % 2],
                                   school_class=klass, school_id=school.id))
        db.session.commit()
        app.config["GRID_CLASS_ID"] = klass.id
    yield app
    dispose(app)


def _saved(app) -> list[Record]:
    with app.app_context():
        sports = db.session.execute(sa.select(Category).where(Category.code == "sports")).scalar_one()
        rows = db.session.execute(sa.select(Record).join(Student, Record.student_id == Student.id).where(
            Student.class_id == app.config["GRID_CLASS_ID"], Record.category_id == sports.id)
            .order_by(Student.xjh)).scalars().all()
        out = [(r.student.name, dict(r.data), r.state) for r in rows]
        db.session.remove()
        return out


def test_paste_a_block_fix_one_cell_save_and_reload(grid_app, browser):
    clock.pin("2022-03-01 09:00")
    os.makedirs(ARTIFACTS, exist_ok=True)
    class_id = grid_app.config["GRID_CLASS_ID"]
    with serving(grid_app) as base:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            browser_login(page, base, "s1_clerk")
            page.goto(f"{base}/admin/records/sports/grid/?class_id={class_id}")
            page.wait_for_selector("#cqe-grid .tabulator-row")
            assert page.evaluate("cqeGrid.getData().length") == STUDENTS
            assert page.evaluate("cqeGrid.getData().every(r => r.state === '新增' && !r.record_id)")

            # A block as Excel / WPS puts it on the clipboard: 30 rows × 3 columns, one award not in the list.
            lines = [f"跳绳比赛{i + 1}\t{'特等奖' if i == 6 else '二等奖'}\t2022/3/{i % 28 + 1}" for i in range(STUDENTS)]
            page.evaluate("text => navigator.clipboard.writeText(text)", "\r\n".join(lines) + "\r\n")
            first = page.locator("#cqe-grid .tabulator-row").first.locator(".tabulator-cell[tabulator-field=v_name]")
            first.click()
            # keyboard navigation: down and back up moves the active cell
            page.keyboard.press("ArrowDown")
            assert page.evaluate("cqeGrid.getRanges()[0].getRows()[0].getIndex() === cqeGrid.getData()[1].key"), \
                "↓ moves to the second row"
            page.keyboard.press("ArrowUp")
            page.keyboard.press("Control+V")

            bad = page.locator(".tabulator-cell.cqe-cell-error")
            bad.wait_for()
            assert bad.count() == 1
            message = "获奖情况：「特等奖」不是可选值（可选：一等奖、二等奖、三等奖、优秀奖、参与）"
            assert bad.get_attribute("data-error") == message
            assert bad.get_attribute("tabulator-field") == "v_award"
            assert message in page.inner_text("#cqe-grid-errors") and "测试生07" in page.inner_text("#cqe-grid-errors")
            data = page.evaluate("cqeGrid.getData().map(r => [r.v_name, r.v_award, r.v_held_on])")
            assert data[0] == ["跳绳比赛1", "二等奖", "2022/3/1"] and data[29] == ["跳绳比赛30", "二等奖", "2022/3/2"]
            page.screenshot(path=os.path.join(ARTIFACTS, "grid-pasted-error.png"), full_page=True)

            # fix it from the keyboard: Enter opens the list, ↓ picks the first choice, Enter sets it
            bad.click()
            page.keyboard.press("Enter")
            page.keyboard.press("ArrowDown")
            page.keyboard.press("Enter")
            # (Locator waits, not wait_for_function: the page's CSP forbids evaluating strings.)
            page.locator(".tabulator-cell.cqe-cell-error").first.wait_for(state="detached")
            assert page.evaluate("cqeGrid.getData()[6].v_award") == "一等奖"
            assert _saved(grid_app) == [], "nothing is written before 保存"

            page.click("#cqe-grid-save")
            page.locator("#cqe-grid-status", has_text="已保存").wait_for()
            assert page.inner_text("#cqe-grid-status") == "已保存：新增 30 条，修改 0 条。"

            page.reload()
            page.wait_for_selector("#cqe-grid .tabulator-row")
            rows = page.evaluate("cqeGrid.getData().filter(r => r.record_id)"
                                 ".map(r => [r.name, r.state, r.v_name, r.v_award, r.v_held_on])")
            assert len(rows) == STUDENTS
            assert rows[0] == ["测试生01", "已录入", "跳绳比赛1", "二等奖", "2022-03-01"]
            assert rows[6] == ["测试生07", "已录入", "跳绳比赛7", "一等奖", "2022-03-07"]
            # room for a second entry per term: the blank rows are back for the next block
            assert page.evaluate("cqeGrid.getData().filter(r => !r.record_id).length") == STUDENTS
            page.screenshot(path=os.path.join(ARTIFACTS, "grid-saved.png"), full_page=True)
            assert errors == []
        finally:
            context.close()
            clock.pin(None)
    saved = _saved(grid_app)
    assert len(saved) == STUDENTS
    assert saved[6] == ("测试生07", {"name": "跳绳比赛7", "award": "一等奖", "held_on": "2022-03-07"}, "entered")
