"""Category field specs: the one validator of a record's ``data``. Forms, the grid and imports
all end here, so a value refused on one path is refused on every path with the same message."""
from __future__ import annotations

import re
from datetime import date

FIELD_TYPES = ("text", "textarea", "choice", "date", "int", "decimal", "activity")
# How Excel and WPS show a date when a block is copied: 2022-03-01, 2022/3/1, 2022.3.1, 2022年3月1日.
DATE_TEXT = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")


class FieldErrors(Exception):
    """Validation failed: ``errors`` maps field name → Chinese message (None: the whole record)."""

    def __init__(self, errors: dict):
        super().__init__("; ".join(f"{k or ''}: {v}" for k, v in errors.items()))
        self.errors = errors

    @property
    def message(self) -> str:
        return "；".join(self.errors.values())


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def clean_value(spec: dict, value):
    """Return the stored form of one value, or raise ValueError with a Chinese message."""
    kind = spec["type"]
    if _blank(value):
        if spec.get("required", True):
            raise ValueError("必填")
        return None
    if kind in ("text", "textarea"):
        value = str(value).strip()
        limit = spec.get("max_length")
        if limit and len(value) > limit:
            raise ValueError(f"不能超过{limit}个字（现有{len(value)}个）")
        return value
    if kind == "choice":
        value = str(value).strip()
        if value not in spec["choices"]:
            raise ValueError(f"「{value}」不是可选值（可选：{'、'.join(spec['choices'])}）")
        return value
    if kind == "date":
        if isinstance(value, date):
            return value.isoformat()
        match = DATE_TEXT.fullmatch(str(value).strip())
        try:
            if match is None:
                raise ValueError
            return date(*(int(part) for part in match.groups())).isoformat()
        except ValueError:
            raise ValueError(f"「{value}」不是有效日期（格式：2022-03-01）") from None
    if kind in ("int", "activity"):
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"「{value}」不是整数") from None
        if kind == "int":
            if "min" in spec and number < spec["min"]:
                raise ValueError(f"不能小于{spec['min']}")
            if "max" in spec and number > spec["max"]:
                raise ValueError(f"不能大于{spec['max']}")
        return number
    if kind == "decimal":
        try:
            return float(str(value).strip())
        except ValueError:
            raise ValueError(f"「{value}」不是数字") from None
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
