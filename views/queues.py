"""Work queues: auditors' case queues (filter by school, class, category, flow, state, age, overdue;
bulk accept and dismiss), the homeroom teacher's review queue and the clerks' correction queue."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from flask import flash, has_request_context, redirect, render_template, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import BaseSQLAFilter, FilterEqual, IntEqualFilter
from flask_babel import gettext
from flask_login import current_user
from markupsafe import Markup, escape
from sqlalchemy.orm import selectinload

from models import policy, workflow
from models.base import db
from models.cases import APPEAL_KINDS, CASE_STATES, FLOWS, OPEN_CASE_STATES, Case
from models.catalog import Category
from models.clock import local, now
from models.fields import display_value
from models.org import GRADE_NAMES, School, SchoolClass, Student
from models.records import RECORD_STATES, Record
from models.roles import LEVEL_NAMES
from views.actions import perform
from views.base import ReadOnly, ScopedModelView
from views.i18n import _l


def _school_options():
    """Schools in the user's scope (computed per request, see CaseView._get_filter_groups)."""
    if not has_request_context() or not current_user.is_authenticated:
        return []
    rows = db.session.execute(sa.select(School.id, School.name).where(policy.scope(current_user, School))
                              .order_by(School.code)).all()
    return [(str(i), name) for i, name in rows]


def _class_options():
    if not has_request_context() or not current_user.is_authenticated:
        return []
    rows = db.session.execute(
        sa.select(SchoolClass.id, SchoolClass.grade, SchoolClass.number, School.name)
        .join(School, School.id == SchoolClass.school_id).where(policy.scope(current_user, SchoolClass))
        .order_by(School.code, SchoolClass.grade, SchoolClass.number)).all()
    several = len({r[3] for r in rows}) > 1
    return [(str(i), f"{school} " * several + f"{GRADE_NAMES.get(grade, grade)}({number})班")
            for i, grade, number, school in rows]


def _category_options():
    if not has_request_context():
        return []
    return [(str(i), name) for i, name in db.session.execute(
        sa.select(Category.id, Category.name).order_by(Category.profile_id, Category.position)).all()]


class OverdueFilter(BaseSQLAFilter):
    """Open cases past the end of issue handling (yes) or not (no)."""

    def apply(self, query, value, alias=None):
        late = sa.and_(Case.state.in_(OPEN_CASE_STATES), Case.due_at <= now())
        return query.filter(late if value == "1" else sa.not_(late))

    def operation(self):
        return gettext("是否")


class AgeFilter(BaseSQLAFilter):
    """Cases filed at least N days ago."""

    def apply(self, query, value, alias=None):
        try:
            days = int(value)
        except (TypeError, ValueError):
            return query
        return query.filter(Case.created_at <= now() - timedelta(days=days))

    def operation(self):
        return gettext("已超过")


def _age(view, context, model, name):
    days = (now() - model.created_at).days
    return gettext("%(d)s天", d=days)


def _state(view, context, model, name):
    badge = "danger" if model.overdue(now()) else "secondary"
    text = CASE_STATES.get(model.state, model.state)
    if model.overdue(now()):
        text += "（" + gettext("已逾期") + "）"
    return Markup(f'<span class="badge badge-{badge}">{escape(text)}</span>')


def _case_link(view, context, model, name):
    return Markup(f'<a href="{url_for("cases.show", case_id=model.id)}">#{model.id} {escape(gettext("办理"))}</a>')


