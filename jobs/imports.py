"""Imports of a category's records as RQ jobs (issue 6): a large file is checked, and later imported,
by a job that reports its progress (``jobs.progress``: the page's progress bar). A small file
(``CQE_IMPORT_INLINE_ROWS``), or any file without Redis, runs the same functions in the request.

The argument is the upload's token (and the mode): its metadata names the user and the category,
and the outcome is stored next to the upload (forms/imports.py ``Upload``), so the page shows the
same report whichever way the work ran.
"""
from __future__ import annotations

from contextlib import contextmanager

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
    the outcome for the page.

    An upload is imported once, however often this runs: a job killed mid-way (its transaction dies with
    it, nothing is kept) may be rerun by the user (a new job from the page) and by an operator (``rq
    requeue`` of the abandoned job) alike. Runs of one upload take turns (a lock on the upload, released
    by the kernel if the holder dies), and a run that finds the upload imported writes nothing."""
    upload, user, category = _load(token)
    with _one_at_a_time(upload):
        upload = imports.Upload.load(token) or upload  # as the run before this one left it
        done = upload.meta.get("imported")
        if done:
            result = {"ok": False, "imported": 0, "skipped": 0, "message": f"该文件已导入 {done} 条记录，未重复导入。"}
            if upload.result() is None:  # a page waiting for this job gets its answer; another job's stays
                upload.save_result(result)
            return result
        try:
            result = imports.import_upload(upload, user, category, mode, progress=progress)
        except imports.ImportFileError as exc:
            result = {"ok": False, "imported": 0, "skipped": 0, "message": exc.message}
        upload.save_result(result)
    return result


@contextmanager
def _one_at_a_time(upload):
    """An exclusive lock on the upload for the length of an import (the web process and the workers share
    instance/imports, where the file itself is). A killed holder's lock goes with its process."""
    import fcntl

    with open(upload.path(".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
