"""归档签字 pages (issue 7, SPEC §7) over HTTP: the principal's 合格/不合格 (one, bulk, refused without a
reason or outside the window, to the minute), signatures recorded by the homeroom teacher (own class)
and the school clerk (any class), progress by class, school and district, the 汇总表 refused until
everyone has signed and then downloaded as xlsx and PDF, the signed scan uploaded and checked by its
content (never its name), and who may see what."""
from __future__ import annotations

import io
import re
import subprocess
import zipfile
from datetime import date, datetime

import pytest
import sqlalchemy as sa
from conftest import student_of, table_fingerprint, user

from models import ArchiveEntry, School, SchoolClass, Student, SummaryUpload, db, workflow

RATE = "/admin/archive/rate/"
SIGN = "/admin/archive/sign/"
PROGRESS = "/admin/archive/progress/"
SUMMARY = "/admin/archive/summary/"
IN_WINDOW = "2022-04-20 09:00"


def _school(code: str = "bs01") -> School:
    return db.session.execute(sa.select(School).where(School.code == code)).scalar_one()


def _classes(code: str = "bs01") -> list[SchoolClass]:
    return db.session.execute(sa.select(SchoolClass).where(SchoolClass.school_id == _school(code).id,
                                                           SchoolClass.grade == 9)
                              .order_by(SchoolClass.number)).scalars().all()


def _participants(klass: SchoolClass) -> list[Student]:
    return [s for s in db.session.execute(sa.select(Student).where(Student.class_id == klass.id)
                                          .order_by(Student.xjh)).scalars() if s.participates]


def _all(code: str = "bs01") -> list[Student]:
    return [s for c in _classes(code) for s in _participants(c)]


def _entries() -> dict[int, ArchiveEntry]:
    db.session.expire_all()
    return {e.student_id: e for e in db.session.execute(sa.select(ArchiveEntry)).scalars()}


def _html(resp) -> str:
    return resp.get_data(as_text=True)


def _flashes(html: str) -> str:
    """The flashed messages of a page (Flask-Admin's alert boxes)."""
    found = re.findall(r'<div class="alert alert-\w+ alert-dismissable">(.*?)</div>', html, re.S)
    return " ".join(" ".join(re.sub(r"<[^>]+>|&times;", " ", m).split()) for m in found)


def _ready(code: str = "bs01", *, leave_out: Student | None = None) -> list[Student]:
    """Everyone of the school's grade 9 rated (the first one 不合格) and signed by both (except ``leave_out``'s
    parent), through the workflow."""
    students = _all(code)
    n = int(code[2:])
    principal = user(f"s{n}_principal")
    workflow.rate_students(principal, students, "pass")
    workflow.rate_students(principal, students[:1], "fail", "综合实践活动多次缺勤")
    clerk = user(f"s{n}_clerk")
    workflow.record_signatures(clerk, students, student_on=date(2022, 4, 18),
                               parent_on=None if leave_out else date(2022, 4, 19))
    if leave_out:
        rest = [s for s in students if s.id != leave_out.id]
        workflow.record_signatures(clerk, rest, parent_on=date(2022, 4, 19))
    return students


# ---------------------------------------------------------------------------------------------
# 评定