class CaseView(ReadOnly, ScopedModelView):
    """申诉与问题数据: each role sees the cases of its level in its scope (policy.scope)."""

    list_template = "cqe/cases/list.html"
    column_auto_select_related = False
    column_list = ["id", "flow", "kind", "student", "school_class", "school", "category", "state", "age", "due_at"]
    column_labels = {"id": _l("编号"), "flow": _l("流程"), "kind": _l("类型"), "student": _l("学生"),
                     "school_class": _l("班级"), "school": _l("学校"), "category": _l("类别"), "state": _l("状态"),
                     "age": _l("已提交"), "due_at": _l("办理截止"), "created_at": _l("提交时间")}
    column_formatters = {
        "id": _case_link, "flow": lambda v, c, m, n: FLOWS.get(m.flow), "kind": lambda v, c, m, n: m.kind_name,
        "student": lambda v, c, m, n: m.student.name, "school_class": lambda v, c, m, n: m.school_class.name,
        "school": lambda v, c, m, n: m.school.name, "category": lambda v, c, m, n: m.category.name,
        "state": _state, "age": _age,
        "due_at": lambda v, c, m, n: local(m.due_at).strftime("%Y-%m-%d %H:%M") if m.due_at else "",
    }
    column_sortable_list = ["id", "state", ("age", "created_at"), "due_at"]
    column_default_sort = ("id", False)
    can_view_details = False
    can_export = True
    column_export_list = ["id", "flow", "kind", "student", "school_class", "school", "category", "state", "created_at",
                          "due_at"]
    column_formatters_export = {
        "flow": lambda v, c, m, n: FLOWS.get(m.flow), "kind": lambda v, c, m, n: m.kind_name,
        "student": lambda v, c, m, n: m.student.name, "school_class": lambda v, c, m, n: m.school_class.name,
        "school": lambda v, c, m, n: m.school.name, "category": lambda v, c, m, n: m.category.name,
        "state": lambda v, c, m, n: m.state_name,
        "created_at": lambda v, c, m, n: local(m.created_at).strftime("%Y-%m-%d %H:%M"),
        "due_at": lambda v, c, m, n: local(m.due_at).strftime("%Y-%m-%d %H:%M") if m.due_at else "",
    }

    def export_loader_options(self):
        return (selectinload(Case.student), selectinload(Case.school_class), selectinload(Case.school),
                selectinload(Case.category))

    column_filters = [
        IntEqualFilter(Case.school_id, _l("学校"), options=_school_options),
        IntEqualFilter(Case.class_id, _l("班级"), options=_class_options),
        IntEqualFilter(Case.category_id, _l("类别"), options=_category_options),
        IntEqualFilter(Case.flow, _l("流程"), options=[(str(k), v) for k, v in FLOWS.items()]),
        FilterEqual(Case.state, _l("状态"), options=list(CASE_STATES.items())),
        FilterEqual(Case.kind, _l("类型"), options=list(APPEAL_KINDS.items())),
        AgeFilter(Case.created_at, _l("提交天数"), options=[("3", "3天"), ("7", "7天"), ("14", "14天")]),
        OverdueFilter(Case.due_at, _l("逾期"), options=[("1", "是"), ("0", "否")]),
    ]
    page_size = 50

    def _get_filter_groups(self):
        # School and class options come from the user's scope: rebuilt for each request.
        self._refresh_filters_cache()
        return super()._get_filter_groups()

    def get_query(self):
        return super().get_query().options(selectinload(Case.student), selectinload(Case.school_class),
                                           selectinload(Case.school), selectinload(Case.category))

    def is_action_allowed(self, name):
        if name in ("accept", "dismiss"):
            return current_user.has_role("school_auditor", "district_auditor", "city_auditor")
        return super().is_action_allowed(name)

    def _scoped_cases(self, ids):
        clean = [int(i) for i in ids if str(i).isdigit()]
        return self.get_query().filter(Case.id.in_(clean)).all() if clean else [], clean

    @action("accept", _l("受理所选"), _l("确定受理所选案件，转录入方修改？"))
    def action_accept(self, ids):
        cases, clean = self._scoped_cases(ids)
        done = 0
        for case in cases:
            try:
                workflow.case_action(current_user, case, "accept", reason="批量受理")
                done += 1
            except (policy.Denied, workflow.WorkflowError) as exc:
                flash(f"#{case.id}：{getattr(exc, 'reason', None) or exc.message}", "error")
        if done:
            flash(gettext("已受理 %(n)s 件。", n=done), "success")
        if len(set(clean)) - len(cases):
            flash(gettext("%(n)s 条记录不存在或不在您的权限范围内，未处理。", n=len(set(clean)) - len(cases)), "warning")

    @action("dismiss", _l("驳回所选"))
    def action_dismiss(self, ids):
        return redirect(url_for(".bulk_dismiss", ids=",".join(str(i) for i in ids)))

    @expose("/dismiss/", methods=("GET", "POST"))
    def bulk_dismiss(self):
        ids = (request.values.get("ids") or "").split(",")
        cases, clean = self._scoped_cases(ids)
        if request.method == "POST":
            reason = request.form.get("reason", "").strip()
            if not reason:
                flash(gettext("驳回原因：必填"), "error")
            else:
                done = 0
                for case in cases:
                    if perform(lambda case=case: workflow.case_action(current_user, case, "dismiss", reason=reason),
                               gettext("#%(id)s 已驳回。", id=case.id)):
                        done += 1
                return redirect(url_for(".index_view"))
        return self.render("cqe/cases/bulk_dismiss.html", cases=cases, ids=",".join(str(i) for i in clean))


