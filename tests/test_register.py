"""学籍导入 and 账号单 (issue 6, part 4): the district stood up from its student register, re-runnable;
accounts that must change their initial password; slips that are the only place a password appears."""
from __future__ import annotations

import io
import json
import re

import pytest
import sqlalchemy as sa
from conftest import csrf_from, student_of, table_fingerprint, user
from openpyxl import Workbook, load_workbook

from forms import register
from models import AuditEvent, RoleGrant, School, SchoolClass, Student, User, db

URL = "/admin/register"
SLIPS = "/admin/account-slips"
HEAD = ["学校代码", "学校名称", "年级", "班级", "学籍号", "姓名", "性别", "学籍状态", "家长姓名", "家长手机"]
STAFF_HEAD = ["学校代码", "姓名", "工号", "用户名", "角色", "年级", "班级", "手机"]
NEW_SCHOOL = ("bs09", "上海市宝山区新建初级中学")
STUDENTS = [
    (*NEW_SCHOOL, "七年级", "1", "G310113201001010001", "林一", "男", "在籍", "林大", "13800000001"),
    (*NEW_SCHOOL, "初一", "(1)班", "G310113201001010002", "林二", "女", "在读", "", ""),
    (*NEW_SCHOOL, 7, 2, "G310113201001010003", "林三", "女", "休学", "", "138-0000-0003"),
    (*NEW_SCHOOL, "预备", "3班", "G310113201101010004", "林四", "男", "在籍", "", ""),
]
STAFF = [
    ("bs09", "高老师", "T01", "", "班主任", "七年级", "1"),
    ("bs09", "钱老师", "", "bs09_clerk", "校级录入员", "", ""),
    ("bs09", "钱老师", "", "bs09_clerk", "校级审核员", "", ""),
]


def _xlsx(rows=STUDENTS, staff=None, *, head=HEAD, title=None, sheet="学生名单") -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    if title:
        ws.append([title])
        ws.append([])
    ws.append(list(head))
    for row in rows:
        ws.append(list(row))
    if staff is not None:
        st = wb.create_sheet("教职工")
        st.append(STAFF_HEAD)
        for row in staff:
            st.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _upload(client, data: bytes, name="学籍导出.xlsx"):
    page = client.get(f"{URL}/").get_data(as_text=True)
    district = re.search(r'name="district_id" value="(\d+)"', page).group(1)
    return client.post(f"{URL}/", data={"csrf_token": csrf_from(page), "district_id": district,
                                        "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data", follow_redirects=True)


def _token(html: str) -> str:
    return re.search(r"/admin/register/([0-9a-f]{32})/", html).group(1)


def _import(client, data: bytes) -> str:
    """Upload, check, confirm; the page shown after the import."""
    page = _upload(client, data).get_data(as_text=True)
    assert "文件检查无误" in page, page
    resp = client.post(f"{URL}/{_token(page)}/", data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 302
    return client.get(resp.location).get_data(as_text=True)


def _counts(html: str) -> dict:
    """The preview table: kind → (新建, 更新, 不变)."""
    table = re.search(r'id="cqe-register-counts".*?</table>', html, re.S).group(0)
    return {m[0]: tuple(int(x) for x in m[1:]) for m in re.findall(
        r'<th scope="row">([^<]+)</th><td[^>]*>(\d+)</td><td[^>]*>(\d+)</td><td[^>]*>(\d+)</td>', table)}


def _account(username):
    return db.session.execute(sa.select(User).where(User.username == username)).scalar_one_or_none()


def _student(xjh):
    return db.session.execute(sa.select(Student).where(Student.xjh == xjh)).scalar_one_or_none()


def _slips(client, kind, ident, csrf):
    return client.post(f"{SLIPS}/print", data={"csrf_token": csrf, "kind": kind, "id": ident})


def _printed(html: str) -> dict:
    """username → initial password (or None) from a slips page."""
    out = {}
    for block in re.findall(r'<div class="slip" data-username="([^"]+)">(.*?)</div>\s*</div>', html, re.S):
        username, body = block
        pw = re.search(r'class="mono pw password">([^<]+)<', body)
        out[username] = pw.group(1) if pw else None
    return out


def _login(client, username, password):
    page = client.get("/login").get_data(as_text=True)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": csrf_from(page)})


def _logout(client):
    page = client.get("/password").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_from(page)})


