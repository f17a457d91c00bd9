"""WTForms built from a category's field specs. The form only collects values; models.fields
validates them (the same rules as the grid and imports), so errors read the same everywhere."""
from __future__ import annotations

from datetime import date

from wtforms import fields as f
from wtforms import validators as v

from forms.base import PLEASE_CHOOSE, CQEForm, choices


def field_for(spec: dict, activity_choices=None):
    required = [v.InputRequired(message="必填")] if spec.get("required", True) else [v.Optional()]
    kind = spec["type"]
    label = spec["label"]
    desc = spec.get("help", "")
    if kind == "text":
        return f.StringField(label, validators=required + [v.Length(max=spec.get("max_length", 255))], description=desc)
    if kind == "textarea":
        return f.TextAreaField(label, validators=required + [v.Length(max=spec.get("max_length", 2000))],
                               description=desc, render_kw={"rows": 6})
    if kind == "choice":
        return f.SelectField(label, choices=choices([PLEASE_CHOOSE, *spec["choices"]]), validators=required,
                             description=desc)
    if kind == "date":
        return f.DateField(label, validators=required, description=desc, render_kw={"type": "date"})
    if kind == "int":
        return f.IntegerField(label, validators=required, description=desc)
    if kind == "decimal":
        return f.DecimalField(label, validators=required, description=desc)
    if kind == "activity":
        return f.SelectField(label, coerce=lambda x: int(x) if x not in (None, "") else None,
                             choices=[], validators=required, description=desc, validate_choice=False)
    raise ValueError(kind)


def record_form_class(fields: list[dict], student_field=None, base=CQEForm):
    attrs = {}
    if student_field is not None:
        attrs["student"] = student_field
    for spec in fields:
        attrs[spec["name"]] = field_for(spec)
    attrs["version"] = f.HiddenField()
    return type("RecordForm", (base,), attrs)


def form_values(form, fields: list[dict]) -> dict:
    """The data dict of a submitted form (dates as ISO strings), for models.fields.validate_data."""
    data = {}
    for spec in fields:
        field = form[spec["name"]]
        value = field.data
        if field.process_errors and field.raw_data:
            # Typed but not parsed (2022-02-30 in a date, text in a number): the field rules name what was
            # typed, instead of seeing nothing and answering 必填.
            value = field.raw_data[0]
        elif isinstance(value, date):
            value = value.isoformat()
        data[spec["name"]] = value
    return data


def form_object(record) -> object:
    """An object a record form can be filled from (its data fields as attributes)."""

    class Proxy:
        pass

    proxy = Proxy()
    for key, value in (record.data or {}).items():
        setattr(proxy, key, value)
    for spec in record.category.fields:
        value = getattr(proxy, spec["name"], None)
        if spec["type"] == "date" and isinstance(value, str) and value:
            setattr(proxy, spec["name"], date.fromisoformat(value))
    proxy.version = record.version_id
    proxy.student = record.student
    return proxy