def test_principal_rates_one_and_in_bulk(session, at, client, login_as):
    at(IN_WINDOW)
    token = login_as("s1_principal")
    c1, c2 = _classes()
    page = client.get(RATE)
    html = _html(page)
    assert page.status_code == 200 and "评定（合格/不合格）" in html and "进行中" in html
    for s in _all():
        assert f'href="/reports/student/{s.id}/"' in html and s.name in html
    assert 'id="cqe-rate-list"' in html and "disabled" not in re.search(r'<fieldset[^>]*id="cqe-rate-list"', html).group(0)
    # another school's students are not on the page
    assert not any(s.name in html for s in _all("bs02") if s.name not in {x.name for x in _all()})

    one = _participants(c1)[0]
    resp = client.post(RATE + "rate", data={"csrf_token": token, "student": one.id, "result": "pass",
                                            "class_id": c1.id}, follow_redirects=True)
    assert resp.status_code == 200 and f"已将{one.name}评为「合格」" in _flashes(_html(resp))
    assert _entries()[one.id].result == "pass" and _entries()[one.id].rated_by_id == user("s1_principal").id

    # bulk: the rest of class 1 不合格 with one reason
    rest = _participants(c1)[1:]
    resp = client.post(RATE + "rate", data={"csrf_token": token, "student": [s.id for s in rest], "result": "fail",
                                            "reason": "未完成社会实践"}, follow_redirects=True)
    assert f"已将 {len(rest)} 名学生评为「不合格」" in _flashes(_html(resp))
    entries = _entries()
    assert all(entries[s.id].result == "fail" and entries[s.id].reason == "未完成社会实践" for s in rest)
    # then all of class 2 合格, and one of class 1 changed back
    resp = client.post(RATE + "rate", data={"csrf_token": token, "student": [s.id for s in _participants(c2)] + [rest[0].id],
                                            "result": "pass"}, follow_redirects=True)
    entries = _entries()
    assert all(entries[s.id].result == "pass" and entries[s.id].reason is None for s in _participants(c2) + rest[:1])
    assert all(entries[s.id].result == "fail" for s in rest[1:])

    # filtered by class and by result; the page shows each student's result
    html = _html(client.get(RATE, query_string={"class_id": c2.id}))
    assert all(s.name in html for s in _participants(c2)) and not any(f'id="s{s.id}"' in html for s in _participants(c1))
    html = _html(client.get(RATE, query_string={"result": "fail"}))
    assert sorted(int(i) for i in re.findall(r'<li[^>]*id="s(\d+)" data-result="fail"', html)) == sorted(
        s.id for s in rest[1:])
    assert "未完成社会实践" in html
    # the non-participant of class 2 is not listed, and the page says so
    out = next(s for s in c2.students if not s.participates)
    html = _html(client.get(RATE))
    assert f'id="s{out.id}"' not in html and "已预确认为不参与评价" in html


def test_fail_without_reason_or_with_a_non_participant_saves_nothing(session, at, client, login_as):
    at(IN_WINDOW)
    token = login_as("s1_principal")
    students = _all()
    before = table_fingerprint()
    resp = client.post(RATE + "rate", data={"csrf_token": token, "student": students[0].id, "result": "fail",
                                            "reason": "  "}, follow_redirects=True)
    assert "不合格原因：必填" in _flashes(_html(resp))
    resp = client.post(RATE + "rate", data={"csrf_token": token, "student": [s.id for s in students],
                                            "result": "fail"}, follow_redirects=True)
    assert "不合格原因：必填" in _flashes(_html(resp))
    # all or nothing: one non-participant in the selection refuses the whole selection
    out = next(s for s in _classes()[1].students if not s.participates)
    resp = client.post(RATE + "rate", data={"csrf_token": token, "student": [s.id for s in students] + [out.id],
                                            "result": "pass"}, follow_redirects=True)
    assert f"{out.name}已预确认为不参与评价" in _flashes(_html(resp))
    resp = client.post(RATE + "rate", data={"csrf_token": token, "result": "pass"}, follow_redirects=True)
    assert "请先勾选学生" in _flashes(_html(resp))
    assert table_fingerprint() == before


