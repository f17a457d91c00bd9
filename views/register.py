"""学籍导入 and 账号单: the district admin stands the district up from the student register (upload →
report → import, as for record imports), and whoever hands out accounts prints a class's account slips,
which is when initial passwords come into existence (see forms/register.py for why)."""
from __future__ import annotations

import json
import os
import re
import secrets
from urllib.parse import quote

import sqlalchemy as sa
from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_admin import BaseView, expose
from flask_login import current_user

from forms import register
from forms.imports import ImportFileError
from models import policy
from models.accounts import RoleGrant, User
from models.base import db
from models.clock import local, now
from models.org import District, School, SchoolClass, Student
from views.export import XLSX_MIME

AUDIT_ACTION_NAMES = {"issue_password": "生成初始密码", "change_password": "修改密码"}


def _unusable():
    """Whether an account has no usable password yet, as SQL that groups on PostgreSQL (a bound parameter
    in both SELECT and GROUP BY would be two different expressions there)."""
    return User.password_hash == sa.literal(register.UNUSABLE_PASSWORD, literal_execute=True)


class _Page(BaseView):
    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(403, description="您的角色不能使用此页面。")


class RegisterImportView(_Page):
    """学籍导入: check the whole workbook first, write nothing until the admin confirms, then one transaction."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated and policy.can(current_user, "import_register", District)

    def _districts(self) -> list[District]:
        ids = policy.district_ids(current_user, District, "import_register")
        return db.session.execute(sa.select(District).where(District.id.in_(ids)).order_by(District.id)).scalars().all()

    def _import_dir(self) -> str:
        path = os.path.join(current_app.instance_path, "imports")
        os.makedirs(path, exist_ok=True)
        return path

    def _upload(self, token: str) -> tuple[str, dict]:
        """The stored upload of this user (404 for anybody else's, or for a token that is not one)."""
        if not re.fullmatch(r"[0-9a-f]{32}", token):
            abort(404)
        path = os.path.join(self._import_dir(), token)
        try:
            with open(path + ".json") as fh:
                meta = json.load(fh)
        except OSError:
            abort(404)
        if meta.get("user_id") != current_user.id or meta.get("kind") != "register":
            abort(404)
        return path, meta

    def _district(self, district_id) -> District:
        district = policy.get_scoped(current_user, District, district_id) if district_id else None
        if district is None:
            abort(404, description="区不存在或不在您的权限范围内。")
        decision = policy.check(current_user, "import_register", district)
        if not decision:
            abort(decision.status, description=decision.reason)
        return district

    def _check(self, path: str, district: District) -> register.Report:
        with open(path + ".xlsx", "rb") as fh:
            sheets = register.read(fh)
        try:
            return register.check(current_user, district, sheets)
        except policy.Denied as exc:
            abort(exc.status, description=exc.reason)

    def _render(self, report=None, token=None, district=None, name=""):
        return self.render("cqe/register_import.html", report=report, token=token, districts=self._districts(),
                           district=district, file_name=name, page_title="学籍导入")

    @expose("/", methods=("GET", "POST"))
    def index(self):
        if request.method == "GET":
            return self._render()
        district = self._district(request.form.get("district_id", type=int))
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            flash("请选择要上传的 .xlsx 文件。", "error")
            return redirect(self.get_url(".index"))
        token = secrets.token_hex(16)
        path = os.path.join(self._import_dir(), token)
        upload.save(path + ".xlsx")
        with open(path + ".json", "w") as fh:
            json.dump({"user_id": current_user.id, "kind": "register", "district_id": district.id,
                       "name": upload.filename}, fh)
        try:
            report = self._check(path, district)
        except ImportFileError as exc:
            flash(exc.message, "error")
            return redirect(self.get_url(".index"))
        return self._render(report, token, district, upload.filename)

    @expose("/template.xlsx")
    def template(self):
        return Response(register.template(), mimetype=XLSX_MIME, headers={
            "Content-Disposition": f"attachment; filename=register.xlsx; filename*=UTF-8''{quote('学籍导入模板.xlsx')}"})

    @expose("/<token>/", methods=("POST",))
    def commit(self, token: str):
        path, meta = self._upload(token)
        district = self._district(meta.get("district_id"))
        try:
            with open(path + ".xlsx", "rb") as fh:
                sheets = register.read(fh)
            report = register.apply(current_user, district, sheets, reason=f"学籍导入：{meta.get('name', '')}")
        except ImportFileError as exc:
            flash(exc.message, "error")
            return redirect(self.get_url(".index"))
        except policy.Denied as exc:
            abort(exc.status, description=exc.reason)
        except register.RegisterError as exc:
            flash(exc.message, "error")
            return self._render(self._check(path, district), token, district, meta.get("name", ""))
        for ext in (".xlsx", ".json"):  # the register holds personal data: keep it no longer than needed
            try:
                os.remove(path + ext)
            except OSError:
                pass
        flash(f"已导入{district.name}学籍：{report.summary()}。新账号的初始密码请在「账号单」中按班级打印。", "success")
        return redirect(self.get_url(".index"))

    @expose("/<token>/errors.xlsx")
    def errors(self, token: str):
        path, meta = self._upload(token)
        district = self._district(meta.get("district_id"))
        try:
            report = self._check(path, district)
        except ImportFileError as exc:
            abort(400, description=exc.message)
        with open(path + ".xlsx", "rb") as fh:
            data = register.error_workbook(fh, report)
        return Response(data, mimetype=XLSX_MIME, headers={"Content-Disposition": "attachment; filename=errors.xlsx"})


def _stats(rows) -> dict:
    """Account counts from (key, must_change, unusable, n) rows: key → total / not issued / waiting / enabled."""
    out: dict = {}
    for key, must_change, unusable, n in rows:
        s = out.setdefault(key, {"total": 0, "not_issued": 0, "waiting": 0, "enabled": 0})
        s["total"] += n
        if not must_change:
            s["enabled"] += n
        elif unusable:
            s["not_issued"] += n
        else:
            s["waiting"] += n
    return out


class AccountSlipsView(_Page):
    """账号单: pick a class (or the school's staff) and print its slips; printing issues initial passwords."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated and (policy.can(current_user, "print_slips", SchoolClass)
                                                  or policy.can(current_user, "print_slips", School))

    def _schools(self) -> list[School]:
        of_classes = sa.select(SchoolClass.school_id).where(policy.scope(current_user, SchoolClass, "print_slips"))
        return db.session.execute(sa.select(School).where(sa.or_(
            policy.scope(current_user, School, "print_slips"), School.id.in_(of_classes))).order_by(School.code)
        ).scalars().all()

    @expose("/")
    def index(self):
        schools = self._schools()
        school = next((s for s in schools if s.id == request.args.get("school_id", type=int)), None)
        if school is None and schools:
            school = schools[0]
        classes, stats, staff = [], {}, None
        if school is not None:
            classes = db.session.execute(sa.select(SchoolClass).where(
                SchoolClass.school_id == school.id, policy.scope(current_user, SchoolClass, "print_slips"))
                .order_by(SchoolClass.grade, SchoolClass.number)).scalars().all()
            stats = self._class_stats(school, [c.id for c in classes])
            if policy.check(current_user, "print_slips", school):
                staff = _stats(db.session.execute(
                    sa.select(RoleGrant.school_id, User.must_change_password, _unusable(),
                              sa.func.count(sa.distinct(User.id)))
                    .join(User, User.id == RoleGrant.user_id).where(RoleGrant.school_id == school.id)
                    .group_by(RoleGrant.school_id, User.must_change_password, _unusable())).all()).get(
                    school.id, {"total": 0, "not_issued": 0, "waiting": 0, "enabled": 0})
        return self.render("cqe/register_slips.html", schools=schools, school=school, classes=classes, stats=stats,
                           staff=staff, page_title="账号单")

    @staticmethod
    def _class_stats(school: School, class_ids: list[int]) -> dict:
        if not class_ids:
            return {}
        unusable = _unusable()
        family = db.session.execute(
            sa.select(Student.class_id, User.must_change_password, unusable, sa.func.count(sa.distinct(User.id)))
            .select_from(RoleGrant).join(Student, Student.id == RoleGrant.student_id)
            .join(User, User.id == RoleGrant.user_id)
            .where(Student.school_id == school.id, Student.class_id.in_(class_ids),
                   RoleGrant.role.in_(("student", "parent")))
            .group_by(Student.class_id, User.must_change_password, unusable)).all()
        teachers = db.session.execute(
            sa.select(RoleGrant.class_id, User.must_change_password, unusable, sa.func.count(sa.distinct(User.id)))
            .join(User, User.id == RoleGrant.user_id).where(RoleGrant.class_id.in_(class_ids))
            .group_by(RoleGrant.class_id, User.must_change_password, unusable)).all()
        stats = _stats(list(family) + list(teachers))
        students = dict(db.session.execute(sa.select(Student.class_id, sa.func.count(Student.id))
                                           .where(Student.class_id.in_(class_ids)).group_by(Student.class_id)).all())
        for cid in class_ids:
            stats.setdefault(cid, {"total": 0, "not_issued": 0, "waiting": 0, "enabled": 0})["students"] = \
                students.get(cid, 0)
        return stats

    @expose("/print", methods=("POST",))
    def print_view(self):
        """Issue fresh initial passwords to the accounts still waiting for their first login, and show them
        once on a printable page (never stored, never cached)."""
        kind = request.form.get("kind")
        ident = request.form.get("id")
        if kind == "class":
            target = policy.get_scoped(current_user, SchoolClass, ident)
            if target is None:
                abort(404, description="班级不存在或不在您的权限范围内。")
            school, title = target.school, target.name
            slips = register.class_slips(target)
        elif kind == "school":
            target = policy.get_scoped(current_user, School, ident)
            if target is None:
                abort(404, description="学校不存在或不在您的权限范围内。")
            school, title = target, "教职工"
            slips = register.school_slips(target)
        else:
            abort(400)
        try:
            issued = register.issue_passwords(current_user, target, slips, reason=f"打印账号单：{school.name} {title}")
        except policy.Denied as exc:
            abort(exc.status, description=exc.reason)
        html = render_template("cqe/account_slips.html", slips=slips, school=school, title=title, issued=issued,
                               login_url=url_for("auth.login", _external=True), printed_at=local(now()),
                               back_url=self.get_url(".index", school_id=school.id))
        return Response(html, headers={"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"})
