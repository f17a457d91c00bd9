"""The Content-Security-Policy in a real browser (Debian's Chromium): pages load with no CSP violation,
and the controls that used to be inline handlers still work (list actions, delete confirmation,
auto-submitting selects, charts). Read-only: every dialog is dismissed, so the shared database is left as it
was. (Escaping of what people type is tested in tests/test_properties.py.)"""
from __future__ import annotations

import pytest
from conftest import browser_login, serving

from models import clock


@pytest.fixture(scope="module")
def live_server(app):
    with serving(app) as base:
        yield base


def _watch(page) -> list[str]:
    """Collect CSP violations (the browser's console errors and the DOM's securitypolicyviolation events)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "Content Security Policy"
            in m.text else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => "
                         "console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + "
                         "e.blockedURI + ' ' + (e.sample || '')));")
    return problems


def test_clerk_pages_run_under_the_csp(live_server, browser):
    clock.pin("2022-03-01 09:00")
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    problems = _watch(page)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        browser_login(page, live_server, "s1_clerk")
        page.goto(f"{live_server}/admin/records/sports/")
        assert page.locator("input.action-checkbox").count() > 0
        # List action without a selection: Flask-Admin's own script answers (an alert), so the click went
        # through cqe.js to modelActions.execute.
        page.locator("li:has([data-cqe-action]) > a.dropdown-toggle").first.click()
        page.locator("[data-cqe-action]").first.click()
        assert dialogs, "the list action did nothing"
        # Row delete asks first (data-confirm); dismissed, nothing is posted.
        dialogs.clear()
        page.locator("button[data-confirm]").first.click()
        assert dialogs and page.url.startswith(f"{live_server}/admin/records/sports/")
        # The filter menu keeps its one hashed inline handler: opening and picking a filter raises nothing.
        page.locator("li:has(a.filter) > a.dropdown-toggle").first.click()
        page.locator("a.filter").first.click()
        page.goto(f"{live_server}/admin/records/sports/grid/")
        # The class picker submits itself on change (data-autosubmit, no inline onchange) …
        picker = page.locator("select[data-autosubmit]")
        value = picker.locator("option").nth(1).get_attribute("value")
        with page.expect_navigation():
            picker.select_option(value)
        assert f"class_id={value}" in page.url
        # … and the grid's scripts (same-origin files) build the table.
        page.locator("#cqe-grid.tabulator").wait_for()
        assert page.evaluate("!!window.cqeGrid")
        assert problems == [], problems
    finally:
        context.close()
        clock.pin(None)


def test_dashboard_and_student_pages_run_under_the_csp(live_server, browser):
    clock.pin("2022-04-01 09:00")
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    page = context.new_page()
    problems = _watch(page)
    try:
        browser_login(page, live_server, "s1g9c1n01")
        for path in ("/me/records", "/me/report", "/me/class", "/me/appeals"):
            page.goto(f"{live_server}{path}")
        page.goto(f"{live_server}/login")
        context.clear_cookies()
        browser_login(page, live_server, "admin")
        page.goto(f"{live_server}/admin/dashboard/")
        page.locator("canvas").first.wait_for()
        # Chart.js drew (its script ran with the nonce): the canvas has pixels.
        assert page.locator("canvas").first.evaluate("c => c.toDataURL().length") > 1000
        assert problems == [], problems
        # The watcher itself works: a script injected without the nonce is refused and reported.
        page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.pwned = 1';"
                      " document.body.appendChild(s); }")
        page.wait_for_timeout(200)
        assert page.evaluate("() => window.pwned") is None
        assert any("script-src" in p for p in problems), problems
    finally:
        context.close()
        clock.pin(None)