# ---------------------------------------------------------------------------------------------
# Import


def test_import_creates_schools_classes_students_parents_and_accounts(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("admin")
    before = table_fingerprint()
    page = _upload(client, _xlsx(staff=STAFF)).get_data(as_text=True)
    assert "文件检查无误：学生 4 行，教职工 3 行。尚未写入任何数据。" in page
    assert _counts(page) == {"学校": (1, 0, 0), "班级": (3, 0, 0), "学生": (4, 0, 0), "学生账号": (4, 0, 0),
                             "家长账号": (4, 0, 0), "教职工账号": (2, 0, 0), "教职工角色": (3, 0, 0)}
    db.session.expire_all()
    assert table_fingerprint() == before  # checking writes nothing
    resp = client.post(f"{URL}/{_token(page)}/", data={"csrf_token": csrf_from(page)})
    done = client.get(resp.location).get_data(as_text=True)
    assert "已导入宝山区学籍：学校 新建 1、更新 0、不变 0" in done

    school = db.session.execute(sa.select(School).where(School.code == "bs09")).scalar_one()
    assert school.name == NEW_SCHOOL[1] and school.district.code == "bs"
    assert sorted((c.grade, c.number) for c in school.classes) == [(6, 3), (7, 1), (7, 2)]
    a, b, c, d = (_student(r[4]) for r in STUDENTS)
    assert (a.name, a.gender, a.status, a.school_class.name, a.school_id) == ("林一", "男", "enrolled", "七年级(1)班",
                                                                             school.id)
    assert (b.status, b.school_class.name) == ("enrolled", "七年级(1)班")
    assert (c.status, c.school_class.name, d.school_class.name) == ("suspended", "七年级(2)班", "六年级(3)班")

    # Accounts: username = 学籍号 / p_学籍号, no usable password yet, must change it at first login.
    for s in (a, b, c, d):
        for username, role in ((s.xjh, "student"), (f"p_{s.xjh}", "parent")):
            acc = _account(username)
            assert acc.must_change_password and acc.password_hash == register.UNUSABLE_PASSWORD
            assert [(g.role, g.student_id) for g in acc.grants] == [(role, s.id)]
    assert _account(a.xjh).display_name == "林一"
    assert (_account(f"p_{a.xjh}").display_name, _account(f"p_{a.xjh}").mobile) == ("林大", "13800000001")
    assert (_account(f"p_{b.xjh}").display_name, _account(f"p_{c.xjh}").mobile) == ("林二家长", "13800000003")
    teacher = _account("bs09_T01")
    assert teacher.must_change_password and [(g.role, g.class_id) for g in teacher.grants] == [
        ("homeroom_teacher", a.class_id)]
    clerk = _account("bs09_clerk")
    assert sorted((g.role, g.school_id) for g in clerk.grants) == [("school_auditor", school.id),
                                                                   ("school_clerk", school.id)]
    # Every row is in the history, filed under the district and school, with the file named.
    events = db.session.execute(sa.select(AuditEvent).where(AuditEvent.reason == "学籍导入：学籍导出.xlsx")).scalars().all()
    kinds = {(e.object_type, e.action) for e in events}
    assert {("School", "create"), ("SchoolClass", "create"), ("Student", "create"), ("User", "create"),
            ("RoleGrant", "create")} <= kinds
    assert len(events) == 1 + 3 + 4 + 10 + 11
    assert {e.school_id for e in events if e.object_type == "Student"} == {school.id}
    assert all(e.after.get("password_hash") in (None, "***") for e in events)


def test_rerun_changes_nothing_and_an_updated_file_updates(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("admin")
    _import(client, _xlsx(staff=STAFF))
    db.session.expire_all()
    before = table_fingerprint()
    page = _upload(client, _xlsx(staff=STAFF)).get_data(as_text=True)
    assert _counts(page) == {"学校": (0, 0, 1), "班级": (0, 0, 3), "学生": (0, 0, 4), "学生账号": (0, 0, 4),
                             "家长账号": (0, 0, 4), "教职工账号": (0, 0, 2), "教职工角色": (0, 0, 3)}
    client.post(f"{URL}/{_token(page)}/", data={"csrf_token": csrf_from(page)})
    db.session.expire_all()
    assert table_fingerprint() == before  # not one row, not one history event

    # 林二 moves to (2)班 and transfers out under a new name; the school is renamed.
    rows = [list(r) for r in STUDENTS]
    rows[1][3], rows[1][5], rows[1][7] = "2", "林贰", "转学"
    for r in rows:
        r[1] = "上海市宝山区新建实验中学"
    page = _upload(client, _xlsx(rows)).get_data(as_text=True)
    assert _counts(page) == {"学校": (0, 1, 0), "班级": (0, 0, 3), "学生": (0, 1, 3), "学生账号": (0, 1, 3),
                             "家长账号": (0, 1, 3), "教职工账号": (0, 0, 0), "教职工角色": (0, 0, 0)}
    client.post(f"{URL}/{_token(page)}/", data={"csrf_token": csrf_from(page)})
    db.session.expire_all()
    b = _student(STUDENTS[1][4])
    assert (b.name, b.status, b.school_class.name) == ("林贰", "transferred", "七年级(2)班")
    xjhs = [r[4] for r in STUDENTS]
    assert db.session.execute(sa.select(sa.func.count(Student.id)).where(Student.xjh.in_(xjhs))).scalar() == 4
    assert _account(b.xjh).display_name == "林贰" and _account(f"p_{b.xjh}").display_name == "林贰家长"
    usernames = xjhs + [f"p_{x}" for x in xjhs]
    assert db.session.execute(sa.select(sa.func.count(User.id)).where(User.username.in_(usernames))).scalar() == 8
    assert db.session.execute(sa.select(School.name).where(School.code == "bs09")).scalar() == "上海市宝山区新建实验中学"
    change = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.object_type == "Student", AuditEvent.object_id == str(b.id), AuditEvent.action == "update")
    ).scalar_one()
    assert change.before["status"] == "enrolled" and change.after["status"] == "transferred"


