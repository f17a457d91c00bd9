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

from models import policy
from models import evaluation as ev
from models.base import db
from models.changsha import Quota, QuotaAck, Rating, RatingFinal
from models.clock import now
from models.org import School, SchoolClass, Student
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
    pledged = ev.has_pledged(current_user, term)
    final = db.session.execute(sa.select(RatingFinal).where(
        RatingFinal.term_id == term.id, RatingFinal.class_id == klass.id)).scalar_one_or_none()
    peers = ev.peer_summary(term, klass.id)
    return render_page(
        "cqe/changsha/rate.html", klass=klass, term=term, dims=dims, students=students, levels=_levels(term),
        ratings=ratings, lines=ev.distribution(term, klass.school_id, klass.id), open=bool(decision) and not final,
        reason=decision.reason, pledged=pledged, final=final, peers=peers,
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
        if roles & {"class_evaluator", "school_committee", "district_leading_group"}:
            links.append((url_for("changsha.pledge"), _("诚信承诺书"), _("参与评价的人员须先签署，才能审核材料和评价学生。")))
        for g in current_user.grants:
            if g.role == "class_evaluator" and g.school_class is not None:
                links.append((url_for("changsha.rate", class_id=g.class_id), _("教师评价 · %(klass)s", klass=str(g.school_class)),
                              _("按插标比例为每位学生评定各维度等级，完成后定稿。")))
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
        return self.render("cqe/changsha/desk.html", links=links)
