"""进度统计 (issue 7): the dashboard's figures equal what straightforward queries count — entered per category
against the roster, confirmations (by the student, rejected, by default, pending), cases (open, overdue,
closed, by flow), signatures and ratings — on the district, school and class pages alike; the pages drill
down; each xlsx holds the page's figures; each user sees their own district or school and nothing else."""
from __future__ import annotations

import io
import re
from datetime import date
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa
from conftest import student_of, user
from openpyxl import load_workbook

from models import (
    ArchiveEntry,
    Case,
    Category,
    Cohort,
    DeadlineRun,
    District,
    PhaseWindow,
    Record,
    School,
    SchoolClass,
    Student,
    Term,
    db,
    deadlines,
    policy,
    workflow,
)
from models.cases import OPEN_CASE_STATES
from models.org import NON_PARTICIPANT_STATUSES
from models.records import CLERK_ORIGINS

URL = "/admin/dashboard"


# --- reading the pages and workbooks back --------------------------------------------------------


class _Tables(HTMLParser):
    """{table key: {"kinds": [...], "rows": {unit: {col: data-value}}, "order": [[values…], …]}} from a page."""

    def __init__(self):
        super().__init__()
        self.tables: dict = {}
        self.table = self.row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "data-table" in a:
            self.table = self.tables.setdefault(a["data-table"], {"kinds": [], "cols": [], "rows": {}, "order": []})
        elif self.table is not None and tag == "th" and "data-kind" in a:
            self.table["kinds"].append(a["data-kind"])
            self.table["cols"].append(a["data-col"])
        elif self.table is not None and tag == "tr" and "data-unit" in a:
            self.row = (a["data-unit"], {}, [])
            self.table["rows"][a["data-unit"]] = self.row[1]
            self.table["order"].append(self.row[2])
        elif self.row is not None and tag in ("td", "th") and "data-col" in a:
            self.row[1][a["data-col"]] = a["data-value"]
            self.row[2].append(a["data-value"])

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None
        elif tag == "tr":
            self.row = None


def tables(html: str) -> dict:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def page(client, url: str) -> tuple[str, dict]:
    resp = client.get(url)
    assert resp.status_code == 200, (url, resp.status_code)
    html = resp.get_data(as_text=True)
    return html, tables(html)


def crumbs(html: str) -> list[str]:
    """The links of the page's breadcrumb (district → school → class)."""
    nav = re.search(r'<ol class="breadcrumb[^"]*" id="dash-crumbs">(.*?)</ol>', html, re.S).group(1)
    return re.findall(r'href="([^"]+)"', nav)


def _as_xlsx(kind: str, value: str) -> list:
    """A page cell as the workbook writes it."""
    if kind == "frac":
        return [int(v) for v in value.split("/")] if value else [None, None]
    if kind == "check":
        return [{"1": "是", "0": "否"}.get(value)]
    if kind == "int":
        return [int(value) if value else None]
    if kind == "pct":
        return [round(float(value), 4) if value else None]
    return [value or None]


def assert_workbook_equals_page(data: bytes, parsed: dict, order: list[str]) -> None:
    wb = load_workbook(io.BytesIO(data))
    assert len(wb.worksheets) == len(order)
    for ws, key in zip(wb.worksheets, order, strict=True):
        t = parsed[key]
        two_rows = "frac" in t["kinds"]
        rows = [list(r) for r in ws.iter_rows(min_row=4 if two_rows else 3, values_only=True)]
        expected = [[v for kind, cell in zip(t["kinds"], row, strict=True) for v in _as_xlsx(kind, cell)]
                    for row in t["order"]]
        got = [[round(v, 4) if isinstance(v, float) else v for v in row] for row in rows]
        assert got == expected, key


# --- counting the same things by straightforward queries -------------------------------------------


def _bs_term() -> Term:
    return db.session.execute(sa.select(Term).join(District, Term.district_id == District.id).where(
        District.code == "bs", Term.is_current.is_(True))).scalar_one()


def _school(code: str) -> School:
    return db.session.execute(sa.select(School).where(School.code == code)).scalar_one()