@pytest.mark.parametrize("instant, allowed, state", [
    ("2022-04-13 07:59", False, "尚未开始"), ("2022-04-13 08:00", True, "进行中"),
    ("2022-05-10 15:59", True, "进行中"), ("2022-05-10 16:00", False, "已结束"),
])
def test_the_archive_window_to_the_minute(session, at, client, login_as, instant, allowed, state):
    at(instant)
    students = _all()
    window = "2022-04-13 08:00 至 2022-05-10 16:00"
    for username, url in (("s1_principal", RATE), ("s1_g9c1_teacher", SIGN + f"class/{_classes()[0].id}/")):
        token = login_as(username)
        html = _html(client.get(url))
        assert window in html and state in html
        fieldset = re.search(r'<fieldset[^>]*id="cqe-(?:rate|sign)-list"', html).group(0)
        assert ("disabled" in fieldset) is (not allowed)
        before = table_fingerprint()
        if username == "s1_principal":
            resp = client.post(RATE + "rate", data={"csrf_token": token, "student": students[0].id, "result": "pass"},
                               follow_redirects=True)
        else:
            resp = client.post(SIGN + f"class/{_classes()[0].id}/", data={
                "csrf_token": token, "student": students[0].id, "kind": "both", "date": "2022-04-12"},
                follow_redirects=True)
        flashes = _flashes(_html(resp))
        if allowed:
            assert "已" in flashes and table_fingerprint() != before
        else:
            assert "「归档签字」" in flashes and "2022-04-13 08:00 至 2022-05-10 16:00" in flashes, flashes
            assert table_fingerprint() == before


def test_another_schools_principal_gets_404(session, at, client, login_as):
    at(IN_WINDOW)
    token = login_as("s2_principal")
    c1 = _classes()[0]
    s1_student = _participants(c1)[0]
    html = _html(client.get(RATE))
    assert s1_student.name not in html or f'id="s{s1_student.id}"' not in html
    assert client.get(RATE, query_string={"class_id": c1.id}).status_code == 404
    before = table_fingerprint()
    # one of theirs plus one of school 1: refused as a whole
    mine = _all("bs02")[0]
    resp = client.post(RATE + "rate", data={"csrf_token": token, "student": [mine.id, s1_student.id], "result": "pass"})
    assert resp.status_code == 404
    assert table_fingerprint() == before
    assert client.get(PROGRESS + f"class/{c1.id}/").status_code == 404
    assert client.get(PROGRESS, query_string={"school_id": _school().id}).status_code == 404
    assert client.get(SUMMARY, query_string={"school_id": _school().id}).status_code == 404
    assert client.get(SUMMARY + f"school/{_school().id}/summary.xlsx").status_code == 404


# ---------------------------------------------------------------------------------------------
# 签字登记 and progress


def test_homeroom_teacher_signs_their_own_class_only(session, at, client, login_as):
    at(IN_WINDOW)
    token = login_as("s1_g9c1_teacher")
    c1, c2 = _classes()
    resp = client.get(SIGN)
    assert resp.status_code == 302 and resp.headers["Location"].endswith(SIGN + f"class/{c1.id}/")
    html = _html(client.get(SIGN + f"class/{c1.id}/"))
    assert f'href="/reports/class/{c1.id}/slips.pdf"' in html and 'value="2022-04-20"' in html
    assert all(f'id="s{s.id}"' in html for s in _participants(c1))
    url = SIGN + f"class/{c1.id}/"
    first, *rest = _participants(c1)
    resp = client.post(url, data={"csrf_token": token, "student": first.id, "kind": "both", "date": "2022-04-19"},
                       follow_redirects=True)
    assert f"已登记{first.name}：学生和家长已于 2022-04-19 签字" in _flashes(_html(resp))
    e = _entries()[first.id]
    assert (e.student_signed_on, e.parent_signed_on, e.signed_by_id) == (date(2022, 4, 19), date(2022, 4, 19),
                                                                         user("s1_g9c1_teacher").id)
    # bulk: students first, parents another day
    client.post(url, data={"csrf_token": token, "student": [s.id for s in rest], "kind": "student", "date": "2022-04-18"})
    client.post(url, data={"csrf_token": token, "student": [s.id for s in rest[:1]], "kind": "parent",
                           "date": "2022-04-20"})
    entries = _entries()
    assert all(entries[s.id].student_signed_on == date(2022, 4, 18) for s in rest)
    assert entries[rest[0].id].parent_signed_on == date(2022, 4, 20)
    assert all(entries[s.id].parent_signed_on is None for s in rest[1:])
    html = _html(client.get(url))
    assert re.search(r'id="cqe-class-progress" data-done="2" data-total="4"', html)
    # undo
    resp = client.post(url, data={"csrf_token": token, "student": rest[0].id, "kind": "clear"}, follow_redirects=True)
    assert "已撤销 1 名学生的签字登记" in _flashes(_html(resp))
    assert not _entries()[rest[0].id].student_signed_on and not _entries()[rest[0].id].parent_signed_on
    # a future date, a bad date, nobody selected: refused, nothing saved
    before = table_fingerprint()
    for data, words in (({"student": first.id, "kind": "both", "date": "2022-04-21"}, "不能晚于今天"),
                        ({"student": first.id, "kind": "both", "date": "20.4."}, "请填写有效日期"),
                        ({"kind": "both", "date": "2022-04-20"}, "请先勾选学生")):
        resp = client.post(url, data={"csrf_token": token, **data}, follow_redirects=True)
        assert words in _flashes(_html(resp))
    assert table_fingerprint() == before
    # the other class: not theirs
    other = _participants(c2)[0]
    assert client.get(SIGN + f"class/{c2.id}/").status_code == 404
    assert client.post(SIGN + f"class/{c2.id}/", data={"csrf_token": token, "student": other.id, "kind": "both",
                                                       "date": "2022-04-20"}).status_code == 404
    assert client.post(url, data={"csrf_token": token, "student": other.id, "kind": "both",
                                  "date": "2022-04-20"}).status_code == 404
    assert table_fingerprint() == before
    # and the teacher does not rate, see the school's progress or the summary
    for page in (RATE, PROGRESS, SUMMARY):
        assert client.get(page).status_code == 403


