"""Login and logout. ``next`` may only point inside this site."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, HiddenField, PasswordField, StringField
from wtforms.validators import InputRequired

from models.accounts import User
from models.audit import Actor, acting, set_actor
from models.base import db
from models.clock import now

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    username = StringField(_l("用户名"), validators=[InputRequired(message=_l("请输入用户名"))])
    password = PasswordField(_l("密码"), validators=[InputRequired(message=_l("请输入密码"))])
    remember = BooleanField(_l("记住我"))
    next = HiddenField()


class LogoutForm(FlaskForm):
    pass


def safe_next(target: str | None) -> str | None:
    """A relative path on this site, or None: never another host, never a scheme, never //host."""
    if not target:
        return None
    target = target.strip()
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


@bp.route("/")
def index():
    return redirect(url_for("admin.index") if current_user.is_authenticated else url_for("auth.login"))


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        user = db.session.execute(select(User).where(User.username == form.username.data.strip())).scalar_one_or_none()
        if user is None or not user.check_password(form.password.data) or not user.active:
            flash(gettext("用户名或密码错误。"), "danger")
        else:
            login_user(user, remember=form.remember.data)
            set_actor(Actor(user_id=user.id, name=user.display_name, ip=request.remote_addr or ""))
            with acting("login"):
                user.last_login_at = now()
                db.session.commit()
            return redirect(safe_next(form.next.data) or url_for("admin.index"))
    return render_template("cqe/login.html", form=form)


@bp.route("/logout", methods=["POST"])
def logout():
    form = LogoutForm()
    if form.validate_on_submit():
        logout_user()
        session.pop("lang", None)
        flash(gettext("您已退出登录。"), "info")
    return redirect(url_for("auth.login"))
