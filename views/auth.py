"""Login, logout and the password page. ``next`` may only point inside this site.

An account holding an initial password (``must_change_password``: created by the register import, or
its password reissued on an account slip) is sent to ``/password`` from every page until it has chosen
its own password; only that page, logout, static files and the health check stay reachable.
"""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import BooleanField, HiddenField, PasswordField, StringField
from wtforms.validators import EqualTo, InputRequired

from models.accounts import User
from models.audit import Actor, acting, set_actor
from models.base import db
from models.clock import local, now
from models.fields import text_problem
from models.passwords import DUMMY_HASH, verify_password
from views.actions import render_page
from views.throttle import throttle

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    username = StringField(_l("用户名"), validators=[InputRequired(message=_l("请输入用户名"))])
    password = PasswordField(_l("密码"), validators=[InputRequired(message=_l("请输入密码"))])
    remember = BooleanField(_l("记住我"))
    next = HiddenField()


class LogoutForm(FlaskForm):
    pass


class PasswordForm(FlaskForm):
    old_password = PasswordField(_l("当前密码"), validators=[InputRequired(message=_l("当前密码：必填"))])
    new_password = PasswordField(_l("新密码"), validators=[InputRequired(message=_l("新密码：必填"))])
    confirm = PasswordField(_l("再次输入新密码"), validators=[
        InputRequired(message=_l("再次输入新密码：必填")),
        EqualTo("new_password", message=_l("再次输入新密码：两次输入的新密码不一致"))])
    next = HiddenField()


MIN_PASSWORD_LENGTH = 8


def password_problems(user: User, new: str, old: str | None = None) -> list[str]:
    """What is wrong with a password a person chose, as sentences; empty when it is acceptable.

    Deliberately simple rules people can follow on a phone: long enough, letters and digits, not the
    username, not the password being replaced (an initial password printed on a slip must go)."""
    problems = []
    if len(new) < MIN_PASSWORD_LENGTH:
        problems.append(gettext("新密码：至少 %(n)s 位", n=MIN_PASSWORD_LENGTH))
    if not any(c.isascii() and c.isalpha() for c in new) or not any(c.isdigit() for c in new):
        problems.append(gettext("新密码：须同时包含字母和数字"))
    if new.strip().lower() == user.username.lower():
        problems.append(gettext("新密码：不能与用户名相同"))
    if old is not None and new == old:
        problems.append(gettext("新密码：不能与当前密码相同"))
    return problems


# Endpoints an account with an initial password may still reach.
PASSWORD_EXEMPT = {"auth.password", "auth.logout", "auth.login", "static", "admin.static", "health.healthz",
                   "health.livez"}


@bp.before_app_request
def _force_password_change():
    if request.endpoint in PASSWORD_EXEMPT or not current_user.is_authenticated:
        return None
    if not current_user.must_change_password:
        return None
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("auth.password", next=target))


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




def lock_message(user: User) -> str:
    return gettext("账号因多次密码错误已锁定至 %(until)s。学生和家长可请班主任或学校管理员解锁。",
                   until=local(user.locked_until).strftime("%m-%d %H:%M"))


def _record_failure(user: User) -> None:
    """One more consecutive failure; at the limit the account locks (kept in the history)."""
    limit = current_app.config["CQE_LOGIN_MAX_FAILURES"]
    with acting("login_failed", gettext("登录失败（密码错误）")):
        user.failed_logins = (user.failed_logins or 0) + 1
        if limit and user.failed_logins >= limit:
            user.locked_until = now() + timedelta(minutes=current_app.config["CQE_LOGIN_LOCK_MINUTES"])
            user.failed_logins = 0
        db.session.commit()


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm(next=request.args.get("next", ""))
    rate, address = current_app.config["CQE_LOGIN_RATE"], request.remote_addr or "-"
    if request.method == "POST" and not throttle().allowed(rate, "login", address):
        abort(429, description=gettext("登录失败次数过多，请稍后再试。"))
    if form.validate_on_submit():
        name = form.username.data.strip()
        # A name no account can have (a NUL cannot even be compared on PostgreSQL) is simply unknown.
        user = None if text_problem(name) else db.session.execute(
            select(User).where(User.username == name)).scalar_one_or_none()
        if user is not None and user.is_locked(now()):
            flash(lock_message(user), "danger")
        elif user is None or not user.active:
            verify_password(DUMMY_HASH, form.password.data)  # so both answers take the same time
            throttle().failed(rate, "login", address)
            flash(gettext("用户名或密码错误。"), "danger")
        elif not user.check_password(form.password.data):
            throttle().failed(rate, "login", address)
            _record_failure(user)
            flash(lock_message(user) if user.is_locked(now()) else gettext("用户名或密码错误。"), "danger")
        else:
            kept = {k: session[k] for k in ("lang", "csrf_token") if k in session}
            session.clear()  # nothing else from before the login survives into the signed-in session
            session.update(kept)
            session.permanent = True
            session["remember_me"] = bool(form.remember.data)
            login_user(user, remember=form.remember.data)
            set_actor(Actor(user_id=user.id, name=user.display_name, ip=request.remote_addr or ""))
            with acting("login"):
                user.last_login_at = now()
                user.upgrade_password_hash(form.password.data)
                user.failed_logins = 0
                user.locked_until = None
                db.session.commit()
            target = safe_next(form.next.data)
            if user.must_change_password:
                return redirect(url_for("auth.password", next=target))
            return redirect(target or url_for("admin.index"))
    return render_template("cqe/login.html", form=form), 200


@bp.route("/password", methods=["GET", "POST"])
@login_required
def password():
    """Change one's own password: required after an initial password, available to everyone."""
    form = PasswordForm(next=request.args.get("next", ""))
    forced = current_user.must_change_password
    errors: list[str] = []
    if form.validate_on_submit():
        user = current_user._get_current_object()
        allowed, count_wrong = _password_checks(user)
        if not allowed:
            form.old_password.errors = [gettext("当前密码：错误次数过多，请稍后再试")]
        elif not user.check_password(form.old_password.data):
            count_wrong()
            form.old_password.errors = [gettext("当前密码：不正确")]
        else:
            errors = password_problems(user, form.new_password.data, form.old_password.data)
            if not errors:
                with acting("change_password", gettext("本人修改密码")):
                    user.set_password(form.new_password.data)  # ends the holder's other sessions
                    user.must_change_password = False
                    db.session.commit()
                login_user(user, remember=bool(session.get("remember_me")))  # this session goes on
                flash(gettext("密码已修改。"), "success")
                return redirect(safe_next(form.next.data) or url_for("admin.index"))
            form.new_password.errors = errors
    return render_page("cqe/password.html", form=form, forced=forced, min_length=MIN_PASSWORD_LENGTH,
                       page_title=gettext("修改密码"))


def _password_checks(user: User):
    """Someone at an unattended, signed-in phone must not be able to guess the current password: a few
    wrong tries per account, then a pause (counted per account whatever the address).
    Returns (allowed now, a function that counts one wrong try)."""
    rate, key = current_app.config["CQE_PASSWORD_RATE"], str(user.id)
    return throttle().allowed(rate, "password", key), lambda: throttle().failed(rate, "password", key)


@bp.route("/logout", methods=["POST"])
def logout():
    form = LogoutForm()
    if form.validate_on_submit():
        logout_user()
        session.pop("lang", None)
        flash(gettext("您已退出登录。"), "info")
    return redirect(url_for("auth.login"))
