"""The roster grid (issue 6, part 1) over HTTP: its rows, the per-cell check, saving valid rows with
their history while invalid rows come back with what was typed, versions, limits, grade rules, windows
and scope. The browser side (paste, keyboard, reload) is in test_grid_browser.py."""
from __future__ import annotations

import json
import re

import sqlalchemy as sa
from conftest import category, student_of, table_fingerprint, user

from models import AuditEvent, Record, Student, db, workflow

URL = "/admin/records/sports"


def _open(client, login_as, username: str, class_id: int, url: str = URL):
    login_as(username)
    page = client.get(f"{url}/grid/?class_id={class_id}")
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    html = page.get_data(as_text=True)
    config = json.loads(re.search(r'<script type="application/json" id="cqe-grid-config">(.*?)</script>', html,
                                  re.S).group(1))
    return html, config


def _post(client, config, kind: str, rows: list[dict], class_id=None, url: str = URL):
    return client.post(f"{url}/grid/{kind}/", json={"class_id": class_id or config["class_id"], "rows": rows},
                       headers={"X-CSRFToken": config["csrf"]})


def _new(row: dict, **values) -> dict:
    return {"key": row["key"], "student_id": row["student_id"], "record_id": None, "version": None, "values": values}


def _records(student_id: int, code: str = "sports") -> list[Record]:
    return db.session.execute(sa.select(Record).where(
        Record.student_id == student_id, Record.category_id == category(code).id).order_by(Record.id)).scalars().all()


def _participants(class_id: int) -> list[Student]:
    return [s for s in db.session.execute(sa.select(Student).where(Student.class_id == class_id)
                                          .order_by(Student.xjh)).scalars() if s.participates]


def test_rows_are_the_roster_then_the_records(client, login_as, at):
    at("2022-03-01 09:00")
    klass = student_of("s1g7c2n01").school_class
    html, config = _open(client, login_as, "s1_clerk", klass.id)
    assert "表格录入「校级体育比赛」" in html and "tabulator.min.js" in html
    assert [c["field"] for c in config["columns"]] == ["name", "award", "held_on"]
    assert config["columns"][1]["choices"] == ["一等奖", "二等奖", "三等奖", "优秀奖", "参与"]
    students = _participants(klass.id)
    non_participant = db.session.execute(sa.select(Student).where(
        Student.class_id == klass.id, Student.status != "enrolled")).scalars().all()
    assert non_participant, "the demo's (2)班 has a non-participant"
    new = [r for r in config["rows"] if r["record_id"] is None]
    cat = category("sports")
    room = [s for s in students if len([r for r in _records(s.id) if r.term.is_current]) < cat.per_term_limit]
    assert [r["xjh"] for r in new] == [s.xjh for s in room]
    assert all(r["state"] == "新增" and r["editable"] and set(r["values"]) == {"name", "award", "held_on"}
               for r in new)
    saved = [r for r in config["rows"] if r["record_id"] is not None]
    expected = sorted((r for s in students for r in _records(s.id) if r.term.is_current),
                      key=lambda r: (r.student.xjh, r.id))
    assert [r["record_id"] for r in saved] == [r.id for r in expected]
    assert {r["xjh"] for r in config["rows"]}.isdisjoint({s.xjh for s in non_participant})
    # the same rows as JSON (the page's reload)
    assert client.get(f"{URL}/grid/rows/?class_id={klass.id}").get_json()["rows"] == config["rows"]


def test_check_names_each_bad_cell_and_writes_nothing(client, login_as, at):
    at("2022-03-01 09:00")
    klass = student_of("s1g6c1n01").school_class
    _, config = _open(client, login_as, "s1_clerk", klass.id)
    new = [r for r in config["rows"] if r["record_id"] is None]
    before = table_fingerprint()
    resp = _post(client, config, "check", [
        _new(new[0], name="跳绳", award="二等奖", held_on="2022/3/1"),
        _new(new[1], name="跳绳", award="特等奖", held_on="2022-13-01"),
        _new(new[2], name="x" * 101, award="", held_on="2022年3月2日"),
    ])
    assert resp.status_code == 200
    errors = resp.get_json()["errors"]
    assert set(errors) == {new[1]["key"], new[2]["key"]}
    assert errors[new[1]["key"]] == {
        "award": "获奖情况：「特等奖」不是可选值（可选：一等奖、二等奖、三等奖、优秀奖、参与）",
        "held_on": "活动日期：「2022-13-01」不是有效日期（格式：2022-03-01）"}
    assert errors[new[2]["key"]] == {"name": "活动名称：不能超过100个字（现有101个）", "award": "获奖情况：必填"}
    assert table_fingerprint() == before


