"""One list/create/edit view per record category, generated from the profile's declaration."""
from __future__ import annotations

import json
import os
import re
import secrets
from urllib.parse import quote

import sqlalchemy as sa
from flask import Response, abort, current_app, flash, g, redirect, request
from flask_admin import expose
from flask_admin.model.fields import AjaxSelectField
from flask_login import current_user
from jinja2 import pass_context
from sqlalchemy.orm import joinedload, selectinload
from wtforms import validators as v

from forms import imports
from forms.base import PLEASE_CHOOSE, choices
from forms.category import form_object, form_values, record_form_class
from models import policy, workflow
from models.base import db
from models.calendar import Term
from models.catalog import Activity, Category
from models.clock import local, now
from models.fields import FieldErrors, display_value
from models.org import GRADE_NAMES, SchoolClass, Student
from models.records import RECORD_STATES, Record
from models.roles import LEVEL_NAMES
from views.base import ScopedAjaxLoader, ScopedModelView
from views.export import XLSX_MIME
from views.i18n import _l, localized

STAFF_ROLES = policy.STAFF


def category_row(code: str, profile_code: str) -> Category:
    """The category's database row; a profile's categories are loaded together, once per request (the
    menu asks every category view whether the user may use it)."""
    cache = g.setdefault("cqe_categories", {})
    if (profile_code, code) not in cache:
        from models.calendar import Profile

        for row in db.session.execute(
            sa.select(Category).join(Profile, Category.profile_id == Profile.id).where(Profile.code == profile_code)
        ).scalars():
            cache[(profile_code, row.code)] = row
    return cache[(profile_code, code)]