def test_existing_students_keep_their_accounts(client, login_as, at):
    """A register that lists the demo's students updates them and creates no second account."""
    at("2022-03-01 09:00")
    login_as("admin")
    a, b = student_of("s1g9c1n01"), student_of("s1g9c1n02")
    other_class = db.session.execute(sa.select(SchoolClass).where(
        SchoolClass.school_id == a.school_id, SchoolClass.grade == 9, SchoolClass.number == 2)).scalar_one()
    rows = [("bs01", "上海市宝山区第一中学", "九年级", "1", a.xjh, a.name, a.gender, "在籍", "", ""),
            ("bs01", "上海市宝山区第一中学", "九年级", "2", b.xjh, b.name, b.gender, "在籍", "", "")]
    users_before = db.session.execute(sa.select(sa.func.count(User.id))).scalar()
    page = _upload(client, _xlsx(rows)).get_data(as_text=True)
    assert _counts(page)["学生"] == (0, 1, 1) and _counts(page)["学生账号"] == (0, 0, 2)
    assert _counts(page)["学校"] == (0, 0, 1)
    client.post(f"{URL}/{_token(page)}/", data={"csrf_token": csrf_from(page)})
    db.session.expire_all()
    assert db.session.execute(sa.select(sa.func.count(User.id))).scalar() == users_before
    assert student_of("s1g9c1n02").class_id == other_class.id
    assert not user("s1g9c1n01").must_change_password and _account(a.xjh) is None


