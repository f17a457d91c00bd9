"""Browser smoke test: Debian's Chromium, driven by Playwright, logs in as a school clerk and as a
student and screenshots their home pages (tests/artifacts/*.png)."""
from __future__ import annotations

import os
import threading

import pytest
from werkzeug.serving import make_server

from models import clock

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(__file__), "artifacts")
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


def _login(page, base, username):
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "cqe2022")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin/")


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
        _login(page, live_server, username)
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