def test_save_writes_valid_rows_with_history_and_returns_the_invalid_ones(client, login_as, at):
    at("2022-03-01 09:00")
    klass = student_of("s1g6c1n01").school_class
    _, config = _open(client, login_as, "s1_clerk", klass.id)
    new = [r for r in config["rows"] if r["record_id"] is None]
    good, bad = new[0], new[1]
    before_good, before_bad = len(_records(good["student_id"])), len(_records(bad["student_id"]))
    resp = _post(client, config, "save", [
        _new(good, name="拔河比赛", award="一等奖", held_on="2022/3/1"),
        _new(bad, name="拔河比赛", award="一等", held_on="2022-03-01"),
        _new(new[2]),  # an untouched blank row: nothing to save, no error
    ])
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["created"], body["updated"], body["failed"]) == (1, 0, 1)
    assert body["message"] == "已保存：新增 1 条，修改 0 条；1 行有错误，未保存，请修改后再保存。"
    saved = _records(good["student_id"])
    assert len(saved) == before_good + 1
    record = saved[-1]
    assert record.data == {"name": "拔河比赛", "award": "一等奖", "held_on": "2022-03-01"}
    assert (record.state, record.origin, record.entered_by.username) == ("entered", "school", "s1_clerk")
    assert len(_records(bad["student_id"])) == before_bad
    events = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.object_type == "Record", AuditEvent.object_id == str(record.id))).scalars().all()
    assert [(e.action, e.actor_name) for e in events] == [("create", user("s1_clerk").display_name)]
    assert events[0].reason.startswith("表格录入（") and klass.name in events[0].reason
    # The grid comes back fresh: the saved record is a row of its own; the bad row keeps what was typed.
    rows = {r["key"]: r for r in body["rows"]}
    assert rows[f"r{record.id}"]["values"] == {"name": "拔河比赛", "award": "一等奖", "held_on": "2022-03-01"}
    assert rows[bad["key"]]["values"] == {"name": "拔河比赛", "award": "一等", "held_on": "2022-03-01"}
    assert rows[bad["key"]]["errors"] == {"award": "获奖情况：「一等」不是可选值（可选：一等奖、二等奖、三等奖、优秀奖、参与）"}
    assert rows[new[2]["key"]]["errors"] == {}


def test_limits_count_saved_records_and_the_rows_of_the_same_save(client, login_as, at):
    at("2022-03-01 09:00")
    klass = student_of("s1g6c1n01").school_class
    _, config = _open(client, login_as, "s1_clerk", klass.id)
    row = next(r for r in config["rows"] if r["record_id"] is None)
    student = db.session.get(Student, row["student_id"])
    have = len([r for r in _records(student.id) if r.term.is_current])
    # fill the student up to the limit of 2 per term, one save at a time
    for i in range(2 - have):
        resp = _post(client, config, "save", [_new(row, name=f"比赛{i}", award="参与", held_on="2022-03-01")])
        assert resp.get_json()["failed"] == 0
    rows = client.get(f"{URL}/grid/rows/?class_id={klass.id}").get_json()["rows"]
    assert row["key"] not in {r["key"] for r in rows}, "a student at the limit gets no blank row"
    resp = _post(client, config, "save", [_new(row, name="再一条", award="参与", held_on="2022-03-01")])
    body = resp.get_json()
    assert body["failed"] == 1 and body["created"] == 0
    bad = next(r for r in body["rows"] if r["key"] == row["key"])
    assert bad["errors"] == {"_row": f"「校级体育比赛」每学期最多录入2条：{student.name}本学期已有2条。"}
    assert bad["values"]["name"] == "再一条" and bad["xjh"] == student.xjh


def test_edits_go_through_versions_and_a_stale_row_is_reported_not_overwritten(client, login_as, at):
    at("2022-03-01 09:00")
    klass = student_of("s1g6c1n01").school_class
    _, config = _open(client, login_as, "s1_clerk", klass.id)
    new = [r for r in config["rows"] if r["record_id"] is None][:2]
    assert _post(client, config, "save", [_new(r, name="跳远", award="参与", held_on="2022-03-01") for r in new]
                 ).get_json()["created"] == 2
    rows = client.get(f"{URL}/grid/rows/?class_id={klass.id}").get_json()["rows"]
    mine, theirs = [r for r in rows if r["record_id"] is not None and r["values"]["name"] == "跳远"]
    assert mine["editable"] and theirs["editable"]
    # somebody else edits "theirs" after the grid was opened
    other = db.session.get(Record, theirs["record_id"])
    workflow.update_record(user("s1_clerk"), other, {**other.data, "name": "别人改的"})
    edit = lambda r, name: {"key": r["key"], "student_id": r["student_id"], "record_id": r["record_id"],  # noqa: E731
                            "version": r["version"], "values": {**r["values"], "name": name}}
    resp = _post(client, config, "save", [edit(mine, "我改的"), edit(theirs, "我也改了")])
    body = resp.get_json()
    assert (body["created"], body["updated"], body["failed"]) == (0, 1, 1)
    db.session.expire_all()
    assert db.session.get(Record, mine["record_id"]).data["name"] == "我改的"
    assert db.session.get(Record, theirs["record_id"]).data["name"] == "别人改的"
    stale = next(r for r in body["rows"] if r["key"] == theirs["key"])
    assert "已被他人修改" in stale["errors"]["_row"] and stale["values"]["name"] == "我也改了"
    events = db.session.execute(sa.select(AuditEvent.action).where(
        AuditEvent.object_type == "Record", AuditEvent.object_id == str(mine["record_id"]))).scalars().all()
    assert events[-1] == "edit"


