"""Language helpers. Project msgids are the Chinese text itself (the default UI); the English
catalogue lives in translations/en. Data that carries both names (categories, dimensions, fields)
picks one by the request's locale."""
from __future__ import annotations

from flask import has_request_context
from flask_babel import LazyString, get_locale
from flask_babel import lazy_gettext as _l  # noqa: F401 - re-exported for views


def is_english() -> bool:
    return has_request_context() and str(get_locale() or "").startswith("en")


def pick(zh: str, en: str | None) -> str:
    return en if en and is_english() else zh


def localized(zh: str, en: str | None) -> LazyString:
    """A string evaluated at render time: ``en`` for English pages, ``zh`` otherwise."""
    return LazyString(pick, zh, en)
