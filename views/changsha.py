"""Pages of the Changsha profile (SPEC §8): the integrity pledge, the students' peer evaluation sheet, the class
evaluation group's rating sheet with the running distribution against the quota, the school's quota check and
finalisation, and the city's quota form. Thin: every decision is models/policy.py's, every change
models/evaluation.py's."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_login import current_user, login_required
from flask_wtf import FlaskForm

from models import evaluation as ev
from models import policy
from models.accounts import RoleGrant, User
from models.base import db
from models.changsha import KINDS_OF_LEVEL, MEMBER_KINDS, Committee, Quota, QuotaAck, Rating, RatingFinal
from models.clock import now
from models.fields import FieldErrors
from models.org import District, School, SchoolClass, Student
from models.workflow import WorkflowError
from views.actions import perform, render_page

bp = Blueprint("changsha", __name__, url_prefix="/cs")


class PostForm(FlaskForm):
    pass


def _term_for(district_id: int):
    try:
        return ev.changsha_term(district_id)
    except WorkflowError as exc:
        abort(404, description=exc.message)


def _levels(term) -> list[dict]:
    return ev.rules(term).get("levels", [])


def _decision(action: str, obj) -> policy.Decision:
    return policy.check(current_user, action, obj, now())


# ---------------------------------------------------------------------------------------------
# 诚信承诺书


def _evaluator_district() -> int:
    for g in current_user.grants:
        if g.role == "class_evaluator" and g.school_class is not None:
            return g.school_class.school.district_id
        if g.role == "school_committee" and g.school is not None:
            return g.school.district_id
        if g.role == "district_leading_group" and g.district_id is not None:
            return g.district_id
    abort(403, description="只有参与评价的人员（评价小组、评价委员会、领导小组成员）需要签署诚信承诺书。")


@bp.route("/pledge", methods=["GET", "POST"])
@login_required
def pledge():
    term = _term_for(_evaluator_district())
    form = PostForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        if perform(lambda: ev.sign_pledge(current_user, term, request.form.get("signed_name", "")),
                   _("已签署诚信承诺书。")):
            return redirect(url_for(".pledge"))
    from models.changsha import Pledge

    signed = db.session.execute(sa.select(Pledge).where(Pledge.term_id == term.id,
                                                         Pledge.user_id == current_user.id)).scalar_one_or_none()
    return render_page("cqe/changsha/pledge.html", term=term, text=ev.pledge_text(term), signed=signed,
                           form=form, page_title=_("诚信承诺书"))


# ---------------------------------------------------------------------------------------------
# 学生互评: every classmate but oneself, on every dimension, in one screen


def _own_student() -> Student:
    for g in current_user.grants:
        if g.role == "student" and g.student is not None:
            return g.student
    abort(403, description="学生互评只能由学生本人进行。")


@bp.route("/peer", methods=["GET", "POST"])
@login_required
def peer():
    me = _own_student()
    term = _term_for(me.school.district_id)
    dims = ev.dimensions(term)
    mates = ev.classmates(me)
    form = PostForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        table: dict[int, dict[str, str]] = {}
        for key, value in request.form.items():
            parts = key.split("-")
            if len(parts) != 3 or parts[0] != "r" or not value:
                continue
            try:
                ratee = int(parts[1])
            except ValueError:
                abort(400)
            table.setdefault(ratee, {})[parts[2]] = value
        if not table:
            from flask import flash

            flash(_("请至少为一位同学选择等级。"), "warning")
        elif perform(lambda: ev.save_peer_ratings(current_user, me, table), _("互评已保存。")):
            return redirect(url_for(".peer"))
    from models.changsha import PeerRating

    given = {(p.ratee_id, p.dimension_id): p.level for p in db.session.execute(
        sa.select(PeerRating).where(PeerRating.term_id == term.id, PeerRating.rater_id == me.id)).scalars()}
    decision = _decision("peer_rate", PeerRating(term=term, rater=me, class_id=me.class_id, school_id=me.school_id))
    done, due = ev.peer_progress(me, term)
    return render_page("cqe/changsha/peer.html", me=me, mates=mates, dims=dims, levels=_levels(term),
                           given=given, open=bool(decision), reason=decision.reason, done=done, due=due,
                           form=form, page_title=_("学生互评"))


# ---------------------------------------------------------------------------------------------
# 评价结果: the signed-in student's (or parent's child's) published result


@bp.route("/result")
@login_required
def result():
    """The six dimension levels once published (the school finalised and its results day begun, as for the public
    lookup by exam number); before, when they will be."""
    from views.family import family_student

    student, role = family_student()
    term = _term_for(student.school.district_id)
    if not policy.report_visible(current_user, student):
        abort(404, description="学生不存在或不在您的查看范围内。")
    cohort = term.cohort_for_grade(student.school_class.grade)
    window = cohort.window("results") if cohort is not None else None
    published = ev.published_result(student) if student.participates else None
    names = {lv["code"]: lv.get("name", lv["code"]) for lv in _levels(term)}
    return render_page("cqe/changsha/result.html", student=student, role=role, term=term, window=window,
                       levels=list(published.items()) if published else None, level_names=names,
                       page_title=_("评价结果"))


# ---------------------------------------------------------------------------------------------
# 举报申诉: students and parents file; the school's committee (or the district's leading group) answers

HANDLERS = ("school_committee", "district_leading_group", "principal", "district_admin")


def _complaint_names() -> dict:
    from models.changsha import COMPLAINT_ABOUT, COMPLAINT_ABOUT_EN, COMPLAINT_STATES, COMPLAINT_STATES_EN
    from views.i18n import pick

    return {"about": {k: pick(v, COMPLAINT_ABOUT_EN[k]) for k, v in COMPLAINT_ABOUT.items()},
            "states": {k: pick(v, COMPLAINT_STATES_EN[k]) for k, v in COMPLAINT_STATES.items()}}


@bp.route("/complaints", methods=["GET", "POST"])
@login_required
def complaints():
    """The family's own complaints and the form to file one; for the handlers, every complaint of their place."""
    from models.changsha import COMPLAINT_STATES, OPEN_COMPLAINT_STATES, Complaint

    if not policy.can(current_user, "view", Complaint):
        abort(403, description="您的角色不能查看举报申诉。")
    form = PostForm()
    family = current_user.has_role("student", "parent")
    student = decision = None
    if family:
        from views.family import family_student

        student, _role = family_student()
        term = _term_for(student.school.district_id)
        probe = Complaint(term=term, student=student, school_id=student.school_id, class_id=student.class_id,
                          district_id=student.school.district_id, state="open")
        decision = _decision("complain", probe)
        if request.method == "POST":
            if not form.validate_on_submit():
                abort(400)
            if perform(lambda: ev.file_complaint(current_user, student, about=request.form.get("about", ""),
                                                 description=request.form.get("description", "")),
                       _("举报申诉已提交，学校评价委员会将在期限内答复。")):
                return redirect(url_for(".complaints"))
    elif request.method == "POST":
        abort(403, description="举报申诉由学生或家长提交。")
    state = request.args.get("state", "")
    query = sa.select(Complaint).where(policy.scope(current_user, Complaint))
    if state == "open":
        query = query.where(Complaint.state.in_(OPEN_COMPLAINT_STATES))
    elif state in COMPLAINT_STATES:
        query = query.where(Complaint.state == state)
    rows = db.session.execute(query.order_by(Complaint.id.desc()).limit(500)).scalars().all()
    return render_page("cqe/changsha/complaints.html", rows=rows, family=family, student=student, form=form,
                       decision=decision, names=_complaint_names(), state=state,
                       values=request.form if request.method == "POST" else {}, now=now(),
                       page_title=_("举报申诉"))


