"""Browser smoke test: Debian's Chromium, driven by Playwright, logs in as a school clerk and as a
student and screenshots their home pages (tests/artifacts/*.png)."""
from __future__ import annotations

import os

import pytest
from conftest import ARTIFACTS, browser_login, serving

from models import clock


@pytest.fixture(scope="module")
def live_server(app):
    with serving(app) as base:
        yield base


@pytest.mark.parametrize(
    "username,viewport,expect",
    [
        ("s1_clerk", {"width": 1280, "height": 900}, ["当前阶段", "填报", "本级录入记录", "校级体育比赛"]),
        ("s1g9c1n01", {"width": 390, "height": 844}, ["当前阶段", "我的记录", "学生填报"]),
    ],
)
def test_home_pages(live_server, browser, username, viewport, expect):
    clock.pin("2022-03-01 09:00")
    os.makedirs(ARTIFACTS, exist_ok=True)
    context = browser.new_context(viewport=viewport, locale="zh-CN")
    page = context.new_page()
    try:
        browser_login(page, live_server, username)
        text = page.inner_text("body")
        for word in expect:
            if word == "校级体育比赛":
                # the clerk's menu holds the generated category views
                assert page.locator("a", has_text=word).count() >= 1
            else:
                assert word in text, f"{word!r} not on {username}'s home page"
        path = os.path.join(ARTIFACTS, f"home-{username}.png")
        page.screenshot(path=path, full_page=True)
        assert os.path.getsize(path) > 10_000
        # no horizontal scrolling on a phone
        if viewport["width"] < 500:
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"] + 1
    finally:
        context.close()


def _no_sideways_scroll(page, width):
    assert page.evaluate("document.documentElement.scrollWidth") <= width + 1


def test_student_confirms_and_appeals_on_a_phone(live_server, browser):
    """A grade-8 student of school 3 (no other test touches them) confirms every record on a phone,
    reads the published report, and files an appeal; the school auditor opens the case on a desktop."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    phone = {"width": 390, "height": 844}
    context = browser.new_context(viewport=phone, locale="zh-CN")
    page = context.new_page()
    try:
        clock.pin("2022-03-25 09:00")
        browser_login(page, live_server, "s3g8c1n01")
        page.click("text=确认与填报")
        page.wait_for_url(f"{live_server}/me/records")
        assert page.locator("#confirm-all").count() == 1
        assert page.locator("button[data-action=confirm]").count() >= 5
        page.screenshot(path=os.path.join(ARTIFACTS, "me-records-s3g8c1n01.png"), full_page=True)
        _no_sideways_scroll(page, phone["width"])
        page.click("#confirm-all")
        page.wait_for_url(f"{live_server}/me/records")
        assert "已全部确认" in page.inner_text("body")
        assert page.locator("button[data-action=confirm]").count() == 0

        clock.pin("2022-04-01 09:00")
        page.goto(f"{live_server}/me/report")
        body = page.inner_text("body")
        assert "纪实报告" in body and "基础型课程成绩" in body and "申诉此记录" in body
        page.screenshot(path=os.path.join(ARTIFACTS, "me-report-s3g8c1n01.png"), full_page=True)
        _no_sideways_scroll(page, phone["width"])
        page.locator("a", has_text="申诉此记录").first.click()
        page.fill("#description", "成绩录入有误，应为优秀")
        page.screenshot(path=os.path.join(ARTIFACTS, "me-appeal-s3g8c1n01.png"), full_page=True)
        page.click("button[type=submit] >> text=提交申诉")
        page.wait_for_url(f"{live_server}/me/appeals")
        assert "成绩录入有误" in page.inner_text("body") and "待处理" in page.inner_text("body")
        _no_sideways_scroll(page, phone["width"])
    finally:
        context.close()

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    try:
        browser_login(page, live_server, "s3_auditor")
        assert "待处理申诉" in page.inner_text("body")
        page.goto(f"{live_server}/admin/cases/")
        page.screenshot(path=os.path.join(ARTIFACTS, "cases-queue-s3_auditor.png"), full_page=True)
        page.locator("a[href^='/cases/']").first.click()
        page.wait_for_url(f"{live_server}/cases/*")
        body = page.inner_text("body")
        assert "成绩录入有误" in body and "受理" in body and "s3g8c1n01" in body
        page.screenshot(path=os.path.join(ARTIFACTS, "case-s3_auditor.png"), full_page=True)
    finally:
        context.close()
        clock.pin(None)