def _classes(school: School) -> list[SchoolClass]:
    return db.session.execute(sa.select(SchoolClass).where(SchoolClass.school_id == school.id)
                              .order_by(SchoolClass.grade, SchoolClass.number)).scalars().all()


def _cohort(code: str) -> Cohort:
    return db.session.execute(sa.select(Cohort).where(Cohort.term_id == _bs_term().id, Cohort.code == code)).scalar_one()


def _categories() -> list[Category]:
    return db.session.execute(sa.select(Category).where(Category.profile_id == _bs_term().profile_id)).scalars().all()


def _participating(*where) -> int:
    return db.session.execute(sa.select(sa.func.count(Student.id)).join(SchoolClass, SchoolClass.id == Student.class_id)
                              .where(Student.status.notin_(NON_PARTICIPANT_STATUSES), *where)).scalar_one()


def _records(*where):
    """Records of the current term of participating students."""
    return (sa.select(Record).join(Student, Student.id == Record.student_id)
            .where(Record.term_id == _bs_term().id, Student.status.notin_(NON_PARTICIPANT_STATUSES), *where))


def _count(stmt) -> int:
    return len(db.session.execute(stmt).scalars().all())


def _entered(category: Category, *where) -> int:
    """Students with a clerk's record of the category, or their own entry handed in (not a draft)."""
    rows = db.session.execute(_records(Record.category_id == category.id, sa.or_(
        Record.origin.in_(CLERK_ORIGINS), sa.and_(Record.origin == "student",
                                                  Record.state.in_(("submitted", "reviewed", "final")))), *where)
    ).scalars().all()
    return len({r.student_id for r in rows})


def _confirmations(*where) -> dict:
    runs = set(db.session.execute(sa.select(DeadlineRun.id).where(DeadlineRun.effect == "auto_confirm")).scalars())
    out = dict.fromkeys(("confirmed", "defaulted", "rejected", "corrected", "problem", "pending"), 0)
    for r in db.session.execute(_records(Record.origin.in_(CLERK_ORIGINS), *where)).scalars():
        if r.deadline_run_id in runs:
            out["defaulted"] += 1
        else:
            out[{"entered": "pending"}.get(r.state, r.state)] += 1
    return out


def _page_confirmations(row: dict) -> dict:
    return {k: int(row[k]) for k in ("confirmed", "defaulted", "rejected", "corrected", "problem", "pending")}


def _cases(*where) -> dict:
    cases = db.session.execute(sa.select(Case).where(Case.term_id == _bs_term().id, *where)).scalars().all()
    at = deadlines.now()
    out = {"total": len(cases), "closed": 0, "dismissed": 0, "in_progress": 0, "overdue": 0,
           **{f"flow{f}": 0 for f in (1, 2, 3, 4)}}
    for c in cases:
        out[f"flow{c.flow}"] += 1
        if c.state in OPEN_CASE_STATES:
            out["in_progress"] += 1
            out["overdue"] += c.overdue_run_id is not None or (c.due_at is not None and c.due_at <= at)
        else:
            out[c.state] += 1
    return out


# --- the figures -----------------------------------------------------------------------------------