def _complaint(complaint_id: int):
    from models.changsha import Complaint

    complaint = policy.get_scoped(current_user, Complaint, complaint_id)
    if complaint is None:
        abort(404, description="该举报申诉不存在或不在您的查看范围内。")
    return complaint


@bp.route("/complaint/<int:complaint_id>")
@login_required
def complaint(complaint_id: int):
    item = _complaint(complaint_id)
    actions = [a for a in ev.COMPLAINT_TRANSITIONS if item.state in ev.COMPLAINT_TRANSITIONS[a][0]
               and _decision(a, item)]
    return render_page("cqe/changsha/complaint.html", c=item, actions=actions, form=PostForm(), now=now(),
                       names=_complaint_names(),
                       page_title=_("举报申诉"))


@bp.route("/complaint/<int:complaint_id>/<action>", methods=["POST"])
@login_required
def complaint_act(complaint_id: int, action: str):
    item = _complaint(complaint_id)
    if action not in ev.COMPLAINT_TRANSITIONS:
        abort(404)
    if not PostForm().validate_on_submit():
        abort(400)
    done = {"accept": _("已受理。"), "answer": _("已答复，举报申诉办结。"), "dismiss": _("已答复不予受理。")}[action]
    perform(lambda: ev.complaint_action(current_user, item, action, reason=request.form.get("reason", ""),
                                        expected_version=request.form.get("version")), done)
    return redirect(url_for(".complaint", complaint_id=complaint_id))