BAD = [
    ((*NEW_SCHOOL, "十年级", "1", "G3101130000000000A1", "甲", "男", "在籍", "", ""), "年级", "无法识别「十年级」"),
    ((*NEW_SCHOOL, "七年级", "三班", "G3101130000000000A2", "乙", "男", "在籍", "", ""), "班级", "无法识别「三班」"),
    ((*NEW_SCHOOL, "七年级", "八年级(1)班", "G3101130000000000A3", "丙", "男", "在籍", "", ""), "班级",
     "「八年级(1)班」与年级「七年级」不一致"),
    ((*NEW_SCHOOL, "七年级", "1", "", "丁", "男", "在籍", "", ""), "学籍号", "必填"),
    ((*NEW_SCHOOL, "七年级", "1", "G310113201001010001", "戊", "男", "在籍", "", ""), "学籍号", "与第4行重复"),
    ((*NEW_SCHOOL, "七年级", "1", "G3101130000000000A6", "己", "未知", "在籍", "", ""), "性别", "无法识别「未知」"),
    ((*NEW_SCHOOL, "七年级", "1", "G3101130000000000A7", "庚", "女", "毕业", "", ""), "学籍状态", "无法识别「毕业」"),
    (("zz01", "外区第一中学", "七年级", "1", "G3101130000000000A8", "辛", "女", "在籍", "", ""), "学校代码",
     "zz01 是其他区的学校，不能导入到宝山区"),
    ((*NEW_SCHOOL, "七年级", "1", "G3101130000000000A9", "壬", "女", "在籍", "", "12345"), "家长手机", "不是11位手机号"),
    (("bs09", "另一个名字", "七年级", "1", "G3101130000000000B0", "癸", "女", "在籍", "", ""), "学校名称",
     "学校代码 bs09 在第4行是「上海市宝山区新建初级中学」"),
    ((*NEW_SCHOOL, "七年级", "1", "ZZ70000000000000000", "外生", "男", "在籍", "", ""), "学籍号", "是其他区学校的学生"),
    ((*NEW_SCHOOL, "七年级", "", "G3101130000000000B2", "子", "女", "在籍", "", ""), "班级", "必填"),
]


