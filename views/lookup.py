"""The public results lookup (公布评价结果, SPEC §8 and seed 001: 7月3日 学生输入考号查询): a student enters the
exam number (考号) and the last six characters of the 学籍号 and sees their published levels.

What it may reveal is one bit: "this pair is right and the result is out" or not. Every other outcome (no such
exam number, a wrong second identifier, another student's identifier, a student who does not take part, a result
not yet published, input no exam number can have) gets ONE answer: the same message, status and page. Guessing
is made slow and blind three ways:

- Rate limits (views/throttle.py): every lookup counts per client address; failed lookups count per exam number
  whatever the address (a number cannot be worked through from many machines), and a limited number is refused
  even with the right identifier until its window passes.
- The same work on every path: one statement fetches the student of the exam number together with the nearest
  exam number below and above it; when the number is unknown its neighbour (usually a classmate, exam numbers
  run by school and class) stands in, and ``published_result`` runs for whoever was fetched, followed by a
  constant-time comparison of the identifier. A wrong number thus executes the same statements as a right one.
- A floor on the answer time (``CQE_LOOKUP_MIN_SECONDS``): whatever is left of it is slept away, so what
  remains of the time differences (a neighbour in another school, the success page's rendering) is hidden
  under it.

The result page shows the name with the given name masked, the school and the level of each dimension; never
the 学籍号, the class, an id or anything else. Nothing is written to the database.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import time
import unicodedata

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, render_template, request
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField

from models.base import db
from models.evaluation import published_result
from models.org import Student
from views.throttle import throttle

bp = Blueprint("lookup", __name__)

EXAM_NUMBER_MAX = 32  # Student.exam_number is a String(32)
IDENTIFIER_LENGTH = 6  # 学籍号后六位
# Longer raw input is refused before it is even normalised (a pasted page, a flood of characters).
RAW_MAX = 64
_ALLOWED = re.compile(r"[0-9A-Z]+")
# What the identifier is compared with when the exam number is unknown: it can never equal a normalised
# identifier (letters and digits only), and the comparison takes the same time as a real one.
_DUMMY_IDENTIFIER = "-" * IDENTIFIER_LENGTH
# What stands for an identifier that is not six letters or digits (never equal to a 学籍号's end either).
_MALFORMED_IDENTIFIER = "?" * IDENTIFIER_LENGTH
# Chinese compound surnames kept whole when the name is masked.
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 夏侯 轩辕 令狐 端木 独孤 南宫 西门 呼延 万俟 闻人 "
    "澹台 公冶 太史 申屠 钟离 宗政 濮阳 淳于 单于 赫连 拓跋 百里 东郭 南门 第五 梁丘 左丘".split())


class LookupForm(FlaskForm):
    # No validators: every problem with the input gets the one generic answer (see module doc).
    exam_number = StringField(_l("考号"))
    identifier = StringField(_l("学籍号后六位"))


def normalise(value: str | None, length: int | None = None, max_length: int = EXAM_NUMBER_MAX) -> str | None:
    """What a person meant to type, or None when it cannot be an exam number or identifier: full-width
    characters as ASCII (NFKC), blanks at the ends and spaces inside dropped, letters upper-case; only letters
    and digits allowed (a control character, punctuation or an SQL-looking string is refused, never sent)."""
    if not isinstance(value, str) or len(value) > RAW_MAX:
        return None
    text = unicodedata.normalize("NFKC", value).strip().replace(" ", "").upper()
    if not text or len(text) > max_length or (length is not None and len(text) != length):
        return None
    return text if _ALLOWED.fullmatch(text) else None


def mask_name(name: str) -> str:
    """The surname, the given name masked but its last character: 王小明 → 王*明, 李娜 → 李*, 欧阳文杰 → 欧阳*杰."""
    name = (name or "").strip()
    surname_length = 2 if name[:2] in COMPOUND_SURNAMES and len(name) > 2 else 1
    surname, given = name[:surname_length], name[surname_length:]
    if len(given) <= 1:
        return surname + "*" * max(len(given), 1)
    return surname + "*" * (len(given) - 1) + given[-1]


def _candidates(number: str) -> list[Student]:
    """In ONE statement: the student of the greatest exam number <= ``number`` (the student of ``number``
    itself when there is one) and of the least exam number above it."""
    below = (sa.select(Student.id).where(Student.exam_number <= number)
             .order_by(Student.exam_number.desc(), Student.id).limit(1))
    above = (sa.select(Student.id).where(Student.exam_number > number)
             .order_by(Student.exam_number, Student.id).limit(1))
    ids = sa.union_all(below.subquery().select(), above.subquery().select()).subquery()
    rows = db.session.execute(sa.select(Student).where(Student.id.in_(sa.select(ids.c.id)))).scalars().all()
    return sorted(rows, key=lambda s: (s.exam_number, s.id))


def _number_key(number: str) -> str:
    """The per-exam-number throttle key: a keyed digest, so the throttle's storage holds no exam numbers."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, b"lookup:" + number.encode(), hashlib.sha256).hexdigest()[:32]