# ---------------------------------------------------------------------------------------------
# 教师评价: the class evaluation group's sheet, the running distribution, finalising the class


def _class(class_id: int) -> SchoolClass:
    klass = policy.get_scoped(current_user, SchoolClass, class_id)
    if klass is None:
        abort(404, description="班级不存在或不在您的权限范围内。")
    if not policy.can(current_user, "view", Rating):
        abort(403, description="您的角色不能查看教师评价。")
    return klass


@bp.route("/rate")
@login_required
def rate_index():
    classes = [g.school_class for g in current_user.grants if g.role == "class_evaluator" and g.school_class]
    if not classes:
        abort(403, description="只有班级评价小组成员进行教师评价。")
    return redirect(url_for(".rate", class_id=classes[0].id))


@bp.route("/rate/<int:class_id>", methods=["GET", "POST"])
@login_required
def rate(class_id: int):
    klass = _class(class_id)
    term = _term_for(klass.school.district_id)
    dims = ev.dimensions(term)
    students = ev.participants([klass.id])
    form = PostForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        if request.form.get("action") == "finalise":
            if perform(lambda: ev.finalise_class(current_user, klass), _("本班评价已定稿。")):
                return redirect(url_for(".rate", class_id=klass.id))
        else:
            by_id = {s.id: s for s in students}
            codes = {d.code for d in dims}
            entries = []
            for key, value in request.form.items():
                parts = key.split("-")
                if len(parts) != 3 or parts[0] != "r" or not value:
                    continue
                if not parts[1].isdigit() or int(parts[1]) not in by_id or parts[2] not in codes:
                    abort(404, description="学生不在本班。")
                entries.append((by_id[int(parts[1])], parts[2], value))
            if perform(lambda: ev.save_ratings(current_user, entries), _("评价已保存。")):
                return redirect(url_for(".rate", class_id=klass.id))
    ratings = {(r.student_id, r.dimension_id): r.level for r in db.session.execute(
        sa.select(Rating).where(Rating.term_id == term.id, Rating.class_id == klass.id)).scalars()}
    probe = Rating(term=term, student=students[0], school_id=klass.school_id, class_id=klass.id) if students else None
    decision = _decision("rate", probe) if probe is not None else policy.Decision(False, "本班没有参与评价的学生。")
    member = ev.is_group_member(current_user, term, klass.id)
    final = db.session.execute(sa.select(RatingFinal).where(
        RatingFinal.term_id == term.id, RatingFinal.class_id == klass.id)).scalar_one_or_none()
    peers = ev.peer_summary(term, klass.id)
    return render_page(
        "cqe/changsha/rate.html", klass=klass, term=term, dims=dims, students=students, levels=_levels(term),
        ratings=ratings, lines=ev.distribution(term, klass.school_id, klass.id), open=bool(decision) and not final,
        reason=decision.reason, pledged=ev.has_pledged(current_user, term), member=member, final=final, peers=peers,
        acknowledged=ev.quotas_acknowledged(term, klass.school_id), missing=ev.missing_ratings(term, [klass.id]),
        form=form, page_title=_("教师评价 · %(klass)s", klass=str(klass)))


# ---------------------------------------------------------------------------------------------
# The school: quotas received and checked, the distribution, the classes, finalising the school


def _school(school_id: int) -> School:
    school = policy.get_scoped(current_user, School, school_id)
    if school is None:
        abort(404, description="学校不存在或不在您的权限范围内。")
    if not policy.can(current_user, "view", Quota):
        abort(403, description="您的角色不能查看插标比例。")
    return school


