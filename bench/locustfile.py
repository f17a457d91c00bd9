"""The publication rush (公示), as locust users: driven by bench/load.py (`make load`), not on its own.

Each user is one student account (bench/load.py writes the accounts to LOAD_ACCOUNTS) and repeats one visit,
so the number of students on the site stays at --users all run long:

    GET /login (the CSRF token) · think "login" · POST /login · GET /admin/ (the home page it redirects to)
    · think "home" · GET /me/report (the own 纪实报告) · think "report"
    · a quarter of the visits: GET /reports/student/<own id>/report.pdf · think "pdf"
    · GET /me/class · think "class" · 3 × (GET /me/report/<classmate> · think "classmate")
    · one visit in ten (at most once a user a run, so no account reaches the district's limit of open
      appeals): GET /me/appeal/<classmate>?record=<a published record of theirs> · think "appeal" (writing)
      · POST /me/appeal/<classmate> with the form's CSRF token · GET /me/appeals · think "home"
    · POST /logout

A think time is uniform in THINK[step] seconds times LOAD_THINK_SCALE (default 1; 0 = no think time at all:
the saturation run). The ranges are what a student does on that page: type a username and password, read
their own report through, glance at the PDF, pick a name, read a classmate's report, write an appeal.

LOAD_MODE=trivial makes every user GET LOAD_TRIVIAL_PATH (/livez) in a loop instead: the ceiling.

Every response is checked (status, and what the page must hold; redirects are never followed, so a session
that lost its login shows up as a wrong status). LOAD_CODES_OUT.<pid> receives, at the end, the count of every
status code and of failures over the whole run (the CSV stats of the throughput runs are reset when spawning
completes).
"""
from __future__ import annotations

import itertools
import json
import os
import random
import re
from collections import Counter

import gevent
from locust import FastHttpUser, events, task

MODE = os.environ.get("LOAD_MODE", "publication")
THINK_SCALE = float(os.environ.get("LOAD_THINK_SCALE", "1"))
THINK = {  # seconds, before the scale
    "login": (3, 8), "home": (2, 5), "report": (10, 30), "pdf": (5, 15), "class": (2, 5), "classmate": (5, 15),
    "appeal": (20, 60), "retry": (2, 5),
}
TRIVIAL_PATH = os.environ.get("LOAD_TRIVIAL_PATH", "/livez")
PASSWORD = os.environ.get("LOAD_PASSWORD", "cqe2022")
PDF_SHARE = float(os.environ.get("LOAD_PDF_SHARE", "0.25"))
APPEAL_SHARE = float(os.environ.get("LOAD_APPEAL_SHARE", "0.1"))
CLASSMATES = int(os.environ.get("LOAD_CLASSMATES", "3"))

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')
CLASSMATE_LINK = re.compile(r'href="/me/report/(\d+)"')
APPEAL_LINK = re.compile(r'href="/me/appeal/(\d+)\?record=(\d+)"')

_accounts: list[dict] = []
# Users take consecutive accounts from a random start, so repeated runs on one database spread their appeals.
_next_account = itertools.count(random.randrange(1_000_000))
codes: Counter = Counter()


def _load_accounts() -> list[dict]:
    if not _accounts:
        path = os.environ.get("LOAD_ACCOUNTS")
        if MODE != "trivial":
            if not path:
                raise RuntimeError("LOAD_ACCOUNTS is not set: run this through bench/load.py")
            with open(path, encoding="utf-8") as fh:
                _accounts.extend(json.load(fh))
    return _accounts


@events.request.add_listener
def _count(request_type, name, response_time, response_length, response=None, exception=None, **kwargs):
    status = getattr(response, "status_code", None)
    codes[str(status or 0)] += 1
    if exception is not None:
        codes["failures"] += 1
    elif not (status and 200 <= status < 400):
        codes["non_2xx_3xx_not_failed"] += 1  # a response outside 2xx/3xx that no check failed (none expected)


@events.quitting.add_listener
def _write_codes(environment, **kwargs):
    out = os.environ.get("LOAD_CODES_OUT")
    if out:  # one file a process (locust --processes forks workers); bench/load.py adds them up
        with open(f"{out}.{os.getpid()}", "w", encoding="utf-8") as fh:
            json.dump(dict(codes), fh)


def _csrf(text: str) -> str | None:
    m = CSRF.search(text or "")
    return (m.group(1) or m.group(2)) if m else None