def _find(number: str, identifier: str) -> tuple[Student, dict[str, str]] | None:
    """The student and their published result when the pair is right and the result is out; None otherwise.
    The same statements run whether or not the exam number exists (module doc)."""
    rows = _candidates(number)
    found = next((s for s in rows if s.exam_number == number), None)
    stand_in = found or (rows[0] if rows else None)
    result = published_result(stand_in) if stand_in is not None else None
    expected = (found.xjh or "")[-IDENTIFIER_LENGTH:].upper() if found is not None else _DUMMY_IDENTIFIER
    matches = hmac.compare_digest(expected.encode(), identifier.encode())
    if found is None or not matches or not found.participates or result is None:
        return None
    return found, result


def _private(response):
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


bp.after_request(_private)


@bp.route("/results", methods=["GET", "POST"])
def results():
    form = LookupForm()
    if request.method == "GET":
        return render_template("cqe/lookup.html", form=form, outcome=None)
    started = time.perf_counter()
    try:
        return _answer(form)
    finally:
        # Every POST answer (a result, the generic answer, a refusal) takes at least the floor.
        rest = (current_app.config.get("CQE_LOOKUP_MIN_SECONDS") or 0) - (time.perf_counter() - started)
        if rest > 0:
            time.sleep(rest)


def _answer(form: LookupForm):
    if not form.validate_on_submit():  # the CSRF token (CSRFProtect refuses a missing one before this)
        abort(400)
    limits = throttle()
    too_many = gettext("查询次数过多，请稍后再试。")
    if not limits.attempt(current_app.config["CQE_LOOKUP_RATE"], "lookup", request.remote_addr or "-"):
        abort(429, description=too_many)
    number = normalise(form.exam_number.data)
    identifier = normalise(form.identifier.data, length=IDENTIFIER_LENGTH, max_length=IDENTIFIER_LENGTH)
    found = None
    if number is not None:
        number_rate, key = current_app.config["CQE_LOOKUP_NUMBER_RATE"], _number_key(number)
        if not limits.allowed(number_rate, "lookup-number", key):
            abort(429, description=too_many)
        # A malformed identifier is a failure of this number like a wrong one; the lookup still runs.
        found = _find(number, identifier if identifier is not None else _MALFORMED_IDENTIFIER)
        if found is None:
            limits.failed(number_rate, "lookup-number", key)
    # Fields are never filled back in: the generic answer is the same page whatever was typed.
    form = LookupForm(formdata=None)
    if found is None:
        return render_template("cqe/lookup.html", form=form, outcome="none")
    student, levels = found
    return render_template("cqe/lookup.html", form=form, outcome="found", name=mask_name(student.name),
                           school=student.school.name, levels=list(levels.items()))
