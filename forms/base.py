"""The base of every form: Flask-WTF's CSRF (the same token CSRFProtect checks on every POST),
with Flask-Admin's translations for its own messages."""
from __future__ import annotations

from flask_admin.form import BaseForm
from flask_wtf import FlaskForm
from wtforms import SelectChoice


class CQEForm(FlaskForm):
    class Meta(FlaskForm.Meta):
        _translations = BaseForm.Meta._translations

        def get_translations(self, form):
            return self._translations


def choices(pairs) -> list[SelectChoice]:
    """Select options from (value, label) pairs or plain values."""
    return [SelectChoice(*p) if isinstance(p, tuple) else SelectChoice(p) for p in pairs]


PLEASE_CHOOSE = ("", "— 请选择 —")


def db_id(value) -> int | None:
    """An id posted or passed in a query string, as an int a query can use; None for anything else
    (text, a fraction, true/false, a number beyond any id, which SQLite could not even bind)."""
    from models.fields import MAX_ID

    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit()):
            return None
    elif not isinstance(value, int):
        return None
    number = int(value)
    return number if 0 < number <= MAX_ID else None


def posted_version(value):
    """The version a page was opened at, for the workflow's stale-save check: None when not given, else
    an int; anything else (a tampered or garbled form) is refused like a stale page, never a crash."""
    from models.workflow import Conflict

    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    raise Conflict("页面数据无效（版本号不对），您的修改未保存。请刷新页面后重试。")


def posted_text(value, name: str, label: str) -> str:
    """A posted free text (a reason, a comment) as the workflow takes it, trimmed, or FieldErrors naming
    the field when it holds a character no text may hold (a NUL, another control character, a broken one)."""
    from models.fields import FieldErrors, text_problem, trim

    text = "" if value is None else str(value)
    problem = text_problem(text)
    if problem:
        raise FieldErrors({name: f"{label}：{problem}"})
    return trim(text)  # a reason of zero-width spaces alone is no reason