def test_school_clerk_signs_any_class_of_the_school(session, at, client, login_as):
    at(IN_WINDOW)
    token = login_as("s1_clerk")
    c1, c2 = _classes()
    html = _html(client.get(SIGN))
    assert f'href="{SIGN}class/{c1.id}/"' in html and f'href="{SIGN}class/{c2.id}/"' in html
    assert f'href="/reports/class/{c2.id}/slips.pdf"' in html
    students = _participants(c2)
    resp = client.post(SIGN + f"class/{c2.id}/", data={"csrf_token": token, "student": [s.id for s in students],
                                                        "kind": "both", "date": "2022-04-20"}, follow_redirects=True)
    assert f"已登记 {len(students)} 名学生：学生和家长已于 2022-04-20 签字" in _flashes(_html(resp))
    assert all(_entries()[s.id].signed for s in students)
    # another school's class does not exist for this clerk
    other = _classes("bs02")[0]
    assert client.get(SIGN + f"class/{other.id}/").status_code == 404
    assert client.post(SIGN + f"class/{other.id}/", data={"csrf_token": token, "student": _participants(other)[0].id,
                                                          "kind": "both", "date": "2022-04-20"}).status_code == 404
    # the clerk rates nothing and has no summary
    assert client.get(RATE).status_code == 403 and client.get(SUMMARY).status_code == 403


def _rows(html: str, attr: str) -> dict[int, dict]:
    out = {}
    for m in re.finditer(rf'<tr data-{attr}="(\d+)"([^>]*)>', html):
        out[int(m.group(1))] = dict(re.findall(r'data-([\w-]+)="([^"]*)"', m.group(2)))
    return out


