"""One term of the Shanghai profile, end to end, on the seed's dates, for both cohorts — driven over
HTTP as each role uses the app: entries and homeroom reviews, confirmations with rejections,
corrections, the confirmation and correction deadlines, publication, an appeal of each flow (2)–(4)
plus a missing-record appeal, problem data (flow 1), and the sign-off of every case. The final state
is checked record by record.

Students: A = s1g9c1n01 and B = s1g9c1n02 (grade 9, same class); C = s1g7c1n01 (grade 7).
"""
from __future__ import annotations

import sqlalchemy as sa
from conftest import category as _cat
from conftest import student_of as _student

from models import AuditEvent, Case, Cohort, District, Record, Term, User, db, deadlines

HONOUR = {"title": "区三好学生", "level": "区级", "issuer": "宝山区教育局", "awarded_on": "2022-01-10"}
COURSE = {"subject": "数学", "result": "优秀"}
EXTENDED = {"course": "机器人编程", "hours": "32", "result": "良好"}


def _records(student):
    db.session.expire_all()
    return db.session.execute(sa.select(Record).where(Record.student_id == student.id).order_by(Record.id)).scalars().all()


def _latest(student, code):
    return db.session.execute(sa.select(Record).where(Record.student_id == student.id,
                                                      Record.category_id == _cat(code).id)
                              .order_by(Record.id.desc())).scalars().first()


def _cohort(code):
    return db.session.execute(
        sa.select(Cohort).join(Term, Cohort.term_id == Term.id).join(District, Term.district_id == District.id)
        .where(Cohort.code == code, Term.is_current.is_(True), District.code == "bs")).scalar_one()


class Actor:
    """One person at the keyboard: logs in, opens pages, posts forms with their CSRF token."""

    def __init__(self, client, login_as, username):
        self.client, self.login_as, self.username = client, login_as, username

    def __enter__(self):
        self.client.get("/login")
        self.token = self.login_as(self.username)
        return self

    def __exit__(self, *exc):
        self.client.post("/logout", data={"csrf_token": self.token})

    def get(self, url):
        return self.client.get(url)

    def post(self, url, **data):
        return self.client.post(url, data={"csrf_token": self.token, **data})

    def ok(self, url, **data):
        resp = self.post(url, **data)
        assert resp.status_code == 302, f"{self.username} POST {url}: {resp.status_code} " + \
            resp.get_data(as_text=True)[:600]
        follow = self.client.get(resp.headers["Location"])
        assert "alert-danger" not in follow.get_data(as_text=True), \
            f"{self.username} POST {url} was refused: " + follow.get_data(as_text=True)[-3000:]
        return resp

    def refused(self, url, status=403, text=None, **data):
        resp = self.post(url, **data)
        assert resp.status_code == status, f"{self.username} POST {url}: {resp.status_code}"
        if status == 302:  # refused with a message on the page it returns to
            resp = self.client.get(resp.headers["Location"])
            assert "alert-danger" in resp.get_data(as_text=True), f"{self.username} POST {url} was not refused"
        if text:
            assert text in resp.get_data(as_text=True)
        return resp


def _version(record):
    db.session.refresh(record)
    return record.version_id


