"""The Changsha pages over HTTP (views/changsha.py): pledge, peer sheet, rating sheet with the running distribution,
the school's quota check and finalisation, the city's quota form; scope (404 outside, 403 for the wrong role),
CSRF, and nothing saved on a refusal."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from conftest import csrf_from, user
from test_changsha import DIMS, klass, organise, school, students_of

from models import PeerRating, Pledge, Quota, QuotaAck, Rating, RatingFinal, db, evaluation


def count(model):
    return db.session.execute(sa.select(sa.func.count()).select_from(model)).scalar()


def page(client, url):
    resp = client.get(url)
    assert resp.status_code == 200, (url, resp.status_code)
    return resp.get_data(as_text=True)


def test_pledge_page_signs_once(cs, client, login_as, at):
    at("2017-04-02 10:00")
    login_as("cs_yl01c2_eval1")
    html = page(client, "/cs/pledge")
    assert "诚信承诺书" in html and "郑重承诺" in html
    token = csrf_from(html)
    resp = client.post("/cs/pledge", data={"signed_name": "别人", "csrf_token": token})
    assert resp.status_code == 200 and "请输入您的姓名" in resp.get_data(as_text=True)
    assert count(Pledge) == 0
    assert client.post("/cs/pledge", data={"signed_name": "x"}).status_code == 400  # no CSRF token
    name = user("cs_yl01c2_eval1").display_name
    assert client.post("/cs/pledge", data={"signed_name": name, "csrf_token": token}).status_code == 302
    assert count(Pledge) == 1 and "pledge-signed" in page(client, "/cs/pledge")


def test_a_student_is_refused_the_pledge_and_a_shanghai_evaluator_finds_no_changsha(cs, client, login_as, at):
    at("2017-04-02 10:00")
    login_as("cs_yl01c2n01")
    assert client.get("/cs/pledge").status_code == 403
    client.get("/logout")
    login_as("s1_g9c1_evaluator")
    assert client.get("/cs/pledge").status_code == 404
    assert client.get(f"/cs/rate/{klass('yl01', 2).id}").status_code == 404


def test_peer_sheet_in_one_screen(cs, client, login_as, at):
    at("2017-05-15 19:00")
    k = klass("yl01", 2)
    mates = students_of(k)
    login_as("cs_yl01c2n01")
    nav = page(client, "/me/records")
    assert 'href="/cs/peer"' in nav and 'href="/me/evidence"' in nav
    html = page(client, "/cs/peer")
    # Every classmate but oneself, every dimension.
    for m in mates[1:]:
        assert all(f'name="r-{m.id}-{code}"' in html for code in DIMS)
    assert f'name="r-{mates[0].id}-' not in html
    token = csrf_from(html)
    other = students_of(klass("yl01", 1))[0]
    resp = client.post("/cs/peer", data={"csrf_token": token, f"r-{other.id}-moral": "A", f"r-{mates[1].id}-moral": "B"})
    assert resp.status_code == 200 and "只能评价本班同学" in resp.get_data(as_text=True)
    resp = client.post("/cs/peer", data={"csrf_token": token, f"r-{mates[0].id}-moral": "A"})
    assert "不能评价自己" in resp.get_data(as_text=True)
    assert count(PeerRating) == 0
    data = {f"r-{m.id}-{code}": "B" for m in mates[1:] for code in DIMS}
    assert client.post("/cs/peer", data={"csrf_token": token, **data}).status_code == 302
    assert count(PeerRating) == 5 * 6
    assert "已评 30 / 30 项" in page(client, "/cs/peer")
    at("2017-05-24 08:00")
    html = page(client, "/cs/peer")
    assert "peer-closed" in html and "学生自评、教师审核、学生互评" in html
    # Parents do not rate.
    client.get("/logout")
    login_as("p_cs_yl01c2n01")
    assert client.get("/cs/peer").status_code == 403


def _ready_to_rate(at, k):
    at("2017-06-03 10:00")
    evaluation.set_quotas(user("cs_city"), k.school, {code: {"A": 30, "B": 50} for code in DIMS})
    at("2017-06-14 10:00")
    evaluation.acknowledge_quotas(user(f"cs_{k.school.code}_principal"), k.school)
    at("2017-06-17 09:00")


def test_rating_sheet_shows_the_running_distribution_and_refuses_to_finalise_over_the_quota(cs, client, login_as, at):
    k = klass("yl01", 2)  # 6 students: A at most 1, B at most 3
    organise(at, k)
    _ready_to_rate(at, k)
    login_as("cs_yl01c2_eval1")
    html = page(client, f"/cs/rate/{k.id}")
    assert "rate-pledge" in html  # no pledge yet: the sheet is read-only and says why
    evaluation.sign_pledge(user("cs_yl01c2_eval1"), evaluation.changsha_term(k.school.district_id),
                           user("cs_yl01c2_eval1").display_name)
    html = page(client, f"/cs/rate/{k.id}")
    token = csrf_from(html)
    pupils = students_of(k)
    data = {f"r-{s.id}-{code}": ("A" if i < 2 else "C") for i, s in enumerate(pupils) for code in DIMS}
    assert client.post(f"/cs/rate/{k.id}", data={"csrf_token": token, "action": "save", **data}).status_code == 302
    assert count(Rating) == 36
    html = page(client, f"/cs/rate/{k.id}")
    assert html.count("table-danger") == 6  # A over its cap of 1 on every dimension
    resp = client.post(f"/cs/rate/{k.id}", data={"csrf_token": token, "action": "finalise"})
    assert resp.status_code == 200 and "A等：2人，超过插标上限1人（30%×6人）" in resp.get_data(as_text=True)
    assert count(RatingFinal) == 0
    data = {f"r-{s.id}-{code}": ("A" if i < 1 else "B") for i, s in enumerate(pupils) for code in DIMS}
    client.post(f"/cs/rate/{k.id}", data={"csrf_token": token, "action": "save", **data})
    resp = client.post(f"/cs/rate/{k.id}", data={"csrf_token": token, "action": "finalise"})
    assert "B等：5人，超过插标上限3人" in resp.get_data(as_text=True)
    data = {f"r-{s.id}-{code}": "ABBBCC"[i] for i, s in enumerate(pupils) for code in DIMS}
    client.post(f"/cs/rate/{k.id}", data={"csrf_token": token, "action": "save", **data})
    assert client.post(f"/cs/rate/{k.id}", data={"csrf_token": token, "action": "finalise"}).status_code == 302
    assert count(RatingFinal) == 1 and "class-final" in page(client, f"/cs/rate/{k.id}")
    # Another class of the school: not this evaluator's; another school's: does not exist for them.
    assert client.get(f"/cs/rate/{klass('yl01', 1).id}").status_code == 404
    assert client.get(f"/cs/rate/{klass('yl02', 1).id}").status_code == 404
    # A student id of another class smuggled into the sheet is refused.
    before = count(Rating)
    resp = client.post(f"/cs/rate/{k.id}", data={"csrf_token": token, "action": "save",
                                                 f"r-{students_of(klass('yl01', 1))[0].id}-moral": "A"})
    assert resp.status_code == 404 and count(Rating) == before


def test_school_page_acknowledges_and_finalises(cs, client, login_as, at):
    s = school("yl02")
    k = klass("yl02", 1)
    organise(at, k)
    at("2017-06-03 10:00")
    login_as("cs_city")
    html = page(client, f"/cs/quotas/{s.id}")
    token = csrf_from(html)
    form = {f"q-{code}-A": "20" for code in DIMS}
    form["q-moral-B"] = "abc"
    resp = client.post(f"/cs/quotas/{s.id}", data={"csrf_token": token, **form})
    assert "比例须为0至100的整数" in resp.get_data(as_text=True) and count(Quota) == 0
    form["q-moral-B"] = "40"
    assert client.post(f"/cs/quotas/{s.id}", data={"csrf_token": token, **form}).status_code == 302
    assert count(Quota) == 7
    client.get("/logout")
    at("2017-06-14 10:00")
    login_as("cs_yl02_principal")
    assert client.get(f"/cs/quotas/{s.id}").status_code == 200  # the school sees its numbers, read-only
    assert client.post(f"/cs/quotas/{s.id}", data={"csrf_token": token, **form}).status_code == 403
    html = page(client, f"/cs/school/{s.id}")
    token = csrf_from(html)
    assert client.post(f"/cs/school/{s.id}", data={"csrf_token": token, "action": "acknowledge"}).status_code == 302
    assert count(QuotaAck) == 1
    assert client.get(f"/cs/school/{school('yl01').id}").status_code == 404
    at("2017-06-17 09:00")
    resp = client.post(f"/cs/school/{s.id}", data={"csrf_token": token, "action": "finalise"})
    assert "以下班级尚未定稿" in resp.get_data(as_text=True)
    term = evaluation.changsha_term(s.district_id)
    for j in (1, 2):
        u = user(f"cs_yl02c1_eval{j}")
        evaluation.sign_pledge(u, term, u.display_name)
    evaluation.save_ratings(user("cs_yl02c1_eval1"),
                            [(st, code, "B" if i < 2 else "C") for i, st in enumerate(students_of(k)) for code in DIMS])
    evaluation.finalise_class(user("cs_yl02c1_eval2"), k)
    assert client.post(f"/cs/school/{s.id}", data={"csrf_token": token, "action": "finalise"}).status_code == 302
    assert "school-final" in page(client, f"/cs/school/{s.id}")


def test_oral_exam_levels_come_in_through_the_xlsx_import_in_the_results_phase(cs, client, login_as, at):
    import io
    import re

    from openpyxl import Workbook, load_workbook

    from models import Record

    url = "/admin/records/cs_oral_english"
    pupils = students_of(klass("yl02", 1))
    at("2017-04-25 10:00")
    login_as("cs_yl02_clerk")
    template = load_workbook(io.BytesIO(client.get(f"{url}/import/template/").get_data()))
    headers = [c.value for c in template.worksheets[0][1]]
    assert headers[:3] == ["学籍号", "姓名", "等级"]
    wb = Workbook()
    ws = wb.active
    ws.title = template.worksheets[0].title
    ws.append(headers[:3])
    for st, level in zip(pupils, "ABCDA", strict=True):
        ws.append([st.xjh, st.name, level])
    ws.append([pupils[0].xjh, pupils[0].name, "优"])  # not a level: named, nothing imported
    out = io.BytesIO()
    wb.save(out)
    page = client.get(f"{url}/import/").get_data(as_text=True)
    html = client.post(f"{url}/import/", data={"csrf_token": csrf_from(page), "file": (io.BytesIO(out.getvalue()), "口语.xlsx")},
                       content_type="multipart/form-data", follow_redirects=True).get_data(as_text=True)
    assert "1 行有错误" in html and "等级" in html
    token = re.search(r"/import/([0-9a-f]{32})/", html).group(1)
    resp = client.post(f"{url}/import/{token}/", data={"csrf_token": csrf_from(html), "mode": "valid"})
    assert resp.status_code == 302
    recs = db.session.execute(sa.select(Record).where(Record.student_id.in_([p.id for p in pupils]))).scalars().all()
    assert sorted(r.data["level"] for r in recs) == sorted("ABCDA")
    # A Shanghai clerk has no such category; after the phase the Changsha clerk cannot import either.
    client.get("/logout")
    login_as("s1_clerk")
    assert client.get(f"{url}/").status_code == 403
    client.get("/logout")
    at("2017-05-22 10:00")
    login_as("cs_yl02_clerk")
    before = db.session.execute(sa.select(sa.func.count(Record.id))).scalar()
    page = client.get(f"{url}/import/").get_data(as_text=True)
    html = client.post(f"{url}/import/", data={"csrf_token": csrf_from(page), "file": (io.BytesIO(out.getvalue()), "口语.xlsx")},
                       content_type="multipart/form-data", follow_redirects=True).get_data(as_text=True)
    token = re.search(r"/import/([0-9a-f]{32})/", html)
    if token:
        client.post(f"{url}/import/{token.group(1)}/", data={"csrf_token": csrf_from(html), "mode": "valid"})
    assert "考查成绩与数据导入" in html
    assert db.session.execute(sa.select(sa.func.count(Record.id))).scalar() == before


@pytest.mark.parametrize("username, expected", [
    ("cs_yl01c1_eval1", ["/cs/pledge", "/cs/rate/"]),
    ("cs_yl01c1n01", ["/cs/peer"]),
    ("cs_yl01_principal", ["/cs/school/", "/cs/committees", "/evidence/"]),
    ("cs_city", ["/cs/quotas/"]),
])
def test_the_desk_leads_each_role_to_its_pages(cs, client, login_as, at, username, expected):
    at("2017-05-15 10:00")
    login_as(username)
    html = page(client, "/admin/changsha/")
    links = re.findall(r'href="(/(?:cs|evidence)/[^"]*)"', html)
    for prefix in expected:
        assert any(link.startswith(prefix) for link in links), (prefix, links)
    for link in links:
        assert client.get(link).status_code in (200, 302), link
    if username == "cs_city":
        # Only Changsha schools: the city clerk of Changsha never sees Shanghai's.
        assert {int(x) for x in re.findall(r"/cs/quotas/(\d+)", html)} == {school("yl01").id, school("yl02").id}
    home = page(client, "/admin/")
    assert "长沙评价工作台" in home
    # Shanghai's 归档签字 is not a phase of the Changsha profile: no menu, no page.
    assert "归档签字" not in home and client.get("/admin/archive/sign/").status_code in (403, 404)


def test_shanghai_accounts_see_no_changsha_menu_or_categories(cs, client, login_as, at):
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    home = page(client, "/admin/")
    assert "长沙评价工作台" not in home and "语文口语交际考查" not in home
    assert "归档签字" in home
    assert client.get("/admin/changsha/").status_code == 404
    assert client.get("/admin/records/cs_oral_chinese/").status_code == 403


def test_committee_pages_form_publish_and_show_the_list_during_its_publication(cs, client, login_as, at):
    from models import Committee, CommitteeMember

    k = klass("yl01", 2)
    at("2017-03-20 09:00")
    login_as("cs_yl01_admin")
    html = page(client, "/cs/committees")
    assert f"/cs/committee/class/{k.id}" in html and f"/cs/committee/school/{k.school_id}" in html
    url = f"/cs/committee/class/{k.id}"
    html = page(client, url)
    token = csrf_from(html)
    evals = [user(f"cs_yl01c2_eval{j}") for j in range(1, 6)]
    # A teacher who has taught the class for less than a year: refused by name, nothing saved.
    resp = client.post(url, data={"csrf_token": token, "action": "add", "user_id": evals[0].id, "kind": "teacher",
                                  "teaching_since": "2016-09-01"})
    assert "不满1年" in resp.get_data(as_text=True) and count(CommitteeMember) == 0
    resp = client.post(url, data={"csrf_token": token, "action": "add", "user_id": evals[0].id, "kind": "teacher",
                                  "teaching_since": "not a date"})
    assert "请填写日期" in resp.get_data(as_text=True)
    # An account that is not this class's evaluator cannot be smuggled in.
    assert client.post(url, data={"csrf_token": token, "action": "add", "user_id": user("cs_yl01c1_eval1").id,
                                  "kind": "teacher", "teaching_since": "2015-09-01"}).status_code == 404
    for u in evals:
        assert client.post(url, data={"csrf_token": token, "action": "add", "user_id": u.id, "kind": "teacher",
                                      "duty": "任课教师", "teaching_since": "2015-09-01"}).status_code == 302
    assert count(CommitteeMember) == 5
    assert client.post(url, data={"action": "publish", "days": "3"}).status_code == 400  # CSRF
    assert client.post(url, data={"csrf_token": token, "action": "publish", "days": "4"}).status_code == 302
    committee = db.session.execute(sa.select(Committee)).scalar_one()
    assert (committee.published_from.isoformat(), committee.published_until.isoformat()) == ("2017-03-20", "2017-03-23")
    assert "committee-published" in page(client, url)
    # Another school's class: not theirs.
    assert client.get(f"/cs/committee/class/{klass('yl02', 1).id}").status_code == 404
    client.get("/logout")
    # The class's students see the list during its publication, not after.
    login_as("cs_yl01c2n03")
    html = page(client, "/cs/committees")
    assert all(u.display_name in html for u in evals) and "公示期：2017-03-20 至 2017-03-23" in html
    assert client.get(url).status_code in (403, 404)
    at("2017-03-24 09:00")
    assert "no-committees" in page(client, "/cs/committees")
    client.get("/logout")
    # Another class's student never saw it.
    at("2017-03-21 09:00")
    login_as("cs_yl01c1n03")
    assert evals[0].display_name not in page(client, "/cs/committees")


def test_teacher_review_of_materials_on_the_student_page_reaches_parents(cs, client, login_as, at):
    from models import MaterialReview

    k = klass("yl01", 2)
    st = students_of(k)[0]
    organise(at, k)
    at("2017-05-15 10:00")
    login_as("cs_yl01c2_eval2")
    url = f"/evidence/student/{st.id}"
    html = page(client, url)
    assert "review-pledge" in html and "review-form" not in html  # no pledge, no review
    u = user("cs_yl01c2_eval2")
    evaluation.sign_pledge(u, evaluation.changsha_term(k.school.district_id), u.display_name)
    html = page(client, url)
    token = csrf_from(html)
    resp = client.post(url, data={"csrf_token": token, "verdict": "incomplete", "note": ""})
    assert "请写明问题" in resp.get_data(as_text=True) and count(MaterialReview) == 0
    assert client.post(url, data={"csrf_token": token, "verdict": "incomplete",
                                  "note": "缺少社会实践活动记录"}).status_code == 302
    review = db.session.execute(sa.select(MaterialReview)).scalar_one()
    assert (review.authentic, review.complete, review.note) == (True, False, "缺少社会实践活动记录")
    assert "缺少社会实践活动记录" in page(client, url)
    # Another class's student is not this evaluator's to review.
    other = students_of(klass("yl01", 1))[0]
    assert client.post(f"/evidence/student/{other.id}", data={"csrf_token": token, "verdict": "ok"}).status_code in (403, 404)
    client.get("/logout")
    # The parent and the homeroom teacher see what is wrong.
    login_as("p_cs_yl01c2n01")
    assert "缺少社会实践活动记录" in page(client, "/me/evidence")
    client.get("/logout")
    login_as("cs_yl01c2_teacher")
    html = page(client, url)
    assert "缺少社会实践活动记录" in html and "review-form" not in html  # the homeroom teacher does not review
    assert client.post(url, data={"csrf_token": csrf_from(html), "verdict": "ok"}).status_code == 403


def test_an_evaluator_outside_a_published_group_cannot_rate(cs, client, login_as, at):
    k = klass("yl01", 1)  # its group is never formed
    _ready_to_rate(at, k)
    u = user("cs_yl01c1_eval1")
    evaluation.sign_pledge(u, evaluation.changsha_term(k.school.district_id), u.display_name)
    login_as("cs_yl01c1_eval1")
    html = page(client, f"/cs/rate/{k.id}")
    assert "rate-member" in html and 'value="finalise"' not in html
    st = students_of(k)[0]
    resp = client.post(f"/cs/rate/{k.id}", data={"csrf_token": csrf_from(html), "action": "save", f"r-{st.id}-moral": "B"})
    assert resp.status_code == 403 and count(Rating) == 0


@pytest.mark.parametrize("username", ["cs_yl01_clerk", "cs_yl01_admin"])
def test_changsha_staff_see_no_shanghai_only_pages(cs, client, login_as, at, username):
    """预确认 is a step of Shanghai's 填报准备 phase and the activity catalogue serves Shanghai's activity
    categories: a Changsha school's staff get neither (menu or page); a Shanghai school's staff get both."""
    at("2017-03-20 10:00")
    login_as(username)
    home = page(client, "/admin/")
    assert "预确认" not in home and "德育活动项目管理" not in home and "学生名册" in home
    assert client.get("/admin/preconfirm/").status_code == 403
    assert client.get("/admin/activities/").status_code == 403
    client.post("/logout", data={"csrf_token": csrf_from(home)})
    at("2022-03-01 09:00")
    login_as("s1_clerk")
    home = page(client, "/admin/")
    assert "预确认" in home and "德育活动项目管理" in home
    assert client.get("/admin/preconfirm/").status_code == 200 and client.get("/admin/activities/").status_code == 200


def test_a_changsha_student_is_led_to_evidence_and_peer_rating_not_to_publication_pages(cs, client, login_as, at):
    """Changsha has no 公示 of classmates' records and no 申诉 phase: its students' home, page tabs and menu lead to
    实证材料 and 学生互评 instead; a Shanghai student keeps 同班公示 and 申诉."""
    at("2017-05-15 10:00")
    token = login_as("cs_yl01c1n01")
    for url in ("/admin/", "/me/evidence", "/admin/changsha/"):
        html = page(client, url)
        assert 'href="/me/evidence"' in html and 'href="/cs/peer"' in html, url
        assert 'href="/me/class"' not in html and 'href="/me/appeals"' not in html, url
    client.post("/logout", data={"csrf_token": token})
    at("2022-03-01 09:00")
    login_as("s1g9c1n01")
    html = page(client, "/admin/")
    assert 'href="/me/class"' in html and 'href="/me/appeals"' in html and 'href="/cs/peer"' not in html