class Student(FastHttpUser):
    """One student during publication; see the module docstring."""

    # The think time is in the task (between the pages of one visit), not between visits only.
    def wait_time(self):
        return 0

    def on_start(self):
        if MODE == "trivial":
            self.account = None
            return
        accounts = _load_accounts()
        self.account = accounts[next(_next_account) % len(accounts)]
        self.appealed = False
        self.token = None  # the CSRF token of the last page (every signed-in page has the logout form)

    def think(self, step: str) -> None:
        if THINK_SCALE > 0:
            gevent.sleep(random.uniform(*THINK[step]) * THINK_SCALE)

    def page(self, url: str, name: str, expect: str | None = None, status: int = 200):
        """GET a page, check its status (and a marker), return its text (None when it failed)."""
        with self.client.get(url, name=name, allow_redirects=False, catch_response=True) as resp:
            if resp.status_code != status:
                resp.failure(f"{resp.status_code} (expected {status}) {resp.headers.get('Location', '')}")
                return None
            text = resp.text if status == 200 and expect is not None else ""
            if expect is not None and expect not in text:
                resp.failure(f"missing {expect!r}")
                return None
            resp.success()
            self.token = _csrf(text) or self.token
            return text if expect is not None else ""

    @task
    def visit(self):
        if MODE == "trivial":
            with self.client.get(TRIVIAL_PATH, name=TRIVIAL_PATH, catch_response=True) as resp:
                if resp.status_code != 200:
                    resp.failure(str(resp.status_code))
            return
        if not self.browse():
            self.think("retry")  # something failed (counted): start over with a fresh login

    def browse(self) -> bool:
        if not self.login():
            return False
        self.think("home")
        me = self.account["student_id"]
        if self.page("/me/report", "/me/report", expect="纪实报告") is None:
            return False
        self.think("report")
        if random.random() < PDF_SHARE:
            with self.client.get(f"/reports/student/{me}/report.pdf", name="/reports/student/[id]/report.pdf",
                                 allow_redirects=False, catch_response=True) as resp:
                if resp.status_code != 200 or not (resp.content or b"").startswith(b"%PDF"):
                    resp.failure(f"{resp.status_code}, not a PDF")
                    return False
            self.think("pdf")
        text = self.page("/me/class", "/me/class", expect="同班同学公示数据")
        if text is None:
            return False
        self.think("class")
        mates = sorted({int(i) for i in CLASSMATE_LINK.findall(text)} - {me})
        appeal_on = None
        for other in random.sample(mates, min(CLASSMATES, len(mates))):
            report = self.page(f"/me/report/{other}", "/me/report/[id]", expect="纪实报告")
            if report is None:
                return False
            self.think("classmate")
            links = APPEAL_LINK.findall(report)
            if links and appeal_on is None:
                appeal_on = random.choice(links)
        if appeal_on and not self.appealed and random.random() < APPEAL_SHARE:
            if not self.appeal(*appeal_on):
                return False
            self.think("home")
        return self.logout()

    def login(self) -> bool:
        self.client.cookiejar.clear()
        text = self.page("/login", "/login", expect="csrf_token")
        token = _csrf(text)
        if token is None:
            return False
        self.think("login")
        with self.client.post("/login", name="/login", allow_redirects=False, catch_response=True,
                              data={"csrf_token": token, "username": self.account["username"],
                                    "password": PASSWORD}) as resp:
            where = resp.headers.get("Location", "")
            if resp.status_code != 302 or "/login" in where or "/password" in where:
                resp.failure(f"{resp.status_code} {where}")
                return False
        return self.page("/admin/", "/admin/ (home)", expect="csrf_token") is not None

    def appeal(self, student_id: str, record_id: str) -> bool:
        text = self.page(f"/me/appeal/{student_id}?record={record_id}", "/me/appeal/[id]", expect="提交申诉")
        token = _csrf(text)
        if token is None:
            return False
        self.think("appeal")
        with self.client.post(f"/me/appeal/{student_id}", name="/me/appeal/[id]", allow_redirects=False,
                              catch_response=True,
                              data={"csrf_token": token, "record": record_id, "kind": "error",
                                    "description": "公示的获奖名称与实际不符，请核对。"}) as resp:
            if resp.status_code != 302 or not resp.headers.get("Location", "").endswith("/me/appeals"):
                resp.failure(f"{resp.status_code} {resp.headers.get('Location', '')}")
                return False
        self.appealed = True
        return self.page("/me/appeals", "/me/appeals", expect="申诉") is not None

    def logout(self) -> bool:
        with self.client.post("/logout", name="/logout", allow_redirects=False, catch_response=True,
                              data={"csrf_token": self.token or ""}) as resp:
            ok = resp.status_code == 302
            if not ok:
                resp.failure(str(resp.status_code))
        self.client.cookiejar.clear()
        self.token = None
        return ok
