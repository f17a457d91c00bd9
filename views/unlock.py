"""账号解锁: accounts locked by repeated wrong passwords, and their unlock.

A student who mistyped five times asks their homeroom teacher, who unlocks them here at once instead of
waiting out the lock; the school admin does the same for the school, the district admin for the district.
The page lists the accounts of one's people that are locked now or have recent failures (policy.unlock_scope).
"""
from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext
from flask_login import current_user
from flask_wtf import FlaskForm

from models import policy, workflow
from models.accounts import User
from models.base import db
from models.clock import now
from models.roles import ROLES


class UnlockForm(FlaskForm):
    pass


def _describe(user: User) -> str:
    """Who the account is, in the words of a class: 学生 / 家长（学生姓名）/ the staff role."""
    parts = []
    for g in user.grants:
        if g.role == "parent" and g.student is not None:
            parts.append(gettext("%(name)s的家长", name=g.student.name))
        elif g.role == "student" and g.student is not None:
            parts.append(gettext("学生 · %(klass)s", klass=g.student.school_class.name))
        else:
            parts.append(str(ROLES[g.role].name))
    return "、".join(parts)


class UnlockView(BaseView):
    def is_accessible(self) -> bool:
        return current_user.is_authenticated and policy.can(current_user, "unlock", User)

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(403, description="您的角色不能使用此页面。")

    def _accounts(self) -> list[User]:
        at = now()
        return db.session.execute(
            sa.select(User).where(policy.unlock_scope(current_user),
                                  sa.or_(User.locked_until > at, User.failed_logins > 0))
            .order_by(User.locked_until.desc().nulls_last(), User.username).limit(500)
        ).scalars().all()

    @expose("/")
    def index(self):
        at = now()
        accounts = [{"user": u, "who": _describe(u), "locked": u.is_locked(at)} for u in self._accounts()]
        return self.render("cqe/unlock.html", accounts=accounts, form=UnlockForm(), at=at)

    @expose("/", methods=["POST"])
    def unlock(self):
        form = UnlockForm()
        if not form.validate_on_submit():
            abort(400)
        ids = [int(i) for i in request.form.getlist("user_id") if i.isdigit()]
        if not ids:
            flash(gettext("请选择要解锁的账号。"), "warning")
            return redirect(url_for(".index"))
        targets = db.session.execute(sa.select(User).where(User.id.in_(ids))).scalars().all()
        if len(targets) != len(set(ids)):
            abort(404, description="账号不存在或不在您的管理范围内。")
        try:
            n = workflow.unlock_accounts(current_user, targets)
        except policy.Denied as exc:
            abort(exc.status, description=exc.reason)
        flash(gettext("已解锁 %(n)s 个账号。", n=n), "success")
        return redirect(url_for(".index"))

