"""数据上报 (Changsha, seed 001: 5月26—27日 电子档案上传市数据中心, 6月26—27日 最终评价数据上报): a school's data packages,
their progress, counts and verification; building one, downloading it, verifying it. Thin: policy decides
(404 outside scope, 403 for the wrong role or a closed window, with the reason), models/datapackage.py acts."""
from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from flask_wtf import FlaskForm

from models import datapackage as dp
from models import evaluation as ev
from models import evidence, policy
from models.base import db
from models.clock import local, now
from models.org import School
from models.workflow import WorkflowError
from views.actions import perform, render_page
from views.export import send_private_file
from views.i18n import pick

bp = Blueprint("datapackage", __name__, url_prefix="/cs/package")


class PostForm(FlaskForm):
    pass


def _school(school_id: int) -> School:
    school = policy.get_scoped(current_user, School, school_id)
    if school is None:
        abort(404, description=_("学校不存在或不在您的权限范围内。"))
    if not policy.can(current_user, "view", dp.DataPackage):
        abort(403, description=_("您的角色不能查看数据上报。"))
    return school


def _term(school: School):
    try:
        return ev.changsha_term(school.district_id)
    except WorkflowError as exc:
        abort(404, description=exc.message)


def _package(package_id: int) -> dp.DataPackage:
    package = policy.get_scoped(current_user, dp.DataPackage, package_id)
    if package is None:
        abort(404, description=_("数据包不存在或不在您的权限范围内。"))
    return package


def _job_info(package: dp.DataPackage) -> dict | None:
    import jobs

    try:
        return jobs.status(package.job_id)
    except Exception:  # noqa: BLE001 - Redis down: the progress is unknown for now
        return None


@bp.route("/<int:school_id>", methods=["GET", "POST"])
@login_required
def school(school_id: int):
    school = _school(school_id)
    term = _term(school)
    form = PostForm()
    user = current_user._get_current_object()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        kind = request.form.get("kind", "")
        if kind not in dp.KINDS:
            abort(400)
        made = []

        def build():
            made.append(dp.request_package(user, school, kind))

        if perform(build, _("已开始生成%(kind)s数据包。", kind=dp.KINDS[kind])):
            from jobs.datapackage import start

            package = made[0]
            if start(package, user.id) is None:
                db.session.refresh(package)
                if package.state == "failed":
                    flash(_("数据包生成失败：%(error)s", error=package.error), "error")
        return redirect(url_for(".school", school_id=school.id))
    packages = db.session.execute(sa.select(dp.DataPackage).where(
        dp.DataPackage.school_id == school.id, dp.DataPackage.term_id == term.id,
        policy.scope(current_user, dp.DataPackage)).order_by(dp.DataPackage.id.desc())).scalars().all()
    job_id = None
    progress = {}
    for p in packages:
        if p.state == "building" and p.created_by_id == current_user.id:
            info = _job_info(p)
            if info and info.get("status") in ("failed", "stopped", "canceled"):
                dp.mark_failed(p, _("生成失败：后台任务中断，请重新生成。"))
            elif info and info.get("status") != "finished":
                job_id = job_id or p.job_id
                progress[p.id] = info.get("progress")
    kinds = []
    finalised = ev._final(term, school.id, None) is not None
    for kind in dp.KINDS:
        probe = dp.DataPackage(school=school, school_id=school.id, term=term, term_id=term.id, kind=kind,
                               created_by_id=current_user.id, state="building")
        decision = policy.check(current_user, dp.KIND_ACTIONS[kind], probe, now())
        reason = decision.reason
        if decision and kind == "final" and not finalised:
            reason = _("%(school)s的评价尚未全校定稿，不能生成最终评价数据包。", school=school.name)
        window = None
        cohorts = [c for c in term.cohorts if c.window(dp.KIND_PHASES[kind]) is not None]
        if cohorts:
            w = cohorts[0].window(dp.KIND_PHASES[kind])
            window = f"{local(w.starts_at).strftime('%Y-%m-%d %H:%M')} — {local(w.ends_at).strftime('%Y-%m-%d %H:%M')}"
        kinds.append({"code": kind, "name": pick(dp.KINDS[kind], dp.KINDS_EN[kind]), "window": window,
                      "allowed": bool(decision) and not reason, "reason": reason})
    can_verify = policy.can(current_user, "verify", dp.DataPackage)
    items = {i.code: i for i in evidence.items_of(term)}
    return render_page("cqe/datapackage/school.html", school=school, term=term, packages=packages, kinds=kinds,
                       job_id=job_id, progress=progress, can_verify=can_verify, items=items,
                       dims={d.code: d for d in ev.dimensions(term)}, form=form,
                       page_title=_("数据上报 · %(school)s", school=school.name))


@bp.route("/file/<int:package_id>")
@login_required
def download(package_id: int):
    package = _package(package_id)
    path = dp.package_path(package) if package.state == "ready" else None
    if path is None or not os.path.exists(path):
        abort(404, description=_("数据包文件不存在，请重新生成。"))
    day = local(package.created_at).strftime("%Y%m%d")
    name = f"{package.school.code}-{package.school.name}-{package.kind_name}-{day}.zip"
    return send_private_file(path, "application/zip", name, f"package-{package.id}.zip")


@bp.route("/<int:package_id>/verify", methods=["POST"])
@login_required
def verify(package_id: int):
    package = _package(package_id)
    form = PostForm()
    if not form.validate_on_submit():
        abort(400)
    found = []
    user = current_user._get_current_object()
    if perform(lambda: found.append(dp.verify(user, package)), _("校验已完成。")):
        if found[0]:
            flash(_("校验发现 %(n)s 个问题，详见下表。", n=len(found[0])), "warning")
    return redirect(url_for(".school", school_id=package.school_id) + f"#package-{package.id}")
