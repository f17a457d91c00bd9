"""The Changsha profile (SPEC §8, seed 001) through its workflow: committees and their published lists, integrity
pledges, imported results and self-evaluation in the profile's own phases, teacher review, peer evaluation, the
city's quotas at the exact boundary, finalisation of a class and a school, and the published result."""
from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from conftest import category, user

from models import (
    AuditEvent,
    Committee,
    Dimension,
    PeerRating,
    Pledge,
    Quota,
    QuotaAck,
    Rating,
    RatingFinal,
    Record,
    School,
    SchoolClass,
    Student,
    db,
    evaluation,
    policy,
    workflow,
)
from models.fields import FieldErrors
from models.workflow import WorkflowError
from seed import changsha

DIMS = [d["code"] for d in changsha.DIMENSIONS]


def school(code):
    return db.session.execute(sa.select(School).where(School.code == code)).scalar_one()


def klass(code, number):
    return db.session.execute(sa.select(SchoolClass).join(School).where(School.code == code,
                                                                        SchoolClass.number == number)).scalar_one()


def students_of(k):
    return list(db.session.execute(sa.select(Student).where(Student.class_id == k.id).order_by(Student.id)).scalars())


def term_of(k):
    return policy.current_term(k.school.district_id)


def events(action):
    return db.session.execute(sa.select(sa.func.count(AuditEvent.id)).where(AuditEvent.action == action)).scalar()


def form_class_group(at, k, since=date(2015, 9, 1)):
    admin = user(f"cs_{k.school.code}_admin")
    committee = evaluation.committee_of(term_of(k), "class", klass=k)
    for j in range(1, 6):
        member = user(f"cs_{k.school.code}c{k.number}_eval{j}")
        evaluation.add_member(admin, committee, name="", kind="teacher", duty="任课教师", member=member,
                              teaching_since=since)
    return committee


def organise(at, k):
    """The class's evaluation group formed of its five evaluators and published on 2017-03-20 (before the
    organisation phase ends); the clock is left there."""
    at("2017-03-20 09:00")
    group = form_class_group(at, k)
    evaluation.publish_committee(user(f"cs_{k.school.code}_admin"), group, days=3)
    return group


def pledge_all(k, upto=5):
    term = term_of(k)
    for j in range(1, upto + 1):
        u = user(f"cs_{k.school.code}c{k.number}_eval{j}")
        evaluation.sign_pledge(u, term, u.display_name)


def set_quotas(at, s, a=30, b=50):
    at("2017-06-03 10:00")
    evaluation.set_quotas(user("cs_city"), s, {code: {"A": a, "B": b} for code in DIMS})
    at("2017-06-14 10:00")
    evaluation.acknowledge_quotas(user(f"cs_{s.code}_principal"), s)


def rate(k, levels_by_student, evaluator=1):
    """levels_by_student: list of one level per student (every dimension alike)."""
    u = user(f"cs_{k.school.code}c{k.number}_eval{evaluator}")
    entries = [(st, code, lv) for st, lv in zip(students_of(k), levels_by_student, strict=True) for code in DIMS]
    return evaluation.save_ratings(u, entries)


# ---------------------------------------------------------------------------------------------
# The profile as data


def test_the_profile_is_data_with_the_seed_timeline(cs):
    k = klass("yl01", 1)
    term = term_of(k)
    assert term.profile.code == "changsha" and term.name == "2016学年第二学期"
    cohort = term.cohort_for_grade(9)
    phases = [w.phase for w in cohort.windows]
    assert phases == [p["code"] for p in changsha.PHASES]
    w = cohort.window("teacher_evaluation")
    assert (str(w.starts_at), str(w.ends_at)) == ("2017-06-16 16:00:00+00:00", "2017-06-23 16:00:00+00:00")
    # The record workflow's generic phases map onto the profile's own.
    assert cohort.window("entry").phase == "results_import" and cohort.window("student_entry").phase == "self_peer"
    assert cohort.window("confirmation") is None
    items = db.session.execute(sa.select(sa.func.count()).select_from(sa.text("evidence_items"))).scalar()
    assert items == 23
    # Both profiles side by side: the Shanghai demo district keeps its own term and phases.
    sh = policy.current_term(school("bs01").district_id)
    assert sh.profile.code == "shanghai" and sh.cohort_for_grade(9).window("entry").phase == "entry"


