"""One settings module: every option is read from the environment here, with explicit defaults.

Production (``CQE_ENV=production``) refuses to start without a real ``SECRET_KEY``.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def parse_instant(value: str) -> datetime:
    """Parse an ISO time; a naive one is Beijing time (what a district admin types)."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=LOCAL_TZ)
    return dt


def database_url(value: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if value.startswith("postgres://"):
        value = "postgresql://" + value[len("postgres://"):]
    if value.startswith("postgresql://"):
        value = "postgresql+psycopg://" + value[len("postgresql://"):]
    return value


class Config:
    ENV_NAME = env_str("CQE_ENV", "development")
    SECRET_KEY = env_str("SECRET_KEY")
    SQLALCHEMY_DATABASE_URI = database_url(env_str("DATABASE_URL", "sqlite:///" + os.path.abspath("instance/cqe.sqlite")))
    # A pooled connection the database dropped (a restart, a failover, an idle timeout) is replaced before use.
    SQLALCHEMY_ENGINE_OPTIONS: dict = {"pool_pre_ping": True}
    REDIS_URL = env_str("REDIS_URL")
    CQE_NOW = env_str("CQE_NOW")
    BABEL_DEFAULT_LOCALE = "zh_Hans_CN"
    BABEL_DEFAULT_TIMEZONE = "Asia/Shanghai"
    LANGUAGES = {"zh_Hans_CN": "简体中文", "en": "English"}
    FLASK_ADMIN_SWATCH = "cerulean"
    WTF_CSRF_ENABLED = True
    WTF_CSRF_TIME_LIMIT = 8 * 3600
    # Cookies: HttpOnly, SameSite=Lax, and Secure in production (served over HTTPS behind a proxy, see
    # CQE_PROXY_FIX). A session lasts at most CQE_SESSION_HOURS and ends after CQE_SESSION_IDLE_MINUTES
    # without a request, unless "记住我" was ticked (then the remember-me cookie, CQE_REMEMBER_DAYS).
    SESSION_COOKIE_NAME = "cqe_session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", ENV_NAME == "production")
    PERMANENT_SESSION_LIFETIME = timedelta(hours=env_int("CQE_SESSION_HOURS", 12))
    CQE_SESSION_IDLE_MINUTES = env_int("CQE_SESSION_IDLE_MINUTES", 60)
    REMEMBER_COOKIE_NAME = "cqe_remember"
    REMEMBER_COOKIE_DURATION = timedelta(days=env_int("CQE_REMEMBER_DAYS", 14))
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_SECURE = SESSION_COOKIE_SECURE
    PREFERRED_URL_SCHEME = "https" if SESSION_COOKIE_SECURE else "http"
    # Strict-Transport-Security on HTTPS responses (on by default when cookies are Secure).
    CQE_HSTS = env_bool("CQE_HSTS", SESSION_COOKIE_SECURE)
    # Behind N reverse proxies (nginx: 1), trust their X-Forwarded-For/-Proto/-Host (client address for
    # throttling and history, https for Secure cookies). 0 = connected directly.
    CQE_PROXY_FIX = env_int("CQE_PROXY_FIX", 0)
    # Login lock-out: this many consecutive failures lock an account for CQE_LOGIN_LOCK_MINUTES (a homeroom
    # teacher or school admin can unlock students and parents at once, 账号解锁).
    CQE_LOGIN_MAX_FAILURES = env_int("CQE_LOGIN_MAX_FAILURES", 5)
    CQE_LOGIN_LOCK_MINUTES = env_int("CQE_LOGIN_LOCK_MINUTES", 15)
    # Throttling (views/throttle.py): failed logins per client address (a school's computer room shares one
    # address, so this is generous), and failed current-password checks per account. Counted in Redis when
    # REDIS_URL is set (all web processes together), else in memory.
    CQE_LOGIN_RATE = env_str("CQE_LOGIN_RATE", "100 per 10 minutes")
    CQE_PASSWORD_RATE = env_str("CQE_PASSWORD_RATE", "10 per 10 minutes")
    CQE_THROTTLE_STORAGE = env_str("CQE_THROTTLE_STORAGE")
    # The public results lookup (成绩查询 by 考号, views/lookup.py): every lookup per client address, failed lookups
    # per exam number (from any address, so no number is guessed from many machines), and the least time every
    # answer takes, so the time never tells a right exam number from a wrong one (0 in tests unless set).
    CQE_LOOKUP_RATE = env_str("CQE_LOOKUP_RATE", "20 per 10 minutes")
    CQE_LOOKUP_NUMBER_RATE = env_str("CQE_LOOKUP_NUMBER_RATE", "5 per hour")
    CQE_LOOKUP_MIN_SECONDS = env_float("CQE_LOOKUP_MIN_SECONDS", 0.35)
    PAGE_SIZE = env_int("CQE_PAGE_SIZE", 20)
    MAX_CONTENT_LENGTH = 16 * 1024 * 1024
    # Without Redis, serving web processes apply due deadlines every minute (jobs/ticker.py).
    CQE_TICKER = env_bool("CQE_TICKER", True)
    # Imports of more data rows than this are checked and written by an RQ job with a progress bar.
    CQE_IMPORT_INLINE_ROWS = env_int("CQE_IMPORT_INLINE_ROWS", 2000)
    # 确认单 QR codes open the student's report through a signed link valid this many days from printing.
    CQE_REPORT_LINK_DAYS = env_int("CQE_REPORT_LINK_DAYS", 90)
    # The signed 汇总表 scan a principal uploads (PDF, JPG or PNG, by content).
    CQE_SUMMARY_MAX_BYTES = env_int("CQE_SUMMARY_MAX_BYTES", 10 * 1024 * 1024)
    # Where the scans are kept (by content hash); default instance/summaries. Back it up with the database.
    CQE_SUMMARY_DIR = env_str("CQE_SUMMARY_DIR")
    TESTING = False


def load_config(override: dict | None = None) -> dict:
    config = {k: getattr(Config, k) for k in dir(Config) if k.isupper()}
    if override:
        config.update(override)
    if not config.get("SECRET_KEY"):
        if config["ENV_NAME"] == "production":
            raise RuntimeError("SECRET_KEY must be set when CQE_ENV=production")
        config["SECRET_KEY"] = "dev-only-not-secret"
    config["SQLALCHEMY_DATABASE_URI"] = database_url(config["SQLALCHEMY_DATABASE_URI"])
    if config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        # Connections each web/worker process keeps (README: several machines on one database).
        config["SQLALCHEMY_ENGINE_OPTIONS"] = {**config["SQLALCHEMY_ENGINE_OPTIONS"],
                                               "pool_size": env_int("CQE_DB_POOL_SIZE", 5),
                                               "max_overflow": env_int("CQE_DB_MAX_OVERFLOW", 10)}
    if config.get("TESTING") and "CQE_LOOKUP_MIN_SECONDS" not in (override or {}):
        config["CQE_LOOKUP_MIN_SECONDS"] = 0
    if not config.get("CQE_THROTTLE_STORAGE"):
        config["CQE_THROTTLE_STORAGE"] = config.get("REDIS_URL") or "memory://"
    return config
