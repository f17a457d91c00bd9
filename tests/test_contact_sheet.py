"""附件3 (issue 6, part 5): schools fill in their contacts; the district downloads the sheet in the seed's layout."""
from __future__ import annotations

import io

import sqlalchemy as sa
from openpyxl import load_workbook

from models import Contact, School, db


def _school(code: str) -> School:
    return db.session.execute(sa.select(School).where(School.code == code)).scalar_one()


def _sheet(client):
    resp = client.get("/admin/contacts/sheet.xlsx")
    assert resp.status_code == 200
    return load_workbook(io.BytesIO(resp.get_data())).active


def test_district_downloads_the_contact_sheet_in_the_seed_layout(client, login_as):
    s1, s3 = _school("bs01"), _school("bs03")
    for c in db.session.execute(sa.select(Contact).where(Contact.school_id.in_([s1.id, s3.id]))).scalars():
        db.session.delete(c)  # start from schools that filled in nothing (the demo fills one per category)
    db.session.add_all([
        Contact(school_id=s1.id, kind="leader", name="周建国", position="副校长", mobile="13800000001", qq="12345678",
                notes="", is_main=True),
        Contact(school_id=s1.id, kind="clerk", name="陈丽华", position="教务员", mobile="13800000002", qq="",
                notes="周一至周五", is_main=False),
        Contact(school_id=s1.id, kind="clerk", name="王志强", position="信息员", mobile="13800000003", qq="",
                notes="", is_main=False),
    ])
    db.session.commit()
    login_as("admin")
    assert "下载联系信息表（附件3）" in client.get("/admin/contacts/").get_data(as_text=True)
    ws = _sheet(client)
    assert ws["A1"].value == "宝山区初中学生综合素质评价工作联系信息表"
    assert [c.value for c in ws[2]] == ["学校", "类别", "姓名", "职务", "手机", "QQ号码", "备注"]
    rows = [[c.value for c in r] for r in ws.iter_rows(min_row=3, max_col=7)]
    block = rows[:5]  # school 1: leader, admin (empty), auditor (empty), two clerks
    assert [r[1] for r in block] == ["校分管领导", "校管理员", "校审核员", "校录入员", "校录入员"]
    assert block[0][2:] == ["周建国", "副校长", "13800000001", "12345678", "√"]
    assert block[1][2:] == [None] * 5
    assert [r[2] for r in block[3:]] == ["陈丽华", "王志强"] and block[3][6] == "周一至周五"
    assert ws["E3"].data_type == "s"  # a phone number stays text
    assert "A3:A7" in {str(m) for m in ws.merged_cells.ranges}  # the school's name spans its block
    # Every school of the district is on it; one that filled in nothing shows four empty rows.
    names = [r[0] for r in rows if r[0]]
    assert names[:3] == ["上海市宝山区第一中学", "上海市宝山区育才初级中学", "上海市宝山区明德实验学校"]
    s2_rows = rows[5:9]
    assert all(r[2] for r in s2_rows) and any(r[6] == "√" for r in s2_rows)  # the demo's four, admin marked
    s3_rows = rows[9:13]
    assert [r[1] for r in s3_rows] == ["校分管领导", "校管理员", "校审核员", "校录入员"]
    assert all(r[2:] == [None] * 5 for r in s3_rows)
    notes = [r[0] for r in rows if r[0] and str(r[0]).startswith(("注", "2."))]
    assert notes == ["注：1. 请填写后于2022年2月28日前反馈至教育局。", "2. 请在此项工作主要联系人的备注栏打“√”。"]


def test_a_school_admin_gets_their_school_only_and_clerks_none(client, login_as):
    login_as("s2_admin")
    ws = _sheet(client)
    names = {r[0].value for r in ws.iter_rows(min_row=3) if r[0].value and not str(r[0].value).startswith(("注", "2."))}
    assert names == {"上海市宝山区育才初级中学"}
    login_as("s1_clerk")
    assert client.get("/admin/contacts/sheet.xlsx").status_code == 403