def test_district_figures_after_confirming_rejecting_and_the_default(client, login_as, at):
    at("2022-03-25 09:00")
    # records confirmed before this test (the browser test's student commits on the shared database)
    earlier = _count(_records(Record.state == "confirmed"))
    confirmed = workflow.confirm_all(user("s1g9c1n01"), student_of("s1g9c1n01"))
    confirmed += workflow.confirm_all(user("s2g8c1n01"), student_of("s2g8c1n01"))
    rejecter = student_of("s1g9c1n02")
    wrong = db.session.execute(sa.select(Record).where(Record.student_id == rejecter.id, Record.state == "entered")
                               .order_by(Record.id)).scalars().first()
    workflow.record_action(user("s1g9c1n02"), wrong, "reject", reason="成绩录错了")
    # one student's own entry handed in: it counts as entered; a draft does not
    own = db.session.execute(sa.select(Record).where(Record.student_id == rejecter.id, Record.origin == "student")
                             .order_by(Record.id)).scalars().first()
    own.state = "final"
    db.session.commit()
    at("2022-03-28 16:00")
    run = deadlines.run("auto_confirm", _cohort("g9").id)
    assert run.counts["records"] > 0

    login_as("admin")
    html, t = page(client, f"{URL}/")
    assert "宝山区 · 进度统计" in html and "外区第一中学" not in html
    schools = [_school(c) for c in ("bs01", "bs02", "bs03")]
    assert set(t["confirmations"]["rows"]) == {str(s.id) for s in schools} | {"total"}
    for s in schools:
        row = t["confirmations"]["rows"][str(s.id)]
        assert _page_confirmations(row) == _confirmations(Record.school_id == s.id), s.code
        assert f'href="{URL}/school/{s.id}/"' in html
        entries = t["entries"]["rows"][str(s.id)]
        assert int(entries["students"]) == _participating(Student.school_id == s.id)
        for cat in _categories():
            roster = _participating(Student.school_id == s.id, SchoolClass.grade.in_(cat.grades))
            assert entries[f"cat{cat.id}"] == f"{_entered(cat, Record.school_id == s.id)}/{roster}", (s.code, cat.code)
    total = _page_confirmations(t["confirmations"]["rows"]["total"])
    assert total == _confirmations()
    # what happened, in the page's words: two students confirmed, one rejection, the rest of grade 9 by default
    assert (total["confirmed"], total["rejected"], total["defaulted"]) == (earlier + confirmed, 1, run.counts["records"])
    assert total["pending"] == _count(_records(Record.state == "entered"))
    for cat in _categories():
        row = t["categories"]["rows"][str(cat.id)]
        assert (int(row["entered"]), int(row["roster"])) == (
            _entered(cat), _participating(Student.school_id.in_([s.id for s in schools]),
                                          SchoolClass.grade.in_(cat.grades))), cat.code
    own_row = t["categories"]["rows"][str(own.category_id)]
    assert int(own_row["published"]) == 1
    # the summary and the charts are there, with the numbers as tables too
    assert 'id="chart-confirmations"' in html and 'id="table-confirmations"' in html
    assert "vendor/chart.js/chart.umd.min.js" in html