def test_a_shanghai_district_has_no_changsha_work(cs, at):
    at("2022-03-01 09:00")
    with pytest.raises(WorkflowError, match="本区当前学期使用「上海市初中学生综合素质评价」"):
        evaluation.set_quotas(user("city_clerk"), school("bs01"), {"moral": {"A": 30}})


# ---------------------------------------------------------------------------------------------
# Committees


def test_class_group_rules_and_publication(cs, at):
    at("2017-03-20 09:00")  # a Monday
    k = klass("yl01", 2)
    admin = user("cs_yl01_admin")
    term = term_of(k)
    committee = evaluation.committee_of(term, "class", klass=k)
    # A teacher of less than a year is refused, by name and date.
    with pytest.raises(FieldErrors) as err:
        evaluation.add_member(admin, committee, name="", kind="teacher", member=user("cs_yl01c2_eval1"),
                              teaching_since=date(2016, 9, 1))
    assert "自2016-09-01起任教本班，不满1年" in str(err.value.errors)
    # Somebody without the class's evaluator account cannot sit on its group.
    with pytest.raises(FieldErrors, match="班级评价小组成员"):
        evaluation.add_member(admin, committee, name="", kind="teacher", member=user("cs_yl01c1_eval1"),
                              teaching_since=date(2015, 9, 1))
    assert db.session.execute(sa.select(sa.func.count(Committee.id))).scalar() == 0  # nothing half-saved
    committee = form_class_group(at, k)
    with pytest.raises(WorkflowError, match="已有5位成员"):
        evaluation.add_member(admin, committee, name="", kind="teacher", member=user("cs_yl01c2_teacher"),
                              teaching_since=date(2015, 9, 1))
    for days in (2, 6):
        with pytest.raises(FieldErrors, match="3至5个工作日"):
            evaluation.publish_committee(admin, committee, days=days)
    evaluation.publish_committee(admin, committee, days=4)
    assert (committee.published_from, committee.published_until) == (date(2017, 3, 20), date(2017, 3, 23))
    assert evaluation.on_public_display(committee)
    at("2017-03-24 09:00")
    assert not evaluation.on_public_display(committee)
    with pytest.raises(WorkflowError, match="名单已公示"):
        evaluation.remove_member(admin, committee.members[0])
    assert events("publish") == 1 and events("edit") >= 5


def test_publication_counts_working_days_over_a_weekend(cs, at):
    assert evaluation.working_days_end(date(2017, 3, 24), 3) == date(2017, 3, 28)  # Fri, Mon, Tue
    assert evaluation.working_days_end(date(2017, 3, 25), 5) == date(2017, 3, 31)  # Saturday: from Monday
    assert evaluation.working_days_end(date(2017, 3, 27), 5) == date(2017, 3, 31)


def test_school_committee_needs_principal_grade_leader_and_two_elected_parents(cs, at):
    at("2017-03-20 09:00")
    s = school("yl01")
    principal = user("cs_yl01_principal")
    committee = evaluation.committee_of(term_of(klass("yl01", 1)), "school", school=s)
    evaluation.add_member(principal, committee, name="", kind="principal", duty="主任", member=principal)
    evaluation.add_member(principal, committee, name="刘老师", kind="grade_leader", duty="初三年级组长")
    with pytest.raises(FieldErrors, match="选举日期"):
        evaluation.add_member(principal, committee, name="王家长", kind="parent_rep")
    evaluation.add_member(principal, committee, name="王家长", kind="parent_rep", elected_on=date(2017, 3, 15))
    with pytest.raises(WorkflowError, match="家长代表2名（现有1名）"):
        evaluation.publish_committee(principal, committee, days=3)
    evaluation.add_member(principal, committee, name="陈家长", kind="parent_rep", elected_on=date(2017, 3, 15))
    with pytest.raises(WorkflowError, match="家长代表为2名，已满"):
        evaluation.add_member(principal, committee, name="赵家长", kind="parent_rep", elected_on=date(2017, 3, 15))
    with pytest.raises(FieldErrors, match="成员类别"):
        evaluation.add_member(principal, committee, name="某局长", kind="official")
    evaluation.publish_committee(principal, committee, days=5)
    assert committee.published_until == date(2017, 3, 24)
    # Another school's admin cannot touch this committee; nor can anyone after the organisation phase.
    with pytest.raises(policy.Denied):
        evaluation.add_member(user("cs_yl02_admin"), evaluation.committee_of(term_of(klass("yl01", 1)), "class",
                                                                               klass=klass("yl01", 1)),
                              name="", kind="teacher", member=user("cs_yl01c1_eval1"), teaching_since=date(2015, 9, 1))
    at("2017-04-05 09:00")
    district = evaluation.committee_of(term_of(klass("yl01", 1)), "district", district=s.district)
    with pytest.raises(policy.Denied, match="机构设立与整章建制"):
        evaluation.add_member(user("cs_admin"), district, name="区教育局副局长", kind="official")


