"""The district admin's page of deadline effects (scheduled, done, failed, with counts and times), the
inbox every user reads reminders in, and the JSON a progress bar polls for a background job."""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, has_request_context, jsonify, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required

import jobs
from jobs import deadlines as deadline_jobs
from models import deadlines, policy
from models.base import db
from models.calendar import Cohort
from models.clock import local, now
from models.deadlines import DeadlineRun, Notification
from views.actions import render_page
from views.i18n import pick

STATE_NAMES = {"done": _l("已完成"), "failed": _l("失败"), "due": _l("已到期，待补执行"), "scheduled": _l("待执行")}


def queue_state() -> dict:
    """How deadlines are driven here: by RQ (with how many workers), or by the web process's ticker."""
    from flask import current_app

    if not current_app.config.get("REDIS_URL"):
        return {"mode": "embedded", "text": _("未配置 Redis：由网站进程每分钟检查并执行到期任务。")}
    try:
        from rq import Worker

        conn = jobs.redis_connection()
        conn.ping()
        workers = Worker.count(connection=conn)
    except Exception:  # noqa: BLE001 - any Redis failure reads the same to the admin
        return {"mode": "down", "text": _("Redis 无法连接：网页照常使用；到期任务将在队列恢复后自动补执行，也可在此立即补执行。")}
    if not workers:
        return {"mode": "no_worker", "text": _("Redis 已连接，但没有在线的后台 worker（请运行 make worker）。")}
    return {"mode": "rq", "text": _("Redis 已连接，%(n)s 个后台 worker 在线。", n=workers)}


class DeadlinesView(BaseView):
    def is_accessible(self) -> bool:
        return current_user.is_authenticated and policy.can(current_user, "view", DeadlineRun)

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.url))
        abort(403, description=_("您的角色不能查看自动任务。"))

    def _districts(self) -> list[int]:
        return policy.district_ids(current_user, DeadlineRun)

    @expose("/")
    def index(self):
        at = now()
        lang = "en" if str(get_locale()) == "en" else "zh"
        entries = [e for d in self._districts() for e in deadlines.schedule(d)]
        queued = {}
        try:
            queued = deadline_jobs.scheduled_jobs({e.cohort.id for e in entries})
        except Exception:  # noqa: BLE001 - Redis down: the page still shows the schedule
            queued = {}
        rows = []
        for e in entries:
            state = e.state(at)
            run = e.run
            rows.append({
                "cohort": e.cohort.name, "term": e.cohort.term.name, "cohort_id": e.cohort.id,
                "effect": e.effect.code, "name": pick(e.effect.name, e.effect.name_en),
                "due": local(e.due_at), "state": state, "state_name": STATE_NAMES[state],
                "summary": e.effect.summary(run.counts, lang) if run is not None and run.status == "done" else "",
                "ran_at": local(run.ran_at) if run else None, "seconds": run.seconds if run else None,
                "trigger": run.trigger if run else "", "error": run.error if run else "",
                "attempts": run.attempts if run else 0,
                "queued_at": local(queued[jid]) if (jid := deadline_jobs.job_id(e.effect.code, e.cohort.id)) in queued
                else None,
                "can_run": state in ("due", "failed"),
            })
        return self.render("cqe/deadlines.html", rows=rows, queue=queue_state(), at=local(at),
                           job_id=request.args.get("job", ""), page_title=_("自动任务"))

    def _require_run(self, district_id: int) -> None:
        policy.require(current_user, "run", DeadlineRun(district_id=district_id))

    @expose("/run", methods=["POST"])
    def run(self):
        """Run one due (or failed) effect now."""
        cohort = db.session.get(Cohort, request.form.get("cohort_id", type=int) or 0)
        code = request.form.get("effect", "")
        if cohort is None or code not in deadlines.EFFECTS:
            abort(404)
        try:
            self._require_run(cohort.term.district_id)
        except policy.Denied as exc:
            abort(exc.status, description=exc.reason)
        effect = deadlines.EFFECTS[code]
        try:
            done = deadlines.run(code, cohort.id, trigger="admin")
        except deadlines.NotDue as exc:
            flash(exc.message, "error")
        except Exception as exc:  # noqa: BLE001 - recorded on the run's row and shown in the table
            flash(_("「%(name)s」执行失败：%(error)s", name=effect.name, error=str(exc)[:300]), "error")
        else:
            if done is None:
                flash(_("「%(name)s」此前已执行，未作任何改动。", name=effect.name), "info")
            else:
                flash(f"{cohort.name} · {effect.name}：{effect.summary(done.counts)}", "success")
        return redirect(url_for(".index"))

    @expose("/catch-up", methods=["POST"])
    def catch_up(self):
        """Apply everything due in the admin's district(s): on RQ with a progress bar, or right here."""
        districts = self._districts()
        for d in districts:
            try:
                self._require_run(d)
            except policy.Denied as exc:
                abort(exc.status, description=exc.reason)
        q = jobs.live_queue()  # None when Redis is down: then in this request
        if q is not None and len(districts) == 1:
            job = q.enqueue(deadline_jobs.tick_job, districts[0], job_timeout=deadline_jobs.TICK_TIMEOUT,
                            result_ttl=3600, meta={"user_id": current_user.id, "progress": None})
            return redirect(url_for(".index", job=job.id))
        applied = failed = 0
        for d in districts:
            for _entry, done, error in deadlines.tick(district_id=d, trigger="admin"):
                applied += done is not None
                failed += bool(error)
        flash(_("已补执行 %(n)s 项到期任务。", n=applied) + (_("%(n)s 项失败。", n=failed) if failed else ""),
              "error" if failed else "success")
        return redirect(url_for(".index"))


