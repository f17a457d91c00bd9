"""/healthz: is the database answering, is Redis answering (when configured). /livez: is this process
serving at all (touches nothing: a liveness probe, and the trivial endpoint of the load test's ceiling)."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify, send_from_directory

from jobs import redis_connection
from models.base import db

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz():
    status = {"database": "ok", "redis": "not configured"}
    code = 200
    try:
        db.session.execute(sa.text("SELECT 1"))
    except Exception:  # noqa: BLE001 - reported as down
        status["database"], code = "down", 503
    if current_app.config.get("REDIS_URL"):
        try:
            redis_connection().ping()
            status["redis"] = "ok"
        except Exception:  # noqa: BLE001
            status["redis"] = "down"  # pages still work without Redis; deadlines are caught up later
    return jsonify(status), code


@bp.route("/livez")
def livez():
    return "ok", 200, {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}


@bp.route("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico on every site; answer with the app's icon rather than a 404."""
    return send_from_directory(current_app.static_folder, "cqe/favicon.svg", mimetype="image/svg+xml", max_age=86400)