def test_school_and_class_pages_drill_down_and_leave_non_participants_out(client, login_as, at):
    at("2022-03-25 09:00")
    workflow.confirm_all(user("s1g9c2n01"), student_of("s1g9c2n01"))
    klass = student_of("s1g9c2n01").school_class
    out = db.session.execute(sa.select(Student).where(Student.class_id == klass.id,
                                                      Student.status.in_(NON_PARTICIPANT_STATUSES))).scalar_one()
    # a record left over for a non-participant is not counted anywhere
    sports = db.session.execute(sa.select(Category).where(Category.code == "sports")).scalar_one()
    db.session.add(Record(term=_bs_term(), category=sports, student=out, school_id=out.school_id, origin="school",
                          state="confirmed", data={"name": "x"}))
    db.session.commit()
    school = klass.school

    login_as("s1_principal")
    resp = client.get(f"{URL}/")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"{URL}/school/{school.id}/")
    html, t = page(client, f"{URL}/school/{school.id}/")
    assert crumbs(html) == []  # a school's leadership starts at the school
    for k in _classes(school):
        assert f'href="{URL}/class/{k.id}/"' in html
        row = t["confirmations"]["rows"][str(k.id)]
        assert _page_confirmations(row) == _confirmations(Student.class_id == k.id), k.name
        entries = t["entries"]["rows"][str(k.id)]
        assert int(entries["students"]) == _participating(Student.class_id == k.id)
        assert int(entries["out"]) == _count(sa.select(Student).where(
            Student.class_id == k.id, Student.status.in_(NON_PARTICIPANT_STATUSES)))
        assert entries[f"cat{sports.id}"] == f"{_entered(sports, Student.class_id == k.id)}/" \
                                             f"{_participating(Student.class_id == k.id)}"
    assert int(t["confirmations"]["rows"]["total"]["confirmed"]) == _confirmations(Student.school_id == school.id)[
        "confirmed"]

    html, t = page(client, f"{URL}/class/{klass.id}/")
    assert crumbs(html) == [f"{URL}/school/{school.id}/"] and klass.name in html
    students = db.session.execute(sa.select(Student).where(Student.class_id == klass.id)).scalars().all()
    assert set(t["students"]["rows"]) == {str(s.id) for s in students}
    assert t["students"]["rows"][str(out.id)]["confirmed"] == ""  # listed, without figures
    assert re.search(rf'<tr data-unit="{out.id}" class="text-muted">', html)
    for s in students:
        if s.status in NON_PARTICIPANT_STATUSES:
            continue
        row = t["students"]["rows"][str(s.id)]
        c = _confirmations(Record.student_id == s.id)
        assert (int(row["confirmed"]), int(row["pending"])) == (c["confirmed"], c["pending"]), s.name
        applicable = [cat for cat in _categories() if 9 in cat.grades]
        assert row["categories"] == f"{sum(1 for cat in applicable if _entered(cat, Record.student_id == s.id))}/" \
                                    f"{len(applicable)}"
    cat_row = t["categories"]["rows"][str(sports.id)]
    assert (int(cat_row["entered"]), int(cat_row["roster"])) == (_entered(sports, Student.class_id == klass.id),
                                                                 _participating(Student.class_id == klass.id))
    # grade 6–8 categories do not apply to a grade-9 class
    typical = db.session.execute(sa.select(Category).where(Category.code == "typical_case")).scalar_one()
    assert str(typical.id) not in t["categories"]["rows"]

    # the district admin's school page starts from the district
    login_as("admin")
    html, _t = page(client, f"{URL}/school/{school.id}/")
    assert crumbs(html) == [f"{URL}/"]
    assert crumbs(page(client, f"{URL}/class/{klass.id}/")[0]) == [f"{URL}/", f"{URL}/school/{school.id}/"]


def _window(code: str, phase: str) -> PhaseWindow:
    return _cohort(code).window(phase)


def _case(student: Student, state: str, flow: int, category_code: str = "sports") -> Case:
    cat = db.session.execute(sa.select(Category).where(Category.code == category_code)).scalar_one()
    cohort = "g9" if student.school_class.grade == 9 else "g6_8"
    handler = {1: "district", 2: "school", 3: "district", 4: "city"}[flow]
    case = Case(term=_bs_term(), flow=flow, kind="problem" if flow == 1 else "error", student=student,
                category=cat, school_id=student.school_id, class_id=student.class_id,
                district_id=student.school.district_id, handler_level=handler,
                corrector_level="school" if flow in (1, 2) else handler, description="测试", state=state,
                handler_note="", corrector_note="", due_at=_window(cohort, "issue_handling").ends_at)
    db.session.add(case)
    return case