def test_full_term_both_cohorts(client, login_as, at, session):
    a, b, c = _student("s1g9c1n01"), _student("s1g9c1n02"), _student("s1g7c1n01")
    # Start from a clean slate for the three students: every record below is made through the pages.
    db.session.execute(sa.delete(Record).where(Record.student_id.in_([a.id, b.id, c.id])))
    # The seed's profile has no city-entered category; a district that receives city data declares it (data,
    # not code): here 学业水平考试结果 may also come from the city.
    exam = _cat("academic_exam")
    exam.entry = [*exam.entry, {"level": "city"}]
    db.session.commit()
    actor = lambda name: Actor(client, login_as, name)  # noqa: E731

    # ---- entry: 2022-03-01 ------------------------------------------------------------------
    at("2022-03-01 09:00")
    with actor("s1_clerk") as clerk:
        clerk.ok("/admin/records/honour_title/new/", student=a.id, **HONOUR)
        clerk.ok("/admin/records/basic_course/new/", student=a.id, **COURSE)
        clerk.ok("/admin/records/extended_course/new/", student=a.id, **EXTENDED)
        clerk.ok("/admin/records/honour_title/new/", student=c.id, **HONOUR)
        clerk.ok("/admin/records/basic_course/new/", student=c.id, **COURSE)
    with actor("district_clerk") as dclerk:
        dclerk.ok("/admin/records/academic_exam/new/", student=a.id, subject="物理", result="合格")
        dclerk.ok("/admin/records/academic_exam/new/", student=a.id, subject="化学", result="合格")
        dclerk.ok("/admin/records/academic_exam/new/", student=c.id, subject="地理", result="合格")
    with actor("city_clerk") as cclerk:
        cclerk.ok("/admin/records/academic_exam/new/", student=a.id, subject="生命科学", result="良好")
    a_honour, a_course, a_ext = _latest(a, "honour_title"), _latest(a, "basic_course"), _latest(a, "extended_course")
    exams = {r.data["subject"]: r for r in _records(a) if r.category.code == "academic_exam"}
    a_physics, a_chem, a_bio = exams["物理"], exams["化学"], exams["生命科学"]
    assert (a_physics.origin, a_bio.origin, a_honour.origin) == ("district", "city", "school")
    c_honour, c_course = _latest(c, "honour_title"), _latest(c, "basic_course")

    # Students write their own entries; the homeroom teachers review them (SPEC §3).
    at("2022-03-05 19:00")
    with actor("s1g9c1n01") as sa_:
        sa_.ok("/admin/records/self_intro/new/", content="我热爱科学，担任班级学习委员。")
        intro = _latest(a, "self_intro")
        assert intro.state == "draft"
        sa_.refused(f"/me/records/{intro.id}/publish", text="不能提交公示", version=intro.version_id)
        sa_.ok(f"/me/records/{intro.id}/submit", version=intro.version_id)
        activity = db.session.execute(sa.text(
            "SELECT id FROM activities WHERE school_id = :s AND level = 'school' ORDER BY id LIMIT 1"),
            {"s": a.school_id}).scalar()
        sa_.ok("/admin/records/moral_activity/new/", activity_id=activity, role="志愿者", hours="2")
        moral = _latest(a, "moral_activity")
        sa_.ok(f"/me/records/{moral.id}/submit", version=moral.version_id)
    with actor("s1g7c1n01") as sc:
        sc.ok("/admin/records/typical_case/new/", title="社区垃圾分类宣传", content="周末在社区宣传垃圾分类。")
        case_rec = _latest(c, "typical_case")
        sc.ok(f"/me/records/{case_rec.id}/submit", version=case_rec.version_id)

    at("2022-03-07 12:00")
    with actor("s1_g9c1_teacher") as teacher:
        queue = teacher.get("/admin/review-queue/").get_data(as_text=True)
        assert f"/review/{intro.id}" in queue and f"/review/{moral.id}" in queue
        assert f"/review/{case_rec.id}" not in queue  # another class's entries are not theirs
        teacher.refused(f"/review/{intro.id}", status=200, text="审阅意见：必填", action="review", reason="",
                        version=_version(intro))
        teacher.ok(f"/review/{intro.id}", action="review", reason="内容真实，可再补充具体事例。", version=_version(intro))
        teacher.ok(f"/review/{moral.id}", action="return", reason="请写明具体服务内容", version=_version(moral))
    with actor("s1_g7c1_teacher") as teacher7:
        teacher7.refused(f"/review/{intro.id}", status=404, action="review", reason="x")
        teacher7.ok(f"/review/{case_rec.id}", action="review", reason="请补充你的收获。", version=_version(case_rec))

    at("2022-03-08 20:00")
    with actor("s1g9c1n01") as sa_:
        assert "内容真实" in sa_.get("/me/records").get_data(as_text=True)
        sa_.ok(f"/me/records/{intro.id}/publish", version=_version(intro))
        sa_.ok(f"/admin/records/moral_activity/edit/?id={moral.id}", activity_id=activity, role="志愿者：敬老院服务",
               hours="2", version=_version(moral))
        sa_.ok(f"/me/records/{moral.id}/submit", version=_version(moral))
    with actor("s1g7c1n01") as sc:
        # Revise after the review → back to draft → resubmit to the teacher (SPEC §3).
        sc.ok(f"/admin/records/typical_case/edit/?id={case_rec.id}", title="社区垃圾分类宣传",
              content="周末在社区宣传垃圾分类，学会了与人沟通。", version=_version(case_rec))
        assert _version(case_rec) and case_rec.state == "draft"
        sc.ok(f"/me/records/{case_rec.id}/submit", version=_version(case_rec))
    at("2022-03-09 12:00")
    with actor("s1_g9c1_teacher") as teacher:
        teacher.ok(f"/review/{moral.id}", action="review", reason="", version=_version(moral))
    with actor("s1_g7c1_teacher") as teacher7:
        teacher7.ok(f"/review/{case_rec.id}", action="review", reason="很好。", version=_version(case_rec))
    with actor("s1g9c1n01") as sa_:
        sa_.ok(f"/me/records/{moral.id}/publish", version=_version(moral))
    with actor("s1g7c1n01") as sc:
        sc.ok(f"/me/records/{case_rec.id}/publish", version=_version(case_rec))

    # ---- confirmation: opens 2022-03-22 08:00 -------------------------------------------------
    at("2022-03-22 07:59")
    with actor("s1g9c1n01") as sa_:
        sa_.refused(f"/me/records/{a_honour.id}/confirm", text="确认", version=_version(a_honour))
    at("2022-03-22 08:00")
    with actor("s1g9c1n01") as sa_:
        sa_.ok(f"/me/records/{a_honour.id}/confirm", version=_version(a_honour))
        sa_.refused(f"/me/records/{a_course.id}/reject", status=302, version=_version(a_course), reason="")
        assert _version(a_course) and a_course.state == "entered"  # no reason, nothing saved
        sa_.ok(f"/me/records/{a_course.id}/reject", version=_version(a_course), reason="数学应为良好")
        sa_.ok(f"/me/records/{a_ext.id}/reject", version=_version(a_ext), reason="我没有选修这门课")
        sa_.ok(f"/me/records/{a_physics.id}/reject", version=_version(a_physics), reason="物理成绩录错")
        # 化学 (district) and 生命科学 (city) are left alone: confirmed by default at the deadline.
    with actor("s1g9c1n02") as sb:
        sb.refused(f"/me/records/{a_honour.id}/confirm", status=404, version=1)  # not theirs
    with actor("s1g7c1n01") as sc:
        sc.ok(f"/me/records/{c_course.id}/reject", version=_version(c_course), reason="不是我的成绩")
        sc.ok("/me/confirm-all")
    at("2022-03-25 10:00")
    with actor("s1_clerk") as clerk:
        corrections = clerk.get("/admin/corrections/").get_data(as_text=True)
        assert "数学应为良好" in corrections and "我没有选修这门课" in corrections
        assert "物理成绩录错" not in corrections  # the district's record is the district clerk's to correct
    assert {r.id: r.state for r in _records(c)} == {c_honour.id: "confirmed", c_course.id: "rejected",
                                                    _latest(c, "academic_exam").id: "confirmed",
                                                    case_rec.id: "final"}

    at("2022-03-28 16:00")  # confirmation closed
    with actor("s1g9c1n01") as sa_:
        sa_.refused(f"/me/records/{a_chem.id}/confirm", text="已结束", version=_version(a_chem))
    assert deadlines.auto_confirm(_cohort("g9").id) >= 2
    assert deadlines.auto_confirm(_cohort("g6_8").id) >= 0
    assert deadlines.auto_confirm(_cohort("g9").id) == 0  # exactly once
    db.session.expire_all()
    assert (a_chem.state, a_bio.state) == ("confirmed", "confirmed")
    # One history event for the whole run; each record it changed carries the run's id.
    run = db.session.execute(sa.select(deadlines.DeadlineRun).where(
        deadlines.DeadlineRun.effect == "auto_confirm", deadlines.DeadlineRun.cohort_id == _cohort("g9").id)).scalar_one()
    assert a_chem.deadline_run_id == run.id == a_bio.deadline_run_id
    auto = db.session.execute(sa.select(AuditEvent).where(AuditEvent.object_type == "DeadlineRun",
                                                          AuditEvent.object_id == str(run.id))).scalar_one()
    assert auto.before == {"state": "entered"} and auto.after["state"] == "confirmed" and auto.actor_name == "系统"
    assert auto.after["records"] == run.counts["records"]
    assert not db.session.execute(sa.select(AuditEvent.id).where(
        AuditEvent.object_type == "Record", AuditEvent.action == "auto_confirm")).first()

    # ---- clerks correct until 2022-03-29 16:00 ------------------------------------------------
    at("2022-03-29 15:59")
    with actor("s1_clerk") as clerk:
        clerk.ok(f"/admin/records/basic_course/edit/?id={a_course.id}", subject="数学", result="良好",
                 version=_version(a_course))
    with actor("district_clerk") as dclerk:
        dclerk.ok(f"/admin/records/academic_exam/edit/?id={a_physics.id}", subject="物理", result="优秀",
                  version=_version(a_physics))
    at("2022-03-29 16:00")
    with actor("s1_clerk") as clerk:
        resp = clerk.get(f"/admin/records/extended_course/edit/?id={a_ext.id}")
        assert resp.status_code == 403 and "确认不通过数据修改" in resp.get_data(as_text=True)
    assert deadlines.escalate(_cohort("g9").id) == 1
    assert deadlines.escalate(_cohort("g9").id) == 0
    assert deadlines.escalate(_cohort("g6_8").id) == 1
    db.session.expire_all()
    assert a_ext.state == "problem" and a_physics.state == "corrected" and a_course.state == "corrected"
    problem = db.session.execute(sa.select(Case).where(Case.record_id == a_ext.id)).scalar_one()
    assert (problem.flow, problem.handler_level, problem.corrector_level) == (1, "district", "school")

    with actor("s1g9c1n01") as sa_:
        page = sa_.get("/me/records").get_data(as_text=True)
        assert "已修改，修改前" in page and "优秀" in page  # the student sees what was corrected

    # ---- publication: 2022-03-30 08:00 → 2022-04-07 16:00 -------------------------------------
    at("2022-03-30 07:59")
    with actor("s1g9c1n02") as sb:
        sb.refused(f"/me/appeal/{a.id}?record={a_honour.id}", kind="error", description="级别应为校级",
                   text="公示")
    at("2022-03-30 08:00")
    with actor("s1g9c1n02") as sb:
        report = sb.get(f"/me/report/{a.id}").get_data(as_text=True)
        assert "区三好学生" in report and a.xjh not in report
        assert "机器人编程" not in report  # problem data is not published
        sb.ok(f"/me/appeal/{a.id}", record=a_honour.id, kind="error", description="称号应为校三好学生")
        sb.ok(f"/me/appeal/{a.id}", record=moral.id, kind="error", description="服务时长应为4小时")
        sb.ok(f"/me/appeal/{a.id}", record=a_course.id, kind="error", description="我觉得应该是优秀")
    with actor("s1g9c1n01") as sa_:
        sa_.ok(f"/me/appeal/{a.id}", record=a_chem.id, kind="error", description="化学应为优秀")
        sa_.ok(f"/me/appeal/{a.id}", record=a_bio.id, kind="error", description="生命科学应为优秀")
        sa_.ok(f"/me/appeal/{a.id}", kind="missing", category=_cat("sports").id, description="缺少校运动会记录")
    with actor("s2g9c1n01") as other_school:
        other_school.refused(f"/me/appeal/{a.id}", status=404, record=a_honour.id, kind="error", description="x")
    cases = {(cs.record_id, cs.kind): cs for cs in db.session.execute(
        sa.select(Case).where(Case.student_id == a.id)).scalars()}
    honour_case = cases[(a_honour.id, "error")]
    moral_case = cases[(moral.id, "error")]
    course_case = cases[(a_course.id, "error")]
    chem_case = cases[(a_chem.id, "error")]
    bio_case = cases[(a_bio.id, "error")]
    missing_case = cases[(None, "missing")]
    assert [(k.flow, k.handler_level, k.corrector_level) for k in
            (honour_case, moral_case, chem_case, bio_case, missing_case)] == [
        (2, "school", "school"), (2, "school", "student"), (3, "district", "district"), (4, "city", "city"),
        (2, "school", "school")]

    # ---- issue handling ------------------------------------------------------------------------
    at("2022-04-01 09:00")
    with actor("s1_auditor") as auditor:
        queue = auditor.get("/admin/cases/").get_data(as_text=True)
        for k in (honour_case, moral_case, course_case, missing_case):
            assert f"/cases/{k.id}\"" in queue
        for k in (chem_case, bio_case, problem):
            assert f"/cases/{k.id}\"" not in queue  # other levels' cases
        filtered = auditor.get(f"/admin/cases/?flt0_1={a.class_id}").get_data(as_text=True)
        assert f"/cases/{honour_case.id}\"" in filtered
        page = auditor.get(f"/cases/{honour_case.id}").get_data(as_text=True)
        assert "s1g9c1n02" in page and "处理中的申诉 3 件" in page  # attributable, and the filer's load shown
        auditor.ok(f"/cases/{honour_case.id}/accept", version=honour_case.version_id)
        auditor.ok(f"/cases/{moral_case.id}/accept", version=moral_case.version_id)
        auditor.ok(f"/cases/{missing_case.id}/accept", version=missing_case.version_id)
        auditor.refused(f"/cases/{course_case.id}/dismiss", status=302, version=course_case.version_id, reason="")
        auditor.ok(f"/cases/{course_case.id}/dismiss", version=course_case.version_id, reason="成绩以教务系统为准")
    with actor("district_auditor") as dauditor:
        dauditor.ok(f"/cases/{problem.id}/accept", version=problem.version_id)
        dauditor.ok(f"/cases/{chem_case.id}/accept", version=chem_case.version_id)
    with actor("city_auditor") as cauditor:
        cauditor.ok(f"/cases/{bio_case.id}/accept", version=bio_case.version_id)

    at("2022-04-02 10:00")
    with actor("s1_clerk") as clerk:
        clerk.ok(f"/cases/{honour_case.id}/correct", op="edit", **{**HONOUR, "title": "校三好学生", "level": "校级"},
                 version=_version(honour_case), reason="已核对")
        clerk.ok(f"/cases/{missing_case.id}/correct", op="create", name="校运动会", award="二等奖",
                 held_on="2021-10-15", version=_version(missing_case))
        clerk.ok(f"/cases/{problem.id}/correct", op="edit", course="机器人编程", hours="16", result="合格",
                 version=_version(problem))
        clerk.refused(f"/cases/{moral_case.id}/correct", status=404, op="edit", version=_version(moral_case))
    with actor("s1g9c1n01") as sa_:
        assert f"/cases/{moral_case.id}" in sa_.get("/me/appeals").get_data(as_text=True)
        sa_.ok(f"/cases/{moral_case.id}/correct", op="edit", activity_id=activity, role="志愿者：敬老院服务",
               hours="4", version=_version(moral_case))
    with actor("district_clerk") as dclerk:
        dclerk.ok(f"/cases/{chem_case.id}/correct", op="edit", subject="化学", result="优秀",
                  version=_version(chem_case))
    with actor("city_clerk") as cclerk:
        cclerk.ok(f"/cases/{bio_case.id}/correct", op="edit", subject="生命科学", result="优秀",
                  version=_version(bio_case))
    db.session.expire_all()
    assert a_honour.data["title"] == "区三好学生"  # the record changes only on approval
    assert moral.data["hours"] == 2 and a_chem.data["result"] == "合格"

    at("2022-04-06 10:00")
    with actor("s1_auditor") as auditor:
        auditor.ok(f"/cases/{honour_case.id}/send_back", reason="授予单位也要改", version=_version(honour_case))
    with actor("s1_clerk") as clerk:
        clerk.ok(f"/cases/{honour_case.id}/correct", op="edit",
                 **{**HONOUR, "title": "校三好学生", "level": "校级", "issuer": "宝山区第一中学"},
                 version=_version(honour_case))
    with actor("s1_auditor") as auditor:
        for k in (honour_case, moral_case, missing_case):
            auditor.ok(f"/cases/{k.id}/approve", version=_version(k))
    with actor("district_auditor") as dauditor:
        dauditor.ok(f"/cases/{problem.id}/approve", version=_version(problem))
        dauditor.ok(f"/cases/{chem_case.id}/approve", version=_version(chem_case))
    with actor("city_auditor") as cauditor:
        cauditor.ok(f"/cases/{bio_case.id}/approve", version=_version(bio_case))

    at("2022-04-07 16:00")  # publication closed: no more appeals
    with actor("s1g9c1n02") as sb:
        sb.refused(f"/me/appeal/{a.id}", kind="missing", category=_cat("sports").id, description="x", text="已结束")

    # ---- grade 7: problem data handled after grade 9's issue handling has closed ----------------
    c_problem = db.session.execute(sa.select(Case).where(Case.record_id == c_course.id)).scalar_one()
    at("2022-04-12 16:00")  # grade 9's issue handling is over, grades 6–8 go on until 2022-05-27 16:00
    with actor("district_auditor") as dauditor:
        dauditor.ok(f"/cases/{c_problem.id}/accept", version=_version(c_problem))
    at("2022-05-27 15:59")
    with actor("s1_clerk") as clerk:
        clerk.ok(f"/cases/{c_problem.id}/correct", op="edit", subject="数学", result="良好", version=_version(c_problem))
    at("2022-05-27 16:00")
    with actor("district_auditor") as dauditor:
        resp = dauditor.refused(f"/cases/{c_problem.id}/approve", version=_version(c_problem), text="问题处理")
        assert "2022-05-27 16:00" in resp.get_data(as_text=True)
        queue = dauditor.get("/admin/cases/?flt0_7=1").get_data(as_text=True)  # overdue filter
        assert f"/cases/{c_problem.id}\"" in queue and "已逾期" in queue

    # ---- the final state, record by record ------------------------------------------------------
    final_a = {(r.category.code, r.state, tuple(sorted(r.data.items()))) for r in _records(a)}
    assert final_a == {
        ("honour_title", "corrected", tuple(sorted({**HONOUR, "title": "校三好学生", "level": "校级",
                                                    "issuer": "宝山区第一中学"}.items()))),
        ("basic_course", "corrected", (("result", "良好"), ("subject", "数学"))),
        ("extended_course", "corrected", (("course", "机器人编程"), ("hours", 16), ("result", "合格"))),
        ("academic_exam", "corrected", (("result", "优秀"), ("subject", "物理"))),
        ("academic_exam", "corrected", (("result", "优秀"), ("subject", "化学"))),
        ("academic_exam", "corrected", (("result", "优秀"), ("subject", "生命科学"))),
        ("self_intro", "final", (("content", "我热爱科学，担任班级学习委员。"),)),
        ("moral_activity", "final", (("activity_id", activity), ("hours", 4), ("role", "志愿者：敬老院服务"))),
        ("sports", "corrected", (("award", "二等奖"), ("held_on", "2021-10-15"), ("name", "校运动会"))),
    }
    final_c = {(r.category.code, r.state) for r in _records(c)}
    assert final_c == {("honour_title", "confirmed"), ("basic_course", "problem"), ("academic_exam", "confirmed"),
                       ("typical_case", "final")}
    states = {k.id: k.state for k in db.session.execute(sa.select(Case).where(
        Case.student_id.in_([a.id, c.id]))).scalars()}
    assert states == {honour_case.id: "closed", moral_case.id: "closed", missing_case.id: "closed",
                      course_case.id: "dismissed", problem.id: "closed", chem_case.id: "closed",
                      bio_case.id: "closed", c_problem.id: "corrected"}
    # Every step is in the history, with who and before → after.
    events = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.object_type == "Case", AuditEvent.object_id == str(honour_case.id)).order_by(AuditEvent.id)
    ).scalars().all()
    assert [e.action for e in events] == ["file", "accept", "correct", "send_back", "correct", "approve"]
    assert events[3].reason == "授予单位也要改" and events[0].actor_name == db.session.get(User, honour_case.filed_by_id).display_name
    approval = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.object_type == "Record", AuditEvent.object_id == str(a_honour.id),
        AuditEvent.action == "approve")).scalar_one()
    assert approval.before["data"]["title"] == "区三好学生" and approval.after["data"]["title"] == "校三好学生"
    with actor("s1g9c1n01") as sa_:
        page = sa_.get(f"/history/record/{a_honour.id}").get_data(as_text=True)
        assert "确认" in page and "审核通过" in page and "校三好学生" in page
