"""Response hardening in one place: security headers with a per-request CSP nonce, no caching of
personal pages, idle session expiry, and the reverse-proxy setting.

The Content-Security-Policy allows scripts only from this site or carrying the request's nonce (Flask-Admin's
own inline scripts get it through ``Admin(csp_nonce_generator=...)``; ours through ``csp_nonce()``), so an
injected ``<script>`` or ``onerror=`` in someone's text never runs even if escaping were ever missed.
Inline event handlers are therefore not used anywhere: ``static/cqe/cqe.js`` wires ``data-*`` attributes.
"""
from __future__ import annotations

import secrets
import time

from flask import current_app, flash, g, redirect, request, session, url_for
from flask_babel import gettext
from flask_login import current_user, logout_user

RETURN_FALSE = "sha256-2rvfFrggTCtyF5WOiTri1gDS8Boibj4Njn0e+VCBmDI="  # of: return false;

CSP = "; ".join([
    "default-src 'self'",
    # One inline handler is left in Flask-Admin's filter menu (onclick="return false;"): allowed by its hash
    # alone ('unsafe-hashes' admits exactly the handlers whose hash is listed, nothing else).
    "script-src 'self' 'nonce-{nonce}' 'unsafe-hashes' '" + RETURN_FALSE + "'",
    # Bootstrap and Flask-Admin set style attributes; styles cannot run code.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}

# Requests that neither count as activity nor end an idle session.
_PASSIVE = {"static", "admin.static", "health.healthz", "health.livez"}


def csp_nonce() -> str:
    """This request's nonce (the same value for every script tag of the page)."""
    nonce = getattr(g, "_csp_nonce", None)
    if nonce is None:
        nonce = g._csp_nonce = secrets.token_urlsafe(16)
    return nonce


def _expire_idle_session():
    """End a session without a request for CQE_SESSION_IDLE_MINUTES (unless 记住我 was ticked).

    Measured on the wall clock, not the app clock: the app clock is the school calendar (pinned in the demo
    and moved by tests), idleness is real time. Refreshed at most once a minute."""
    if request.endpoint in _PASSIVE or not current_user.is_authenticated:
        return None
    idle = current_app.config.get("CQE_SESSION_IDLE_MINUTES") or 0
    at = wall_clock()
    last = session.get("seen")
    if not isinstance(last, (int, float)):
        last = None
    if idle and last is not None and not session.get("remember_me") and at - last > idle * 60:
        lang = session.get("lang")
        logout_user()
        session.clear()
        if lang:
            session["lang"] = lang
        flash(gettext("长时间未操作，已自动退出，请重新登录。"), "warning")
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("auth.login", next=target))
    if last is None or at - last > 60 or at < last:
        session["seen"] = int(at)
    return None


def wall_clock() -> float:
    """Seconds since the epoch (a function, so tests can move it)."""
    return time.time()


def _headers(response):
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html" or "Content-Security-Policy" not in response.headers:
        response.headers.setdefault("Content-Security-Policy", CSP.format(nonce=csp_nonce()))
    if current_app.config.get("CQE_HSTS") and request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if request.endpoint not in _PASSIVE and current_user and current_user.is_authenticated:
        # Minors' records: never kept by a shared computer's browser cache or a proxy.
        response.headers["Cache-Control"] = "private, no-store"
        response.headers.setdefault("Pragma", "no-cache")
    return response


def init_security(app) -> None:
    proxies = app.config.get("CQE_PROXY_FIX") or 0
    if proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    app.before_request(_expire_idle_session)
    app.after_request(_headers)
    app.jinja_env.globals["csp_nonce"] = csp_nonce
