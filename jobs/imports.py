"""Imports of a category's records as RQ jobs (issue 6): a large file is checked, and later imported,
by a job that reports its progress (``jobs.progress``: the page's progress bar). A small file
(``CQE_IMPORT_INLINE_ROWS``), or any file without Redis, runs the same functions in the request.

The argument is the upload's token (and the mode): its metadata names the user and the category,
and the outcome is stored next to the upload (forms/imports.py ``Upload``), so the page shows the
same report whichever way the work ran.
"""
from __future__ import annotations

from forms import imports
from jobs import app_context, job, progress
from models.accounts import User
from models.base import db
from models.catalog import Category

TIMEOUT = 1800  # a 100,000-row file takes seconds to check or import; half an hour is the hard stop


def _load(token: str):
    upload = imports.Upload.load(token)
    if upload is None:
        raise LookupError(f"no upload {token}")
    user = db.session.get(User, upload.meta["user_id"])
    category = db.session.get(Category, upload.meta["category_id"])
    if user is None or category is None:
        raise LookupError(f"upload {token}: its user or category is gone")
    return upload, user, category


@job(timeout=TIMEOUT)
@app_context
def check_upload(token: str) -> dict:
    """Check the uploaded file and store its report (counts, the first bad rows, the error workbook)."""
    upload, user, category = _load(token)
    try:
        report = imports.check_upload(upload, user, category, progress=progress)
    except imports.ImportFileError as exc:
        report = imports.Report(error=exc.message)
        upload.save_report(report)
    finally:
        db.session.rollback()  # it read only: end the read transaction
    return {"total": report.total, "valid": report.valid, "invalid": report.invalid, "error": report.error}


@job(timeout=TIMEOUT)
@app_context
def import_upload(token: str, mode: str) -> dict:
    """Check the file again and write its rows (all, or only the good ones) in one transaction; store
    the outcome for the page."""
    upload, user, category = _load(token)
    try:
        result = imports.import_upload(upload, user, category, mode, progress=progress)
    except imports.ImportFileError as exc:
        result = {"ok": False, "imported": 0, "skipped": 0, "message": exc.message}
    upload.save_result(result)
    return result
