"""The base of every form: Flask-WTF's CSRF (the same token CSRFProtect checks on every POST),
with Flask-Admin's translations for its own messages."""
from __future__ import annotations

from flask_admin.form import BaseForm
from flask_wtf import FlaskForm


class CQEForm(FlaskForm):
    class Meta(FlaskForm.Meta):
        _translations = BaseForm.Meta._translations

        def get_translations(self, form):
            return self._translations
