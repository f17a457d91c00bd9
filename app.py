"""The CQE application factory."""
from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Flask, request, session
from flask_login import current_user
from sqlalchemy.orm import joinedload

from extensions import babel, csrf, db, login_manager, migrate
from models import clock
from models.audit import Actor, set_actor
from settings import load_config

HERE = os.path.dirname(os.path.abspath(__file__))


def _sqlite_tuning(engine) -> None:
    """Foreign keys on, and transactions that SAVEPOINTs work inside (pysqlite's own begin is lazy)."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN")


def select_locale():
    lang = request.args.get("lang") if request else None
    if lang in ("zh_Hans_CN", "en"):
        session["lang"] = lang
    if session.get("lang"):
        return session["lang"]
    if current_user and getattr(current_user, "is_authenticated", False) and current_user.locale:
        return current_user.locale
    return "zh_Hans_CN"


def create_app(config_override: dict | None = None) -> Flask:
    app = Flask(__name__, instance_path=os.path.join(HERE, "instance"))
    app.config.update(load_config(config_override))
    os.makedirs(app.instance_path, exist_ok=True)

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(HERE, "migrations"), render_as_batch=True, compare_type=True)
    login_manager.init_app(app)
    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale, default_translation_directories="translations")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = os.path.join(HERE, "translations")

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _sqlite_tuning(db.engine)

    if app.config.get("CQE_NOW"):
        clock.pin(app.config["CQE_NOW"])

    from models.accounts import User

    @login_manager.user_loader
    def load_user(user_id: str):
        """``<id>.<session version>`` (User.get_id): a session from before a password change is void."""
        ident, _, version = user_id.partition(".")
        try:
            ident_int = int(ident)
        except ValueError:
            return None
        # The account and its grants in one round trip: every page asks for the grants (policy, menus).
        user = db.session.execute(sa.select(User).options(joinedload(User.grants)).where(User.id == ident_int)) \
            .unique().scalar_one_or_none()
        if user is None or version != str(user.session_version or 0):
            return None
        return user

    @app.before_request
    def _actor():
        user = current_user if current_user and current_user.is_authenticated else None
        set_actor(Actor(user_id=user.id if user else None, name=user.display_name if user else "匿名",
                        ip=request.remote_addr or ""))

    from views.auth import bp as auth_bp
    from views.cases import bp as cases_bp
    from views.changsha import bp as changsha_bp
    from views.datapackage import bp as datapackage_bp
    from views.deadlines import bp as inbox_bp
    from views.deadlines import unread_count
    from views.errors import register_error_handlers
    from views.evidence import bp as evidence_bp
    from views.family import bp as family_bp
    from views.health import bp as health_bp
    from views.lookup import bp as lookup_bp
    from views.reports import bp as reports_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(family_bp)
    app.register_blueprint(cases_bp)
    app.register_blueprint(changsha_bp)
    app.register_blueprint(inbox_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(lookup_bp)
    app.register_blueprint(reports_bp)
    app.register_blueprint(evidence_bp)
    app.register_blueprint(datapackage_bp)
    register_error_handlers(app)

    from views.security import init_security
    from views.throttle import init_throttle

    init_security(app)
    init_throttle(app)

    from views.admin import init_admin

    init_admin(app)

    from cli import register_cli

    register_cli(app)

    # The embedded default has no worker: a serving web process (started by its first request, so
    # CLI commands never tick) applies due deadlines every minute.
    if not app.config.get("REDIS_URL") and app.config.get("CQE_TICKER", True) and not app.config.get("TESTING"):
        from jobs import ticker

        @app.before_request
        def _start_ticker():
            ticker.start(app)

    @app.context_processor
    def _globals():
        return {"cqe_now": clock.now, "cqe_unread": unread_count, "cqe_local": clock.local, "languages": app.config["LANGUAGES"],
                "current_lang": select_locale() if request else "zh_Hans_CN", "cqe_runs_phase": _runs_phase}

    def _runs_phase(phase: str) -> bool:
        """Templates: whether the signed-in user's profile has the phase (pages of a phase show only there)."""
        from models import policy

        return bool(current_user and current_user.is_authenticated and policy.runs_phase(current_user, phase))

    return app
