"""Action pages of staff and students on one case or one record: a case's page with the forms its
state allows the user now (handle, correct, audit), and the homeroom teacher's review page."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

from forms.base import PLEASE_CHOOSE, CQEForm, choices, posted_text, posted_version
from forms.category import form_object, form_values, record_form_class
from models import policy, workflow
from models.base import db
from models.cases import CASE_STATES, OPEN_CASE_STATES, Case
from models.catalog import Activity
from models.clock import local, now
from models.fields import display_value
from models.records import Record
from models.roles import LEVEL_NAMES
from views.actions import CASE_ACTIONS, RECORD_ACTIONS, available, history, perform, render_page
from views.i18n import pick

bp = Blueprint("cases", __name__)

CASE_DONE = {"accept": _l("已受理，等待录入方修改。"), "dismiss": _l("已驳回。"), "correct": _l("修改方案已提交，等待审核。"),
             "approve": _l("审核通过，记录已更新，案件办结。"), "send_back": _l("已退回修改。")}
OP_NAMES = {"edit": "修改记录", "delete": "删除该记录（多录）", "create": "补录记录（少录）"}


@bp.before_request
@login_required
def _logged_in():
    pass


def _fields(category, data: dict | None) -> list[tuple[str, str]]:
    data = data or {}
    return [(pick(f["label"], f.get("label_en")), display_value(f, data.get(f["name"]))) for f in category.fields]


def _activity_choices(student):
    acts = db.session.execute(
        sa.select(Activity).where(Activity.term_id == policy.current_term(student.school.district_id).id,
                                  sa.or_(Activity.school_id == student.school_id,
                                         sa.and_(Activity.level == "district",
                                                 Activity.district_id == student.school.district_id)))
        .order_by(Activity.level.desc(), Activity.id)).scalars().all()
    return choices([PLEASE_CHOOSE] + [(str(a.id), str(a)) for a in acts])


def correction_form(case: Case):
    """The category's own form, filled from the proposal or the record, for the corrector."""
    cls = record_form_class(case.category.fields, base=CQEForm)
    source = (case.proposal or {}).get("data") or (case.record.data if case.record is not None else {}) or {}
    if request.method == "POST":
        form = cls()
    else:
        class Stub:
            pass

        stub = Stub()
        stub.data, stub.category, stub.version_id, stub.student = source, case.category, case.version_id, case.student
        form = cls(obj=form_object(stub))
    for spec in case.category.fields:
        if spec["type"] == "activity":
            form[spec["name"]].choices = _activity_choices(case.student)
    return form


@bp.route("/cases/<int:case_id>", methods=["GET"])
def show(case_id: int):
    case = policy.get_scoped(current_user, Case, case_id)
    if case is None:
        abort(404, description="案件不存在或不在您的权限范围内。")
    return _render_case(case)


def _render_case(case: Case, form=None):
    actions = available(current_user, case, CASE_ACTIONS)
    staff = current_user.has_role(*policy.STAFF)
    if form is None and "correct" in actions:
        form = correction_form(case)
    events = history("Case", case.id)
    if case.record_id is not None:
        events += [dict(e, on=_("记录")) for e in history("Record", case.record_id)]
        events.sort(key=lambda e: e["at"])
    proposal = case.proposal or {}
    filer_open = None
    if staff and case.filed_by_id is not None:
        # Appeals are attributable and bounded: the handler sees how many the filer has open.
        filer_open = db.session.execute(sa.select(sa.func.count(Case.id)).where(
            Case.filed_by_id == case.filed_by_id, Case.state.in_(OPEN_CASE_STATES))).scalar_one()
    return render_page(
        "cqe/cases/show.html", case=case, actions=actions, staff=staff, form=form,
        state=CASE_STATES.get(case.state, case.state), overdue=case.overdue(now()),
        record_fields=_fields(case.category, case.record.data) if case.record is not None else None,
        proposal_fields=_fields(case.category, proposal.get("data")) if proposal.get("data") else None,
        proposal_op=OP_NAMES.get(proposal.get("op"), ""), ops=[(o, OP_NAMES[o]) for o in workflow.proposal_ops(case)],
        events=events, level_names=LEVEL_NAMES, local=local, filer_open=filer_open,
    )


@bp.route("/cases/<int:case_id>/<action>", methods=["POST"])
def act(case_id: int, action: str):
    if action not in CASE_ACTIONS:
        abort(404)
    case = policy.get_scoped(current_user, Case, case_id)
    if case is None:
        abort(404, description="案件不存在或不在您的权限范围内。")
    proposal = None
    form = None
    if action == "correct":
        form = correction_form(case)
        proposal = {"op": request.form.get("op"), "data": form_values(form, case.category.fields)}
    ok = perform(lambda: workflow.case_action(current_user, case, action,
                                              reason=posted_text(request.form.get("reason"), "reason", "原因"),
                                              proposal=proposal, expected_version=posted_version(request.form.get("version"))),
                 CASE_DONE[action])
    if not ok and action == "correct":
        return _render_case(case, form)
    if request.form.get("next") == "queue":
        return redirect(url_for("cases_admin.index_view"))
    return redirect(url_for(".show", case_id=case.id))


# --- the homeroom teacher's review of a student's entry ------------------------------------------
REVIEW_DONE = {"review": _l("已审阅，学生可提交公示或修改后再次提交。"), "return": _l("已退回学生修改。")}


@bp.route("/review/<int:record_id>", methods=["GET", "POST"])
def review(record_id: int):
    record = policy.get_scoped(current_user, Record, record_id)
    if record is None:
        abort(404, description="记录不存在或不在您的权限范围内。")
    if request.method == "POST":
        action = request.form.get("action")
        if action not in ("review", "return"):
            abort(400, description="未知操作。")
        if perform(lambda: workflow.record_action(current_user, record, action,
                                                  reason=posted_text(request.form.get("reason"), "reason",
                                                                     "审阅意见" if action == "review" else "退回原因"),
                                                  expected_version=posted_version(request.form.get("version"))),
                   REVIEW_DONE[action]):
            return redirect(url_for("review_queue.index_view"))
    mode = (policy.entry_rule(record.category, "student", record.student.school_class.grade) or {}).get("review")
    return render_page("cqe/cases/review.html", record=record, fields=_fields(record.category, record.data),
                           actions=available(current_user, record, RECORD_ACTIONS), mode=mode,
                           events=history("Record", record.id))


@bp.route("/history/record/<int:record_id>")
def record_history(record_id: int):
    record = policy.get_scoped(current_user, Record, record_id)
    if record is None:
        abort(404, description="记录不存在或不在您的权限范围内。")
    return render_page("cqe/cases/history.html", record=record, fields=_fields(record.category, record.data),
                           events=history("Record", record.id), staff=current_user.has_role(*policy.STAFF))
