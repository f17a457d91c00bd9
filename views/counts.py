"""Counts over a district or a city (millions of rows) are reused for a while instead of being run on
every request: home-page figures and the row count of district- and city-wide list pages."""
from __future__ import annotations

import time

from sqlalchemy.orm import Query

from models.base import db

COUNT_TTL = 120  # seconds a district- or city-wide count may be reused
_counts: dict = {}


def count(stmt, wide: bool = False) -> int:
    """The value of a COUNT statement; a wide one is reused for COUNT_TTL seconds."""
    if not wide:
        return db.session.execute(stmt).scalar_one()
    compiled = stmt.compile(db.engine)
    key = (str(compiled), tuple(sorted((k, repr(v)) for k, v in compiled.params.items())))
    at = time.monotonic()
    hit = _counts.get(key)
    if hit and hit[0] > at:
        return hit[1]
    value = db.session.execute(stmt).scalar_one()
    _counts[key] = (at + COUNT_TTL, value)
    if len(_counts) > 10_000:
        _counts.clear()
    return value


def is_wide(user) -> bool:
    return any(g.scope_kind in ("district", "city") for g in user.grants)


class CachedCountQuery(Query):
    """A Flask-Admin count query whose result is reused like ``count(…, wide=True)``."""

    def scalar(self):
        return count(self.statement, wide=True)
