"""The admin panel: home page, generated category views, and the organisation/accounts/schedule views."""
from __future__ import annotations

import re
from urllib.parse import quote

import sqlalchemy as sa
from flask import Response, abort, g, has_request_context, redirect, request
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.form import DateTimeField
from flask_admin.menu import MenuLink
from flask_admin.theme import Bootstrap4Theme
from flask_babel import gettext
from flask_login import current_user
from markupsafe import Markup
from wtforms import fields as wf
from wtforms import validators as v

from forms.base import choices
from forms.contact_sheet import contact_sheet
from models import policy, workflow
from models.accounts import RoleGrant, User
from models.audit import AuditEvent
from models.base import db
from models.calendar import PhaseWindow, Term
from models.cases import Case
from models.catalog import Activity, Category
from models.clock import local
from models.contacts import CONTACT_KINDS, Contact
from models.fields import FieldErrors, text_problem
from models.org import GRADE_NAMES, STUDENT_STATUSES, District, School, SchoolClass, Student
from models.records import Record
from models.roles import ROLES
from seed import changsha, shanghai
from views.actions import AUDIT_ACTION_NAMES, perform
from views.auth import password_problems
from views.base import EditOnly, ReadOnly, ScopedAjaxLoader, ScopedModelView
from views.categories import category_view
from views.changsha import ChangshaDeskView
from views.dashboard import DashboardView
from views.deadlines import DeadlinesView
from views.export import XLSX_MIME
from views.home import home_context
from views.i18n import _l, localized
from views.queues import CaseView, CorrectionQueueView, ReviewQueueView
from views.register import AUDIT_ACTION_NAMES as REGISTER_AUDIT_ACTIONS
from views.register import AccountSlipsView, RegisterImportView
from views.security import csp_nonce
from views.unlock import UnlockView


def _local_time(view, context, model, name):
    value = getattr(model, name)
    return local(value).strftime("%Y-%m-%d %H:%M") if value else ""


