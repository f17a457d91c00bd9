"""表格录入: the roster grid of a category, per class (issue 6). The page is Tabulator (a maintained
grid library from the npm registry, fetched by ``make vendor``); every check and save runs on the server
through forms/grid.py and the workflow layer."""
from __future__ import annotations

from flask import abort, jsonify, request
from flask_admin import expose
from flask_babel import gettext
from flask_login import current_user

from forms import grid
from forms.base import db_id
from models import policy, workflow
from models.base import db
from models.fields import FieldErrors
from models.org import GRADE_NAMES, SchoolClass
from views.i18n import localized


class GridMixin:
    """/grid/ (the page), /grid/rows/ (the rows as JSON), /grid/check/ and /grid/save/ (POST JSON)."""

    @property
    def can_grid(self) -> bool:
        # Activity fields hold catalogue ids: they are chosen from a list in the form, not typed.
        return self.can_import and not any(f["type"] == "activity" for f in self.spec["fields"])

    def _require_grid(self) -> None:
        if not self.can_grid:
            abort(403, description=gettext("您的角色不能表格录入「%(name)s」。", name=self.record_category.name))

    def _grid_class(self, ident) -> SchoolClass:
        ident = db_id(ident)  # not an id at all (text, a list, beyond any id): no such class
        klass = policy.get_scoped(current_user, SchoolClass, ident) if ident is not None else None
        if klass is None:
            abort(404, description=gettext("班级不存在或不在您的权限范围内。"))
        if klass.grade not in self.record_category.grades:
            abort(400, description=gettext("「%(name)s」不适用于该年级。", name=self.record_category.name))
        return klass

    def _grid_columns(self) -> list[dict]:
        cols = []
        for spec in self.spec["fields"]:
            col = {"field": spec["name"], "title": localized(spec["label"], spec.get("label_en")),
                   "type": spec["type"], "required": spec.get("required", True)}
            if spec["type"] == "choice":
                col["choices"] = list(spec["choices"])
            if spec.get("max_length"):
                col["max_length"] = spec["max_length"]
            cols.append(col)
        return cols

    @expose("/grid/")
    def grid_view(self):
        self._require_grid()
        klass = None
        class_id = request.args.get("class_id")
        if class_id:
            klass = self._grid_class(class_id)
        window = self._window_now()
        if klass is not None and window and not workflow.entry_levels(current_user, self.record_category, klass.grade):
            window = policy.Decision(False, gettext("您的角色不能录入%(grade)s的「%(name)s」，以下记录只能查看。",
                                                    grade=GRADE_NAMES[klass.grade], name=self.record_category.name), 403)
        return self.render("cqe/grid.html", klass=klass, classes=self._classes(), columns=self._grid_columns(),
                           rows=grid.rows(current_user, self.record_category, klass) if klass else [],
                           window=window, category_name=self.record_category.name, rules=self.rules_text(),
                           page_title=gettext("表格录入"))

    @expose("/grid/rows/")
    def grid_rows(self):
        self._require_grid()
        klass = self._grid_class(request.args.get("class_id"))
        return jsonify(rows=grid.rows(current_user, self.record_category, klass))

    def _grid_payload(self):
        payload = request.get_json(silent=True)
        if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list) or not all(
                isinstance(r, dict) for r in payload["rows"]):
            abort(400, description=gettext("数据格式错误。"))
        return self._grid_class(payload.get("class_id")), payload["rows"]

    @expose("/grid/check/", methods=("POST",))
    def grid_check(self):
        self._require_grid()
        klass, submitted = self._grid_payload()
        try:
            checked = grid.check(current_user, self.record_category, klass, submitted)
        except grid.GridError as exc:
            return jsonify(error=exc.message), exc.status
        finally:
            db.session.rollback()  # a check never writes
        return jsonify(errors={r["key"]: r["errors"] for r in checked.rows if r["errors"]})

    @expose("/grid/save/", methods=("POST",))
    def grid_save(self):
        self._require_grid()
        klass, submitted = self._grid_payload()
        try:
            checked, created, updated = grid.save(current_user, self.record_category, klass, submitted)
        except grid.GridError as exc:
            return jsonify(error=exc.message), exc.status
        except (FieldErrors, workflow.WorkflowError) as exc:
            # The save as a whole failed (e.g. a record changed between check and write): nothing written.
            return jsonify(error=exc.message), 409
        failed = {r["key"]: r for r in checked.invalid}
        fresh = grid.rows(current_user, self.record_category, klass)
        # Rows that failed keep what was typed, with their errors, in place of their fresh row.
        merged = []
        for row in fresh:
            bad = failed.pop(row["key"], None)
            merged.append({**row, "values": bad["values"], "errors": bad["errors"]} if bad else row)
        for bad in failed.values():  # e.g. a new row whose student is now at the limit: still shown
            merged.append({**bad, "state": gettext("新增"), "editable": True})
        return jsonify(rows=merged, created=created, updated=updated, failed=len(checked.invalid),
                       message=(gettext("已保存：新增 %(c)d 条，修改 %(u)d 条；%(f)d 行有错误，未保存，请修改后再保存。",
                                        c=created, u=updated, f=len(checked.invalid)) if checked.invalid
                                else gettext("已保存：新增 %(c)d 条，修改 %(u)d 条。", c=created, u=updated)))