# ---------------------------------------------------------------------------------------------
# Pledges gate review and rating


def test_no_review_or_rating_before_the_pledge(cs, at):
    k = klass("yl01", 2)
    term = term_of(k)
    organise(at, k)
    at("2017-04-02 10:00")
    ev = user("cs_yl01c2_eval1")
    with pytest.raises(FieldErrors, match="请输入您的姓名"):
        evaluation.sign_pledge(ev, term, "别人")
    with pytest.raises(policy.Denied, match="只有参与评价的人员"):
        evaluation.sign_pledge(user("cs_yl01c2n01"), term, user("cs_yl01c2n01").display_name)
    at("2017-05-15 10:00")
    st = students_of(k)[0]
    with pytest.raises(policy.Denied, match="请先签署诚信承诺书"):
        evaluation.review_materials(ev, st, authentic=True, complete=True)
    pledge = evaluation.sign_pledge(ev, term, f"  {ev.display_name} ")
    assert len(pledge.text_sha256) == 64 and pledge.signed_name == ev.display_name
    with pytest.raises(WorkflowError, match="已签署"):
        evaluation.sign_pledge(ev, term, ev.display_name)
    review = evaluation.review_materials(ev, st, authentic=True, complete=False, note="缺少志愿服务记录")
    assert (review.authentic, review.complete) == (True, False)
    with pytest.raises(FieldErrors, match="请写明问题"):
        evaluation.review_materials(ev, st, authentic=False, complete=True)
    # The homeroom teacher is not on the class evaluation group.
    with pytest.raises(policy.Denied):
        evaluation.review_materials(user("cs_yl01c2_teacher"), st, authentic=True, complete=True)
    # Another class's evaluator: not theirs.
    with pytest.raises(policy.Denied):
        evaluation.review_materials(user("cs_yl01c1_eval1"), st, authentic=True, complete=True)
    # The evaluator role and a pledge are not enough: (1)班 has no published evaluation group, so its own
    # evaluators review nothing yet.
    other = user("cs_yl01c1_eval1")
    evaluation.sign_pledge(other, term, other.display_name)
    with pytest.raises(policy.Denied, match="只有九年级\\(1\\)班班级评价小组（名单已公示）的成员"):
        evaluation.review_materials(other, students_of(klass("yl01", 1))[0], authentic=True, complete=True)
    assert db.session.execute(sa.select(sa.func.count(Pledge.id))).scalar() == 2
    assert events("sign_pledge") == 2 and events("review_materials") == 1


# ---------------------------------------------------------------------------------------------
# Quotas at the exact boundary


