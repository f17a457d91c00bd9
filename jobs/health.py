"""A probe job: proves the worker reaches the database, used by /healthz and the worker check."""
from __future__ import annotations

import sqlalchemy as sa

from jobs import app_context, job
from models.base import db
from models.clock import now


@job(timeout=30)
@app_context
def probe(note: str = "") -> dict:
    students = db.session.execute(sa.text("SELECT count(*) FROM students")).scalar_one()
    return {"ok": True, "students": int(students), "at": now().isoformat(), "note": note}