bp = Blueprint("inbox", __name__)

MESSAGES = {
    "confirm": (_l("您有 %(count)s 条记录尚未确认。确认将于 %(due)s 截止，逾期未确认的记录将默认通过。"), "me.records"),
    "submit": (_l("您有 %(count)s 条填报尚未提交公示。学生填报将于 %(due)s 截止。"), "me.records"),
    "review": (_l("有 %(count)s 条学生填报等待您审阅。学生填报将于 %(due)s 截止。"), "review_queue.index_view"),
    "correct": (_l("有 %(count)s 条确认不通过的数据尚未修改。修改将于 %(due)s 截止，逾期未修改的校级数据将升级为问题数据。"),
                "corrections.index_view"),
    "handle": (_l("有 %(count)s 件申诉或问题数据等待您处理或审核。问题处理将于 %(due)s 截止。"), "cases_admin.index_view"),
    "fix": (_l("有 %(count)s 件已受理的申诉等待您修改。问题处理将于 %(due)s 截止。"), "cases_admin.index_view"),
    "published": (_l("公示已开始：可查看本人和同班同学的纪实报告。如有异议，请在 %(due)s 前在线申诉。"), "me.classmates"),
    "published_parent": (_l("公示已开始：可查看孩子的纪实报告。如有异议，请提醒孩子在 %(due)s 前在线申诉。"), "me.report"),
}


def message_text(n: Notification) -> str:
    template, _endpoint = MESSAGES.get(n.kind, (n.kind, None))
    due = local(n.due_at).strftime("%Y-%m-%d %H:%M") if n.due_at else ""
    return str(template) % {"count": f"{n.count:,}", "due": due}


def message_link(n: Notification) -> str | None:
    endpoint = MESSAGES.get(n.kind, (None, None))[1]
    if endpoint is None:
        return None
    if endpoint in ("cases_admin.index_view", "review_queue.index_view", "corrections.index_view") \
            and current_user.has_role("student", "parent"):
        endpoint = "me.appeals" if n.kind == "fix" else "me.records"
    try:
        return url_for(endpoint)
    except Exception:  # noqa: BLE001 - a view not registered in this app
        return None


def unread_count() -> int:
    """Unread messages of the signed-in user; counted once per request (the menu and the page both ask)."""
    if not current_user.is_authenticated:
        return 0
    if has_request_context() and "cqe_unread" in g:
        return g.cqe_unread
    count = db.session.execute(sa.select(sa.func.count(Notification.id)).where(
        policy.scope(current_user, Notification), Notification.read_at.is_(None))).scalar_one()
    if has_request_context():
        g.cqe_unread = count
    return count


@bp.route("/inbox")
@login_required
def inbox():
    rows = db.session.execute(sa.select(Notification).where(policy.scope(current_user, Notification))
                              .order_by(Notification.id.desc()).limit(200)).scalars().all()
    items = [{"text": message_text(n), "link": message_link(n), "at": local(n.created_at), "unread": n.read_at is None}
             for n in rows]
    return render_page("cqe/inbox.html", items=items, page_title=_("消息"))


@bp.route("/inbox/read", methods=["POST"])
@login_required
def mark_read():
    db.session.execute(sa.update(Notification).where(
        policy.scope(current_user, Notification, "edit"), Notification.read_at.is_(None)).values(read_at=now()))
    db.session.commit()
    return redirect(url_for(".inbox"))


@bp.route("/jobs/<path:job_id>")
@login_required
def job_status(job_id: str):
    """A background job's progress for the one who started it (others get 404, as for any id)."""
    try:
        info = jobs.status(job_id)
    except ValueError:  # not a job id at all (RQ's are letters, digits, "_" and "-"): no such job
        abort(404)
    except Exception:  # noqa: BLE001 - Redis down
        return jsonify({"status": "unknown", "error": _("无法连接后台任务队列。")}), 503
    if info is None or info.get("user_id") != current_user.id:
        abort(404)
    return jsonify({k: v for k, v in info.items() if k != "user_id"})

