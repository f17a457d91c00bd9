"""纪实报告, 确认单 and their QR links, and the archive rules under them (issue 7): a report holds exactly
the student's published records; a non-participant's holds none; a graduate's spans grades 6–9; the PDF
carries the Chinese text with its font embedded; QR links open one student's report read-only and
nothing else, and a tampered, swapped or expired link shows a clear page, never data; the principal's
合格/不合格 and the signatures are allowed only inside the archive window."""
from __future__ import annotations

import re
import subprocess
from datetime import date

import pytest
import sqlalchemy as sa
from conftest import category, student_of, user

from models import ArchiveEntry, AuditEvent, Record, Student, Term, db, policy, reports, workflow
from models.fields import FieldErrors
from models.records import PUBLISHED_STATES
from seed import shanghai
from seed.loader import create_term


def _confirm_all(username: str) -> Student:
    """The student confirms every clerk record (confirmation phase): those are published."""
    student = student_of(username)
    workflow.confirm_all(user(username), student)
    return student


def _published_ids(student: Student, term_ids) -> set[int]:
    return set(db.session.execute(sa.select(Record.id).where(
        Record.student_id == student.id, Record.term_id.in_(term_ids), Record.state.in_(PUBLISHED_STATES))).scalars())


def _ids(report) -> set[int]:
    return {item.record_id for term in report.terms for section in term.sections for item in section.items}


def _pdf_text(data: bytes, tmp_path) -> str:
    path = tmp_path / "r.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def _pdf_fonts(data: bytes, tmp_path) -> str:
    path = tmp_path / "f.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdffonts", str(path)], check=True, capture_output=True, text=True).stdout


def test_a_report_holds_exactly_the_published_records(session, at):
    at("2022-03-25 09:00")
    student = _confirm_all("s1g8c1n01")
    # one record rejected by the student: not published
    mine = db.session.execute(sa.select(Record).where(Record.student_id == student.id,
                                                      Record.state == "confirmed")).scalars().first()
    mine.state = "rejected"
    db.session.commit()
    report = reports.build(student)
    term = policy.current_term(student.school.district_id)
    assert [t.term_id for t in report.terms] == [term.id] and not report.graduate
    expected = _published_ids(student, [term.id])
    assert expected and _ids(report) == expected
    assert mine.id not in _ids(report)
    # drafts and unconfirmed entries of a classmate never show on this report
    other = student_of("s1g8c1n02")
    assert not _ids(report) & set(db.session.execute(sa.select(Record.id).where(
        Record.student_id == other.id)).scalars())
    # by dimension, in the profile's order
    names = [s.name for s in report.terms[0].sections]
    order = [d["name"] for d in shanghai.DIMENSIONS]
    assert names == sorted(names, key=order.index)


def test_a_non_participant_has_no_report_and_no_link(session, at, client, login_as):
    at("2022-03-25 09:00")
    klass = student_of("s1g9c2n01").school_class
    out = db.session.execute(sa.select(Student).where(Student.class_id == klass.id, Student.status != "enrolled")
                             ).scalars().first()
    assert out is not None and not out.participates
    # even a record left over in the database is not reported
    db.session.add(Record(term=policy.current_term(out.school.district_id), category=category("sports"), student=out,
                          school_id=out.school_id, origin="school", state="confirmed", data={"name": "x"}))
    db.session.commit()
    assert reports.build(out).count == 0
    from views.reports import link_token

    login_as("s1_principal")
    with client.application.test_request_context():
        token, _ = link_token(out)
    resp = client.get(f"/r/{token}")
    assert resp.status_code == 404 and out.name not in resp.get_data(as_text=True)


def test_a_graduate_report_spans_grades_6_to_9(session, at):
    at("2022-03-25 09:00")
    student = _confirm_all("s1g9c1n01")
    current = policy.current_term(student.school.district_id)
    # an earlier year (grade 7 then), made current for a moment, with one published record
    earlier = create_term(current.district, current.profile, 2019, 2, shanghai.SCHEDULE_2021_1, is_current=False)
    db.session.flush()
    old = Record(term=earlier, category=category("sports"), student=student, school_id=student.school_id,
                 origin="school", state="confirmed", data={"name": "2020年运动会", "award": "一等奖",
                                                           "held_on": "2020-05-01"})
    unpublished = Record(term=earlier, category=category("sports"), student=student, school_id=student.school_id,
                         origin="school", state="entered", data={"name": "未确认", "award": "参与",
                                                                 "held_on": "2020-05-02"})
    db.session.add_all([old, unpublished])
    db.session.commit()
    report = reports.build(student)
    assert report.graduate
    assert [t.name for t in report.terms] == ["2019学年第二学期（七年级）", "2021学年第一学期（九年级）"]
    assert _ids(report) == _published_ids(student, [earlier.id, current.id])
    assert old.id in _ids(report) and unpublished.id not in _ids(report)
    # a grade-8 student's report is this term only
    assert [t.term_id for t in reports.build(student_of("s1g8c1n01")).terms] == [current.id]