def test_bad_rows_are_named_by_row_and_column_and_nothing_is_written(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("admin")
    rows = [STUDENTS[0]] + [r for r, _col, _msg in BAD]
    staff = [("bs09", "无角色", "T9", "", "教导主任", "", ""), ("bs09", "缺班级", "T8", "", "班主任", "七年级", ""),
             ("bs01", "占用", "", "s1g9c1n01", "校级录入员", "", ""), ("zz01", "外区", "T7", "", "校长", "", "")]
    before = table_fingerprint()
    page = _upload(client, _xlsx(rows, staff, title="宝山区学籍信息导出")).get_data(as_text=True)
    assert "未导入任何数据" in page and "确认导入" not in page
    errors = re.search(r'id="cqe-register-errors".*?</table>', page, re.S).group(0)
    found = re.findall(r"<tr><td>([^<]+)</td><td>第(\d+)行</td><td>([^<]*)</td><td[^>]*>([^<]+)</td></tr>", errors)
    # The header is the third row (a title and a blank row above it): data starts at row 4.
    for i, (_row, col, msg) in enumerate(BAD):
        number = str(i + 5)
        assert any(s == "学生名单" and n == number and c == col and msg in m for s, n, c, m in found), (number, col, msg)
    assert ("教职工", "2", "角色") in {(s, n, c) for s, n, c, _m in found}
    assert ("教职工", "3", "班级") in {(s, n, c) for s, n, c, _m in found}
    assert any(s == "教职工" and n == "4" and c == "用户名" and "学生或家长账号" in m for s, n, c, m in found)
    assert any(s == "教职工" and n == "5" and c == "学校代码" and "其他区" in m for s, n, c, m in found)
    assert len([f for f in found if f[0] == "学生名单"]) == len(BAD)  # the good row has no error
    # Confirming anyway writes nothing either.
    client.post(f"{URL}/{_token(page)}/", data={"csrf_token": csrf_from(page)})
    db.session.expire_all()
    assert table_fingerprint() == before
    # The error workbook: the upload with a 错误 column on the header row.
    wb = load_workbook(io.BytesIO(client.get(f"{URL}/{_token(page)}/errors.xlsx").get_data()))
    ws = wb["学生名单"]
    col = ws.max_column
    assert ws.cell(row=3, column=col).value == "错误" and ws.cell(row=4, column=col).value is None
    assert "年级：无法识别「十年级」" in ws.cell(row=5, column=col).value


def test_unusable_files_are_refused_with_the_reason(client, login_as):
    login_as("admin")
    page = _upload(client, b"not a workbook").get_data(as_text=True)
    assert "文件无法读取" in page
    page = _upload(client, _xlsx(head=["学籍号", "姓名", "性别"])).get_data(as_text=True)
    assert "缺少列：学校代码、学校名称、年级、班级、学籍状态" in page
    page = _upload(client, _xlsx(head=["编号", "名字"])).get_data(as_text=True)
    assert "找不到表头" in page
    page = _upload(client, _xlsx(rows=[])).get_data(as_text=True)
    assert "没有学生数据行" in page
    wb = load_workbook(io.BytesIO(_xlsx()))
    wb.create_sheet("教职工").append(["学校代码", "姓名", "角色"])
    out = io.BytesIO()
    wb.save(out)
    page = _upload(client, out.getvalue()).get_data(as_text=True)
    assert "工作表「教职工」第1行（表头）缺少列：工号或用户名" in page


def test_a_number_excel_has_rounded_is_refused(client, login_as):
    login_as("admin")
    rows = [(*NEW_SCHOOL, "七年级", "1", 3.1011320100101e18, "林一", "男", "在籍", "", "")]
    page = _upload(client, _xlsx(rows)).get_data(as_text=True)
    assert "科学计数法" in page


def test_status_cannot_change_after_the_non_participant_list_locked(client, login_as, at):
    at("2022-03-20 09:00")  # preparation ended 2022-03-14 08:00 for both cohorts
    login_as("admin")
    a = student_of("s1g9c1n01")
    rows = [("bs01", "上海市宝山区第一中学", "九年级", "1", a.xjh, a.name, a.gender, "转学", "", "")]
    page = _upload(client, _xlsx(rows)).get_data(as_text=True)
    assert ("九年级的不参与填报名单已于 2022-03-14 08:00 锁定，不能再通过导入修改学籍状态"
            f"（{a.name}现为「在籍」，文件中为「转学」）") in page
    # Everything else may still change: a new student is fine.
    page = _upload(client, _xlsx([STUDENTS[0]])).get_data(as_text=True)
    assert "文件检查无误" in page


def test_only_a_district_admin_imports(client, login_as):
    assert client.get(f"{URL}/").status_code == 302  # not logged in: to the login page
    for username in ("s1_clerk", "s1_admin", "district_clerk"):
        login_as(username)
        assert client.get(f"{URL}/").status_code == 403
        assert client.get(f"{URL}/template.xlsx").status_code == 403
    login_as("admin")
    page = client.get(f"{URL}/").get_data(as_text=True)
    assert "学籍导入" in page and "下载学籍导入模板" in page


def test_another_users_upload_does_not_exist(client, login_as, app):
    login_as("admin")
    page = _upload(client, _xlsx()).get_data(as_text=True)
    token = _token(page)
    import os

    meta_path = os.path.join(app.instance_path, "imports", token + ".json")
    with open(meta_path) as fh:
        meta = json.load(fh)
    with open(meta_path, "w") as fh:
        json.dump({**meta, "user_id": meta["user_id"] + 1}, fh)
    assert client.post(f"{URL}/{token}/", data={"csrf_token": csrf_from(page)}).status_code == 404
    assert client.get(f"{URL}/{'0' * 32}/errors.xlsx").status_code == 404


def test_the_template_is_the_register_layout_and_imports(client, login_as, at):
    at("2022-03-01 09:00")
    login_as("admin")
    resp = client.get(f"{URL}/template.xlsx")
    assert resp.status_code == 200 and resp.mimetype.endswith("spreadsheetml.sheet")
    wb = load_workbook(io.BytesIO(resp.get_data()))
    assert wb.sheetnames == ["学籍", "教职工", "说明"]
    assert [c.value for c in wb["学籍"][1]] == HEAD
    assert [c.value for c in wb["教职工"][1]] == STAFF_HEAD
    for row in STUDENTS[:2]:
        wb["学籍"].append([str(v) for v in row])
    wb["教职工"].append(list(STAFF[0]))
    out = io.BytesIO()
    wb.save(out)
    page = _upload(client, out.getvalue()).get_data(as_text=True)
    assert _counts(page)["学生"] == (2, 0, 0) and _counts(page)["教职工账号"] == (1, 0, 0)


def test_checking_queries_in_batches_not_per_row(client, login_as, at, session):
    """The check of 30 rows and of 240 rows runs the same number of queries (one batch of 500 per kind)."""
    at("2022-03-01 09:00")
    admin = user("admin")
    district = db.session.execute(sa.select(School).where(School.code == "bs01")).scalar_one().district

    def rows(n):
        return [(*NEW_SCHOOL, 6 + i % 4, 1 + i % 5, f"G31011320100{i:07d}", f"学生{i}", "男女"[i % 2], "在籍", "", "")
                for i in range(n)]

    def queries(n):
        sheets = register.read(io.BytesIO(_xlsx(rows(n))))
        statements = []

        def count(*args):
            statements.append(args[2])

        engine = db.session.get_bind()
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            report = register.check(admin, district, sheets)
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)
        assert report.ok and report.counts["student"]["created"] == n
        return len(statements)

    assert queries(30) == queries(240)


