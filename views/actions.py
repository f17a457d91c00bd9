"""What the action pages share: run a workflow call and say what happened, list what a user may do
to an object now (asked of policy, never decided here), and read an object's history."""
from __future__ import annotations

import sqlalchemy as sa
from flask import abort, current_app, flash

from models import policy, workflow
from models.audit import AuditEvent
from models.base import db
from models.cases import APPEAL_KINDS, CASE_STATES, FLOWS, Case
from models.clock import local
from models.deadlines import EFFECTS
from models.fields import FieldErrors
from models.records import RECORD_STATES, Record
from models.roles import LEVEL_NAMES

RECORD_ACTIONS = ("confirm", "reject", "submit", "publish", "review", "return")
CASE_ACTIONS = ("accept", "dismiss", "correct", "approve", "send_back")


def perform(change, done: str) -> bool:
    """Run a workflow call: refusals answer with their status and reason, bad input and conflicts are
    flashed (nothing was saved), success is flashed."""
    try:
        change()
    except policy.Denied as exc:
        abort(exc.status, description=exc.reason)
    except FieldErrors as exc:
        flash(exc.message, "error")
        return False
    except workflow.WorkflowError as exc:
        flash(exc.message, "error")
        return False
    flash(str(done), "success")
    return True


def available(user, obj, actions) -> list[str]:
    """The actions of ``actions`` that policy allows this user on ``obj`` now."""
    result = []
    for action in actions:
        if isinstance(obj, Record) and workflow.transition_for(obj, action) is None:
            continue
        if isinstance(obj, Case) and workflow.case_transition_for(obj, action) is None:
            continue
        if policy.check(user, action, obj):
            result.append(action)
    return result


def window_note(user, obj, action) -> str:
    """Why an action the object's state allows cannot be done now (e.g. its window is closed), or ""."""
    decision = policy.check(user, action, obj)
    return "" if decision else decision.reason


AUDIT_ACTION_NAMES = {**workflow.ACTION_LABELS, "create": "新建", "update": "修改", "edit": "修改", "delete": "删除",
                      "file": "提交申诉", **{code: e.name for code, e in EFFECTS.items()}}


def _run_ids(object_type: str, object_id) -> list[int]:
    """The deadline runs that changed this object in bulk: their one event each belongs to its history."""
    if object_type == "Record":
        cols = (Record.deadline_run_id,)
        model = Record
    elif object_type == "Case":
        cols = (Case.deadline_run_id, Case.overdue_run_id)
        model = Case
    else:
        return []
    row = db.session.execute(sa.select(*cols).where(model.id == int(object_id))).first()
    return [i for i in (row or ()) if i is not None]


def history(object_type: str, object_id) -> list[dict]:
    """The object's events, oldest first: who, when (Beijing time), from where, what, before → after.
    A bulk deadline run that changed it appears as the run's one event (its state change, not its counts)."""
    own = sa.and_(AuditEvent.object_type == object_type, AuditEvent.object_id == str(object_id))
    runs = [str(i) for i in _run_ids(object_type, object_id)]
    where = sa.or_(own, sa.and_(AuditEvent.object_type == "DeadlineRun", AuditEvent.object_id.in_(runs),
                                       AuditEvent.action != "deadline_failed")) if runs else own
    rows = db.session.execute(sa.select(AuditEvent).where(where).order_by(AuditEvent.at, AuditEvent.id)).scalars().all()
    out = []
    for e in rows:
        before, after = e.before, e.after
        if e.object_type == "DeadlineRun":
            before = {k: v for k, v in (before or {}).items() if k == "state"} or None
            after = {k: v for k, v in (after or {}).items() if k == "state"} or None
        out.append({"at": local(e.at).strftime("%Y-%m-%d %H:%M:%S"), "actor": e.actor_name, "ip": e.ip,
                    "action": AUDIT_ACTION_NAMES.get(e.action, e.action), "reason": e.reason,
                    "changes": _changes(before, after) if (before or after) else []})
    return out


FIELD_LABELS = {
    "state": "状态", "data": "内容", "reject_reason": "确认不通过原因", "review_comment": "班主任意见",
    "previous_data": "修改前内容", "description": "说明", "proposal": "修改方案", "handler_note": "处理意见",
    "corrector_note": "修改说明", "due_at": "办理截止", "closed_at": "办结时间", "kind": "类型", "flow": "流程",
    "starts_at": "开始", "ends_at": "结束", "status": "状态", "origin": "录入方", "handler_level": "处理方",
    "corrector_level": "修改方",
}


def _changes(before: dict | None, after: dict | None) -> list[tuple[str, str, str]]:
    """Changed fields with readable names; ids and empty values of a creation are left out."""
    keys = list(dict.fromkeys(list((before or {}).keys()) + list((after or {}).keys())))
    skip = {"id", "version_id", "created_at", "updated_at"}
    rows = []
    for key in keys:
        old, new = (before or {}).get(key), (after or {}).get(key)
        if key in skip or (before is None and (key.endswith("_id") or new in (None, "", {}))):
            continue
        rows.append((FIELD_LABELS.get(key, key), _short(key, old), _short(key, new)))
    return rows


def _short(key: str, value) -> str:
    if value is None:
        return ""
    if key == "state":
        return RECORD_STATES.get(value) or CASE_STATES.get(value) or str(value)
    if key == "flow":
        return FLOWS.get(value, str(value))
    if key == "kind":
        return APPEAL_KINDS.get(value, str(value))
    if key in ("handler_level", "corrector_level", "origin"):
        return LEVEL_NAMES.get(value, str(value))
    if isinstance(value, str) and len(value) >= 19 and value[10] == "T":
        try:
            from datetime import datetime

            return local(datetime.fromisoformat(value)).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return value
    if isinstance(value, dict):
        return "，".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def render_page(template: str, **context):
    """Render a page of a plain blueprint inside the admin layout (menu, language switch, flashes)."""
    admins = current_app.extensions["admin"]
    admin = admins[0] if isinstance(admins, list) else admins
    return admin.index_view.render(template, **context)