def test_report_page_and_pdf_with_chinese_text_embedded(session, at, client, login_as, tmp_path):
    at("2022-03-25 09:00")
    student = _confirm_all("s1g8c1n01")
    login_as("s1_principal")
    page = client.get(f"/reports/student/{student.id}/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "上海市初中学生综合素质评价纪实报告" in html and student.xjh in html
    assert html.count("data-record=") == len(_ids(reports.build(student)))
    resp = client.get(f"/reports/student/{student.id}/report.pdf")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf" and resp.data.startswith(b"%PDF")
    text = _pdf_text(resp.data, tmp_path)
    assert "上海市初中学生综合素质评价纪实报告" in text and student.name in text and "品德发展与公民素养" in text
    fonts = _pdf_fonts(resp.data, tmp_path)
    assert re.search(r"NotoSansSC-Regular\s+TrueType.*yes\s+yes", fonts), fonts
    # another school's principal: not theirs
    login_as("s2_principal")
    assert client.get(f"/reports/student/{student.id}/report.pdf").status_code == 404


def test_qr_links_valid_tampered_swapped_expired(session, at, client, login_as, tmp_path):
    at("2022-04-14 09:00")
    login_as("s1_g9c1_teacher")
    klass = student_of("s1g9c1n01").school_class
    resp = client.get(f"/reports/class/{klass.id}/slips.pdf")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    text = _pdf_text(resp.data, tmp_path)
    participants = [s for s in klass.students if s.participates]
    assert text.count("本人已阅读本人的《纪实报告》") == len(participants)
    assert "学生签字" in text and "家长签字" in text and "扫码查看《纪实报告》" in text

    from views.reports import _serializer, link_token

    student = participants[0]
    other = participants[1]
    with client.application.test_request_context():
        token, expires = link_token(student)
        ser = _serializer()
    fresh = client.application.test_client()  # nobody logged in
    page = fresh.get(f"/r/{token}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and student.name in html and student.xjh in html
    assert page.headers["Cache-Control"] == "private, no-store" and "noindex" in page.headers["X-Robots-Tag"]
    # read-only and leads nowhere else: no form, and the one link is this report's PDF
    hrefs = [h for h in re.findall(r'href="([^"]+)"', html) if not h.startswith("/static/")]  # the icon aside
    assert "<form" not in html and hrefs == [f"/r/{token}/report.pdf"]
    pdf = fresh.get(f"/r/{token}/report.pdf")
    assert pdf.status_code == 200 and student.name in _pdf_text(pdf.data, tmp_path)

    def refused(url, status, words):
        resp = fresh.get(url)
        body = resp.get_data(as_text=True)
        assert resp.status_code == status, url
        assert words in body and student.name not in body and other.name not in body and student.xjh not in body

    # tampered: one character changed, cut short, garbage
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    refused(f"/r/{flipped}", 404, "此链接无效")
    refused(f"/r/{token[:20]}", 404, "此链接无效")
    refused("/r/not-a-token", 404, "此链接无效")
    # another student's id swapped into the payload, the signature kept
    payload, signature = token.rsplit(".", 1)
    forged = ser.dump_payload({"s": other.id, "e": 4102444800}).decode() + "." + signature
    refused(f"/r/{forged}", 404, "此链接无效")
    refused(f"/r/{forged}/report.pdf", 404, "此链接无效")
    # expired: the day after its expiry date
    at(f"{expires} 08:59")
    assert fresh.get(f"/r/{token}").status_code == 200
    at(f"{expires} 09:00")
    refused(f"/r/{token}", 410, "此链接已过期")
    refused(f"/r/{token}/report.pdf", 410, "此链接已过期")


def _grade9(n: int = 3) -> list[Student]:
    klass = student_of("s1g9c1n01").school_class
    return [s for s in db.session.execute(sa.select(Student).where(Student.class_id == klass.id)
                                          .order_by(Student.xjh)).scalars() if s.participates][:n]


def test_principal_rates_only_in_the_archive_window(session, at):
    principal = user("s1_principal")
    students = _grade9()
    at("2022-04-13 07:59")
    with pytest.raises(policy.Denied) as refused:
        workflow.rate_students(principal, students[:1], "pass")
    assert "归档签字" in refused.value.reason and "2022-04-13 08:00" in refused.value.reason
    at("2022-04-13 08:00")
    assert workflow.rate_students(principal, students, "pass") == len(students)
    at("2022-05-10 15:59")
    with pytest.raises(FieldErrors) as missing:
        workflow.rate_students(principal, students[:1], "fail")
    assert missing.value.errors == {"reason": "不合格原因：必填"}
    assert workflow.rate_students(principal, students[:1], "fail", "多次无故缺勤综合实践活动") == 1
    at("2022-05-10 16:00")
    with pytest.raises(policy.Denied):
        workflow.rate_students(principal, students[1:2], "fail", "x")
    entries = {e.student_id: e for e in db.session.execute(sa.select(ArchiveEntry)).scalars()}
    assert entries[students[0].id].result == "fail" and entries[students[0].id].reason == "多次无故缺勤综合实践活动"
    assert all(entries[s.id].result == "pass" for s in students[1:])
    events = db.session.execute(sa.select(AuditEvent.action).where(
        AuditEvent.object_type == "ArchiveEntry", AuditEvent.object_id == str(entries[students[0].id].id))
    ).scalars().all()
    assert events == ["rate", "rate"]
    # the result is on the report
    term = reports.build(students[0]).terms[-1]
    assert (term.result, term.result_reason) == ("不合格", "多次无故缺勤综合实践活动")


def test_rating_and_signing_are_the_right_peoples(session, at):
    at("2022-04-20 09:00")
    students = _grade9(2)
    # not a principal; another school's principal; a grade-8 student (no archive phase)
    for username in ("s1_clerk", "s1_g9c1_teacher"):
        with pytest.raises(policy.Denied):
            workflow.rate_students(user(username), students, "pass")
    with pytest.raises(policy.Denied):
        workflow.rate_students(user("s2_principal"), students, "pass")
    with pytest.raises(policy.Denied) as g8:
        workflow.rate_students(user("s1_principal"), [student_of("s1g8c1n01")], "pass")
    assert "没有此阶段" in g8.value.reason
    assert db.session.execute(sa.select(sa.func.count(ArchiveEntry.id))).scalar_one() == 0
    # signatures: the homeroom teacher of the class, or the school clerk; never a future date
    teacher = user("s1_g9c1_teacher")
    assert workflow.record_signatures(teacher, students, student_on=date(2022, 4, 18), parent_on=date(2022, 4, 19)) == 2
    with pytest.raises(FieldErrors):
        workflow.record_signatures(teacher, students, parent_on=date(2022, 4, 21))
    with pytest.raises(policy.Denied):
        workflow.record_signatures(user("s1_g9c2_teacher"), students, student_on=date(2022, 4, 18))
    assert workflow.record_signatures(user("s1_clerk"), students[:1], clear=True) == 1
    entries = {e.student_id: e for e in db.session.execute(sa.select(ArchiveEntry)).scalars()}
    assert not entries[students[0].id].signed and entries[students[1].id].signed
    at("2022-05-10 16:00")
    with pytest.raises(policy.Denied):
        workflow.record_signatures(teacher, students, student_on=date(2022, 5, 9))


def test_every_term_query_is_scoped(session):
    # the report's earlier terms come from the student's own district only
    student = student_of("s1g9c1n01")
    terms = reports.terms_of(student)
    assert terms and all(t.district_id == student.school.district_id for t in terms)
    assert db.session.execute(sa.select(sa.func.count(Term.id))).scalar_one() >= 2  # the other city's term exists


def _zip(resp):
    import io
    import zipfile

    with resp:
        assert resp.status_code == 200 and resp.mimetype == "application/zip"
        return zipfile.ZipFile(io.BytesIO(resp.data))


def test_a_school_batch_runs_as_a_job_with_progress_and_a_zip(session, at, client, login_as, redis_conn, tmp_path):
    from rq import Queue, SimpleWorker

    from models import School

    at("2022-04-14 09:00")
    token = login_as("s1_principal")
    school = db.session.execute(sa.select(School).where(School.code == "bs01")).scalar_one()
    page = client.get("/reports/batch/").get_data(as_text=True)
    assert f'value="school:{school.id}"' in page and "district:" not in page
    resp = client.post("/reports/batch/", data={"csrf_token": token, "target": f"school:{school.id}",
                                                "kind": "reports"})
    assert resp.status_code == 302
    page = client.get("/reports/batch/").get_data(as_text=True)
    assert 'id="cqe-job-bar"' in page
    job_id = re.search(r'/jobs/([^"]+)"', page).group(1)
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "queued"
    SimpleWorker([Queue("default", connection=redis_conn)], connection=redis_conn).work(burst=True)
    info = client.get(f"/jobs/{job_id}").get_json()
    participants = db.session.execute(sa.select(Student).where(Student.school_id == school.id,
                                                               Student.status == "enrolled")).scalars().all()
    assert info["status"] == "finished" and info["progress"]["done"] == info["progress"]["total"] == len(participants)
    page = client.get("/reports/batch/").get_data(as_text=True)
    link = re.search(r'href="(/reports/batch/[0-9a-f]{32}\.zip)"', page).group(1)
    zf = _zip(client.get(link))
    names = zf.namelist()
    assert len(names) == len(participants) and all(n.endswith(".pdf") for n in names)
    one = next(s for s in participants)
    entry = next(n for n in names if one.xjh in n)
    assert entry.startswith(f"{school.name}/{one.school_class.name}/") and one.name in entry
    assert one.name in _pdf_text(zf.read(entry), tmp_path)
    # the zip is the principal's alone
    login_as("s2_principal")
    assert client.get(link).status_code == 404
    assert client.get(f"/jobs/{job_id}").status_code == 404


def test_a_class_batch_of_slips_inline_without_redis(session, at, client, login_as, tmp_path, monkeypatch):
    at("2022-04-14 09:00")
    monkeypatch.setitem(client.application.config, "REDIS_URL", None)
    token = login_as("s1_g9c1_teacher")
    klass = student_of("s1g9c1n01").school_class
    page = client.get("/reports/batch/").get_data(as_text=True)
    assert re.findall(r'value="(\w+:\d+)"', page) == [f"class:{klass.id}"]
    # another class of the school is not the teacher's
    other = student_of("s1g9c2n01").school_class
    assert client.post("/reports/batch/", data={"csrf_token": token, "target": f"class:{other.id}",
                                                "kind": "slips"}).status_code == 404
    resp = client.post("/reports/batch/", data={"csrf_token": token, "target": f"class:{klass.id}", "kind": "slips"})
    assert resp.status_code == 302
    page = client.get("/reports/batch/").get_data(as_text=True)
    assert "已生成" in page
    zf = _zip(client.get(re.search(r'href="(/reports/batch/[0-9a-f]{32}\.zip)"', page).group(1)))
    assert [n.rsplit("/", 1)[-1] for n in zf.namelist()] == [f"{klass.name}-确认单.pdf"]
    text = _pdf_text(zf.read(zf.namelist()[0]), tmp_path)
    assert text.count("本人已阅读本人的《纪实报告》") == len([s for s in klass.students if s.participates])
    # students and clerks of another school: no batches
    login_as("s1g9c1n01")
    assert client.get("/reports/batch/").status_code == 403


def test_the_summary_scan_is_refused_until_everyone_is_rated_and_signed(session, at):
    from models import School, SummaryUpload

    at("2022-04-20 09:00")
    school = db.session.execute(sa.select(School).where(School.code == "bs01")).scalar_one()
    term = policy.current_term(school.district_id)

    def upload():
        return SummaryUpload(term=term, school=school, filename="汇总表.pdf", kind="pdf", size=10, sha256="0" * 64)

    with pytest.raises(workflow.WorkflowError) as early:
        workflow.save_summary_upload(user("s1_principal"), upload())
    assert "须全部参与评价的学生已评定" in early.value.message
    grade9 = [s for s in db.session.execute(sa.select(Student).join(Student.school_class).where(
        Student.school_id == school.id, sa.text("classes.grade = 9"))).scalars() if s.participates]
    workflow.rate_students(user("s1_principal"), grade9, "pass")
    workflow.record_signatures(user("s1_clerk"), grade9[1:], student_on=date(2022, 4, 19), parent_on=date(2022, 4, 19))
    with pytest.raises(workflow.WorkflowError):
        workflow.save_summary_upload(user("s1_principal"), upload())
    workflow.record_signatures(user("s1_clerk"), grade9[:1], student_on=date(2022, 4, 19), parent_on=date(2022, 4, 19))
    with pytest.raises(policy.Denied):
        workflow.save_summary_upload(user("s1_clerk"), upload())
    saved = workflow.save_summary_upload(user("s1_principal"), upload())
    assert saved.id and db.session.execute(sa.select(AuditEvent.action).where(
        AuditEvent.object_type == "SummaryUpload", AuditEvent.object_id == str(saved.id))).scalar_one() == "create"