@bp.route("/school/<int:school_id>", methods=["GET", "POST"])
@login_required
def school(school_id: int):
    school = _school(school_id)
    term = _term_for(school.district_id)
    form = PostForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        action = request.form.get("action")
        if action == "acknowledge":
            done = perform(lambda: ev.acknowledge_quotas(current_user, school), _("已接收并复核插标比例。"))
        elif action == "finalise":
            done = perform(lambda: ev.finalise_school(current_user, school), _("全校评价已定稿。"))
        else:
            abort(400)
        if done:
            return redirect(url_for(".school", school_id=school.id))
    classes = db.session.execute(sa.select(SchoolClass).where(
        SchoolClass.school_id == school.id, SchoolClass.grade.in_(ev._graduating_grades(term)))
        .order_by(SchoolClass.grade, SchoolClass.number)).scalars().all()
    finals = {f.class_id: f for f in db.session.execute(sa.select(RatingFinal).where(
        RatingFinal.term_id == term.id, RatingFinal.school_id == school.id)).scalars()}
    rows = [{"klass": c, "students": len(ev.participants([c.id])), "missing": ev.missing_ratings(term, [c.id]),
             "final": finals.get(c.id)} for c in classes]
    ack = db.session.execute(sa.select(QuotaAck).where(QuotaAck.term_id == term.id,
                                                       QuotaAck.school_id == school.id)).scalar_one_or_none()
    can_ack = _decision("create", QuotaAck(term=term, term_id=term.id, school=school, school_id=school.id))
    can_final = _decision("finalise_school", RatingFinal(term=term, term_id=term.id, school=school,
                                                         school_id=school.id))
    return render_page("cqe/changsha/school.html", school=school, term=term, rows=rows, ack=ack,
                           lines=ev.distribution(term, school.id), quotas=ev.quotas_of(term, school.id),
                           final=finals.get(None), can_ack=can_ack, can_final=can_final, levels=_levels(term),
                           form=form, page_title=_("评价定稿与插标 · %(school)s", school=school.name))


# ---------------------------------------------------------------------------------------------
# 维度插标: the city sets a school's quotas


@bp.route("/quotas/<int:school_id>", methods=["GET", "POST"])
@login_required
def quotas(school_id: int):
    school = _school(school_id)
    term = _term_for(school.district_id)
    dims = ev.dimensions(term)
    levels = _levels(term)
    form = PostForm()
    decision = _decision("edit", Quota(term=term, school=school, school_id=school.id))
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        table: dict[str, dict[str, int]] = {}
        bad = []
        for d in dims:
            for lv in levels:
                raw = (request.form.get(f"q-{d.code}-{lv['code']}") or "").strip()
                if raw == "":
                    continue
                try:
                    table.setdefault(d.code, {})[lv["code"]] = int(raw)
                except ValueError:
                    bad.append(f"{d.name} {lv['code']}")
        if bad:
            from flask import flash

            flash(_("比例须为0至100的整数（%%）：%(cells)s", cells="、".join(bad)), "error")
        elif perform(lambda: ev.set_quotas(current_user, school, table), _("插标比例已保存。")):
            return redirect(url_for(".quotas", school_id=school.id))
    return render_page("cqe/changsha/quotas.html", school=school, term=term, dims=dims, levels=levels,
                           quotas=ev.quotas_of(term, school.id), open=bool(decision), reason=decision.reason,
                           form=form, page_title=_("维度插标 · %(school)s", school=school.name))


# ---------------------------------------------------------------------------------------------
# 长沙评价工作台: one menu entry that leads each role of a Changsha district to its pages


