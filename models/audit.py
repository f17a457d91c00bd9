"""Append-only history. Every flush that changes a row writes one event per row, in the same
transaction, with who / when / from where / before → after. Nothing else writes audit rows."""
from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import JSONType, UTCDateTime, db
from models.clock import now
from models.owners import owner_ids

SECRET_COLUMNS = {"password_hash"}


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (
        sa.Index("ix_audit_events_object", "object_type", "object_id", "id"),
        sa.Index("ix_audit_events_actor_id_at", "actor_id", "at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[int | None] = mapped_column(nullable=True)
    actor_name: Mapped[str] = mapped_column(sa.String(128), default="")
    ip: Mapped[str] = mapped_column(sa.String(64), default="")
    object_type: Mapped[str] = mapped_column(sa.String(48))
    object_id: Mapped[str] = mapped_column(sa.String(64))
    # Where the object lives, so a district or school sees its own history and nobody else's.
    district_id: Mapped[int | None] = mapped_column(nullable=True, index=True)
    school_id: Mapped[int | None] = mapped_column(nullable=True, index=True)
    action: Mapped[str] = mapped_column(sa.String(48))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    before: Mapped[dict | None] = mapped_column(JSONType, nullable=True)
    after: Mapped[dict | None] = mapped_column(JSONType, nullable=True)

    def __str__(self) -> str:
        return f"{self.object_type}#{self.object_id} {self.action}"


@dataclass(frozen=True)
class Actor:
    user_id: int | None = None
    name: str = "系统"
    ip: str = ""
    action: str | None = None
    reason: str = ""


_actor: contextvars.ContextVar[Actor] = contextvars.ContextVar("cqe_actor", default=Actor())  # noqa: B039 - frozen


def set_actor(actor: Actor) -> None:
    _actor.set(actor)


def current_actor() -> Actor:
    return _actor.get()


@contextmanager
def acting(action: str | None = None, reason: str = "", **changes):
    """Name the action (and reason) that the changes flushed inside this block belong to."""
    token = _actor.set(replace(_actor.get(), action=action, reason=reason, **changes))
    try:
        yield
    finally:
        _actor.reset(token)


def _plain(value):
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (dict, list, str, int, float, bool)) or value is None:
        return value
    return str(value)


def _columns(obj):
    mapper = sa.inspect(obj).mapper
    return [(attr.key, attr.columns[0].key) for attr in mapper.column_attrs]


def _snapshot(obj) -> dict:
    return {
        key: ("***" if key in SECRET_COLUMNS else _plain(getattr(obj, key)))
        for key, _ in _columns(obj)
        if key not in ("created_at", "updated_at")
    }


def _diff(obj) -> tuple[dict, dict]:
    state = sa.inspect(obj)
    before, after = {}, {}
    for key, _ in _columns(obj):
        if key in ("updated_at", "version_id"):
            continue
        hist = state.attrs[key].history
        if not hist.has_changes():
            continue
        old = hist.deleted[0] if hist.deleted else None
        new = hist.added[0] if hist.added else None
        if old == new:
            continue
        secret = key in SECRET_COLUMNS
        before[key] = "***" if secret else _plain(old)
        after[key] = "***" if secret else _plain(new)
    return before, after


def _audited(obj) -> bool:
    """Everything but the history itself and inbox messages (read marks are not evaluation data)."""
    return isinstance(obj, db.Model) and type(obj).__name__ not in ("AuditEvent", "Notification")


@sa.event.listens_for(Session, "before_flush")
def _collect(session, flush_context, instances):
    pending = session.info.setdefault("cqe_audit", [])
    actor = current_actor()
    for obj in session.new:
        if _audited(obj):
            pending.append((obj, actor, actor.action or "create", None, "new"))
    for obj in session.dirty:
        if _audited(obj) and session.is_modified(obj, include_collections=False):
            before, after = _diff(obj)
            if before or after:
                pending.append((obj, actor, actor.action or "update", before, after))
    for obj in session.deleted:
        if _audited(obj):
            pending.append((obj, actor, actor.action or "delete", _snapshot(obj), None))


@sa.event.listens_for(Session, "after_flush")
def _write(session, flush_context):
    pending = session.info.pop("cqe_audit", [])
    if not pending:
        return
    at = now()
    rows = []
    for obj, actor, action, before, after in pending:
        if after == "new":
            after = _snapshot(obj)
        ident = sa.inspect(obj).mapper.primary_key_from_instance(obj)
        owner = owner_ids(obj)
        rows.append(
            dict(
                at=at,
                actor_id=actor.user_id,
                actor_name=actor.name,
                ip=actor.ip,
                object_type=type(obj).__name__,
                object_id=",".join(str(i) for i in ident),
                district_id=owner.get("district"),
                school_id=owner.get("school"),
                action=action,
                reason=actor.reason or "",
                before=before,
                after=after,
            )
        )
    session.connection().execute(sa.insert(AuditEvent), rows)


@sa.event.listens_for(AuditEvent, "before_update")
@sa.event.listens_for(AuditEvent, "before_delete")
def _append_only(mapper, connection, target):
    raise RuntimeError("audit events are append-only")