def test_grade_rules_window_and_scope(client, login_as, at):
    at("2022-03-01 09:00")
    # 学业水平考试结果: a school clerk enters only 艺术, and only for grade 9
    klass9 = student_of("s1g9c1n01").school_class
    _, config = _open(client, login_as, "s1_clerk", klass9.id, url="/admin/records/academic_exam")
    row = next(r for r in config["rows"] if r["record_id"] is None)
    errors = _post(client, config, "check", [_new(row, subject="物理", result="合格")],
                   url="/admin/records/academic_exam").get_json()["errors"]
    assert errors[row["key"]] == {"subject": "科目：校级只能录入「艺术」"}
    klass7 = student_of("s1g7c1n01").school_class
    html, config = _open(client, login_as, "s1_clerk", klass7.id, url="/admin/records/academic_exam")
    assert "您的角色不能录入七年级的「学业水平考试结果」，以下记录只能查看。" in html and config["open"] is False
    assert config["rows"] and not any(r["editable"] or r["record_id"] is None for r in config["rows"])

    # another school's class, a student from elsewhere, a record of another category
    _, config = _open(client, login_as, "s1_clerk", student_of("s1g6c1n01").class_id)
    other_class = student_of("s2g6c1n01").school_class
    assert client.get(f"{URL}/grid/?class_id={other_class.id}").status_code == 404
    assert _post(client, config, "save", [], class_id=other_class.id).status_code == 404
    before = table_fingerprint()
    stranger = student_of("s2g6c1n01")
    classmate = db.session.get(Student, config["rows"][0]["student_id"])
    honour = db.session.execute(sa.select(Record).where(Record.school_id == classmate.school_id,
                                                        Record.category_id != category("sports").id)).scalars().all()
    assert honour, "the demo has records of other categories"
    values = {"name": "x", "award": "参与", "held_on": "2022-03-01"}
    rows = [{"key": f"n{stranger.id}", "student_id": stranger.id, "record_id": None, "version": None, "values": values},
            {"key": f"r{honour[0].id}", "student_id": honour[0].student_id, "record_id": honour[0].id,
             "version": honour[0].version_id, "values": values}]
    body = _post(client, config, "save", rows).get_json()
    assert (body["created"], body["updated"], body["failed"]) == (0, 0, 2)
    returned = {r["key"]: r for r in body["rows"]}
    assert returned[f"n{stranger.id}"]["errors"] == {"_row": "学生不存在或不在本班名单中。"}
    assert returned[f"r{honour[0].id}"]["errors"] == {"_row": "记录不存在或不在您的权限范围内。"}
    assert table_fingerprint() == before
    # a malformed request
    assert client.post(f"{URL}/grid/save/", data="rows", headers={"X-CSRFToken": config["csrf"]}).status_code == 400

    # after the entry window: the page says so and nothing is saved
    at("2022-03-22 09:00")
    html, config = _open(client, login_as, "s1_clerk", student_of("s1g6c1n01").class_id)
    assert "录入" in html and "alert-warning" in html
    row = next(r for r in config["rows"] if r["record_id"] is None)
    body = _post(client, config, "save", [_new(row, name="迟到", award="参与", held_on="2022-03-01")]).get_json()
    assert body["created"] == 0 and body["failed"] == 1
    late = next(r for r in body["rows"] if r["key"] == row["key"])
    assert "2022-03-21 16:00" in late["errors"]["_row"], late


def test_who_may_use_the_grid(client, login_as, at):
    at("2022-03-01 09:00")
    klass = student_of("s1g6c1n01").school_class
    for username in ("s1_auditor", "s1_principal", "district_clerk", "s1g6c1n01"):
        token = login_as(username)
        assert client.get(f"{URL}/grid/?class_id={klass.id}").status_code == 403, username
        resp = client.post(f"{URL}/grid/save/", json={"class_id": klass.id, "rows": []}, headers={"X-CSRFToken": token})
        assert resp.status_code == 403, username
    token = login_as("s1_clerk")
    assert "表格录入" in client.get(f"{URL}/").get_data(as_text=True)
    # no CSRF token, no save
    assert client.post(f"{URL}/grid/save/", json={"class_id": klass.id, "rows": []}).status_code == 400
    assert client.post(f"{URL}/grid/save/", json={"class_id": klass.id, "rows": []},
                       headers={"X-CSRFToken": token}).status_code == 200
