"""The one clock of the app. Tests and demos pin it; everything else asks it for the time."""
from __future__ import annotations

from datetime import UTC, datetime

from settings import LOCAL_TZ, parse_instant

_pinned: datetime | None = None


def now() -> datetime:
    """The current instant, aware, in UTC (pinned when a demo or test says so)."""
    if _pinned is not None:
        return _pinned
    return datetime.now(UTC)


def pin(value: datetime | str | None) -> None:
    """Pin the clock to an instant (a naive value or string is Beijing time); None unpins."""
    global _pinned
    if isinstance(value, str):
        value = parse_instant(value)
    elif value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=LOCAL_TZ)
    _pinned = value.astimezone(UTC) if value is not None else None


def pinned() -> datetime | None:
    return _pinned


def local(dt: datetime | None) -> datetime | None:
    """An instant shown to people: Beijing time."""
    return dt.astimezone(LOCAL_TZ) if dt is not None else None
