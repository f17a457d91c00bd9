"""The one base of every admin view: load through scope → check through policy → act through workflow.

Stock Flask-Admin scopes nothing. Here every endpoint kind goes through policy: list and count
(``get_query``/``get_count_query``), details/edit/delete (``get_one`` answers 404 outside scope, then
``check`` answers 403 with the reason), inline edit (``ajax_update``), bulk actions (ids re-filtered
through scope and each object checked), export (the scoped list query), relationship dropdowns and
ajax lookups (scoped queries).
"""
from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.ajax import QueryAjaxModelLoader
from flask_admin.contrib.sqla.fields import QuerySelectField, QuerySelectMultipleField
from flask_admin.helpers import get_redirect_target
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import inspect as sa_inspect

from forms.base import CQEForm, db_id
from models import policy, workflow
from models.base import db
from models.fields import FieldErrors
from views.export import StreamedExport


def deny(exc: policy.Denied):
    abort(exc.status, description=exc.reason)


class CurrentSession:
    """``self.session`` is always the app's current session (tests swap in a rolled-back one);
    Flask-Admin's attempts to pin one at start-up are ignored."""

    @property
    def session(self):
        return db.session

    @session.setter
    def session(self, value):
        pass


class ScopedAjaxLoader(CurrentSession, QueryAjaxModelLoader):
    """An ajax lookup that only ever offers objects inside the current user's scope."""

    def __init__(self, name, model, fields, extra=None, **options):
        super().__init__(name, db.session, model, fields=fields, **options)
        self.extra = extra  # optional callable → additional filter clause

    def get_query(self):
        query = db.session.query(self.model).filter(policy.scope(current_user, self.model))
        if self.extra is not None:
            clause = self.extra()
            if clause is not None:
                query = query.filter(clause)
        return query

    def get_one(self, pk):
        pk_col = sa_inspect(self.model).primary_key[0]
        pk = db_id(pk)  # not an id, or beyond any id (which could not even be bound): no such object
        if pk is None:
            return None
        with db.session.no_autoflush:
            return self.get_query().filter(pk_col == pk).one_or_none()


class ReadOnly:
    """A view that lists and shows but never creates, edits or deletes (queues, history)."""

    @property
    def can_create(self):
        return False

    @property
    def can_edit(self):
        return False

    @property
    def can_delete(self):
        return False


class EditOnly:
    """A view that edits existing objects but never creates or deletes them (settings, pre-confirmation)."""

    @property
    def can_create(self):
        return False

    @property
    def can_delete(self):
        return False


