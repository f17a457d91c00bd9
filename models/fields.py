"""Category field specs: the one validator of a record's ``data``. Forms, the grid and imports
all end here, so a value refused on one path is refused on every path with the same message."""
from __future__ import annotations

import math
import re
from datetime import date, datetime

FIELD_TYPES = ("text", "textarea", "choice", "date", "int", "decimal", "activity")
# How Excel and WPS show a date when a block is copied: 2022-03-01, 2022/3/1, 2022.3.1, 2022年3月1日.
DATE_TEXT = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
# The dates a record can sensibly carry: a typo (0022, 9999) or an Excel date serial 0 (1900-01-00, which
# openpyxl reads as 1899-12-30) is refused instead of being stored as if it were true.
DATE_MIN, DATE_MAX = date(2000, 1, 1), date(2099, 12, 31)
MAX_ID = 2**31 - 1  # the largest id an INTEGER column holds on PostgreSQL (SQLite overflows at 2**63)
# Characters no text may hold: C0 controls other than tab and line breaks, DEL and the C1 controls (NUL
# cannot even be stored on PostgreSQL), lone surrogates (half of a broken UTF-16 pair: not encodable, the
# page showing it would fail) and the noncharacters U+FFFE/U+FFFF.
BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# Invisible characters that do not make a value by themselves (zero-width spaces and joiners, the BOM).
_EDGES = re.compile(r"^[\s\u200b-\u200d\u2060\ufeff]+|[\s\u200b-\u200d\u2060\ufeff]+$")


class FieldErrors(Exception):
    """Validation failed: ``errors`` maps field name → Chinese message (None: the whole record)."""

    def __init__(self, errors: dict):
        super().__init__("; ".join(f"{k or ''}: {v}" for k, v in errors.items()))
        self.errors = errors

    @property
    def message(self) -> str:
        return "；".join(self.errors.values())


def text_problem(text: str) -> str | None:
    """Why a text cannot be stored as typed (a control or broken character, with its position), or None."""
    bad = BAD_CHARS.search(text)
    if bad is None:
        return None
    return f"第{bad.start() + 1}个字符是无法保存的控制字符或乱码（U+{ord(bad.group()):04X}），请删除后重新输入"


def _shown(value) -> str:
    """A value as an error message quotes it: a long one cut short."""
    text = str(value)
    return text if len(text) <= 30 else text[:30] + "…"


def trim(text: str) -> str:
    """The text without blanks at its ends, invisible ones (zero-width space, BOM …) included."""
    return _EDGES.sub("", text)


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and trim(value) == "")


def clean_value(spec: dict, value):
    """Return the stored form of one value, or raise ValueError with a Chinese message."""
    kind = spec["type"]
    if isinstance(value, bool) or not isinstance(value, (str, int, float, date, type(None))):
        raise ValueError("数据格式错误：请填写文本")  # a list, an object, true/false: never a field's value
    if isinstance(value, str) and (problem := text_problem(value)):
        raise ValueError(problem)
    if _blank(value):
        if spec.get("required", True):
            raise ValueError("必填")
        return None
    if isinstance(value, str):
        value = trim(value)
    if kind in ("text", "textarea"):
        value = str(value)
        limit = spec.get("max_length")
        if limit and len(value) > limit:
            raise ValueError(f"不能超过{limit}个字（现有{len(value)}个）")
        return value
    if kind == "choice":
        value = str(value)
        if value not in spec["choices"]:
            raise ValueError(f"「{_shown(value)}」不是可选值（可选：{'、'.join(spec['choices'])}）")
        return value
    if kind == "date":
        if isinstance(value, date):
            day = value.date() if isinstance(value, datetime) else value
        else:
            match = DATE_TEXT.fullmatch(str(value))
            try:
                if match is None:
                    raise ValueError
                day = date(*(int(part) for part in match.groups()))
            except ValueError:
                raise ValueError(f"「{_shown(value)}」不是有效日期（格式：2022-03-01）") from None
        if not DATE_MIN <= day <= DATE_MAX:
            raise ValueError(f"「{day.isoformat()}」超出有效日期范围（{DATE_MIN.isoformat()}至{DATE_MAX.isoformat()}）")
        return day.isoformat()
    if kind in ("int", "activity"):
        try:
            number = int(str(value))
        except ValueError:
            raise ValueError(f"「{_shown(value)}」不是{'有效的活动项目' if kind == 'activity' else '整数'}") from None
        if kind == "activity" and not 0 < number <= MAX_ID:
            raise ValueError(f"「{_shown(value)}」不是有效的活动项目")
        if kind == "int":
            if "min" in spec and number < spec["min"]:
                raise ValueError(f"不能小于{spec['min']}")
            if "max" in spec and number > spec["max"]:
                raise ValueError(f"不能大于{spec['max']}")
        return number
    if kind == "decimal":
        try:
            number = float(str(value))
        except ValueError:
            raise ValueError(f"「{_shown(value)}」不是数字") from None
        if not math.isfinite(number):
            raise ValueError(f"「{_shown(value)}」不是数字")
        return number
    raise ValueError(f"未知字段类型 {kind}")


def validate_data(fields: list[dict], data: dict) -> dict:
    """Clean every field of a record; raise FieldErrors naming each bad field."""
    clean, errors = {}, {}
    for spec in fields:
        try:
            clean[spec["name"]] = clean_value(spec, data.get(spec["name"]))
        except ValueError as exc:
            errors[spec["name"]] = f"{spec['label']}：{exc}"
    unknown = set(data) - {f["name"] for f in fields}
    if unknown:
        errors[None] = f"未知字段：{'、'.join(sorted(unknown))}"
    if errors:
        raise FieldErrors(errors)
    return clean


def display_value(spec: dict, value) -> str:
    if value is None:
        return ""
    if spec["type"] == "activity":
        from models.base import db
        from models.catalog import Activity

        activity = db.session.get(Activity, value)
        return str(activity) if activity else f"#{value}"
    return str(value)