class ImportMixin:
    """下载导入模板 / 从 Excel 导入 on a category's list: check the whole file, then write on request."""

    @property
    def can_import(self) -> bool:
        return not self._student_only() and self.can_create

    def _require_import(self) -> None:
        if not self.can_import:
            abort(403, description=f"您的角色不能导入「{self.record_category.name}」。")

    def _import_dir(self) -> str:
        path = os.path.join(current_app.instance_path, "imports")
        os.makedirs(path, exist_ok=True)
        return path

    def _upload(self, token: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{32}", token):
            abort(404)
        path = os.path.join(self._import_dir(), token)
        try:
            with open(path + ".json") as fh:
                meta = json.load(fh)
        except OSError:
            abort(404)
        if meta.get("user_id") != current_user.id or meta.get("category") != self.spec["code"]:
            abort(404)
        return path + ".xlsx"

    def _classes(self):
        grades = list(self.record_category.grades)
        return db.session.execute(
            sa.select(SchoolClass).where(policy.scope(current_user, SchoolClass), SchoolClass.grade.in_(grades))
            .options(joinedload(SchoolClass.school)).order_by(SchoolClass.school_id, SchoolClass.grade, SchoolClass.number)
        ).scalars().all()

    def _check_file(self, path: str) -> imports.Report:
        """Read and check a stored upload (every time: the data may have changed since it was checked)."""
        with open(path, "rb") as fh:
            return imports.check(current_user, self.record_category, imports.read(fh, self.record_category))

    def _render_import(self, report=None, token=None):
        return self.render("cqe/import.html", report=report, token=token, classes=[] if report else self._classes(),
                           category_name=self.record_category.name, rules=self.rules_text(), page_title="导入")

    @expose("/import/template/")
    def import_template(self):
        self._require_import()
        students = []
        class_id = request.args.get("class_id", type=int)
        if class_id:
            klass = db.session.get(SchoolClass, class_id)
            if klass is None or not policy.visible(current_user, klass):
                abort(404)
            students = [s for s in db.session.execute(sa.select(Student).where(
                Student.class_id == class_id, policy.scope(current_user, Student)).order_by(Student.xjh)).scalars()
                if s.participates]
        data = imports.template(self.record_category, students)
        name = f"{self.record_category.name}-导入模板.xlsx"
        return Response(data, mimetype=XLSX_MIME, headers={
            "Content-Disposition": f"attachment; filename=template.xlsx; filename*=UTF-8''{quote(name)}"})

    @expose("/import/", methods=("GET", "POST"))
    def import_view(self):
        self._require_import()
        if request.method == "GET":
            return self._render_import()
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            flash("请选择要上传的 .xlsx 文件。", "error")
            return redirect(self.get_url(".import_view"))
        token = secrets.token_hex(16)
        path = os.path.join(self._import_dir(), token)
        upload.save(path + ".xlsx")
        with open(path + ".json", "w") as fh:
            json.dump({"user_id": current_user.id, "category": self.spec["code"], "name": upload.filename}, fh)
        try:
            report = self._check_file(path + ".xlsx")
        except imports.ImportFileError as exc:
            flash(exc.message, "error")
            return redirect(self.get_url(".import_view"))
        return self._render_import(report, token)

    @expose("/import/<token>/", methods=("POST",))
    def import_commit(self, token: str):
        self._require_import()
        path = self._upload(token)
        mode = request.form.get("mode")
        try:
            report = self._check_file(path)
        except imports.ImportFileError as exc:
            flash(exc.message, "error")
            return redirect(self.get_url(".import_view"))
        if report.invalid and mode != "valid":
            flash(f"文件中有 {len(report.invalid)} 行错误，未导入任何数据。可修改后重新上传，或选择仅导入无误的行。", "error")
            return self._render_import(report, token)
        if not report.valid:
            flash("没有可以导入的行。", "error")
            return redirect(self.get_url(".import_view"))
        try:
            n = workflow.add_records([r.record for r in report.valid], f"从 Excel 导入（{len(report.valid)} 行）")
        except (FieldErrors, workflow.WorkflowError) as exc:
            flash(f"导入失败，未写入任何数据：{exc.message}", "error")
            return redirect(self.get_url(".import_view"))
        skipped = f"，有错误的 {len(report.invalid)} 行未导入" if report.invalid else ""
        flash(f"已导入 {n} 条记录{skipped}。", "success")
        return redirect(self.get_url(".index_view"))

    @expose("/import/<token>/errors.xlsx")
    def import_errors(self, token: str):
        self._require_import()
        path = self._upload(token)
        try:
            report = self._check_file(path)
        except imports.ImportFileError as exc:
            abort(400, description=exc.message)
        with open(path, "rb") as fh:
            data = imports.error_workbook(fh, report)
        return Response(data, mimetype=XLSX_MIME, headers={
            "Content-Disposition": "attachment; filename=errors.xlsx"})


class CategoryView(ImportMixin, ScopedModelView):
    """Records of one category in the current term. Subclassed per category by ``category_view``."""

    spec: dict = {}
    profile_code: str = ""
    create_template = "cqe/record_create.html"
    details_template = "cqe/record_details.html"
    column_default_sort = ("id", True)
    column_auto_select_related = False  # get_query loads students after LIMIT instead
    column_sortable_list = ["updated_at", "state"]
    column_searchable_list = ["student.name", "student.xjh"]
    column_filters = ["state", "origin"]
    column_labels = {"state": _l("状态"), "origin": _l("录入方"), "updated_at": _l("更新时间"), "student.name": _l("学生姓名"),
                     "student.xjh": _l("学籍号")}
    edit_action = "edit"

    # --- the category ---------------------------------------------------------------------
    @property
    def record_category(self) -> Category:
        return category_row(self.spec["code"], self.profile_code)

    def _levels(self, grade=None) -> list[str]:
        return workflow.entry_levels(current_user, self.record_category, grade)

    def is_accessible(self) -> bool:
        if not current_user.is_authenticated:
            return False
        if current_user.has_role(*STAFF_ROLES):
            return True
        # Students use the categories they write themselves; parents read the home page.
        return bool(self._levels(self._own_grade()))

    def _own_grade(self):
        for grant in current_user.grants:
            if grant.role == "student" and grant.student is not None:
                return grant.student.school_class.grade
        return None

    @property
    def can_create(self):
        return current_user.is_authenticated and bool(self._levels(self._own_grade() if self._student_only() else None))

    can_edit = can_create
    can_delete = can_create

    def _student_only(self) -> bool:
        return not current_user.has_role(*STAFF_ROLES)

    def rules_text(self) -> str:
        """The category's rules in one line, shown above its form."""
        spec = self.spec
        parts = [f"适用年级：{'、'.join(GRADE_NAMES[g] for g in spec['grades'])}",
                 f"录入方：{'、'.join(LEVEL_NAMES[r['level']] for r in spec['entry'])}"]
        if spec.get("per_term_limit"):
            parts.append(f"每名学生每学期最多{spec['per_term_limit']}条")
        if spec.get("per_year_limit"):
            parts.append(f"每名学生每学年最多{spec['per_year_limit']}条")
        return "；".join(parts)

    # --- scoped list ----------------------------------------------------------------------
    def scope_filter(self):
        return sa.and_(
            Record.category_id == self.record_category.id,
            Record.term_id.in_(policy.current_term_ids(current_user)),
        )

    def get_query(self):
        # selectinload: the page's 20 rows fetch their students in one more query, after LIMIT (a join would
        # run before ORDER BY … LIMIT over every row in scope).
        return super().get_query().options(selectinload(Record.student).joinedload(Student.school_class))

    def get_list(self, *args, **kwargs):
        count, rows = super().get_list(*args, **kwargs)
        self._preload_activities(rows)
        return count, rows

    def _preload_activities(self, rows) -> None:
        """Load every catalogue activity the page shows in one query (no query per row)."""
        names = [s["name"] for s in self.spec["fields"] if s["type"] == "activity"]
        ids = {r.data.get(n) for r in rows or [] for n in names if r.data and r.data.get(n) is not None}
        if ids:
            # Held for the request: the session's identity map keeps objects only while referenced.
            g.cqe_activities = db.session.execute(sa.select(Activity).where(Activity.id.in_(ids))).scalars().all()

    def get_list_columns(self):
        cols = [("student", _l("学生")), ("klass", _l("班级"))]
        cols += [(f"f_{s['name']}", localized(s["label"], s.get("label_en"))) for s in self.spec["fields"]
                 if s["type"] != "textarea"]
        cols += [("origin", _l("录入方")), ("state", _l("状态")), ("updated_at", _l("更新时间"))]
        return cols

    def get_details_columns(self):
        cols = [("student", _l("学生")), ("klass", _l("班级"))]
        cols += [(f"f_{s['name']}", localized(s["label"], s.get("label_en"))) for s in self.spec["fields"]]
        cols += [("origin", _l("录入方")), ("entered_by", _l("录入人")), ("state", _l("状态")),
                 ("version_id", _l("版本")), ("created_at", _l("录入时间")), ("updated_at", _l("更新时间"))]
        return cols

    def get_export_columns(self):
        cols = [("xjh", "学籍号"), ("student", "学生"), ("klass", "班级")]
        cols += [(f"f_{s['name']}", s["label"]) for s in self.spec["fields"]]
        cols += [("origin", "录入方"), ("state", "状态"), ("updated_at", "更新时间")]
        return cols

    def _value(self, model, name):
        if name == "student":
            return model.student.name
        if name == "xjh":
            return model.student.xjh
        if name == "klass":
            return model.student.school_class.name
        if name == "origin":
            return LEVEL_NAMES.get(model.origin, model.origin)
        if name == "state":
            return RECORD_STATES.get(model.state, model.state)
        if name in ("updated_at", "created_at"):
            value = getattr(model, name)
            return local(value).strftime("%Y-%m-%d %H:%M") if value else ""
        if name == "entered_by":
            return model.entered_by.display_name if model.entered_by else ""
        if name.startswith("f_"):
            key = name[2:]
            spec = next(s for s in self.spec["fields"] if s["name"] == key)
            return display_value(spec, (model.data or {}).get(key))
        return getattr(model, name)

    @pass_context
    def get_list_value(self, context, model, name):
        return self._value(model, name)

    @pass_context
    def get_detail_value(self, context, model, name):
        return self._value(model, name)

    def get_export_value(self, model, name):
        return self._value(model, name)

    # --- forms ----------------------------------------------------------------------------
    def scaffold_form(self):
        return record_form_class(self.spec["fields"])

    def _student_field(self):
        return AjaxSelectField(self._student_loader, label="学生", validators=[v.InputRequired(message="请选择学生")])

    def _activity_choices(self):
        acts = (
            db.session.query(Activity)
            .filter(policy.scope(current_user, Activity))
            .filter(Activity.term_id.in_(sa.select(Term.id).where(Term.is_current.is_(True))))
            .order_by(Activity.level.desc(), Activity.id)
            .all()
        )
        return choices([PLEASE_CHOOSE] + [(str(a.id), str(a)) for a in acts])

    def _prepare(self, form):
        levels = self._levels()
        for spec in self.spec["fields"]:
            field = form[spec["name"]]
            if spec["type"] == "activity":
                field.choices = self._activity_choices()
            # A level allowed only some values (e.g. school clerks: grade-9 艺术 exam results) sees only those.
            if spec["type"] == "choice" and levels:
                allowed = None
                for level in levels:
                    rule = next((r for r in self.record_category.entry if r["level"] == level), {})
                    where = rule.get("where", {}).get(spec["name"])
                    if where is None:
                        allowed = None
                        break
                    allowed = (allowed or []) + list(where)
                if allowed is not None:
                    field.choices = choices([PLEASE_CHOOSE] + [c for c in spec["choices"] if c in allowed])
        return form

    def create_form(self, obj=None):
        from flask_admin.helpers import get_form_data

        student_field = None if self._student_only() else self._student_field()
        cls = record_form_class(self.spec["fields"], student_field=student_field, base=self.form_base_class)
        return self._prepare(cls(get_form_data(), obj=obj))

    def edit_form(self, obj=None):
        from flask_admin.helpers import get_form_data

        cls = record_form_class(self.spec["fields"], base=self.form_base_class)
        return self._prepare(cls(get_form_data(), obj=form_object(obj) if obj is not None else None))

    def record_history(self, record):
        """Who did what to this record, when, from where, before → after (on its details page)."""
        from views.actions import history

        return history("Record", record.id)

    # --- endpoints ------------------------------------------------------------------------
    def _require(self, action_name: str, obj) -> None:
        # A rejected record is corrected (its own window: the clerks' deadline), not edited.
        if action_name == "edit" and obj.state == "rejected":
            action_name = "correct"
        super()._require(action_name, obj)

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self):
        if not self.can_create:
            abort(403, description=f"您的角色不能录入「{self.record_category.name}」。")
        decision = self._window_now()
        if not decision:
            abort(403, description=decision.reason)
        return super().create_view()

    def _window_now(self) -> policy.Decision:
        """Entry is open when the window of the user's level is open for a cohort the category applies to."""
        at = now()
        terms = db.session.query(Term).filter(policy.scope(current_user, Term), Term.is_current.is_(True)).all()
        reason = policy.Decision(False, "当前没有进行中的学期。", 403)
        for level in self._levels():
            phase = workflow.WINDOW_OF_ORIGIN[level]
            for term in terms:
                for cohort in term.cohorts:
                    if not set(cohort.grades) & set(self.record_category.grades):
                        continue
                    d = policy.window_decision([cohort], (phase,), at, f"录入「{self.record_category.name}」")
                    if d:
                        return d
                    reason = d
        return reason

    # --- changes through the workflow -----------------------------------------------------
    def create_model(self, form):
        data = form_values(form, self.spec["fields"])
        if self._student_only():
            student = next((gr.student for gr in current_user.grants if gr.role == "student"), None)
        else:
            student = form.student.data
        if student is None:
            form.student.errors = ["请选择学生"]
            return False
        return self.run_workflow(form, lambda: workflow.create_record(current_user, self.record_category, student,
                                                                      data))

    def update_model(self, form, model):
        data = form_values(form, self.spec["fields"])
        return bool(self.run_workflow(form, lambda: workflow.update_record(
            current_user, model, data, expected_version=form.version.data or None)))

    def delete_model(self, model):
        return bool(self.run_workflow(None, lambda: workflow.delete_record(current_user, model), refusal="flash"))


def _student_extra(spec):
    def extra():
        grades = spec["grades"]
        return sa.and_(
            Student.status == "enrolled",
            Student.class_id.in_(sa.select(SchoolClass.id).where(SchoolClass.grade.in_(grades))),
        )

    return extra


def category_view(profile_code: str, spec: dict, dimension_name: str) -> CategoryView:
    """Build the view class of one category and return an instance ready for ``admin.add_view``."""
    loader = ScopedAjaxLoader("student", Student, fields=["name", "xjh"], extra=_student_extra(spec),
                              placeholder="输入姓名或学籍号")
    cls = type(
        f"CategoryView_{spec['code']}",
        (CategoryView,),
        {"spec": spec, "profile_code": profile_code, "_student_loader": loader, "form_ajax_refs": {"student": loader}},
    )
    return cls(Record, name=localized(spec["name"], spec.get("name_en")), category=dimension_name, endpoint=f"cat_{spec['code']}",
               url=f"/admin/records/{spec['code']}")