def test_progress_by_class_school_and_district(session, at, client, login_as):
    at(IN_WINDOW)
    c1, c2 = _classes()
    a, b, c, d = _participants(c1)
    clerk = user("s1_clerk")
    workflow.record_signatures(clerk, [a, b], student_on=date(2022, 4, 18), parent_on=date(2022, 4, 18))
    workflow.record_signatures(clerk, [c], student_on=date(2022, 4, 18))
    workflow.record_signatures(clerk, _participants(c2), student_on=date(2022, 4, 19), parent_on=date(2022, 4, 19))
    workflow.rate_students(user("s1_principal"), [a, b, c], "pass")
    assert len(_participants(c2)) == 3  # the fourth is a non-participant: not counted
    for username in ("s1_principal", "s1_leader", "s1_admin", "s1_clerk"):
        login_as(username)
        html = _html(client.get(PROGRESS))
        rows = _rows(html, "class")
        assert rows[c1.id] == {"signed": "2", "total": "4"} and rows[c2.id] == {"signed": "3", "total": "3"}, username
        assert 'id="cqe-school-progress" data-done="5" data-total="7"' in html
    # the district: one row a school, then down to the school's classes and a class's roster
    login_as("admin")
    html = _html(client.get(PROGRESS))
    schools = _rows(html, "school")
    assert set(schools) == {_school(code).id for code in ("bs01", "bs02", "bs03")}
    assert schools[_school().id] == {"total": "7", "rated": "3", "signed": "5", "uploaded": "no"}
    assert schools[_school("bs02").id] == {"total": "7", "rated": "0", "signed": "0", "uploaded": "no"}
    html = _html(client.get(PROGRESS, query_string={"school_id": _school().id}))
    assert _rows(html, "class")[c1.id] == {"signed": "2", "total": "4"}
    html = _html(client.get(PROGRESS + f"class/{c1.id}/"))
    assert a.name in html and "只读" in html and 'name="kind"' not in html
    assert 'data-student-signed="2022-04-18"' in html
    # no other city's school
    assert client.get(PROGRESS, query_string={"school_id": db.session.execute(
        sa.select(School.id).where(School.code == "zz01")).scalar_one()}).status_code == 404


# ---------------------------------------------------------------------------------------------
# 汇总表


def _pdf_text(data: bytes, tmp_path) -> str:
    path = tmp_path / "s.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def test_summary_refused_until_everyone_signed_then_xlsx_and_pdf(session, at, client, login_as, tmp_path):
    from openpyxl import load_workbook

    at(IN_WINDOW)
    c1, c2 = _classes()
    last = _participants(c2)[-1]
    students = _ready(leave_out=last)
    token = login_as("s1_principal")
    html = _html(client.get(SUMMARY))
    assert "还不能生成汇总表" in html and 'id="cqe-summary-xlsx"' not in html
    missing = _rows(html, "class")
    assert missing == {c2.id: {"unrated": "0", "student": "0", "parent": "1"}}
    assert "家长未签字 1 名" in html and last.name in html
    resp = client.get(SUMMARY + f"school/{_school().id}/summary.xlsx", follow_redirects=True)
    assert "还不能生成汇总表" in _flashes(_html(resp))
    assert client.get(SUMMARY + f"school/{_school().id}/summary.pdf").status_code == 302
    # uploading is refused too, before anything is read
    before = table_fingerprint()
    resp = client.post(SUMMARY + f"school/{_school().id}/upload", data={
        "csrf_token": token, "file": (io.BytesIO(b"%PDF-1.4\n"), "a.pdf")}, content_type="multipart/form-data",
        follow_redirects=True)
    assert "还不能上传汇总表" in _flashes(_html(resp)) and table_fingerprint() == before

    workflow.record_signatures(user("s1_g9c2_teacher"), [last], parent_on=date(2022, 4, 20))
    html = _html(client.get(SUMMARY))
    assert 'id="cqe-summary-ready"' in html and 'id="cqe-summary-xlsx"' in html
    resp = client.get(SUMMARY + f"school/{_school().id}/summary.xlsx")
    assert resp.status_code == 200 and resp.mimetype.endswith("spreadsheetml.sheet")
    assert "attachment" in resp.headers["Content-Disposition"]
    ws = load_workbook(io.BytesIO(resp.data)).active
    title = ws["A1"].value
    assert "上海市宝山区第一中学" in title and "2021学年第一学期" in title
    assert [c.value for c in ws[2]] == ["序号", "学籍号", "姓名", "班级", "评价结果", "不合格原因", "学生签字日期", "家长签字日期"]
    rows = [[c.value for c in r] for r in ws.iter_rows(min_row=3, max_row=2 + len(students))]
    assert [r[0] for r in rows] == list(range(1, len(students) + 1))
    assert [r[1] for r in rows] == [s.xjh for s in students] and [r[2] for r in rows] == [s.name for s in students]
    assert rows[0][3] == c1.name and rows[-1][3] == c2.name
    assert rows[0][4:6] == ["不合格", "综合实践活动多次缺勤"] and all(r[4] == "合格" and not r[5] for r in rows[1:])
    assert all(r[6] == datetime(2022, 4, 18) for r in rows)
    assert rows[-1][7] == datetime(2022, 4, 20) and all(r[7] == datetime(2022, 4, 19) for r in rows[:-1])
    assert ws.cell(3 + len(students), 1).value in (None, "")  # nothing after the students but the signature line
    resp = client.get(SUMMARY + f"school/{_school().id}/summary.pdf")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf" and resp.data.startswith(b"%PDF-")
    text = _pdf_text(resp.data, tmp_path)
    assert "上海市宝山区第一中学初中学生综合素质评价汇总表" in text and "2021学年第一学期" in text
    for word in ("序号", "学籍号", "不合格原因", "家长签字日期", "校长签字", "学校盖章", "综合实践活动多次缺勤"):
        assert word in text, word
    assert all(s.xjh in text and s.name in text for s in students)
    assert "合格 6 名，不合格 1 名" in text
    # the school leader sees the status, but the summary is the principal's to print and upload
    login_as("s1_leader")
    html = _html(client.get(SUMMARY))
    assert 'id="cqe-summary-ready"' in html and 'id="cqe-summary-xlsx"' not in html and 'id="cqe-upload"' not in html
    assert client.get(SUMMARY + f"school/{_school().id}/summary.xlsx").status_code == 403


