"""The access crawl (issue 8): every URL of ``app.url_map``, as every role (and anonymous), with an object
inside the role's scope and the nearest one outside it, with and without a CSRF token, at a moment of the
entry phase and of publication (and of the archive window for its pages). It fails, listing every
violation, when a response shows a marker planted outside the role's scope (or, to a student or parent,
another student's 学籍号 or any mobile number), when an outside id is not answered 404, when a request that
must be refused is not, or when a refused request changes the database. The machinery is in
tests/crawl_support.py; expectations are written by hand from SPEC §1 and §6.
"""
from __future__ import annotations

import io
import zipfile

import pytest
import sqlalchemy as sa
from conftest import rolled_back_session
from crawl_support import (
    CLASSMATE_BUCKET,
    MARKERS,
    Crawler,
    Oracle,
    Probe,
    body_text,
    build_world,
    forbidden_markers,
    inventory,
    summary,
)
from test_scope_matrix import USERS
from werkzeug.routing import Map, Rule

from models import db

ROLES = ["anonymous", *USERS]


@pytest.fixture(scope="module")
def crawler(app, data_app, tmp_path_factory):
    """The world in one transaction of the module's own, rolled back at the end; files (uploads, batches,
    scans) under a temporary instance folder."""
    folder = str(tmp_path_factory.mktemp("crawl-instance"))
    saved = {a: (a.instance_path, a.config.get("CQE_SUMMARY_DIR")) for a in (app, data_app)}
    for a in (app, data_app):
        a.instance_path = folder
        a.config["CQE_SUMMARY_DIR"] = folder + "/summaries"
    ctx = data_app.app_context()
    ctx.push()
    conn = db.engine.connect()
    outer = conn.begin()
    world = None
    try:
        with rolled_back_session(conn):
            world = build_world(data_app)
            db.session.close()
            entries, unknown = inventory(app)
            assert not unknown, "rules the crawl cannot fill:\n" + "\n".join(unknown)
            try:
                yield Crawler(app, world, conn, entries)
            finally:
                for job in (world.redis_jobs if world else []):
                    job.delete()
    finally:
        outer.rollback()
        conn.close()
        ctx.pop()
        for a, (path, summaries) in saved.items():
            a.instance_path = path
            a.config["CQE_SUMMARY_DIR"] = summaries


# ---------------------------------------------------------------------------------------------
# The inventory and the oracle: the crawl cannot pass vacuously


def test_every_rule_is_crawled(app):
    entries, unknown = inventory(app)
    assert not unknown, "rules the crawl cannot fill (add them to tests/crawl_support.py):\n" + "\n".join(unknown)
    rules = [r for r in app.url_map.iter_rules() if r.endpoint not in ("static", "admin.static")]
    assert len(entries) == len(rules) >= 490
    assert {e.rule.endpoint for e in entries} >= {"cat_sports.grid_save", "reports.public_report", "me.appeal",
                                                  "archive_summary.scan", "inbox.job_status"}


def test_an_unknown_rule_fails_the_inventory(app):
    rules = list(app.url_map.iter_rules())
    extra = Map([Rule("/admin/gadgets/<int:gadget_id>", endpoint="gadgets.index"),  # a new view
                 Rule("/cases/<int:case_id>/<int:step>", endpoint="cases.show"),  # a known view, a new variable
                 Rule("/admin/students/merge/", endpoint="students.merge_view")])  # a new method of a model view
    entries, unknown = inventory(app, rules + list(extra.iter_rules()))
    assert len(unknown) == 3
    assert any("gadgets.index" in u and "cannot classify" in u for u in unknown)
    assert any("cases.show" in u and "step" in u for u in unknown)
    assert any("students.merge_view" in u for u in unknown)
    assert len(entries) == len(inventory(app)[0])


def _xlsx(text: str) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.append(["姓名", text])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _pdf(text: str) -> bytes:
    from views.pdf import summary_pdf

    return summary_pdf("报告", ["序号", "姓名"], [[1, text]], "")