class ScopedModelView(CurrentSession, StreamedExport, ModelView):
    list_template = "cqe/model_list.html"
    form_base_class = CQEForm
    page_size = 20
    can_set_page_size = True
    page_size_options = (20, 50, 100)
    can_view_details = True
    can_export = True
    export_types = ["csv", "xlsx"]
    action_disallowed_list: list[str] = []
    # Bulk delete goes object by object through the workflow (history per row), never fast delete.
    fast_mass_delete = False
    # The policy action that edits through this view ("edit" for most, "preconfirm" for status-only views).
    edit_action = "edit"

    def __init__(self, model, *args, **kwargs):
        super().__init__(model, db, *args, **kwargs)

    # --- who may use the view -----------------------------------------------------------------
    # Staff pages: students and parents use their home page and the categories they write.
    staff_only = True

    def is_accessible(self) -> bool:
        if not current_user.is_authenticated:
            return False
        if self.staff_only and not current_user.has_role(*policy.STAFF):
            return False
        return policy.can(current_user, "view", self.model)

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(403, description="您的角色不能使用此页面。")

    @property
    def can_create(self):
        return current_user.is_authenticated and policy.can(current_user, "create", self.model)

    @property
    def can_edit(self):
        return current_user.is_authenticated and policy.can(current_user, self.edit_action, self.model)

    @property
    def can_delete(self):
        return current_user.is_authenticated and policy.can(current_user, "delete", self.model)

    # --- list rendering -----------------------------------------------------------------------
    def row_actions_html(self, actions, pk, return_url):
        """The view / edit / delete buttons of one row as Flask-Admin draws them, built from URLs and a
        CSRF token computed once per request; None (the template's own macros) for any other action."""
        from flask import g
        from flask_admin.babel import gettext as admin_gettext
        from flask_admin.model.template import DeleteRowAction, EditRowAction, ViewRowAction
        from flask_wtf.csrf import generate_csrf
        from markupsafe import Markup, escape

        kinds = {ViewRowAction: "view", EditRowAction: "edit", DeleteRowAction: "delete"}
        if any(type(a) not in kinds for a in actions):
            return None
        cache = g.setdefault("cqe_row_actions", {})
        urls = cache.get(self.endpoint)
        if urls is None:
            urls = cache[self.endpoint] = {
                "view": self.get_url(".details_view"), "edit": self.get_url(".edit_view"),
                "delete": self.get_url(".delete_view"), "csrf": generate_csrf(),
                "view_title": admin_gettext("View Record"), "edit_title": admin_gettext("Edit Record"),
                "delete_title": admin_gettext("Delete Record"),
                "confirm": admin_gettext("Are you sure you want to delete this record?"),
            }
        from urllib.parse import urlencode

        query = urlencode({"id": pk, "url": return_url})
        out = []
        for row_action in actions:
            kind = kinds[type(row_action)]
            if kind == "view":
                out.append(f'<a class="icon" href="{escape(urls["view"])}?{escape(query)}" title="'
                           f'{escape(urls["view_title"])}"><span class="fa fa-eye glyphicon glyphicon-eye-open">'
                           "</span></a>")
            elif kind == "edit":
                out.append(f'<a class="icon" href="{escape(urls["edit"])}?{escape(query)}" title="'
                           f'{escape(urls["edit_title"])}"><span class="fa fa-pencil glyphicon glyphicon-pencil">'
                           "</span></a>")
            else:
                out.append(
                    f'<form class="icon" method="POST" action="{escape(urls["delete"])}">'
                    f'<input id="id" name="id" type="hidden" value="{escape(pk)}">'
                    f'<input id="url" name="url" type="hidden" value="{escape(return_url)}">'
                    f'<input type="hidden" name="csrf_token" value="{escape(urls["csrf"])}"/>'
                    f'<button data-confirm="{escape(urls["confirm"])}" '
                    f'title="{escape(urls["delete_title"])}"><span class="fa fa-trash glyphicon glyphicon-trash">'
                    "</span></button></form>")
        return Markup("".join(out))

    # --- scoped queries -----------------------------------------------------------------------
    def scope_filter(self):
        """Extra filter of this view (a category, the current term); None for none."""
        return None

    def get_query(self):
        query = db.session.query(self.model).filter(policy.scope(current_user, self.model))
        extra = self.scope_filter()
        return query.filter(extra) if extra is not None else query

    def get_count_query(self):
        from sqlalchemy import func

        from views.counts import CachedCountQuery, is_wide

        # District- and city-wide lists reuse their row count for a while instead of counting millions each time.
        query = (CachedCountQuery([func.count("*")], session=db.session()) if is_wide(current_user)
                 else db.session.query(func.count("*")))
        query = query.select_from(self.model).filter(policy.scope(current_user, self.model))
        extra = self.scope_filter()
        return query.filter(extra) if extra is not None else query

    def get_one(self, id):
        pk = sa_inspect(self.model).primary_key[0]
        ident = db_id(id)
        if ident is None:
            abort(404, description="记录不存在或不在您的权限范围内。")
        obj = self.get_query().filter(pk == ident).one_or_none()
        if obj is None:
            abort(404, description="记录不存在或不在您的权限范围内。")
        return obj

    # --- relationship dropdowns ---------------------------------------------------------------
    def scope_form(self, form):
        """Point every relationship dropdown at the user's scope of its model."""
        mapper = sa_inspect(self.model)
        for field in form:
            if isinstance(field, (QuerySelectField, QuerySelectMultipleField)):
                rel = mapper.relationships.get(field.name)
                if rel is not None:
                    remote = rel.mapper.class_
                    field.query = db.session.query(remote).filter(policy.scope(current_user, remote)).all()
                    field.query_factory = None
        return form

    def create_form(self, obj=None):
        return self.scope_form(super().create_form(obj))

    def edit_form(self, obj=None):
        return self.scope_form(super().edit_form(obj))

    # --- the endpoints: 404 outside scope, 403 with the reason inside it ---------------------
    def _require(self, action_name: str, obj) -> None:
        decision = policy.check(current_user, action_name, obj)
        if not decision:
            abort(decision.status, description=decision.reason)

    @expose("/edit/", methods=("GET", "POST"))
    def edit_view(self):
        ident = request.args.get("id")
        if ident is not None:
            self._require(self.edit_action, self.get_one(ident))
        return super().edit_view()

    @expose("/details/")
    def details_view(self):
        ident = request.args.get("id")
        if ident is not None:
            self.get_one(ident)
        return super().details_view()

    @expose("/delete/", methods=("POST",))
    def delete_view(self):
        form = self.delete_form()
        if self.validate_form(form):
            self._require("delete", self.get_one(form.id.data))
        return super().delete_view()

    @expose("/ajax/update/", methods=("POST",))
    def ajax_update(self):
        if not self.column_editable_list:
            abort(404)
        self._require(self.edit_action, self.get_one(request.form.get("list_form_pk")))
        answer = super().ajax_update()
        # Flask-Admin answers a refused value (bad input, a stale or refused change) with 500; it is the
        # person's input, not a server fault: 400 with the same message (x-editable shows it either way).
        if isinstance(answer, tuple) and len(answer) == 2 and answer[1] == 500:
            return answer[0], 400
        return answer

    # --- changes go through the workflow -----------------------------------------------------
    def apply_form(self, form, model, is_created: bool) -> None:
        form.populate_obj(model)
        self.on_model_change(form, model, is_created)

    def run_workflow(self, form, change, *, refusal: str = "abort"):
        """Run a workflow call for a form: field errors go onto the form, a refusal answers with
        its status and reason (``refusal="flash"`` for list actions that go on), other workflow
        errors are flashed. Returns the call's result, or False when nothing was saved."""
        try:
            result = change()
        except policy.Denied as exc:
            if refusal == "abort":
                deny(exc)
            flash(exc.reason, "error")
        except FieldErrors as exc:
            self._show_errors(form, exc)
        except workflow.WorkflowError as exc:
            flash(exc.message, "error")
        else:
            return True if result is None else result
        return False

    def create_model(self, form):
        model = self.build_new_instance()
        saved = self.run_workflow(form, lambda: workflow.save_object(
            current_user, model, "create", lambda m: self.apply_form(form, m, True)))
        return model if saved else False

    def update_model(self, form, model):
        return bool(self.run_workflow(form, lambda: workflow.save_object(
            current_user, model, self.edit_action, lambda m: self.apply_form(form, m, False))))

    def delete_model(self, model):
        return bool(self.run_workflow(None, lambda: workflow.delete_object(current_user, model), refusal="flash"))

    @staticmethod
    def _show_errors(form, exc: FieldErrors) -> None:
        for name, message in exc.errors.items():
            field = form._fields.get(name) if (form is not None and name) else None
            if field is not None:
                field.errors = list(field.errors or []) + [message]
            else:
                flash(message, "error")

    # --- bulk actions -------------------------------------------------------------------------
    def is_action_allowed(self, name):
        if name == "delete" and not self.can_delete:
            return False
        return super().is_action_allowed(name)

    @action("delete", _l("删除"), _l("确定删除所选记录？"))
    def action_delete(self, ids):
        pk = sa_inspect(self.model).primary_key[0]
        clean = []
        for i in ids:
            try:
                clean.append(int(i))
            except (TypeError, ValueError):
                continue
        # Re-filter the posted ids through scope: ids of other schools simply do not exist here.
        objects = self.get_query().filter(pk.in_(clean)).all() if clean else []
        done, refused = 0, []
        for obj in objects:
            if self.delete_model(obj):
                done += 1
            else:
                refused.append(str(obj))
        if done:
            flash(gettext("已删除 %(n)s 条记录。", n=done), "success")
        missing = len(set(clean)) - len(objects)
        if missing:
            flash(gettext("%(n)s 条记录不存在或不在您的权限范围内，未处理。", n=missing), "warning")
        return None

    def get_save_return_url(self, model, is_created=False):
        return get_redirect_target() or self.get_url(".index_view")
