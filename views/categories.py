"""One list/create/edit view per record category, generated from the profile's declaration."""
from __future__ import annotations

from urllib.parse import quote

import sqlalchemy as sa
from flask import Response, abort, flash, g, redirect, request
from flask_admin import expose
from flask_admin.model.fields import AjaxSelectField
from flask_login import current_user
from jinja2 import pass_context
from sqlalchemy.orm import joinedload, selectinload
from wtforms import validators as v

import jobs
from forms import imports
from forms.base import PLEASE_CHOOSE, choices, db_id, posted_version
from forms.category import form_object, form_values, record_form_class
from jobs import imports as import_jobs
from models import policy, workflow
from models.base import db
from models.calendar import Term
from models.catalog import Activity, Category
from models.clock import local, now
from models.fields import display_value
from models.org import GRADE_NAMES, SchoolClass, Student
from models.records import RECORD_STATES, Record
from models.roles import LEVEL_NAMES
from views.base import ScopedAjaxLoader, ScopedModelView
from views.export import XLSX_MIME
from views.grid import GridMixin
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
    """下载导入模板 / 从 Excel 导入 on a category's list: check the whole file, then write on request.

    A file larger than ``CQE_IMPORT_INLINE_ROWS`` is checked, and imported, by an RQ job while the page
    shows its progress (jobs/imports.py); a smaller one, or any without Redis, in the request. Either
    way the report is stored with the upload and shown from there (GET /import/<token>/)."""

    @property
    def can_import(self) -> bool:
        return not self._student_only() and self.can_create

    def _require_import(self) -> None:
        if not self.can_import:
            abort(403, description=f"您的角色不能导入「{self.record_category.name}」。")

    def _upload(self, token: str) -> imports.Upload:
        """The clerk's own upload for this category (anyone else's does not exist for them)."""
        upload = imports.Upload.load(token)
        if upload is None or upload.meta.get("user_id") != current_user.id \
                or upload.meta.get("category") != self.spec["code"]:
            abort(404)
        return upload

    def _classes(self):
        grades = list(self.record_category.grades)
        return db.session.execute(
            sa.select(SchoolClass).where(policy.scope(current_user, SchoolClass), SchoolClass.grade.in_(grades))
            .options(joinedload(SchoolClass.school)).order_by(SchoolClass.school_id, SchoolClass.grade, SchoolClass.number)
        ).scalars().all()

    def _render_import(self, report=None, upload=None, job_id=None):
        return self.render("cqe/import.html", report=report, token=upload.token if upload else None,
                           imported=upload.meta.get("imported") if upload else None, job_id=job_id,
                           classes=[] if (report or job_id) else self._classes(),
                           category_name=self.record_category.name, rules=self.rules_text(), page_title="导入")

    def _in_background(self, fn, upload: imports.Upload, *args, key: str, rows: int | None) -> bool:
        """Enqueue a large file's job (its starter alone sees its progress); False: run it here instead
        (a small file, no Redis configured, or Redis down)."""
        if rows is not None and rows <= imports.inline_rows():
            return False
        try:
            q = jobs.queue()
            if q is None:
                return False
            started = q.enqueue(fn, upload.token, *args, job_timeout=fn.job_timeout, result_ttl=jobs.RESULT_TTL,
                                failure_ttl=jobs.FAILURE_TTL, meta={"user_id": current_user.id, "progress": None})
        except Exception:  # noqa: BLE001 - redis.ConnectionError, timeouts: the request does the work
            return False
        upload.meta[key] = started.id
        upload.save()
        return True

    @staticmethod
    def _job_failed(job_id: str) -> bool:
        """Whether a background job ended without its result (failed, stopped, or gone from Redis)."""
        try:
            info = jobs.status(job_id)
        except Exception:  # noqa: BLE001 - Redis down: it may still finish; the page keeps polling
            return False
        return info is None or info["status"] in ("failed", "stopped", "canceled")

    @expose("/import/template/")
    def import_template(self):
        self._require_import()
        students = []
        class_id = request.args.get("class_id")
        if class_id:
            klass = db.session.get(SchoolClass, db_id(class_id) or 0)
            if klass is None or not policy.visible(current_user, klass):
                abort(404)
            students = [s for s in db.session.execute(sa.select(Student).where(
                Student.class_id == klass.id, policy.scope(current_user, Student)).order_by(Student.xjh)).scalars()
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
        file = request.files.get("file")
        if file is None or not file.filename:
            flash("请选择要上传的 .xlsx 文件。", "error")
            return redirect(self.get_url(".import_view"))
        upload = imports.Upload.create(file, {
            "user_id": current_user.id, "category": self.spec["code"], "category_id": self.record_category.id,
            "name": file.filename, "ip": request.remote_addr or ""})
        try:
            with imports.Sheet(upload.path(), self.record_category) as sheet:  # the header, and the size
                size = sheet.size
        except imports.ImportFileError as exc:
            flash(exc.message, "error")
            return redirect(self.get_url(".import_view"))
        if not self._in_background(import_jobs.check_upload, upload, key="check_job", rows=size):
            import_jobs.check_upload(upload.token)
        return redirect(self.get_url(".import_report", token=upload.token))

    @expose("/import/<token>/", methods=("GET",))
    def import_report(self, token: str):
        """The check's report (or its progress); after a background import, its outcome."""
        self._require_import()
        upload = self._upload(token)
        if upload.meta.get("import_job"):
            result = upload.result()
            if result is None and not self._job_failed(upload.meta["import_job"]):
                return self._render_import(upload=upload, job_id=upload.meta["import_job"])
            result = result or {"ok": False, "imported": 0, "message": "导入任务失败，未写入任何数据。请稍后重试。"}
            upload.meta.pop("import_job")
            if result["ok"]:
                upload.meta["imported"] = result["imported"]
            upload.save()
            upload.save_result(None)
            flash(result["message"], "success" if result["ok"] else "error")
            if result["ok"]:
                return redirect(self.get_url(".index_view"))
        report = upload.report()
        if report is None:
            if upload.meta.get("check_job") and not self._job_failed(upload.meta["check_job"]):
                return self._render_import(upload=upload, job_id=upload.meta["check_job"])
            flash("文件检查失败，未写入任何数据。请重新上传。", "error")
            return redirect(self.get_url(".import_view"))
        if report.error:
            flash(report.error, "error")
            return redirect(self.get_url(".import_view"))
        return self._render_import(report, upload)

    @expose("/import/<token>/", methods=("POST",))
    def import_commit(self, token: str):
        """Import all rows (mode "all": refused if a row is bad now) or only the good ones ("valid")."""
        self._require_import()
        upload = self._upload(token)
        mode = "valid" if request.form.get("mode") == "valid" else "all"
        if upload.meta.get("imported"):
            flash(f"该文件已导入 {upload.meta['imported']} 条记录，未重复导入。", "error")
            return redirect(self.get_url(".index_view"))
        checked = upload.report()
        if upload.meta.get("import_job") or self._in_background(
                import_jobs.import_upload, upload, mode, key="import_job", rows=checked.total if checked else None):
            return redirect(self.get_url(".import_report", token=token))
        result = import_jobs.import_upload(upload.token, mode)
        upload.save_result(None)
        if result["ok"]:
            flash(result["message"], "success")
            return redirect(self.get_url(".index_view"))
        flash(result["message"], "error")
        report = upload.report()  # as the import found the file, when "all" was refused
        if report is None or report.error:
            return redirect(self.get_url(".import_view"))
        return self._render_import(report, upload)

    @expose("/import/<token>/errors.xlsx")
    def import_errors(self, token: str):
        self._require_import()
        path = self._upload(token).errors_file()
        if path is None:
            abort(404)
        with open(path, "rb") as fh:
            data = fh.read()
        return Response(data, mimetype=XLSX_MIME, headers={"Content-Disposition": "attachment; filename=errors.xlsx"})


class CategoryView(GridMixin, ImportMixin, ScopedModelView):
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
        # A category belongs to a profile: it exists only for users whose district runs that profile this term.
        if self.profile_code not in policy.profile_codes(current_user):
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
            current_user, model, data, expected_version=posted_version(form.version.data))))

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