# ---------------------------------------------------------------------------------------------
# Account slips and the first login


def _new_class(client, login_as):
    login_as("admin")
    _import(client, _xlsx(staff=STAFF))
    return _student(STUDENTS[0][4]).school_class


def test_slips_show_initial_passwords_that_log_in_once(client, login_as, at):
    at("2022-03-01 09:00")
    klass = _new_class(client, login_as)
    page = client.get(f"{SLIPS}/?school_id={klass.school_id}").get_data(as_text=True)
    assert "七年级(1)班" in page and "本校教职工" in page
    assert client.get(f"{SLIPS}/print").status_code == 405  # changing passwords is a POST
    resp = _slips(client, "class", klass.id, csrf_from(page))
    assert resp.status_code == 200 and "no-store" in resp.headers["Cache-Control"]
    html = resp.get_data(as_text=True)
    printed = _printed(html)
    a, b = _student(STUDENTS[0][4]), _student(STUDENTS[1][4])
    assert set(printed) == {"bs09_T01", a.xjh, f"p_{a.xjh}", b.xjh, f"p_{b.xjh}"}
    assert all(re.fullmatch(r"[a-z2-9]{8}", pw) for pw in printed.values())
    assert "首次登录须修改密码" in html and "上海市宝山区新建初级中学" in html and "/login" in html
    # Only a hash is stored, and the history says who issued passwords without saying them.
    acc = _account(a.xjh)
    assert acc.password_hash.startswith("pbkdf2:sha256:") and printed[a.xjh] not in acc.password_hash
    events = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "issue_password")).scalars().all()
    assert len(events) == 5 and all(e.reason == "打印账号单：上海市宝山区新建初级中学 七年级(1)班" for e in events)
    assert not any(pw in json.dumps(e.after, ensure_ascii=False) for e in events for pw in printed.values())

    # The printed password logs in, and the account must change it before anything else.
    _logout(client)
    resp = _login(client, a.xjh, printed[a.xjh])
    assert resp.status_code == 302 and resp.location.startswith("/password")
    for path in ("/admin/", "/me/records", "/inbox", "/admin/records/sports/"):
        r = client.get(path)
        assert r.status_code == 302 and r.location.startswith("/password"), path
    assert client.get("/healthz").status_code == 200
    form = client.get("/password").get_data(as_text=True)
    assert "您正在使用初始密码登录" in form
    csrf = csrf_from(form)

    def change(old, new, confirm=None):
        return client.post("/password", data={"csrf_token": csrf, "old_password": old, "new_password": new,
                                              "confirm": new if confirm is None else confirm})

    for old, new, confirm, message in (
        ("wrong-pass1", "abcd12345", None, "当前密码：不正确"),
        (printed[a.xjh], "abc123", None, "新密码：至少 8 位"),
        (printed[a.xjh], "abcdefghij", None, "新密码：须同时包含字母和数字"),
        (printed[a.xjh], "1234567890", None, "新密码：须同时包含字母和数字"),
        (printed[a.xjh], a.xjh, None, "新密码：不能与用户名相同"),
        (printed[a.xjh], printed[a.xjh], None, "新密码：不能与当前密码相同"),
        (printed[a.xjh], "abcd12345", "abcd12346", "两次输入的新密码不一致"),
    ):
        r = change(old, new, confirm)
        assert r.status_code == 200 and message in r.get_data(as_text=True), message
    db.session.expire_all()
    assert _account(a.xjh).must_change_password
    r = change(printed[a.xjh], "lin2022abc")
    assert r.status_code == 302 and r.location == "/admin/"
    assert client.get("/admin/").status_code == 200 and client.get("/me/records").status_code == 200
    db.session.expire_all()
    acc = _account(a.xjh)
    assert not acc.must_change_password and acc.password_hash.startswith("$argon2id$")
    event = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "change_password", AuditEvent.object_id == str(acc.id))).scalar_one()
    assert event.after == {"password_hash": "***", "must_change_password": False,
                           "session_version": event.before["session_version"] + 1}  # other sessions end

    # Reprinting: the account in use shows no password; the others get new ones, the old ones stop working.
    _logout(client)
    login_as("admin")
    page = client.get(f"{SLIPS}/?school_id={klass.school_id}").get_data(as_text=True)
    again = _slips(client, "class", klass.id, csrf_from(page)).get_data(as_text=True)
    reprinted = _printed(again)
    assert reprinted[a.xjh] is None and "已启用（密码已由本人修改）" in again
    assert reprinted[b.xjh] and reprinted[b.xjh] != printed[b.xjh]
    _logout(client)
    assert _login(client, b.xjh, printed[b.xjh]).status_code == 200  # the first slip no longer works
    assert _login(client, b.xjh, reprinted[b.xjh]).status_code == 302
    _logout(client)
    assert _login(client, a.xjh, "lin2022abc").location == "/admin/"