def test_cases_overdue_flows_signatures_and_ratings(client, login_as, at):
    at("2022-04-01 09:00")
    a, b, c = student_of("s1g9c1n01"), student_of("s1g9c1n02"), student_of("s1g7c1n01")
    _case(a, "open", 2)
    _case(a, "accepted", 3)
    _case(b, "closed", 2)
    _case(b, "dismissed", 4)
    _case(b, "corrected", 1)
    _case(c, "open", 2)  # grade 7: its issue handling lasts longer
    _case(student_of("s2g9c1n01"), "open", 3)
    db.session.commit()
    at(_window("g9", "issue_handling").ends_at)
    assert deadlines.run("flag_overdue", _cohort("g9").id).counts == {"cases": 4}

    at("2022-04-20 09:00")  # archive and sign-off (grade 9)
    klass = a.school_class
    g9 = db.session.execute(sa.select(Student).where(Student.class_id == klass.id,
                                                     Student.status.notin_(NON_PARTICIPANT_STATUSES))
                            .order_by(Student.xjh)).scalars().all()
    workflow.rate_students(user("s1_principal"), g9[:3], "pass")
    workflow.rate_students(user("s1_principal"), g9[3:], "fail", reason="未完成必修内容")
    workflow.record_signatures(user("s1_clerk"), g9[:2], student_on=date(2022, 4, 19), parent_on=date(2022, 4, 20))
    workflow.record_signatures(user("s1_clerk"), g9[2:3], student_on=date(2022, 4, 19))  # the parent not yet

    login_as("s1_admin")
    school = a.school
    html, t = page(client, f"{URL}/school/{school.id}/")
    for k in _classes(school):
        row = t["cases"]["rows"][str(k.id)]
        expected = _cases(Case.class_id == k.id)
        assert {key: int(row[key]) for key in expected} == expected, k.name
    assert {key: int(v) for key, v in t["cases"]["rows"]["total"].items() if key in _cases()} == \
        _cases(Case.school_id == school.id)
    total = t["cases"]["rows"]["total"]
    assert (int(total["in_progress"]), int(total["overdue"]), int(total["closed"])) == (4, 3, 1)
    assert (int(total["flow1"]), int(total["flow2"]), int(total["flow3"]), int(total["flow4"])) == (1, 3, 1, 1)

    signed = db.session.execute(sa.select(ArchiveEntry).join(Student, Student.id == ArchiveEntry.student_id)
                                .where(ArchiveEntry.term_id == _bs_term().id, Student.class_id == klass.id,
                                       ArchiveEntry.student_signed_on.is_not(None),
                                       ArchiveEntry.parent_signed_on.is_not(None))).scalars().all()
    row = t["archive"]["rows"][str(klass.id)]
    assert int(row["g9"]) == _participating(Student.class_id == klass.id) == len(g9)
    assert (int(row["signed"]), int(row["pass"]), int(row["fail"]), int(row["unrated"])) == (
        len(signed), 3, len(g9) - 3, 0) and len(signed) == 2
    assert float(row["signed_pct"]) == pytest.approx(2 / len(g9), abs=1e-4)
    assert str(_classes(school)[0].id) not in t["archive"]["rows"]  # grade 6: no archive phase

    html, t = page(client, f"{URL}/class/{klass.id}/")
    rows = t["students"]["rows"]
    assert (rows[str(g9[0].id)]["signed"], rows[str(g9[2].id)]["signed"]) == ("1", "0")
    assert rows[str(g9[0].id)]["result"] == "合格" and rows[str(g9[3].id)]["result"] == "不合格"
    assert (int(rows[str(a.id)]["cases_open"]), int(rows[str(a.id)]["overdue"])) == (2, 2)

    login_as("admin")
    _html, t = page(client, f"{URL}/")
    for code in ("bs01", "bs02", "bs03"):
        s = _school(code)
        row = t["cases"]["rows"][str(s.id)]
        expected = _cases(Case.school_id == s.id)
        assert {key: int(row[key]) for key in expected} == expected, code


# --- the workbook is the page -----------------------------------------------------------------------


def test_each_level_downloads_the_figures_of_its_page(client, login_as, at):
    at("2022-03-25 09:00")
    workflow.confirm_all(user("s1g9c1n01"), student_of("s1g9c1n01"))
    klass = student_of("s1g9c1n01").school_class
    login_as("admin")
    for path in (f"{URL}/", f"{URL}/school/{klass.school_id}/", f"{URL}/class/{klass.id}/"):
        html, parsed = page(client, path)
        order = re.findall(r'data-table="([a-z_]+)"', html)
        xlsx_url = re.search(r'href="([^"]+/xlsx)" id="dash-xlsx"', html).group(1)
        resp = client.get(xlsx_url)
        assert resp.status_code == 200 and resp.mimetype.endswith("spreadsheetml.sheet")
        assert "filename*=UTF-8''" in resp.headers["Content-Disposition"]
        assert_workbook_equals_page(resp.data, parsed, order)
        first = load_workbook(io.BytesIO(resp.data)).worksheets[0]
        assert first.title == "分类录入进度" and first["A2"].value == "类别"  # Chinese headers
        assert "2021学年第一学期" in first["A1"].value and "统计时间" in first["A1"].value