def _png(size=(600, 400)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (250, 250, 245)).save(out, "PNG")
    return out.getvalue()


def _jpeg() -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (800, 600), "white")
    ImageDraw.Draw(im).rectangle((100, 100, 300, 200), outline="red", width=5)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=85)
    return out.getvalue()


def test_uploads_checked_by_content_stored_by_hash_history_kept(session, at, client, login_as, tmp_path, monkeypatch):
    at(IN_WINDOW)
    store = tmp_path / "summaries"
    monkeypatch.setitem(client.application.config, "CQE_SUMMARY_DIR", str(store))
    _ready()
    token = login_as("s1_principal")
    school = _school()
    url = SUMMARY + f"school/{school.id}/upload"
    pdf = client.get(SUMMARY + f"school/{school.id}/summary.pdf").data

    def upload(data: bytes, name: str):
        resp = client.post(url, data={"csrf_token": token, "file": (io.BytesIO(data), name)},
                           content_type="multipart/form-data", follow_redirects=True)
        assert resp.status_code == 200
        return _flashes(_html(resp))

    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("scan.png", _png())
    png = _png()
    refusals = [
        (b"This is the summary table, honestly.\n" * 20, "汇总表.pdf", "不是 PDF、JPG 或 PNG 文件"),
        (zipped.getvalue(), "scan.png", "不是 PDF、JPG 或 PNG 文件"),
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + bytes(4000), "setup.png", "不是 PDF、JPG 或 PNG 文件"),
        (png[: len(png) // 2], "cut.png", "不完整或已损坏"),
        (_jpeg()[:-400], "cut.jpg", "不完整或已损坏"),
        (pdf[: len(pdf) // 2], "half.pdf", "看起来是 PDF，但文件不完整或已损坏"),
        (b"", "empty.pdf", "「empty.pdf」是空文件"),
    ]
    before = table_fingerprint()
    for data, name, words in refusals:
        assert words in upload(data, name), name
    # too big: the cap is a setting (default 10 MB)
    assert client.application.config["CQE_SUMMARY_MAX_BYTES"] == 10 * 1024 * 1024
    monkeypatch.setitem(client.application.config, "CQE_SUMMARY_MAX_BYTES", len(png) - 1)
    assert "太大" in upload(png, "big.png") and "不能超过" in upload(png, "big.png")
    monkeypatch.setitem(client.application.config, "CQE_SUMMARY_MAX_BYTES", 10 * 1024 * 1024)
    assert table_fingerprint() == before
    assert not store.exists() or not list(store.iterdir())

    # accepted: a real PDF, then a PNG and a JPEG, each recognised by its content, whatever its name
    jpeg = _jpeg()
    assert "已上传汇总表扫描件「签字盖章汇总表.pdf」（PDF" in upload(pdf, "签字盖章汇总表.pdf")
    assert "（PNG" in upload(png, "scan.PNG")
    assert "（JPG" in upload(jpeg, "../../etc/passwd.pdf")
    uploads = db.session.execute(sa.select(SummaryUpload).order_by(SummaryUpload.id)).scalars().all()
    assert [(u.kind, u.size, u.filename) for u in uploads] == [
        ("pdf", len(pdf), "签字盖章汇总表.pdf"), ("png", len(png), "scan.PNG"), ("jpeg", len(jpeg), "../../etc/passwd.pdf")]
    import hashlib

    assert sorted(p.name for p in store.iterdir()) == sorted(
        f"{hashlib.sha256(d).hexdigest()}.{ext}" for d, ext in ((pdf, "pdf"), (png, "png"), (jpeg, "jpg")))
    assert all(u.school_id == school.id and u.uploaded_by_id == user("s1_principal").id for u in uploads)
    # history: newest first and the one that counts; every scan can be opened again
    html = _html(client.get(SUMMARY))
    ids = [int(i) for i in re.findall(r'<tr data-upload="(\d+)"', html)]
    assert ids == [u.id for u in reversed(uploads)] and html.count("当前有效") == 1
    for u, data, mime in zip(uploads, (pdf, png, jpeg), ("application/pdf", "image/png", "image/jpeg"), strict=True):
        resp = client.get(SUMMARY + f"scan/{u.id}")
        assert resp.status_code == 200 and resp.data == data and resp.mimetype == mime
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        resp.close()
    # the school leader may open it too; a clerk, another school's principal may not
    login_as("s1_leader")
    resp = client.get(SUMMARY + f"scan/{uploads[-1].id}")
    assert resp.status_code == 200
    resp.close()
    login_as("s2_principal")
    assert client.get(SUMMARY + f"scan/{uploads[-1].id}").status_code == 404
    login_as("s1_clerk")
    assert client.get(SUMMARY + f"scan/{uploads[-1].id}").status_code == 403


def test_district_overview_shows_the_school_done_after_upload(session, at, client, login_as, tmp_path, monkeypatch):
    at(IN_WINDOW)
    monkeypatch.setitem(client.application.config, "CQE_SUMMARY_DIR", str(tmp_path))
    _ready()
    login_as("admin")
    rows = _rows(_html(client.get(SUMMARY)), "school")
    assert rows[_school().id] == {"total": "7", "rated": "7", "signed": "7", "uploaded": "no"}
    assert rows[_school("bs02").id]["uploaded"] == "no"
    token = login_as("s1_principal")
    client.post(SUMMARY + f"school/{_school().id}/upload", data={"csrf_token": token, "file": (io.BytesIO(_png()), "s.png")},
                content_type="multipart/form-data")
    upload = db.session.execute(sa.select(SummaryUpload)).scalar_one()
    login_as("admin")
    html = _html(client.get(SUMMARY))
    assert _rows(html, "school")[_school().id]["uploaded"] == "yes"
    assert "已上传汇总表 1 / 3 校" in html and f'href="{SUMMARY}scan/{upload.id}"' in html
    assert "上海市宝山区第一中学校长" in html or upload.uploaded_by.display_name in html
    resp = client.get(SUMMARY + f"scan/{upload.id}")
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    resp.close()
    # drill down to the school: read only, no downloads of the unsigned table, no upload
    html = _html(client.get(SUMMARY, query_string={"school_id": _school().id}))
    assert 'id="cqe-summary-ready"' in html and 'id="cqe-upload"' not in html and 'id="cqe-summary-xlsx"' not in html
    # the district admin does not upload
    token = login_as("admin")
    assert client.post(SUMMARY + f"school/{_school().id}/upload", data={
        "csrf_token": token, "file": (io.BytesIO(_png()), "s.png")}, content_type="multipart/form-data").status_code == 403


def test_upload_outside_the_window_is_refused(session, at, client, login_as, tmp_path, monkeypatch):
    at(IN_WINDOW)
    monkeypatch.setitem(client.application.config, "CQE_SUMMARY_DIR", str(tmp_path))
    _ready()
    at("2022-05-10 16:00")
    token = login_as("s1_principal")
    html = _html(client.get(SUMMARY))
    assert "已结束" in html and re.search(r'<fieldset\s+disabled', html)
    before = table_fingerprint()
    resp = client.post(SUMMARY + f"school/{_school().id}/upload", data={
        "csrf_token": token, "file": (io.BytesIO(_png()), "s.png")}, content_type="multipart/form-data",
        follow_redirects=True)
    assert "2022-05-10 16:00" in _flashes(_html(resp)) and table_fingerprint() == before
    assert not list(tmp_path.iterdir())
    # the summary itself can still be downloaded
    assert client.get(SUMMARY + f"school/{_school().id}/summary.xlsx").status_code == 200


# ---------------------------------------------------------------------------------------------
# Who sees what


def test_a_clerk_cannot_upload_and_a_student_sees_none_of_it(session, at, client, login_as, tmp_path, monkeypatch):
    at(IN_WINDOW)
    monkeypatch.setitem(client.application.config, "CQE_SUMMARY_DIR", str(tmp_path))
    _ready()
    school, c1 = _school(), _classes()[0]
    archive = ("archive_entries", "summary_uploads", "records", "students")
    before = {k: v for k, v in table_fingerprint().items() if k in archive}  # logging in is on record
    token = login_as("s1_clerk")
    resp = client.post(SUMMARY + f"school/{school.id}/upload", data={
        "csrf_token": token, "file": (io.BytesIO(_png()), "s.png")}, content_type="multipart/form-data")
    assert resp.status_code == 403
    student = student_of("s1g9c1n01")
    pages = [RATE, SIGN, PROGRESS, SUMMARY, SIGN + f"class/{c1.id}/", PROGRESS + f"class/{c1.id}/",
             SUMMARY + f"school/{school.id}/summary.xlsx", SUMMARY + f"school/{school.id}/summary.pdf"]
    for username in ("s1g9c1n01", "p_s1g9c1n01"):
        token = login_as(username)
        for page in pages:
            assert client.get(page).status_code == 403, (username, page)
        for page, data in ((RATE + "rate", {"student": student.id, "result": "pass"}),
                           (SIGN + f"class/{c1.id}/", {"student": student.id, "kind": "both", "date": "2022-04-20"}),
                           (SUMMARY + f"school/{school.id}/upload", {"file": (io.BytesIO(_png()), "s.png")})):
            assert client.post(page, data={"csrf_token": token, **data},
                               content_type="multipart/form-data").status_code == 403, (username, page)
    assert {k: v for k, v in table_fingerprint().items() if k in archive} == before
    assert not list(tmp_path.iterdir())


def test_menu_entries_by_role(session, at, client, login_as):
    at(IN_WINDOW)
    expected = {
        "s1_principal": {"评定（合格/不合格）", "签字进度", "汇总表"},
        "s1_g9c1_teacher": {"签字登记"},
        "s1_clerk": {"签字登记", "签字进度"},
        "s1_leader": {"签字进度", "汇总表"},
        "admin": {"签字进度", "汇总表"},
        "s1g9c1n01": set(),
    }
    names = {"评定（合格/不合格）": RATE, "签字登记": SIGN, "签字进度": PROGRESS, "汇总表": SUMMARY}
    for username, shown in expected.items():
        login_as(username)
        html = _html(client.get("/admin/"))
        assert {name for name, url in names.items() if f'href="{url}"' in html} == shown, username