def test_quota_refusals_at_the_exact_boundary_of_a_class_of_43(cs, at):
    k = klass("yl01", 1)
    assert len(students_of(k)) == 43
    assert evaluation.quota_cap(30, 43) == 12 and evaluation.quota_cap(50, 43) == 21
    organise(at, k)
    set_quotas(at, k.school)
    at("2017-06-17 09:00")
    pledge_all(k)
    # 13 at A is one more than 30 % of 43 allows.
    rate(k, ["A"] * 13 + ["B"] * 21 + ["C"] * 9)
    lines = {(line.dimension.code, line.level): line for line in evaluation.distribution(term_of(k), k.school_id, k.id)}
    assert (lines[("moral", "A")].count, lines[("moral", "A")].cap, lines[("moral", "A")].exceeded) == (13, 12, True)
    assert (lines[("moral", "B")].count, lines[("moral", "B")].cap, lines[("moral", "B")].exceeded) == (21, 21, False)
    assert lines[("moral", "C")].cap is None and not lines[("moral", "C")].exceeded
    with pytest.raises(WorkflowError) as err:
        evaluation.finalise_class(user("cs_yl01c1_eval2"), k)
    assert "「道德品质」A等：13人，超过插标上限12人（30%×43人）" in err.value.message
    assert db.session.execute(sa.select(sa.func.count(RatingFinal.id))).scalar() == 0
    # B one over its cap (22 > 21) is refused too.
    rate(k, ["A"] * 12 + ["B"] * 22 + ["C"] * 9)
    with pytest.raises(WorkflowError, match="B等：22人，超过插标上限21人"):
        evaluation.finalise_class(user("cs_yl01c1_eval2"), k)
    # Exactly at both caps: finalised.
    rate(k, ["A"] * 12 + ["B"] * 21 + ["C"] * 10)
    final = evaluation.finalise_class(user("cs_yl01c1_eval2"), k)
    assert final.class_id == k.id
    with pytest.raises(WorkflowError, match="已定稿"):
        rate(k, ["A"] * 12 + ["B"] * 21 + ["C"] * 10)


def test_finalising_needs_every_student_rated_and_the_quotas_checked(cs, at):
    k = klass("yl01", 2)
    organise(at, k)
    at("2017-06-03 10:00")
    evaluation.set_quotas(user("cs_city"), k.school, {code: {"A": 30} for code in DIMS})
    # Quotas outside the city's window, from a school, or out of range: refused.
    with pytest.raises(FieldErrors, match="0至100"):
        evaluation.set_quotas(user("cs_city"), k.school, {"moral": {"A": 130}})
    with pytest.raises(FieldErrors, match="等级只能是"):
        evaluation.set_quotas(user("cs_city"), k.school, {"moral": {"E": 10}})
    with pytest.raises(policy.Denied):
        evaluation.set_quotas(user("cs_yl01_principal"), k.school, {"moral": {"A": 90}})
    at("2017-06-10 10:00")
    with pytest.raises(policy.Denied, match="市评价小组维度插标"):
        evaluation.set_quotas(user("cs_city"), k.school, {"moral": {"A": 40}})
    at("2017-06-17 09:00")
    pledge_all(k)
    with pytest.raises(WorkflowError, match="尚未接收并复核插标比例"):
        rate(k, ["B"] * 6)
    at("2017-06-15 09:00")
    evaluation.acknowledge_quotas(user("cs_yl01_principal"), k.school)
    with pytest.raises(WorkflowError, match="已复核"):
        evaluation.acknowledge_quotas(user("cs_yl01_admin"), k.school)
    at("2017-06-17 09:00")
    ev = user("cs_yl01c2_eval1")
    evaluation.save_ratings(ev, [(st, "moral", "B") for st in students_of(k)])
    with pytest.raises(WorkflowError, match=f"还有{6 * 6 - 6}项评价未完成"):
        evaluation.finalise_class(ev, k)
    with pytest.raises(FieldErrors, match="等级只能是"):
        evaluation.save_ratings(ev, [(students_of(k)[0], "moral", "E")])
    # The school cannot be finalised while a class is open.
    with pytest.raises(WorkflowError, match="以下班级尚未定稿"):
        evaluation.finalise_school(user("cs_yl01_principal"), k.school)
    at("2017-06-24 09:00")
    with pytest.raises(policy.Denied, match="教师评价"):
        rate(k, ["B"] * 6)


# ---------------------------------------------------------------------------------------------
# Peer evaluation