class FamilyLink(MenuLink):
    """Menu entries of students' and parents' pages; ``phase``: only where the district's profile has it (同班公示
    and 申诉 belong to a profile with a publication)."""

    def __init__(self, *args, phase=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.phase = phase

    def is_accessible(self):
        if not current_user.is_authenticated or not current_user.has_role("student", "parent"):
            return False
        if self.phase is not None and not policy.runs_phase(current_user, self.phase):
            return False
        return self.endpoint != "me.classmates" or current_user.has_role("student")


class PolicyLink(MenuLink):
    """A menu entry shown to whoever may ever do ``action`` on ``model`` (the page checks the object)."""

    def __init__(self, *args, model=None, action="view", phase=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.model, self.action, self.phase = model, action, phase

    def is_accessible(self):
        return current_user.is_authenticated and policy.can(current_user, self.action, self.model) \
            and (self.phase is None or policy.runs_phase(current_user, self.phase))


class HomeView(AdminIndexView):
    @expose("/")
    def index(self):
        if not current_user.is_authenticated:
            from flask import url_for

            return redirect(url_for("auth.login"))
        return self.render("cqe/home.html", **home_context(current_user))


class SchoolView(ScopedModelView):
    column_list = ["code", "name", "district", "homeroom_audit"]
    column_labels = {"code": _l("学校代码"), "name": _l("学校名称"), "district": _l("所属区"), "homeroom_audit": _l("班主任审核德育活动")}
    column_searchable_list = ["name", "code"]
    form_columns = ["code", "name", "district", "homeroom_audit"]

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if not current_user.has_role("district_admin"):
            # A school admin sets the school's own settings, nothing else.
            for name in ("code", "name", "district"):
                del form[name]
        return form

    def on_model_change(self, form, model, is_created):
        if not is_created:
            workflow.check_homeroom_audit_change(model)


class DistrictView(EditOnly, ScopedModelView):
    """区设置: the district's own settings, kept in ``District.settings`` and audited like any change."""

    column_list = ["code", "name", "max_open_appeals"]
    column_labels = {"code": _l("区代码"), "name": _l("区"), "max_open_appeals": _l("每名学生同时处理中的申诉上限")}
    column_formatters = {"max_open_appeals": lambda v, c, m, n: workflow.max_open_appeals(m)}
    form_columns = ["max_open_appeals"]
    form_extra_fields = {"max_open_appeals": wf.IntegerField(
        "每名学生同时处理中的申诉上限", validators=[v.InputRequired(message="必填"),
                                      v.NumberRange(1, 100, message="须为1至100")])}
    can_export = False

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if obj is not None and not form.is_submitted():
            form.max_open_appeals.data = workflow.max_open_appeals(obj)
        return form

    def on_model_change(self, form, model, is_created):
        vars(model).pop("max_open_appeals", None)  # copied by populate_obj; the value lives in settings
        model.settings = {**(model.settings or {}), "max_open_appeals": form.max_open_appeals.data}


class ClassView(ScopedModelView):
    column_list = ["school", "grade", "number"]
    column_labels = {"school": _l("学校"), "grade": _l("年级"), "number": _l("班号")}
    column_formatters = {"grade": lambda v, c, m, n: GRADE_NAMES.get(m.grade, m.grade)}
    column_default_sort = [("school_id", False), ("grade", False), ("number", False)]
    form_columns = ["school", "grade", "number"]
    form_args = {"grade": {"validators": [v.NumberRange(6, 9, message="年级须为6至9")]}}
    column_filters = ["grade"]


class StudentView(ScopedModelView):
    column_list = ["xjh", "name", "gender", "school_class", "school", "status"]
    column_labels = {"xjh": _l("学籍号"), "name": _l("姓名"), "gender": _l("性别"), "school_class": _l("班级"), "school": _l("学校"),
                     "status": _l("状态")}
    column_searchable_list = ["name", "xjh"]
    column_filters = ["status", "gender"]
    column_formatters = {"status": lambda v, c, m, n: m.status_name}
    column_choices = {"status": list(STUDENT_STATUSES.items())}
    form_columns = ["xjh", "name", "gender", "school_class", "status"]
    form_overrides = {"status": wf.SelectField, "gender": wf.SelectField}
    form_args = {
        "status": {"choices": choices(STUDENT_STATUSES.items())},
        "gender": {"choices": choices(["男", "女"])},
        "xjh": {"validators": [v.Length(min=5, max=32, message="学籍号长度须为5至32位")]},
    }

    def get_query(self):
        from sqlalchemy.orm import joinedload

        return super().get_query().options(joinedload(Student.school_class), joinedload(Student.school))

    def on_model_change(self, form, model, is_created):
        if not is_created and sa.inspect(model).attrs.status.history.has_changes():
            # Changing who takes part is the 预确认 of SPEC §4: only in its window.
            policy.require(current_user, "preconfirm", model)


class PreconfirmView(EditOnly, StudentView):
    """学生信息 → 预确认: mark students who do not take part (离校/休学/转学)."""

    edit_action = "preconfirm"
    form_columns = ["status"]
    column_filters = ["status"]

    def is_accessible(self):
        # 预确认 is a step of the profiles that have its phase (Shanghai's 填报准备), not Changsha's.
        return current_user.is_authenticated and policy.can(current_user, "preconfirm", Student) \
            and any(policy.runs_phase(current_user, p) for p in policy.RULES[Student]["preconfirm"].windows)

    def on_model_change(self, form, model, is_created):
        pass  # the view's edit action is already "preconfirm", checked with its window by the workflow


class ActivityView(ScopedModelView):
    column_list = ["level", "name", "organiser", "held_on", "school"]
    column_labels = {"level": _l("级别"), "name": _l("活动名称"), "organiser": _l("主办"), "held_on": _l("活动日期"), "school": _l("学校"),
                     "description": _l("说明")}
    column_formatters = {"level": lambda v, c, m, n: "区级" if m.level == "district" else "校级"}
    column_searchable_list = ["name"]
    column_editable_list = ["organiser"]
    form_columns = ["name", "organiser", "held_on", "description"]
    form_args = {"name": {"validators": [v.InputRequired(message="必填"), v.Length(max=128)]}}

    def is_accessible(self):
        return super().is_accessible() and policy.uses_field_type(current_user, "activity")

    def scope_filter(self):
        return Activity.term_id.in_(sa.select(Term.id).where(Term.is_current.is_(True)))

    def on_model_change(self, form, model, is_created):
        if not is_created:
            return
        for grant in current_user.grants:
            if grant.role == "school_clerk":
                model.level, model.school = "school", grant.school
                model.district_id = grant.school.district_id
                break
            if grant.role == "district_clerk":
                model.level, model.school, model.district_id = "district", None, grant.district_id
                break
        term = policy.current_term(model.district_id) if model.district_id else None
        if term is None:
            raise FieldErrors({None: "当前没有进行中的学期。"})
        model.term = term


def _stripped(value):
    return value.strip() if isinstance(value, str) else value


def _storable_text(form, field):
    """No control or broken characters in a text the history keeps (NUL cannot even be stored)."""
    problem = text_problem(field.data or "")
    if problem:
        raise v.ValidationError(f"{field.label.text}：{problem}")


def _username(form, field):
    """Letters, digits and _ . @ - (what people type on a phone and read off a slip). Stops the chain: the
    uniqueness check after it must not query with a name that cannot exist (a NUL breaks PostgreSQL)."""
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{2,64}", field.data or ""):
        raise v.StopValidation("用户名：2至64位字母、数字或 _ . @ -")


def _plausible_year(form, field):
    """A phase window of a school year: between 2000 and 2099 (year 1 or 9999 is a typing slip)."""
    if field.data is not None and not 2000 <= field.data.year <= 2099:
        raise v.ValidationError(f"{field.label.text}：年份须在 2000 至 2099 之间，现填的是 {field.data.year} 年")


class ContactView(ScopedModelView):
    column_list = ["school", "kind", "name", "position", "mobile", "qq", "notes", "is_main"]
    column_labels = {"school": _l("学校"), "kind": _l("类别"), "name": _l("姓名"), "position": _l("职务"), "mobile": _l("手机"),
                     "qq": _l("QQ号码"), "notes": _l("备注"), "is_main": _l("主要联系人")}
    column_formatters = {"kind": lambda v, c, m, n: m.kind_name}
    form_columns = ["school", "kind", "name", "position", "mobile", "qq", "notes", "is_main"]
    form_overrides = {"kind": wf.SelectField}
    form_args = {
        "kind": {"choices": choices(CONTACT_KINDS.items())},
        # \A…\Z and [0-9]: no trailing newline, no full-width digits; blanks around are dropped, blank is none.
        "mobile": {"filters": [_stripped], "validators": [
            v.Optional(), v.Regexp(r"\A1[0-9]{10}\Z", message="手机：须为11位手机号")]},
        "qq": {"filters": [_stripped], "validators": [
            v.Optional(), v.Regexp(r"\A[0-9]{5,12}\Z", message="QQ号码：须为5至12位数字")]},
    }
    column_filters = ["kind"]
    column_editable_list = ["position", "mobile", "qq", "notes"]
    list_template = "cqe/contact_list.html"

    @expose("/sheet.xlsx")
    def sheet(self):
        """附件3 in the seed's layout, for the schools in the user's scope (the district: all of them)."""
        schools = db.session.execute(sa.select(School).where(policy.scope(current_user, School))
                                     .order_by(School.code)).scalars().all()
        contacts = db.session.execute(sa.select(Contact).where(policy.scope(current_user, Contact))).scalars().all()
        district = schools[0].district if schools else None
        data = contact_sheet(district, schools, contacts)
        name = f"{district.name if district else ''}初中学生综合素质评价工作联系信息表.xlsx"
        return Response(data, mimetype=XLSX_MIME, headers={
            "Content-Disposition": f"attachment; filename=contacts.xlsx; filename*=UTF-8''{quote(name)}"})


class UserView(ScopedModelView):
    column_list = ["username", "display_name", "active", "grants", "last_login_at"]
    column_labels = {"username": _l("用户名"), "display_name": _l("姓名"), "active": _l("启用"), "grants": _l("角色"),
                     "last_login_at": _l("最后登录")}
    column_formatters = {"last_login_at": _local_time,
                         "grants": lambda v, c, m, n: "；".join(str(g) for g in m.grants)}
    column_searchable_list = ["username", "display_name"]
    form_columns = ["username", "display_name", "active", "new_password"]  # an extra field must be listed too
    form_args = {"username": {"filters": [_stripped], "validators": [v.InputRequired(message="用户名：必填"), _username]}}
    form_extra_fields = {"new_password": wf.PasswordField("新密码", validators=[v.Optional()])}
    can_export = False
    can_view_details = False

    def on_model_change(self, form, model, is_created):
        # populate_obj copied the plain password onto the object: keep only its hash
        vars(model).pop("new_password", None)
        if form.new_password.data:
            problems = password_problems(model, form.new_password.data)  # the rules people follow on /password
            if problems:
                raise FieldErrors({"new_password": "；".join(problems)})
            model.set_password(form.new_password.data)
        elif is_created:
            raise FieldErrors({"new_password": "新密码：新账号必须设置密码"})


class GrantView(ScopedModelView):
    column_list = ["user", "role", "district", "school", "school_class", "student"]
    column_labels = {"user": _l("账号"), "role": _l("角色"), "district": _l("区"), "school": _l("学校"), "school_class": _l("班级"),
                     "student": _l("学生")}
    column_formatters = {"role": lambda v, c, m, n: ROLES[m.role].name}
    column_searchable_list = ["user.username", "user.display_name"]
    form_columns = ["user", "role", "district", "school", "school_class", "student"]
    form_overrides = {"role": wf.SelectField}
    form_args = {"role": {"choices": choices((r.code, r.name) for r in ROLES.values() if r.scope != "city")}}
    form_ajax_refs = {
        "user": ScopedAjaxLoader("user", User, fields=["username", "display_name"], placeholder="输入用户名或姓名"),
        "student": ScopedAjaxLoader("student", Student, fields=["name", "xjh"], placeholder="输入姓名或学籍号"),
    }
    can_export = False

    def on_model_change(self, form, model, is_created):
        kind = ROLES[model.role].scope
        given = {"district": model.district, "school": model.school, "class": model.school_class,
                 "student": model.student}
        if given.get(kind) is None:
            label = {"district": "区", "school": "学校", "class": "班级", "student": "学生"}[kind]
            raise FieldErrors({None: f"角色「{ROLES[model.role].name}」须指定{label}，且只指定{label}。"})
        for other, value in given.items():
            if other != kind and value is not None:
                setattr(model, {"class": "school_class"}.get(other, other), None)


class TermView(ScopedModelView):
    column_list = ["school_year", "semester", "profile", "is_current"]
    column_labels = {"school_year": _l("学年"), "semester": _l("学期"), "profile": _l("评价方案"), "is_current": _l("当前学期")}
    form_columns = ["is_current"]
    can_export = False


class WindowView(ScopedModelView):
    """阶段时间: the district admin shifts a window or opens / closes a phase now, always with a reason
    that the history keeps (SPEC §2)."""

    edit_template = "cqe/window_edit.html"
    column_list = ["cohort", "phase", "starts_at", "ends_at"]
    column_labels = {"cohort": _l("年级组"), "phase": _l("阶段"), "starts_at": _l("开始（北京时间）"), "ends_at": _l("结束（北京时间）")}
    column_formatters = {"starts_at": _local_time, "ends_at": _local_time,
                         "phase": lambda v, c, m, n: m.name, "cohort": lambda v, c, m, n: str(m.cohort)}
    column_default_sort = [("cohort_id", False), ("starts_at", False)]
    form_columns = ["starts_at", "ends_at", "reason"]
    form_overrides = {"starts_at": DateTimeField, "ends_at": DateTimeField}
    form_args = {"starts_at": {"label": "开始（北京时间）", "format": "%Y-%m-%d %H:%M", "validators": [_plausible_year]},
                 "ends_at": {"label": "结束（北京时间）", "format": "%Y-%m-%d %H:%M", "validators": [_plausible_year]}}
    form_extra_fields = {"reason": wf.TextAreaField("调整原因", validators=[v.InputRequired(message="调整原因：必填"),
                                                                        v.Length(max=1000), _storable_text])}
    can_export = False

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        if obj is not None and not form.is_submitted():
            form.starts_at.data = local(obj.starts_at).replace(tzinfo=None)
            form.ends_at.data = local(obj.ends_at).replace(tzinfo=None)
        return form

    @staticmethod
    def _aware(value):
        from settings import LOCAL_TZ

        # The form shows and takes Beijing time; the database keeps UTC.
        return value.replace(tzinfo=LOCAL_TZ) if value.tzinfo is None else value

    def update_model(self, form, model):
        return bool(self.run_workflow(form, lambda: workflow.shift_window(
            current_user, model, starts_at=self._aware(form.starts_at.data), ends_at=self._aware(form.ends_at.data),
            reason=form.reason.data)))

    @expose("/advance/", methods=("POST",))
    def advance_view(self):
        window = self.get_one(request.form.get("id"))
        self._require("edit", window)
        edge = request.form.get("edge")
        done = gettext("已提前开始。") if edge == "start" else gettext("已立即结束。")
        if perform(lambda: workflow.advance_phase(current_user, window, edge, reason=request.form.get("reason", "")),
                   done):
            return redirect(self.get_url(".index_view"))
        return redirect(self.get_url(".edit_view", id=window.id))


class CategoryCatalogView(ScopedModelView):
    column_list = ["dimension", "name", "grades", "entry", "per_term_limit", "per_year_limit"]
    column_labels = {"dimension": _l("维度"), "name": _l("类别"), "grades": _l("适用年级"), "entry": _l("录入方"),
                     "per_term_limit": _l("每学期上限"), "per_year_limit": _l("每学年上限")}
    column_formatters = {
        "grades": lambda v, c, m, n: "、".join(GRADE_NAMES[g] for g in m.grades),
        "entry": lambda v, c, m, n: "、".join(policy.level_name(r["level"]) for r in m.entry),
    }
    can_export = False


AUDIT_ACTIONS = {**AUDIT_ACTION_NAMES, "login": "登录", "preconfirm": "预确认"}
AUDIT_ACTIONS.update(REGISTER_AUDIT_ACTIONS)
_MODEL_LABELS = {model.__name__: label for model, label in policy.MODEL_NAMES.items()}


def _changes(values: dict | None) -> Markup:
    """A snapshot or change set as short lines: field: value."""
    if not values:
        return Markup("")
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            value = "，".join(f"{k}={v}" for k, v in value.items())
        lines.append(f"{key}: {value}")
    return Markup("<br>").join(lines)


class AuditView(ReadOnly, ScopedModelView):
    column_list = ["at", "actor_name", "ip", "object_type", "object_id", "action", "before", "after", "reason"]
    column_labels = {"at": _l("时间"), "actor_name": _l("操作人"), "ip": _l("来源IP"), "object_type": _l("对象类型"),
                     "object_id": _l("对象ID"), "action": _l("操作"), "before": _l("修改前"), "after": _l("修改后"), "reason": _l("原因")}
    column_formatters = {
        "at": _local_time,
        "object_type": lambda v, c, m, n: _MODEL_LABELS.get(m.object_type, m.object_type),
        "action": lambda v, c, m, n: AUDIT_ACTIONS.get(m.action, m.action),
        "before": lambda v, c, m, n: _changes(m.before),
        "after": lambda v, c, m, n: _changes(m.after),
    }
    column_default_sort = ("id", True)
    column_filters = ["object_type", "action", "actor_name", "object_id"]
    column_searchable_list = ["actor_name", "object_id"]


def init_admin(app) -> Admin:
    admin = Admin(
        app,
        name=_l("综合素质评价"),
        theme=Bootstrap4Theme(swatch="cerulean", base_template="cqe/admin_base.html"),
        index_view=HomeView(name=_l("首页"), url="/admin"),
        csp_nonce_generator=csp_nonce,
    )
    # Each profile's categories as views; a view opens only for users whose district runs its profile.
    for profile in (shanghai, changsha):
        dimensions = {d["code"]: localized(d["name"], d.get("name_en")) for d in profile.DIMENSIONS}
        for spec in profile.CATEGORIES:
            admin.add_view(category_view(profile.CODE, spec, dimensions[spec["dimension"]]))
    admin.add_view(CaseView(Case, name=_l("申诉与问题数据"), category=_l("待办"), endpoint="cases_admin",
                            url="/admin/cases"))
    admin.add_view(ReviewQueueView(Record, name=_l("待审阅的学生填报"), category=_l("待办"), endpoint="review_queue",
                                   url="/admin/review-queue"))
    admin.add_view(CorrectionQueueView(Record, name=_l("确认不通过待修改"), category=_l("待办"), endpoint="corrections",
                                       url="/admin/corrections"))
    for name, endpoint, phase in ((_l("我的记录"), "me.records", None), (_l("纪实报告"), "me.report", None),
                                  (_l("同班公示"), "me.classmates", "publication"),
                                  (_l("我的申诉"), "me.appeals", "publication")):
        admin.add_link(FamilyLink(name=name, endpoint=endpoint, category=_l("我的"), phase=phase))
    admin.add_view(ActivityView(Activity, name=_l("团、队等德育活动项目管理"), category=_l("项目管理"), endpoint="activities"))
    admin.add_view(StudentView(Student, name=_l("学生名册"), category=_l("学生信息"), endpoint="students"))
    admin.add_view(PreconfirmView(Student, name=_l("预确认"), category=_l("学生信息"), endpoint="preconfirm"))
    admin.add_view(DistrictView(District, name=_l("区设置"), category=_l("学校与班级"), endpoint="districts"))
    admin.add_view(SchoolView(School, name=_l("学校"), category=_l("学校与班级"), endpoint="schools"))
    admin.add_view(ClassView(SchoolClass, name=_l("班级"), category=_l("学校与班级"), endpoint="classes"))
    admin.add_view(ContactView(Contact, name=_l("联系信息表"), category=_l("学校与班级"), endpoint="contacts"))
    admin.add_view(RegisterImportView(name=_l("学籍导入"), category=_l("学校与班级"), endpoint="register_import",
                                      url="/admin/register"))
    admin.add_view(TermView(Term, name=_l("学期"), category=_l("学期安排"), endpoint="terms"))
    admin.add_view(WindowView(PhaseWindow, name=_l("阶段时间"), category=_l("学期安排"), endpoint="windows"))
    admin.add_view(DeadlinesView(name=_l("自动任务"), category=_l("学期安排"), endpoint="deadlines",
                                 url="/admin/deadlines"))
    admin.add_view(DashboardView(name=_l("进度统计"), category=_l("学期安排"), endpoint="dashboard",
                                 url="/admin/dashboard"))
    admin.add_view(CategoryCatalogView(Category, name=_l("记录类别"), category=_l("学期安排"), endpoint="categories"))
    admin.add_view(UserView(User, name=_l("账号"), category=_l("账号与权限"), endpoint="users"))
    admin.add_view(GrantView(RoleGrant, name=_l("角色授权"), category=_l("账号与权限"), endpoint="grants"))
    admin.add_view(AccountSlipsView(name=_l("账号单"), category=_l("账号与权限"), endpoint="account_slips",
                                    url="/admin/account-slips"))
    admin.add_view(UnlockView(name=_l("账号解锁"), category=_l("账号与权限"), endpoint="unlock", url="/admin/unlock"))
    admin.add_view(ChangshaDeskView(name=_l("长沙评价工作台"), endpoint="changsha_desk", url="/admin/changsha"))
    admin.add_view(AuditView(AuditEvent, name=_l("操作记录"), category=_l("账号与权限"), endpoint="audit"))
    from views.archive import ArchiveProgressView, ArchiveRateView, ArchiveSignView, ArchiveSummaryView

    admin.add_view(ArchiveRateView(name=_l("评定（合格/不合格）"), category=_l("归档签字"), endpoint="archive_rate",
                                   url="/admin/archive/rate"))
    admin.add_view(ArchiveSignView(name=_l("签字登记"), category=_l("归档签字"), endpoint="archive_sign",
                                   url="/admin/archive/sign"))
    admin.add_view(ArchiveProgressView(name=_l("签字进度"), category=_l("归档签字"), endpoint="archive_progress",
                                       url="/admin/archive/progress"))
    admin.add_view(ArchiveSummaryView(name=_l("汇总表"), category=_l("归档签字"), endpoint="archive_summary",
                                      url="/admin/archive/summary"))
    admin.add_link(PolicyLink(name=_l("批量生成纪实报告与确认单"), endpoint="reports.batch", category=_l("归档签字"),
                              model=SchoolClass, action="print_reports", phase="archive"))
    for view in admin._views:
        _answer_once_per_request(view)
    return admin


def _answer_once_per_request(view) -> None:
    """Flask-Admin asks every view whether the user may use it several times for one page (each menu category
    lists its children, then each item again, then the view being served): ask the policy once per request and
    user. The answer is the view's own ``is_accessible``; only the repetition goes."""
    compute = view.is_accessible

    def is_accessible() -> bool:
        if not has_request_context():
            return compute()
        cache = g.setdefault("cqe_accessible", {})
        key = (id(view), current_user.get_id() if current_user.is_authenticated else None)
        if key not in cache:
            cache[key] = compute()
        return cache[key]

    view.is_accessible = is_accessible


__all__ = ["init_admin", "abort"]
