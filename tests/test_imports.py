"""XLSX templates and imports (issue 6, part 2): the whole file is checked first, every bad row is named
with its field and reason, nothing is written until the clerk chooses, and then in one transaction."""
from __future__ import annotations

import io
import re

import pytest
import sqlalchemy as sa
from conftest import category, csrf_from, student_of, table_fingerprint, user
from openpyxl import Workbook, load_workbook

from models import AuditEvent, Record, Student, db

URL = "/admin/records/sports"
INJECTION = '=HYPERLINK("http://evil.example","点我")'


def _template(client, class_id=None) -> Workbook:
    resp = client.get(f"{URL}/import/template/" + (f"?class_id={class_id}" if class_id else ""))
    assert resp.status_code == 200
    assert resp.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return load_workbook(io.BytesIO(resp.get_data()))


def _xlsx(rows, *, sheet="录入", headers=("学籍号", "姓名", "活动名称", "获奖情况", "活动日期")) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(list(headers))
    for row in rows:
        ws.append(list(row))
    for cells in ws.iter_rows(min_row=2):
        for cell in cells:
            if isinstance(cell.value, str) and cell.value.startswith("="):
                cell.data_type = "s"  # typed (or pasted) as text, as Excel stores '=…
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _upload(client, data: bytes, url=URL, name="填报.xlsx"):
    page = client.get(f"{url}/import/").get_data(as_text=True)
    return client.post(f"{url}/import/", data={"csrf_token": csrf_from(page), "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data", follow_redirects=True)


def _token(html: str) -> str:
    return re.search(r"/import/([0-9a-f]{32})/", html).group(1)


def _sports_count() -> int:
    return db.session.execute(sa.select(sa.func.count(Record.id)).where(
        Record.category_id == category("sports").id)).scalar_one()


def test_template_has_the_roster_dropdowns_and_chinese_headers(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    a = student_of("s1g9c1n01")
    wb = _template(client, a.class_id)
    assert wb.sheetnames == ["录入", "选项", "名单"] and wb["选项"].sheet_state == "hidden"
    ws = wb["录入"]
    assert [c.value for c in ws[1]] == ["学籍号", "姓名", "活动名称", "获奖情况", "活动日期"]
    expected = [s for s in db.session.execute(sa.select(Student).where(Student.class_id == a.class_id)
                                              .order_by(Student.xjh)).scalars() if s.participates]
    filled = [(r[0].value, r[1].value) for r in ws.iter_rows(min_row=2, max_col=2) if r[0].value]
    assert filled == [(s.xjh, s.name) for s in expected] and len(filled) >= 3
    [dv] = ws.data_validations.dataValidation
    assert dv.type == "list" and "D2" in str(dv.sqref) and "选项" in dv.formula1
    assert [c.value for c in wb["选项"]["A"]] == ["一等奖", "二等奖", "三等奖", "优秀奖", "参与"]
    assert [c.value for c in wb["名单"][1]] == ["学籍号", "姓名", "班级"]
    # Another school's class is not theirs.
    assert client.get(f"{URL}/import/template/?class_id={student_of('s2g9c1n01').class_id}").status_code == 404


def test_a_valid_file_is_checked_then_imported_in_one_go(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    a, b = student_of("s1g9c1n01"), student_of("s1g9c1n02")
    rows = [(a.xjh, a.name, "校运动会跳远", "一等奖", "2022-01-10"), (b.xjh, b.name, INJECTION, "参与", "2022/01/11")]
    before = table_fingerprint()
    page = _upload(client, _xlsx(rows)).get_data(as_text=True)
    assert "共 2 行：2 行可以导入，0 行有错误。尚未写入任何数据。" in page and "导入全部 2 行" in page
    db.session.expire_all()
    assert table_fingerprint() == before  # checking writes nothing
    resp = client.post(f"{URL}/import/{_token(page)}/", data={"csrf_token": csrf_from(page), "mode": "all"})
    assert resp.status_code == 302
    assert "已导入 2 条记录" in client.get(resp.location).get_data(as_text=True)
    recs = db.session.execute(sa.select(Record).where(Record.category_id == category("sports").id,
                                                      Record.student_id.in_([a.id, b.id]))).scalars().all()
    assert sorted(r.data["name"] for r in recs) == sorted(["校运动会跳远", INJECTION])
    assert {r.state for r in recs} == {"entered"} and {r.data["held_on"] for r in recs} == {"2022-01-10", "2022-01-11"}
    events = db.session.execute(sa.select(AuditEvent).where(AuditEvent.object_type == "Record", AuditEvent.object_id.in_(
        [str(r.id) for r in recs]))).scalars().all()
    assert len(events) == 2 and all("从 Excel 导入" in e.reason for e in events)
    # Imported text that looks like a formula is exported as text.
    csv_text = client.get(f"{URL}/export/csv/").get_data(as_text=True)
    assert "'" + INJECTION.replace('"', '""') in csv_text


def test_bad_rows_are_named_and_nothing_is_written_until_chosen(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    b, other = student_of("s1g9c1n02"), student_of("s2g9c1n01")
    rows, _good = _mixed_rows()
    data = _xlsx(rows)
    wb = load_workbook(io.BytesIO(data))
    wb["录入"].append([b.xjh, b.name, INJECTION, "参与", "2022-01-10"])  # 12: a live formula cell
    out = io.BytesIO()
    wb.save(out)
    before, count = table_fingerprint(), _sports_count()
    page = _upload(client, out.getvalue()).get_data(as_text=True)
    assert "共 11 行：3 行可以导入，8 行有错误。尚未写入任何数据。" in page
    for text in ["每学期最多录入2条", "获奖情况：「金奖」不是可选值", "活动日期：「明天」不是有效日期",
                 "X0000000 不存在或不是您管理范围内的学生", f"{other.xjh} 不存在或不是您管理范围内的学生",
                 "与第8行重复", "不是张冠李戴", "活动名称：不能超过100个字", "不接受公式"]:
        assert text in page, text
    assert "导入全部" not in page and "仅导入无误的 3 行" in page
    db.session.expire_all()
    assert table_fingerprint() == before
    token = _token(page)
    # "all" is refused while rows are bad: nothing written.
    resp = client.post(f"{URL}/import/{token}/", data={"csrf_token": csrf_from(page), "mode": "all"})
    assert "未导入任何数据" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert table_fingerprint() == before
    # The error report is the same file with an error column.
    report = load_workbook(io.BytesIO(client.get(f"{URL}/import/{token}/errors.xlsx").get_data()))["录入"]
    header = [c.value for c in report[1]]
    assert header[-1] == "错误"
    errors = {r[0].row: r[-1].value for r in report.iter_rows(min_row=2) if r[-1].value}
    assert sorted(errors) == [4, 5, 6, 7, 9, 10, 11, 12] and "不是有效日期" in errors[5]
    # Only the valid rows, chosen explicitly.
    resp = client.post(f"{URL}/import/{token}/", data={"csrf_token": csrf_from(page), "mode": "valid"})
    assert resp.status_code == 302
    assert _sports_count() == count + 3


def test_wrong_grade_is_refused_per_row(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    g7, g9 = student_of("s1g7c1n01"), student_of("s1g9c1n01")
    data = _xlsx([(g7.xjh, g7.name, "水的净化", "王老师", "摘要"), (g9.xjh, g9.name, "水的净化", "王老师", "摘要")],
                 headers=("学籍号", "姓名", "报告题目", "指导教师", "报告摘要"))
    page = _upload(client, data, url="/admin/records/inquiry_report").get_data(as_text=True)
    assert "共 2 行：1 行可以导入，1 行有错误" in page and "仅适用于九年级" in page


def test_files_that_are_not_the_template_are_refused_whole(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    before = table_fingerprint()
    cases = {
        "缺少工作表「录入」": _xlsx([("1", "x", "y", "参与", "2022-01-01")], sheet="Sheet1"),
        "没有数据行": _xlsx([]),
        "文件无法读取": "学籍号,姓名\n1,张三\n".encode(),
        "缺少列：获奖情况": _xlsx([("1", "x", "y", "2022-01-01")], headers=("学籍号", "姓名", "活动名称", "活动日期")),
    }
    for message, data in cases.items():
        page = _upload(client, data).get_data(as_text=True)
        assert message in page, message
    db.session.expire_all()
    assert table_fingerprint() == before


def test_import_is_for_those_who_enter_the_category(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("s1_auditor")
    assert client.get(f"{URL}/import/").status_code == 403
    login_as("s1_clerk")
    page = client.get(f"{URL}/").get_data(as_text=True)
    assert "从 Excel 导入" in page and "下载导入模板" in page
    # Someone else's upload token is not theirs.
    a = student_of("s1g9c1n01")
    token = _token(_upload(client, _xlsx([(a.xjh, a.name, "跳远", "一等奖", "2022-01-10")])).get_data(as_text=True))
    login_as("s2_clerk")
    page = client.get(f"{URL}/import/").get_data(as_text=True)
    assert client.post(f"{URL}/import/{token}/", data={"csrf_token": csrf_from(page), "mode": "all"}).status_code == 404


# --- Large files: streamed, checked and imported by RQ jobs with a progress bar ----------------------


def _mixed_rows():
    """Three good rows, and bad ones of every kind (the test above): the report and the import must not
    depend on where the chunks of the file end."""
    a, b, c = student_of("s1g9c1n01"), student_of("s1g9c1n02"), student_of("s1g9c1n03")
    other = student_of("s2g9c1n01")
    rows = [
        (a.xjh, a.name, "跳远", "一等奖", "2022-01-10"),      # 2 ok
        (a.xjh, a.name, "跳高", "二等奖", "2022-01-11"),      # 3 ok (second of the term)
        (a.xjh, a.name, "跑步", "三等奖", "2022-01-12"),      # 4 a third item in a term
        (b.xjh, b.name, "跳远", "金奖", "明天"),              # 5 wrong choice, wrong date
        ("X0000000", "无名", "跳远", "一等奖", "2022-01-10"),  # 6 unknown student
        (other.xjh, other.name, "跳远", "一等奖", "2022-01-10"),  # 7 another school's student
        (c.xjh, c.name, "拔河", "参与", "2022-01-10"),        # 8 ok
        (c.xjh, c.name, "拔河", "参与", "2022-01-10"),        # 9 duplicate of 8
        (b.xjh, "张冠李戴", "跳远", "参与", "2022-01-10"),     # 10 name does not match
        (b.xjh, b.name, "x" * 101, "参与", "2022-01-10"),     # 11 too long
    ]
    return rows, {(a.id, "跳远"), (a.id, "跳高"), (c.id, "拔河")}


@pytest.fixture
def small_chunks(app, data_app, monkeypatch):
    """Files of more than 3 rows count as large, and are checked 2 rows at a time."""
    from forms import imports

    for a in (app, data_app):
        monkeypatch.setitem(a.config, "CQE_IMPORT_INLINE_ROWS", 3)
    monkeypatch.setattr(imports, "CHUNK", 2)


def _job_id(html: str) -> str:
    return re.search(r'data-url="/jobs/([^"]+)"', html).group(1)


def _work(redis_conn) -> None:
    from rq import Queue, SimpleWorker

    SimpleWorker([Queue("default", connection=redis_conn)], connection=redis_conn).work(burst=True)


def _imported(students) -> set:
    recs = db.session.execute(sa.select(Record).where(Record.category_id == category("sports").id,
                                                      Record.student_id.in_(students))).scalars().all()
    return {(r.student_id, r.data["name"]) for r in recs}


def test_a_large_file_is_checked_and_imported_by_jobs_with_progress(client, login_as, at, redis_conn, small_chunks):
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    rows, good = _mixed_rows()
    students = sorted({s for s, _ in good} | {student_of("s1g9c1n02").id})
    before, count = table_fingerprint(), _sports_count()
    resp = _upload(client, _xlsx(rows))
    page = resp.get_data(as_text=True)
    # The check runs on RQ: the page shows its progress bar, and nothing else yet.
    assert 'id="cqe-job-bar"' in page and "共 " not in page
    job_id, token = _job_id(page), _token(resp.request.path)
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "queued"
    _work(redis_conn)
    info = client.get(f"/jobs/{job_id}").get_json()
    assert info["status"] == "finished" and info["progress"]["done"] == info["progress"]["total"] == 10
    assert info["result"] == {"total": 10, "valid": 3, "invalid": 7, "error": ""}
    # Once it is done the page shows the same report as a small file's, from the stored result.
    page = client.get(f"{URL}/import/{token}/").get_data(as_text=True)
    assert "共 10 行：3 行可以导入，7 行有错误。尚未写入任何数据。" in page and "仅导入无误的 3 行" in page
    for text in ["每学期最多录入2条", "获奖情况：「金奖」不是可选值", "X0000000 不存在或不是您管理范围内的学生",
                 "与第8行重复", "不是张冠李戴", "活动名称：不能超过100个字"]:
        assert text in page, text
    report = load_workbook(io.BytesIO(client.get(f"{URL}/import/{token}/errors.xlsx").get_data()))["录入"]
    assert [c.value for c in report[1]][-1] == "错误"
    assert sorted(r[0].row for r in report.iter_rows(min_row=2) if r[-1].value) == [4, 5, 6, 7, 9, 10, 11]
    db.session.expire_all()
    assert table_fingerprint() == before  # checking writes nothing
    # Someone else's job and upload do not exist for them.
    login_as("s2_clerk")
    assert client.get(f"/jobs/{job_id}").status_code == 404
    assert client.get(f"{URL}/import/{token}/").status_code == 404
    # Only the valid rows: the import is a job too, and writes exactly those rows.
    login_as("s1_clerk")
    resp = client.post(f"{URL}/import/{token}/", data={"csrf_token": csrf_from(page), "mode": "valid"})
    assert resp.status_code == 302 and resp.location.endswith(f"/import/{token}/")
    page = client.get(resp.location).get_data(as_text=True)
    import_job = _job_id(page)
    assert import_job != job_id and _sports_count() == count
    _work(redis_conn)
    info = client.get(f"/jobs/{import_job}").get_json()
    assert info["status"] == "finished" and info["progress"]["done"] == info["progress"]["total"]
    assert info["result"]["imported"] == 3 and info["result"]["skipped"] == 7
    resp = client.get(f"{URL}/import/{token}/")
    assert resp.status_code == 302
    assert "已导入 3 条记录，有错误的 7 行未导入" in client.get(resp.location).get_data(as_text=True)
    assert _sports_count() == count + 3 and _imported(students) == good
    # Each imported record's history says who imported it, from which file.
    from views.actions import history

    recs = db.session.execute(sa.select(Record).where(Record.category_id == category("sports").id,
                                                      Record.student_id.in_(students))).scalars().all()
    for rec in recs:
        [event] = history("Record", rec.id)
        assert event["actor"] == user("s1_clerk").display_name and event["action"] == "新建"
        assert event["reason"] == "从 Excel 导入（填报.xlsx）" and event["ip"] == "127.0.0.1"
        assert any(label == "内容" for label, _before, _after in event["changes"])
    # The same file is not imported twice.
    page = client.get(f"{URL}/import/{token}/").get_data(as_text=True)
    assert "该文件已导入 3 条记录" in page and "仅导入无误" not in page
    resp = client.post(f"{URL}/import/{token}/", data={"csrf_token": csrf_from(page), "mode": "valid"})
    assert resp.status_code == 302 and _sports_count() == count + 3


def test_without_redis_a_large_file_is_checked_and_imported_in_the_request(client, login_as, at, small_chunks,
                                                                          app, data_app, monkeypatch):
    for a in (app, data_app):
        monkeypatch.setitem(a.config, "REDIS_URL", None)
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    rows, good = _mixed_rows()
    count = _sports_count()
    page = _upload(client, _xlsx(rows)).get_data(as_text=True)
    assert "cqe-job-bar" not in page and "共 10 行：3 行可以导入，7 行有错误" in page
    # "all" is refused while rows are bad, whole: the rows before the first bad chunk are not kept either.
    resp = client.post(f"{URL}/import/{_token(page)}/", data={"csrf_token": csrf_from(page), "mode": "all"})
    assert "文件中有 7 行错误，未导入任何数据" in resp.get_data(as_text=True) and _sports_count() == count
    resp = client.post(f"{URL}/import/{_token(page)}/", data={"csrf_token": csrf_from(page), "mode": "valid"})
    assert resp.status_code == 302 and "已导入 3 条记录" in client.get(resp.location).get_data(as_text=True)
    assert _imported({s for s, _ in good}) == good


def test_imported_history_rows_are_those_the_orm_writes(client, login_as, at):
    """The bulk insert writes each record's history row as the audit hook would for a saved object."""
    from models import workflow

    at("2022-03-01 09:00")
    login_as("s1_clerk")
    a, b = student_of("s1g9c1n01"), student_of("s1g9c1n02")
    page = _upload(client, _xlsx([(a.xjh, a.name, "跳远", "一等奖", "2022-01-10")])).get_data(as_text=True)
    client.post(f"{URL}/import/{_token(page)}/", data={"csrf_token": csrf_from(page), "mode": "all"})
    imported = db.session.execute(sa.select(Record).where(Record.student_id == a.id, Record.category_id ==
                                                          category("sports").id)).scalars().one()
    clerk = user("s1_clerk")
    from models.audit import Actor, set_actor

    set_actor(Actor(user_id=clerk.id, name=clerk.display_name, ip="127.0.0.1"))
    saved = workflow.create_record(clerk, category("sports"), b, {"name": "跳远", "award": "一等奖", "held_on": "2022-01-10"})

    def event(record):
        return db.session.execute(sa.select(AuditEvent).where(AuditEvent.object_type == "Record",
                                                              AuditEvent.object_id == str(record.id))).scalar_one()

    bulk, orm = event(imported), event(saved)
    assert bulk.after == {**orm.after, "id": imported.id, "student_id": a.id, "school_id": a.school_id}
    for name in ("actor_id", "actor_name", "ip", "object_type", "district_id", "school_id", "action", "before"):
        assert getattr(bulk, name) == getattr(orm, name), name
    assert db.session.execute(sa.select(sa.func.count(AuditEvent.id)).where(
        AuditEvent.object_type == "Record", AuditEvent.object_id == str(imported.id), AuditEvent.before.is_(None),
    )).scalar_one() == db.session.execute(sa.select(sa.func.count(AuditEvent.id)).where(
        AuditEvent.object_type == "Record", AuditEvent.object_id == str(saved.id), AuditEvent.before.is_(None),
    )).scalar_one()
    assert (imported.version_id, imported.state, imported.origin, imported.entered_by_id) == \
        (saved.version_id, saved.state, saved.origin, saved.entered_by_id)


def test_a_report_keeps_counts_and_the_first_bad_rows_not_every_row(client, login_as, at, app, data_app,
                                                                   monkeypatch):
    """Bounded memory: past its chunk a row leaves a count, or a number and a message for the error
    workbook; the page lists the first bad rows and the workbook (copied row by row) has every one."""
    from forms import imports

    for a in (app, data_app):
        monkeypatch.setitem(a.config, "REDIS_URL", None)
        monkeypatch.setitem(a.config, "CQE_IMPORT_INLINE_ROWS", 10)
    monkeypatch.setattr(imports, "SHOWN", 5)
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    a = student_of("s1g9c1n01")
    rows = [(a.xjh, a.name, "跳远", "一等奖", "2022-01-10")] + [(f"X{i:07d}", "无名", INJECTION, "参与", "2022-01-10")
                                                             for i in range(30)]
    page = _upload(client, _xlsx(rows)).get_data(as_text=True)
    assert "共 31 行：1 行可以导入，30 行有错误" in page and "下表只列出前 5 行错误" in page
    assert page.count("不存在或不是您管理范围内的学生") == 5
    report = imports.Upload.load(_token(page)).report()
    assert (report.total, report.valid, report.invalid, len(report.shown)) == (31, 1, 30, 5)
    wb = load_workbook(io.BytesIO(client.get(f"{URL}/import/{_token(page)}/errors.xlsx").get_data()))
    sheet = wb["录入"]
    errors = {r[0].row: r[-1].value for r in sheet.iter_rows(min_row=2) if r[-1].value}
    assert sorted(errors) == list(range(3, 33)) and "X0000029 不存在" in errors[32]
    # Copied as values: text that looks like a formula stays text; the other sheets come along.
    assert sheet["C3"].value == INJECTION and sheet["C3"].data_type == "s"
    assert [c.value for c in sheet[1]] == ["学籍号", "姓名", "活动名称", "获奖情况", "活动日期", "错误"]


def test_a_failed_check_job_is_reported_and_nothing_is_written(client, login_as, at, redis_conn, small_chunks,
                                                              monkeypatch):
    from forms import imports

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(imports, "check_upload", broken)
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    rows, _good = _mixed_rows()
    before = table_fingerprint()
    resp = _upload(client, _xlsx(rows))
    job_id, token = _job_id(resp.get_data(as_text=True)), _token(resp.request.path)
    _work(redis_conn)
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "failed"
    resp = client.get(f"{URL}/import/{token}/", follow_redirects=True)
    assert "文件检查失败，未写入任何数据" in resp.get_data(as_text=True) and resp.request.path == f"{URL}/import/"
    db.session.expire_all()
    assert table_fingerprint() == before