def test_peer_evaluation_excludes_self_and_other_classes(cs, at):
    k = klass("yl01", 2)
    mates = students_of(k)
    me = mates[0]
    me_user = user("cs_yl01c2n01")
    other_class = students_of(klass("yl01", 1))[0]
    other_school = students_of(klass("yl02", 1))[0]
    at("2017-05-15 10:00")
    term = term_of(k)
    assert [s.id for s in evaluation.classmates(me)] == [s.id for s in mates[1:]]
    for bad, why in (({me.id: {"moral": "A"}}, "不能评价自己"),
                     ({other_class.id: {"moral": "A"}}, "只能评价本班同学"),
                     ({other_school.id: {"moral": "A"}}, "只能评价本班同学")):
        with pytest.raises(FieldErrors) as err:
            evaluation.save_peer_ratings(me_user, me, {mates[1].id: {"moral": "B"}, **bad})
        assert why in str(err.value.errors)
    assert db.session.execute(sa.select(sa.func.count(PeerRating.id))).scalar() == 0  # all or nothing
    # Rating for someone else (a classmate's sheet) or as a parent: refused.
    with pytest.raises(policy.Denied):
        evaluation.save_peer_ratings(me_user, mates[1], {mates[2].id: {"moral": "B"}})
    with pytest.raises(policy.Denied):
        evaluation.save_peer_ratings(user("p_cs_yl01c2n01"), me, {mates[1].id: {"moral": "B"}})
    sheet = {m.id: {code: "B" for code in DIMS} for m in mates[1:]}
    sheet[mates[1].id]["moral"] = "A"
    assert evaluation.save_peer_ratings(me_user, me, sheet) == 5 * 6
    assert evaluation.peer_progress(me, term) == (30, 30)
    evaluation.save_peer_ratings(user("cs_yl01c2n02"), mates[1], {mates[0].id: {"moral": "C"}})
    summary = evaluation.peer_summary(term, k.id)
    moral = db.session.execute(sa.select(Dimension.id).where(Dimension.code == "moral",
                                                             Dimension.profile_id == term.profile_id)).scalar()
    assert summary[mates[1].id][moral] == {"A": 1} and summary[mates[0].id][moral] == {"C": 1}
    assert mates[0].id not in [r.ratee_id for r in db.session.execute(
        sa.select(PeerRating).where(PeerRating.rater_id == me.id)).scalars()]
    at("2017-05-24 00:00")
    with pytest.raises(policy.Denied, match="学生自评、教师审核、学生互评"):
        evaluation.save_peer_ratings(me_user, me, sheet)


# ---------------------------------------------------------------------------------------------
# The whole cycle on the seed's dates