# --- who sees what ------------------------------------------------------------------------------------


def test_scope_school_roles_see_their_school_others_nothing(client, login_as, at):
    at("2022-03-25 09:00")
    s1, s2, zz = _school("bs01"), _school("bs02"), _school("zz01")
    other_class = _classes(s2)[0]
    login_as("s1_admin")
    for path in (f"{URL}/school/{s2.id}/", f"{URL}/school/{s2.id}/xlsx", f"{URL}/class/{other_class.id}/",
                 f"{URL}/class/{other_class.id}/xlsx", f"{URL}/school/999999/", f"{URL}/class/999999/"):
        assert client.get(path).status_code == 404, path
    assert client.get(f"{URL}/school/{s1.id}/").status_code == 200
    assert client.get(f"{URL}/xlsx").status_code == 302  # one school: its own workbook
    for name in ("s1_leader", "s1_principal"):
        login_as(name)
        assert client.get(f"{URL}/school/{s1.id}/").status_code == 200
        assert client.get(f"{URL}/school/{s2.id}/").status_code == 404

    login_as("admin")
    assert client.get(f"{URL}/school/{zz.id}/").status_code == 404  # another city's school
    assert client.get(f"{URL}/class/{_classes(zz)[0].id}/").status_code == 404
    assert f'href="{URL}/"' in client.get("/admin/").get_data(as_text=True)  # the menu entry 进度统计

    for name in ("s1_clerk", "s1_auditor", "s1_g9c1_teacher", "district_clerk", "district_auditor", "s1g9c1n01",
                 "p_s1g9c1n01"):
        login_as(name)
        for path in (f"{URL}/", f"{URL}/school/{s1.id}/", f"{URL}/xlsx"):
            assert client.get(path).status_code == 403, (name, path)
        assert f'href="{URL}/"' not in client.get("/admin/").get_data(as_text=True), name

    resp = client.application.test_client().get(f"{URL}/school/{s1.id}/")  # nobody logged in
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_policy_rule_names_the_dashboard_roles(session):
    rule = policy.RULES[School]["dashboard"]
    assert rule.roles == {"district_admin", "school_admin", "school_leader", "principal"}
    admin_schools = db.session.execute(sa.select(School.code).where(
        policy.scope(user("admin"), School, "dashboard"))).scalars().all()
    assert sorted(admin_schools) == ["bs01", "bs02", "bs03"]
    assert db.session.execute(sa.select(School.code).where(
        policy.scope(user("s1_clerk"), School, "dashboard"))).scalars().all() == []


# --- a handful of statements, however many rows -------------------------------------------------------


def test_statements_do_not_grow_with_students(client, login_as, at):
    from test_queries import statements

    at("2022-03-25 09:00")
    klass = student_of("s1g9c1n01").school_class
    login_as("admin")
    paths = (f"{URL}/", f"{URL}/school/{klass.school_id}/", f"{URL}/class/{klass.id}/")
    db.session.commit()
    from views import counts

    before = {}
    for path in paths:
        client.get(path)
        counts._counts.clear()  # the district's figures are reused for a while: measure them computed
        with statements() as seen:
            assert client.get(path).status_code == 200
        before[path] = len(seen)
    assert max(before.values()) <= 20, before
    term = _bs_term()
    cats = [c for c in _categories() if 9 in c.grades and any(r["level"] == "school" for r in c.entry)]
    for i in range(12):
        s = Student(xjh=f"DASH{i:014d}", name=f"新生{i}", gender="男", school_class=klass, school_id=0)
        db.session.add(s)
        db.session.flush()
        db.session.add_all([Record(term=term, category=c, student=s, school_id=klass.school_id, origin="school",
                                   state="entered", data={}) for c in cats])
    db.session.commit()
    for path in paths:
        client.get(path)  # warm caches again (the commit expired what the session held)
        counts._counts.clear()
        with statements() as seen:
            html = client.get(path).get_data(as_text=True)
        assert len(seen) == before[path], path
    assert "新生11" in html