class _RecordQueue(ReadOnly, ScopedModelView):
    column_auto_select_related = False  # get_query loads what the page shows, after LIMIT
    can_view_details = False
    can_export = False
    column_default_sort = ("updated_at", False)
    column_sortable_list = ["updated_at"]
    column_list = ["student", "klass", "category", "origin", "content", "state", "updated_at", "link"]
    column_labels = {"student": _l("学生"), "klass": _l("班级"), "category": _l("类别"), "origin": _l("录入方"),
                     "content": _l("内容"), "state": _l("状态"), "updated_at": _l("更新时间"), "link": _l("操作")}
    column_formatters = {
        "student": lambda v, c, m, n: m.student.name, "klass": lambda v, c, m, n: m.student.school_class.name,
        "category": lambda v, c, m, n: m.category.name, "origin": lambda v, c, m, n: LEVEL_NAMES.get(m.origin),
        "content": lambda v, c, m, n: "；".join(
            f"{f['label']}：{display_value(f, (m.data or {}).get(f['name']))}" for f in m.category.fields)[:200],
        "state": lambda v, c, m, n: RECORD_STATES.get(m.state, m.state),
        "updated_at": lambda v, c, m, n: local(m.updated_at).strftime("%Y-%m-%d %H:%M"),
    }
    roles: tuple = ()

    def is_accessible(self):
        return current_user.is_authenticated and current_user.has_role(*self.roles)

    def get_query(self):
        return super().get_query().options(selectinload(Record.student).joinedload(Student.school_class),
                                           selectinload(Record.category))

    def _current_term(self):
        return Record.term_id.in_(policy.current_term_ids(current_user))


class ReviewQueueView(_RecordQueue):
    """班主任: students' entries waiting for review (自我介绍/典型事例) or audit (团、队等德育活动)."""

    roles = ("homeroom_teacher",)
    column_formatters = {**_RecordQueue.column_formatters,
                         "link": lambda v, c, m, n: Markup(f'<a class="btn btn-sm btn-primary" href="'
                                                           f'{url_for("cases.review", record_id=m.id)}">'
                                                           f'{escape(gettext("审阅"))}</a>')}

    def scope_filter(self):
        return sa.and_(self._current_term(), Record.state == "submitted")


class CorrectionQueueView(_RecordQueue):
    """录入员: records students rejected (确认不通过) that their level entered, to correct until the deadline."""

    roles = ("school_clerk", "district_clerk", "city_clerk")
    column_list = ["student", "klass", "category", "origin", "content", "reason", "state", "updated_at", "link"]
    column_labels = {**_RecordQueue.column_labels, "reason": _l("确认不通过原因")}
    column_formatters = {**_RecordQueue.column_formatters,
                         "reason": lambda v, c, m, n: m.reject_reason or "",
                         "link": lambda v, c, m, n: Markup(
                             f'<a class="btn btn-sm btn-primary" href="'
                             f'{url_for(f"cat_{m.category.code}.edit_view", id=m.id, url=url_for(".index_view"))}">'
                             f'{escape(gettext("修改"))}</a>')}

    def scope_filter(self):
        levels = [lvl for lvl, role in (("school", "school_clerk"), ("district", "district_clerk"),
                                        ("city", "city_clerk")) if current_user.has_role(role)]
        return sa.and_(self._current_term(), Record.state == "rejected", Record.origin.in_(levels))


__all__ = ["CaseView", "CorrectionQueueView", "ReviewQueueView", "render_template"]