def test_the_changsha_cycle_on_the_seed_dates(cs, at, app, data_app, tmp_path, monkeypatch):
    from test_evidence import minimal_pdf, png

    from models import EvidenceItem, evidence

    for a in (app, data_app):
        monkeypatch.setitem(a.config, "CQE_EVIDENCE_DIR", str(tmp_path / "evidence"))
    s = school("yl02")
    k = klass("yl02", 1)
    pupils = students_of(k)
    term = term_of(k)
    # 4月2日前: the school's committee and the class group formed and published.
    at("2017-03-27 09:00")
    principal = user("cs_yl02_principal")
    committee = evaluation.committee_of(term, "school", school=s)
    evaluation.add_member(principal, committee, name="", kind="principal", member=principal)
    evaluation.add_member(principal, committee, name="黄组长", kind="grade_leader")
    for name in ("家长甲", "家长乙"):
        evaluation.add_member(principal, committee, name=name, kind="parent_rep", elected_on=date(2017, 3, 24))
    evaluation.publish_committee(principal, committee, days=3)
    group = form_class_group(at, k)
    evaluation.publish_committee(user("cs_yl02_admin"), group, days=5)
    # 4月2日: training and pledges.
    at("2017-04-02 14:00")
    pledge_all(k)
    # 4月3日—5月20日: the evidence portfolio; the first student completes every item, the others one.
    at("2017-04-10 19:00")
    items = db.session.execute(sa.select(EvidenceItem).where(EvidenceItem.profile_id == term.profile_id)
                               .order_by(EvidenceItem.position)).scalars().all()
    assert len(items) == 23
    first = user("cs_yl02c1n01")
    seed = 0
    for item in items:
        for _n in range(item.min_files):
            seed += 1
            if item.formats == ["pdf"]:
                evidence.save_evidence(first, pupils[0], item, f"{item.code}.pdf", minimal_pdf(f"{item.code}-{seed}"))
            else:
                evidence.save_evidence(first, pupils[0], item, f"{item.code}.png", png(seed))
    for j, st in enumerate(pupils[1:], start=2):
        evidence.save_evidence(user(f"cs_yl02c1n{j:02d}"), st, items[0], "e01.png", png(1000 + j))
    tally = evidence.completeness(Student.class_id, [Student.class_id == k.id], term)[k.id]
    assert (tally.students, tally.complete) == (5, 1)
    chase = evidence.chasing_list(k, term)
    assert [c.student.id for c in chase] == [p.id for p in pupils[1:]]
    assert all(len(c.missing) == 22 for c in chase)
    # 4月24日起: results imported by the school clerk, in the profile's results_import phase.
    clerk = user("cs_yl02_clerk")
    at("2017-04-20 10:00")
    with pytest.raises(policy.Denied, match="考查成绩与数据导入"):
        workflow.create_record(clerk, category("cs_oral_chinese"), pupils[0], {"level": "A"})
    at("2017-04-25 10:00")
    for st in pupils:
        workflow.create_record(clerk, category("cs_oral_english"), st, {"level": "B"})
    # 5月24日前: self-evaluation, teacher review, peer evaluation.
    at("2017-05-15 19:00")
    workflow.create_record(user("cs_yl02c1n01"), category("cs_self_evaluation"), pupils[0],
                           {"text": "三年来我积极参加志愿服务。"})
    for j, st in enumerate(pupils, start=1):
        evaluation.save_peer_ratings(user(f"cs_yl02c1n{j:02d}"), st,
                                     {m.id: {code: "B" for code in DIMS} for m in evaluation.classmates(st)})
        evaluation.review_materials(user("cs_yl02c1_eval1"), st, authentic=True, complete=True)
    # 6月1—7日 quotas set; 6月14日 received and checked; 6月17—23日 teacher evaluation.
    set_quotas(at, s, a=20, b=40)  # 5 students: at most 1 A and 2 B
    at("2017-06-19 09:00")
    rate(k, ["A", "B", "B", "C", "C"], evaluator=3)
    evaluation.finalise_class(user("cs_yl02c1_eval4"), k)
    with pytest.raises(policy.Denied):
        evaluation.finalise_school(user("cs_yl02c1_eval4"), s)
    evaluation.finalise_school(principal, s)
    # 7月3日: the result, and not a day before.
    at("2017-07-02 23:59")
    assert evaluation.published_result(pupils[0]) is None
    at("2017-07-03 00:00")
    result = evaluation.published_result(pupils[0])
    assert result == {d["name"]: "A" for d in changsha.DIMENSIONS}
    assert evaluation.published_result(pupils[4]) == {d["name"]: "C" for d in changsha.DIMENSIONS}
    # Everything is in the history, under the right school.
    counts = dict(db.session.execute(sa.select(AuditEvent.action, sa.func.count(AuditEvent.id))
                                     .where(AuditEvent.school_id == s.id).group_by(AuditEvent.action)).all())
    files = db.session.execute(sa.select(sa.func.count(AuditEvent.id)).where(
        AuditEvent.school_id == s.id, AuditEvent.object_type == "EvidenceFile")).scalar()
    assert files == sum(i.min_files for i in items) + 4
    assert counts["rate"] == 5 * 6 and counts["finalise_class"] == 1 and counts["finalise_school"] == 1
    assert counts["peer_rate"] == 5 * 4 * 6 and counts["review_materials"] == 5
    assert db.session.execute(sa.select(sa.func.count(Record.id)).where(Record.school_id == s.id)).scalar() == 6
    assert db.session.execute(sa.select(sa.func.count(Quota.id)).where(Quota.school_id == s.id)).scalar() == 12
    assert db.session.execute(sa.select(sa.func.count(QuotaAck.id))).scalar() == 1
    assert db.session.execute(sa.select(sa.func.count(Rating.id))).scalar() == 30