class ChangshaDeskView(BaseView):
    """The Changsha profile's work for the signed-in user, by role: visible only to users whose district runs
    the Changsha profile this term."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated and ev.PROFILE in policy.profile_codes(current_user)

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(404, description="本区当前学期不使用长沙方案。")

    @expose("/")
    def index(self):
        links: list[tuple[str, str, str]] = []  # (url, title, what it is for)
        roles = {g.role for g in current_user.grants}
        links.append((url_for("changsha.committees"), _("评价组织与成员公示"),
                      _("区评价领导小组、学校评价委员会、班级评价小组的成员名单及公示。")))
        if roles & {"class_evaluator", "school_committee", "district_leading_group"}:
            links.append((url_for("changsha.pledge"), _("诚信承诺书"), _("参与评价的人员须先签署，才能审核材料和评价学生。")))
        for g in current_user.grants:
            if g.role == "class_evaluator" and g.school_class is not None:
                links.append((url_for("changsha.rate", class_id=g.class_id), _("教师评价 · %(klass)s", klass=str(g.school_class)),
                              _("按插标比例为每位学生评定各维度等级，完成后定稿。")))
        if policy.can(current_user, "track_evidence", SchoolClass) or policy.can(current_user, "track_evidence", School):
            links.append((url_for("evidence.index"), _("实证材料完成情况"), _("各班、各学生实证材料的完成情况和催交清单。")))
        if roles & {"student", "parent"}:
            links.append((url_for("evidence.me"), _("我的实证材料") if "student" in roles else _("孩子的实证材料"),
                          _("23 项实证材料的上传、完成情况和班级评价小组的审核意见。")))
            links.append((url_for("changsha.result"), _("评价结果"), _("学校定稿后，自公布之日起查看各维度的评价等级。")))
            links.append((url_for("changsha.complaints"), _("举报申诉"), _("对评价工作有异议或发现问题，向学校评价委员会反映。")))
        elif roles & set(HANDLERS):
            links.append((url_for("changsha.complaints", state="open"), _("举报申诉处理"),
                          _("学生和家长反映的问题：受理、答复或说明不予受理的理由。")))
        if "student" in roles:
            links.append((url_for("changsha.peer"), _("学生互评"), _("为本班每位同学（不含自己）评定各维度等级。")))
        schools = db.session.execute(sa.select(School).where(policy.scope(current_user, School))
                                     .order_by(School.code).limit(200)).scalars().all() \
            if policy.can(current_user, "view", Quota) else []
        for s in schools:
            term = policy.current_term(s.district_id)
            if term is None or term.profile.code != ev.PROFILE:
                continue
            if policy.can(current_user, "edit", Quota):
                links.append((url_for("changsha.quotas", school_id=s.id), _("维度插标 · %(school)s", school=s.name),
                              _("设定本校各维度各等级的最高比例。")))
            else:
                links.append((url_for("changsha.school", school_id=s.id), _("插标与定稿 · %(school)s", school=s.name),
                              _("接收并复核插标比例，查看全校等级分布，全校定稿。")))
            if policy.can(current_user, "package_evidence", policy.DataPackage):
                links.append((url_for("datapackage.school", school_id=s.id), _("数据上报 · %(school)s", school=s.name),
                              _("生成并校验上报市教育局数据中心的数据包（电子档案、最终评价）。")))
        return self.render("cqe/changsha/desk.html", links=links)


# ---------------------------------------------------------------------------------------------
# 评价组织: the district's leading group, the school's committee, the class groups; their published lists


PLACE_MODELS = {"district": District, "school": School, "class": SchoolClass}


def _place(kind: str, place_id: int):
    model = PLACE_MODELS.get(kind)
    if model is None:
        abort(404)
    place = policy.get_scoped(current_user, model, place_id)
    if place is None:
        abort(404, description="该单位不存在或不在您的权限范围内。")
    return place


def _committee(kind: str, place) -> tuple[Committee, object]:
    district_id = place.id if kind == "district" else (place.district_id if kind == "school" else place.school.district_id)
    term = _term_for(district_id)
    if kind == "district":
        return ev.committee_of(term, "district", district=place), term
    if kind == "school":
        return ev.committee_of(term, "school", school=place), term
    if 9 not in ev._graduating_grades(term) or place.grade not in ev._graduating_grades(term):
        abort(404, description="该班级本学期不参加评价。")
    return ev.committee_of(term, "class", klass=place), term


def _candidates(kind: str, place) -> list[User]:
    """Accounts that may sit on the committee: a class group's teachers hold the class's evaluator role; a school's
    and a district's members are staff of the school or the district."""
    if kind == "class":
        where = sa.and_(RoleGrant.role == "class_evaluator", RoleGrant.class_id == place.id)
    elif kind == "school":
        where = sa.and_(RoleGrant.school_id == place.id, RoleGrant.role.in_(policy.STAFF))
    else:
        where = sa.and_(RoleGrant.district_id == place.id, RoleGrant.role.in_(policy.STAFF))
    return db.session.execute(sa.select(User).join(RoleGrant, RoleGrant.user_id == User.id).where(where)
                              .order_by(User.username).distinct()).scalars().all()


