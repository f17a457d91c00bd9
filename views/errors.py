"""Refusals and errors as pages that say why, in Chinese."""
from __future__ import annotations

from flask import render_template, request
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError

TITLES = {400: _l("请求有误"), 403: _l("无权操作"), 404: _l("未找到"), 405: _l("方法不允许"), 413: _l("文件过大"),
          429: _l("请求过于频繁"),
          500: _l("系统错误")}


def register_error_handlers(app) -> None:
    def render(code: int, reason: str):
        if request.accept_mimetypes.best == "application/json" or request.path.endswith("/ajax/update/"):
            return reason, code
        return render_template("cqe/error.html", code=code, title=TITLES.get(code, "错误"), reason=reason), code

    @app.errorhandler(CSRFError)
    def _csrf(exc):
        return render(400, "页面已过期或请求来源无效（CSRF 校验失败），请刷新页面后重试。")

    for code, default in ((400, "请求有误。"), (403, "您没有权限执行此操作。"), (404, "页面或记录不存在。"),
                          (405, "不支持此请求方法。"), (413, "上传内容过大。"),
                          (429, "请求过于频繁，请稍后再试。")):
        def handler(exc, code=code, default=default):
            description = getattr(exc, "description", None)
            # Werkzeug's stock English descriptions are replaced by ours.
            if not description or description.startswith(("The ", "You ", "Method ", "Bad ", "The browser")):
                description = default
            return render(code, description)

        app.register_error_handler(code, handler)

    @app.errorhandler(500)
    def _server_error(exc):
        # Whatever the request wrote is rolled back (a change commits once, at its end).
        try:
            from models.base import db

            db.session.rollback()
        except Exception:  # noqa: BLE001 - the database may be what failed
            pass
        return render(500, "系统出错，请稍后重试。如刚才正在保存，请刷新页面核对是否已保存。")
