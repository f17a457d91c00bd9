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