def _parse_date(value: str | None, label: str):
    from datetime import date

    value = (value or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise FieldErrors({label: f"{label}：请填写日期，如 2017-03-20"}) from None


@bp.route("/committees")
@login_required
def committees():
    """Every committee the user may see: staff see those of their scope with their state; students and parents
    see the member lists on public display (公示) for their class, school and district."""
    at = now()
    staff = current_user.has_role(*policy.STAFF)
    family = [g.student for g in current_user.grants if g.role in ("student", "parent") and g.student is not None]
    rows = []
    if staff:
        rows = db.session.execute(sa.select(Committee).where(policy.scope(current_user, Committee))
                                  .order_by(Committee.level, Committee.school_id, Committee.class_id)).scalars().all()
        rows = [c for c in rows if c.term.is_current]
    elif family:
        s = family[0]
        term = policy.current_term(s.school.district_id)
        if term is not None:
            rows = [c for c in db.session.execute(sa.select(Committee).where(
                Committee.term_id == term.id,
                sa.or_(Committee.class_id == s.class_id,
                       sa.and_(Committee.level == "school", Committee.school_id == s.school_id),
                       sa.and_(Committee.level == "district", Committee.district_id == s.school.district_id))
            )).scalars() if ev.on_public_display(c, at)]
    else:
        abort(403)
    places = []
    if staff and policy.can(current_user, "edit", Committee):
        for g in current_user.grants:
            if g.role == "district_admin" and g.district is not None:
                places.append(("district", g.district))
            elif g.role in ("school_admin", "principal") and g.school is not None:
                places.append(("school", g.school))
                for k in db.session.execute(sa.select(SchoolClass).where(
                        SchoolClass.school_id == g.school_id, SchoolClass.grade == 9)
                        .order_by(SchoolClass.number)).scalars():
                    places.append(("class", k))
    return render_page("cqe/changsha/committees.html", rows=rows, places=places, staff=staff, at=at,
                       on_display=lambda c: ev.on_public_display(c, at), page_title=_("评价组织与成员公示"))


@bp.route("/committee/<kind>/<int:place_id>", methods=["GET", "POST"])
@login_required
def committee(kind: str, place_id: int):
    place = _place(kind, place_id)
    committee, term = _committee(kind, place)
    if not policy.can(current_user, "edit", Committee):
        abort(403, description="您的角色不能组建评价组织。")
    form = PostForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        action = request.form.get("action")
        done = False
        if action == "add":
            user_id = request.form.get("user_id") or ""
            member = None
            if user_id:
                member = next((u for u in _candidates(kind, place) if str(u.id) == user_id), None)
                if member is None:
                    abort(404, description="账号不存在或不能担任该组织成员。")

            def add():
                ev.add_member(current_user, committee, name=request.form.get("name", ""),
                              kind=request.form.get("kind", ""), duty=request.form.get("duty", ""), member=member,
                              elected_on=_parse_date(request.form.get("elected_on"), "选举日期"),
                              teaching_since=_parse_date(request.form.get("teaching_since"), "任教本班起始日期"))
            done = perform(add, _("已增加成员。"))
        elif action == "remove":
            row = next((m for m in committee.members if str(m.id) == request.form.get("member_id")), None)
            if row is None:
                abort(404)
            done = perform(lambda: ev.remove_member(current_user, row), _("已移除成员。"))
        elif action == "publish":
            raw = request.form.get("days", "")
            days = int(raw) if raw.isdigit() else -1
            done = perform(lambda: ev.publish_committee(current_user, committee, days=days,
                                                        starts_on=_parse_date(request.form.get("starts_on"),
                                                                              "公示开始日期")),
                           _("名单已公示。"))
        else:
            abort(400)
        if done:
            return redirect(url_for(".committee", kind=kind, place_id=place_id))
    decision = _decision("edit", committee)
    kinds = [(k, MEMBER_KINDS[k]) for k in KINDS_OF_LEVEL[committee.level]]
    return render_page("cqe/changsha/committee.html", committee=committee, place=place, kind=kind, kinds=kinds,
                       candidates=_candidates(kind, place), problems=ev.committee_problems(committee),
                       open=bool(decision) and not committee.published, reason=decision.reason,
                       days=ev.rules(term).get("publication_working_days", [3, 5]), form=form,
                       page_title=_("%(name)s", name=committee.level_name))