def test_the_oracle_catches_leaks_in_every_format():
    leak = MARKERS["other_school"]
    oracle = Oracle({"other_school": leak}, {"G3101132007010100001": "a classmate"}, {"13912345678"}, family=True)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("a/report.pdf", _pdf(leak))
    bodies = {
        "html": (f"<td>{leak}</td>".encode(), "text/html"),
        "json escaped": (b'[[1, "' + "".join(f"\\u{ord(c):04x}" for c in leak).encode() + b'"]]', "application/json"),
        "csv": (("\ufeff姓名\n" + leak).encode("utf-8"), "text/csv"),
        "xlsx": (_xlsx(leak), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        "pdf": (_pdf(leak), "application/pdf"),
        "zip of pdf": (zipped.getvalue(), "application/zip"),
    }
    for name, (data, ctype) in bodies.items():
        assert oracle.leaks(body_text(data, ctype)) == [f"marker other_school ({leak})"], name
    # a PDF the oracle cannot read is a failure, not a pass
    assert oracle.leaks(body_text(b"%PDF-1.4 cut short", "application/pdf")) == [
        "a PDF the oracle cannot read (so cannot check)"]
    # in a file name only
    assert oracle.leaks(body_text(b"%PDF-1.4", "application/pdf",
                                  "attachment; filename*=UTF-8''%E6%B3%84%E9%9C%B2%E6%A0%87%E8%AE%B0-other-school"))
    # a classmate's 学籍号 and a mobile number, for a student; neither for staff
    page = "学籍号 G3101132007010100001 电话 13912345678 另 13800001111".encode()
    assert oracle.leaks(body_text(page)) == ["学籍号 of a classmate (G3101132007010100001)",
                                             "mobile number 13800001111", "mobile number 13912345678"]
    assert Oracle({}, {}, set(), family=False).leaks(body_text(page)) == []
    assert oracle.leaks(body_text(b"<p>nothing here 2022-03-01 #1391234567890</p>")) == []
    # the rules by role and phase: a student sees the classmate's published data only in publication
    assert "classmate" in forbidden_markers("student", "student", "entry")
    assert "classmate" not in forbidden_markers("student", "student", "publication")
    assert "classmate" in forbidden_markers("parent", "student", "publication")
    assert forbidden_markers("school_clerk", "school", "entry") == {"other_school", "other_city"}


def test_the_crawler_flags_a_leaky_response_and_a_refusal_that_changed_data(crawler, monkeypatch):
    """A fake app answer through the crawler's own checks: 200 with outside data, then a change."""
    calls = {"n": 0}

    def fake_send(client, token, probe):
        calls["n"] += 1
        return 200, "text/html", "", "", f"<p>{MARKERS['other_city']}</p>".encode()

    monkeypatch.setattr(crawler, "_send", fake_send)
    from crawl_support import RoleResult

    result = RoleResult("district_clerk")
    probe = Probe("GET", "/admin/schools/details/?id=999", endpoint="schools.details_view",
                  rule="/admin/schools/details/", kind="out", expect=frozenset({403, 404}))
    crawler._run_batch("district_clerk", "district", "entry", None, "", [probe], result)
    problems = [v.problem for v in result.violations]
    assert any("expected [403, 404]" in p for p in problems)
    assert any("marker other_city" in p for p in problems)

    # a "refused" POST that writes: found by the fingerprints and named by the replay
    from models import School

    def writing_send(client, token, probe):
        school = db.session.execute(sa.select(School).where(School.code == "bs01")).scalar_one()
        school.name = school.name + "!"
        db.session.commit()
        db.session.close()
        return 403, "text/html", "", "", b"refused"

    monkeypatch.setattr(crawler, "_send", writing_send)
    result = RoleResult("school_leader")
    post = Probe("POST", "/admin/schools/edit/?id=1", endpoint="schools.edit_view", rule="/admin/schools/edit/",
                 kind="refuse", expect=frozenset({403}))
    crawler._run_batch("school_leader", "school", "archive", None, "", [post], result)
    assert [v.problem for v in result.violations] == ["changed the database (tables audit_events, schools)"]
    # and the SAVEPOINT undid it
    name = db.session.execute(sa.select(School.name).where(School.code == "bs01")).scalar_one()
    db.session.close()
    assert not name.endswith("!")


# ---------------------------------------------------------------------------------------------
# The crawl


@pytest.mark.parametrize("role", ROLES)
def test_crawl(crawler, role):
    result = crawler.run_role(role)
    assert result.requests > 100
    bad = [v for v in result.violations if v.bucket == "main"]
    assert not bad, f"{len(bad)} violation(s) for {role}:\n" + "\n".join(str(v) for v in bad)


def test_student_reads_classmates_only_during_publication(crawler):
    """SPEC §6: a student reads classmates' published data during publication only. This rule comes from
    models/policy.report_scope (fixed in 9925952: before it, classmates' reports were open at any time),
    so its violations are kept apart from the rest of the crawl (bucket ``classmates_outside_publication``)."""
    result = crawler.run_role("student")
    assert result.classmate_probes["entry"] >= 4 and result.classmate_probes["publication"] >= 4
    bad = [v for v in result.violations if v.bucket == CLASSMATE_BUCKET]
    assert not bad, f"{len(bad)} violation(s):\n" + "\n".join(str(v) for v in bad)


def test_crawl_summary(crawler, capsys):
    for role in ROLES:
        crawler.run_role(role)
    with capsys.disabled():
        print("\n" + summary(crawler.results))
    assert sum(r.requests for r in crawler.results.values()) > 5000