def test_a_new_account_cannot_log_in_before_its_slip_is_printed(client, login_as, at):
    at("2022-03-01 09:00")
    _new_class(client, login_as)
    _logout(client)
    xjh = STUDENTS[0][4]
    for guess in ("", "!", register.UNUSABLE_PASSWORD, xjh):
        assert _login(client, xjh, guess).status_code == 200


def test_any_user_may_change_their_password(client, login_as):
    login_as("s1_clerk")
    page = client.get("/admin/").get_data(as_text=True)
    assert 'href="/password"' in page
    form = client.get("/password").get_data(as_text=True)
    assert "您正在使用初始密码登录" not in form
    r = client.post("/password", data={"csrf_token": csrf_from(form), "old_password": "cqe2022",
                                       "new_password": "clerk2022x", "confirm": "clerk2022x", "next": "/inbox"})
    assert r.status_code == 302 and r.location == "/inbox"
    assert user("s1_clerk").check_password("clerk2022x")


def test_who_may_print_slips(client, login_as, at):
    at("2022-03-01 09:00")
    a = student_of("s1g9c1n01")
    other = student_of("s1g8c1n01").school_class
    # A school clerk sees the class but may not print: 403; and has no slips page.
    csrf = login_as("s1_clerk")
    assert client.get(f"{SLIPS}/").status_code == 403
    assert _slips(client, "class", a.class_id, csrf).status_code == 403
    # Another school's admin: the class does not exist for them.
    csrf = login_as("s2_admin")
    assert _slips(client, "class", a.class_id, csrf).status_code == 404
    assert _slips(client, "school", a.school_id, csrf).status_code == 404
    page = client.get(f"{SLIPS}/").get_data(as_text=True)
    assert "上海市宝山区育才初级中学" in page and "上海市宝山区第一中学" not in page
    # The homeroom teacher prints their own class only, and not the school's staff.
    csrf = login_as("s1_g9c1_teacher")
    page = client.get(f"{SLIPS}/").get_data(as_text=True)
    assert "九年级(1)班" in page and "本校教职工" not in page and "九年级(2)班" not in page
    resp = _slips(client, "class", a.class_id, csrf)
    assert resp.status_code == 200
    assert _printed(resp.get_data(as_text=True))["s1g9c1n01"] is None  # the demo accounts are in use
    assert _slips(client, "class", other.id, csrf).status_code == 404
    assert _slips(client, "school", a.school_id, csrf).status_code == 403  # their school, not their task
    # The school's admin prints any class of the school and its staff.
    csrf = login_as("s1_admin")
    assert _slips(client, "class", other.id, csrf).status_code == 200
    staff = _slips(client, "school", a.school_id, csrf).get_data(as_text=True)
    assert {"s1_admin", "s1_clerk", "s1_principal"} <= set(_printed(staff))


@pytest.mark.parametrize("kind,ident", [("class", "x"), ("nothing", "1"), ("class", "999999")])
def test_slips_of_nonsense_targets(client, login_as, kind, ident):
    csrf = login_as("admin")
    assert _slips(client, kind, ident, csrf).status_code in (400, 404)


def test_grants_of_imported_accounts_scope_them(client, login_as, at):
    """The imported teacher is homeroom teacher of exactly the imported class."""
    at("2022-03-01 09:00")
    klass = _new_class(client, login_as)
    grant = db.session.execute(sa.select(RoleGrant).join(User).where(User.username == "bs09_T01")).scalar_one()
    assert grant.class_id == klass.id and grant.school_id is None and grant.student_id is None
