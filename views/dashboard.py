"""进度统计: progress you can see (issue 7). The district admin sees every school of the district, a school's
leadership (校级管理员, 校分管领导, 校长) their own school; each level drills down (district → school → class)
and downloads the same figures as an xlsx workbook, one sheet per table.

Each page is a handful of GROUP BY statements, never a query per row:

- the roster: students per unit, grade and status;
- records: per unit and category, with FILTER clauses (one pass over the term's records);
- cases per unit, flow and state, with how many of them are overdue;
- archive entries of participating grade-9 students: signed by both, 合格, 不合格;
- the auto-confirm deadline runs of the term (a few rows), so that 逾期默认通过 can be told apart.

What the figures mean (tests/test_dashboard.py computes each one again by straightforward queries):

- Non-participants (离校/休学/转学) are outside every figure but their own count.
- 已录入 (entered) for a category: students with at least one record of it, where a clerk-entered record
  counts in any state and a student's own entry once it is handed in (待班主任审阅, 班主任已审阅,
  已提交公示), not as a draft; against the participating students of the grades the category applies to.
- Confirmations partition the clerk-entered records: 待确认 (entered), 已确认 (confirmed by the student),
  逾期默认通过 (stamped by an auto_confirm deadline run), 确认不通过 (rejected by the student, then still
  待修改, 已修改 by the clerk, or 问题数据 after the clerks' deadline). A confirmed record that an approved
  appeal later corrected is counted as 已修改 too: the record keeps no trace of which way it got there.
- Cases: 处理中 is 待处理 + 待修改 + 待审核; overdue is 处理中 after the cohort's issue handling ended
  (flagged by the deadline run, or its due time has passed on the clock).
- Signatures: grade-9 participants whose 确认单 is signed by both the student and a parent.

District-wide figures (a district holds millions of records) are reused for ``COUNT_TTL`` seconds, as the
home page's counts are (views/counts.py); a school's or a class's are computed on every request.
"""
from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import sqlalchemy as sa
from flask import Response, abort, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_login import current_user
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from sqlalchemy.orm import contains_eager, joinedload

from models import policy
from models.archive import ArchiveEntry
from models.base import db
from models.calendar import Cohort, Term
from models.cases import OPEN_CASE_STATES, Case
from models.catalog import Category, Dimension
from models.clock import local, now
from models.deadlines import DeadlineRun
from models.org import GRADE_NAMES, NON_PARTICIPANT_STATUSES, STUDENT_STATUSES, School, SchoolClass, Student
from models.records import CLERK_ORIGINS, Record
from views import counts
from views.export import XLSX_MIME
from views.i18n import pick

CONFIRMATION_KEYS = ("confirmed", "defaulted", "rejected", "corrected", "problem", "pending")
OWN_KEYS = ("draft", "submitted", "reviewed", "final")
CASE_STATE_KEYS = ("open", "accepted", "corrected", "closed", "dismissed")
FLOW_NUMBERS = (1, 2, 3, 4)
COLORS = {"confirmed": "#28a745", "defaulted": "#17a2b8", "rejected": "#dc3545", "pending": "#adb5bd",
          "open": "#fd7e14", "accepted": "#ffc107", "corrected": "#6f42c1", "closed": "#28a745",
          "dismissed": "#6c757d"}


# ---------------------------------------------------------------------------------------------
# Tables: what a page shows and what its workbook holds, built once for both


@dataclass
class Column:
    key: str
    label: str
    kind: str = "int"  # text | int | pct (0..1 or None) | frac ((done, of)) | check (True/False/None)
    bar: bool = False  # a pct shown as a progress bar


@dataclass
class Row:
    unit: int | None
    cells: list
    url: str | None = None
    muted: bool = False


@dataclass
class Table:
    key: str
    title: str
    columns: list
    rows: list
    total: Row | None = None
    note: str = ""


def pct(done: int, of: int) -> float | None:
    return done / of if of else None


# ---------------------------------------------------------------------------------------------
# The figures: a few grouped statements for all units of a page


@dataclass
class Level:
    """Where a page's figures come from: the unit each statement groups by, and the page's filters."""

    kind: str  # district | school | class
    record_unit: object
    student_unit: object
    case_unit: object
    record_where: tuple
    student_where: tuple
    case_where: tuple
    join_students: bool  # records joined to students (for the class, or the student); the district does without


def district_level(school_ids: list[int]) -> Level:
    return Level("district", Record.school_id, Student.school_id, Case.school_id,
                 (Record.school_id.in_(school_ids),), (Student.school_id.in_(school_ids),),
                 (Case.school_id.in_(school_ids),), False)


def school_level(school: School) -> Level:
    return Level("school", Student.class_id, Student.class_id, Case.class_id,
                 (Record.school_id == school.id,), (Student.school_id == school.id,), (Case.school_id == school.id,),
                 True)


def class_level(klass: SchoolClass) -> Level:
    return Level("class", Record.student_id, Student.id, Case.student_id,
                 (Record.school_id == klass.school_id, Student.class_id == klass.id), (Student.class_id == klass.id,),
                 (Case.class_id == klass.id,), True)


def auto_confirm_runs(term_ids: list[int]) -> list[int]:
    """Ids of the 逾期默认通过 runs of these terms: the records they stamped were confirmed by default."""
    return list(db.session.execute(
        sa.select(DeadlineRun.id).join(Cohort, Cohort.id == DeadlineRun.cohort_id)
        .where(Cohort.term_id.in_(term_ids), DeadlineRun.effect == "auto_confirm").order_by(DeadlineRun.id)
    ).scalars())


def _record_statement(level: Level, term_ids: list[int], run_ids: list[int]):
    """Per unit and category, in one pass. A state belongs to one lifecycle (workflow.TRANSITIONS: a clerk's
    record is entered/confirmed/rejected/corrected/problem, a student's own entry draft/submitted/reviewed/final),
    so the state alone tells the origin: each FILTER is one comparison per row, which is what keeps a
    district's 1.5 million records at about a second on SQLite."""
    if run_ids:
        defaulted = Record.deadline_run_id.in_(run_ids)
        kept = sa.or_(Record.deadline_run_id.is_(None), Record.deadline_run_id.notin_(run_ids))
    else:
        defaulted, kept = sa.false(), sa.true()
    n = sa.func.count
    students = sa.func.count(sa.distinct(Record.student_id))
    columns = [
        students.filter(Record.state != "draft").label("entered"),
        students.filter(Record.state == "final").label("published"),
        n().filter(sa.and_(Record.state == "confirmed", kept)).label("confirmed"),
        n().filter(defaulted).label("defaulted"),
        n().filter(Record.state == "rejected").label("rejected"),
        n().filter(sa.and_(Record.state == "corrected", kept)).label("corrected"),
        n().filter(Record.state == "problem").label("problem"),
        n().filter(Record.state == "entered").label("pending"),
        *(n().filter(Record.state == s).label(f"own_{s}") for s in OWN_KEYS),
    ]
    stmt = sa.select(level.record_unit.label("unit"), Record.category_id, *columns).select_from(Record).where(
        Record.term_id.in_(term_ids), *level.record_where)
    if level.join_students:
        stmt = stmt.join(Student, Student.id == Record.student_id).where(Student.status.notin_(NON_PARTICIPANT_STATUSES))
    else:
        # A few non-participants: one small list the planner probes, instead of a join per record.
        stmt = stmt.where(Record.student_id.notin_(sa.select(Student.id).where(
            Student.status.in_(NON_PARTICIPANT_STATUSES), *level.student_where)))
    return stmt.group_by(level.record_unit, Record.category_id)


def _empty_unit(categories) -> dict:
    return {
        "students": 0, "out": 0, "g9": 0, "roster": {},
        "cats": {c.id: {"roster": 0, "entered": 0, "published": 0, **dict.fromkeys(CONFIRMATION_KEYS, 0)}
                 for c in categories},
        "conf": dict.fromkeys(CONFIRMATION_KEYS, 0),
        "own": dict.fromkeys(OWN_KEYS, 0),
        "cases": {"total": 0, "overdue": 0, **dict.fromkeys(CASE_STATE_KEYS, 0),
                  **{f"flow{f}": 0 for f in FLOW_NUMBERS}, **{f"flow{f}_open": 0 for f in FLOW_NUMBERS}},
        "archive": {"signed": 0, "pass": 0, "fail": 0},
    }


def compute(level: Level, unit_ids: list[int], categories: list[Category], term_ids: list[int],
            at: datetime) -> dict[int, dict]:
    """Every figure of every unit of a page: {unit id: {...}} (see ``_empty_unit`` for the shape)."""
    units = {u: _empty_unit(categories) for u in unit_ids}
    if not unit_ids:
        return units
    by_id = {c.id: c for c in categories}

    for unit, grade, status, n in db.session.execute(
            sa.select(level.student_unit, SchoolClass.grade, Student.status, sa.func.count()).select_from(Student)
            .join(SchoolClass, SchoolClass.id == Student.class_id).where(*level.student_where)
            .group_by(level.student_unit, SchoolClass.grade, Student.status)):
        u = units.get(unit)
        if u is None:
            continue
        if status in NON_PARTICIPANT_STATUSES:
            u["out"] += n
            continue
        u["students"] += n
        u["roster"][grade] = u["roster"].get(grade, 0) + n
        if grade == 9:
            u["g9"] += n
    for u in units.values():
        for cid, c in u["cats"].items():
            c["roster"] = sum(u["roster"].get(g, 0) for g in by_id[cid].grades)

    if term_ids:
        for row in db.session.execute(_record_statement(level, term_ids, auto_confirm_runs(term_ids))).mappings():
            u = units.get(row["unit"])
            if u is None or row["category_id"] not in u["cats"]:
                continue
            cat = u["cats"][row["category_id"]]
            cat["entered"] += row["entered"]
            cat["published"] += row["published"]
            for key in CONFIRMATION_KEYS:
                cat[key] += row[key]
                u["conf"][key] += row[key]
            for key in OWN_KEYS:
                u["own"][key] += row[f"own_{key}"]

        is_open = Case.state.in_(OPEN_CASE_STATES)
        overdue = sa.and_(is_open, sa.or_(Case.overdue_run_id.is_not(None), Case.due_at <= at))
        for unit, flow, state, n, late in db.session.execute(
                sa.select(level.case_unit, Case.flow, Case.state, sa.func.count(), sa.func.count().filter(overdue))
                .where(Case.term_id.in_(term_ids), *level.case_where)
                .group_by(level.case_unit, Case.flow, Case.state)):
            u = units.get(unit)
            if u is None:
                continue
            cases = u["cases"]
            cases["total"] += n
            cases["overdue"] += late
            if state in cases:
                cases[state] += n
            if flow in FLOW_NUMBERS:
                cases[f"flow{flow}"] += n
                if state in OPEN_CASE_STATES:
                    cases[f"flow{flow}_open"] += n

        signed = sa.and_(ArchiveEntry.student_signed_on.is_not(None), ArchiveEntry.parent_signed_on.is_not(None))
        for unit, n_signed, n_pass, n_fail in db.session.execute(
                sa.select(level.student_unit, sa.func.count().filter(signed),
                          sa.func.count().filter(ArchiveEntry.result == "pass"),
                          sa.func.count().filter(ArchiveEntry.result == "fail"))
                .select_from(ArchiveEntry).join(Student, Student.id == ArchiveEntry.student_id)
                .join(SchoolClass, SchoolClass.id == Student.class_id)
                .where(ArchiveEntry.term_id.in_(term_ids), SchoolClass.grade == 9,
                       Student.status.notin_(NON_PARTICIPANT_STATUSES), *level.student_where)
                .group_by(level.student_unit)):
            u = units.get(unit)
            if u is not None:
                u["archive"] = {"signed": n_signed, "pass": n_pass, "fail": n_fail}
    return units


def add_up(figures: dict, categories) -> dict:
    """The sum of units' figures (the total row, and the page's own unit)."""
    def merge(into: dict, other: dict) -> None:
        for key, value in other.items():
            if isinstance(value, dict):
                merge(into.setdefault(key, {}), value)
            else:
                into[key] = into.get(key, 0) + value

    if not figures:
        return _empty_unit(categories)
    total: dict = {}
    for unit in figures.values():
        merge(total, unit)
    return total


def cached(key: tuple, build):
    """``build()``, reused for COUNT_TTL seconds under ``key`` (district-wide figures, like the home page's
    counts; kept in the same store, which the tests clear between tests)."""
    at = time.monotonic()
    hit = counts._counts.get(key)
    if hit and hit[0] > at:
        return hit[1]
    value = build()
    counts._counts[key] = (at + counts.COUNT_TTL, value)
    return value


# ---------------------------------------------------------------------------------------------
# What a page is about


@dataclass
class Scope:
    """The current terms and categories a user's pages count, and the schools they may see."""

    terms: list
    categories: list
    schools: list
    wide: bool  # the district (or several schools) is the top of the user's drill-down


def user_scope(user) -> Scope:
    schools = db.session.execute(sa.select(School).options(joinedload(School.district))
                                 .where(policy.scope(user, School, "dashboard")).order_by(School.code)).scalars().all()
    term_ids = policy.current_term_ids(user)
    terms = db.session.execute(sa.select(Term).where(Term.id.in_(term_ids)).order_by(Term.id)).scalars().all() \
        if term_ids else []
    profiles = sorted({t.profile_id for t in terms})
    categories = db.session.execute(
        sa.select(Category).join(Dimension, Dimension.id == Category.dimension_id)
        .options(contains_eager(Category.dimension))
        .where(Category.profile_id.in_(profiles)).order_by(Dimension.position, Category.position, Category.id)
    ).scalars().all() if profiles else []
    rule = policy.RULES[School]["dashboard"]
    wide = len(schools) > 1 or any(g.role in rule.roles and g.scope_kind in ("district", "city") for g in user.grants)
    return Scope(terms, categories, schools, wide)


def _category_name(c: Category) -> str:
    return pick(c.name, c.name_en)


def _grades(grades) -> str:
    """六至九年级 for a run of grades, 九年级 for one, 六年级、八年级 otherwise."""
    grades = sorted(grades)
    if len(grades) > 1 and grades == list(range(grades[0], grades[-1] + 1)) and all(g in GRADE_NAMES for g in grades):
        return _("%(first)s至%(last)s", first=GRADE_NAMES[grades[0]][:-2], last=GRADE_NAMES[grades[-1]])
    return "、".join(GRADE_NAMES.get(g, str(g)) for g in grades)


def _entry_levels(c: Category) -> str:
    return "、".join(dict.fromkeys(policy.level_name(r["level"]) for r in c.entry))


def _writes_own(c: Category) -> bool:
    return any(r["level"] == "student" for r in c.entry)


# ---------------------------------------------------------------------------------------------
# The tables of a page


def category_table(categories, total: dict) -> Table:
    """A row per category, most telling columns first (a phone shows them without scrolling)."""
    columns = [Column("category", _("类别"), "text"), Column("entered_pct", _("录入完成率"), "pct", bar=True),
               Column("entered", _("已录入学生")), Column("roster", _("应录入学生")),
               Column("published", _("学生已提交公示")),
               Column("confirmed", _("学生已确认")), Column("defaulted", _("逾期默认通过")),
               Column("rejected", _("确认不通过")), Column("pending", _("待确认")),
               Column("grades", _("适用年级"), "text"), Column("entry", _("录入方"), "text"),
               Column("dimension", _("维度"), "text")]
    rows = []
    for c in categories:
        f = total["cats"][c.id]
        clerk = any(r["level"] in CLERK_ORIGINS for r in c.entry)
        confirmations = [f["confirmed"], f["defaulted"], f["rejected"] + f["corrected"] + f["problem"], f["pending"]]
        rows.append(Row(c.id, [_category_name(c), pct(f["entered"], f["roster"]), f["entered"], f["roster"],
                               f["published"] if _writes_own(c) else None,
                               *(confirmations if clerk else [None] * 4),
                               _grades(c.grades), _entry_levels(c), pick(c.dimension.name, c.dimension.name_en)]))
    return Table("categories", _("分类录入进度"), columns, rows,
                 note=_("已录入：有该类记录的学生（学生自填的须已提交班主任审阅或已提交公示）；应录入：适用年级的参与学生。"))


def matrix_table(units, figures, categories, unit_label: str, total: dict) -> Table:
    columns = [Column("unit", unit_label, "text"), Column("students", _("参与学生")), Column("out", _("不参与"))]
    columns += [Column(f"cat{c.id}", _category_name(c), "frac") for c in categories]

    def cells(name, f):
        return [name, f["students"], f["out"], *((f["cats"][c.id]["entered"], f["cats"][c.id]["roster"])
                                                  for c in categories)]

    rows = [Row(uid, cells(name, figures[uid]), url) for uid, name, url in units]
    return Table("entries", _("各类记录录入（已录入/应录入学生）"), columns, rows, Row(None, cells(_("合计"), total)))


def confirmation_table(units, figures, unit_label: str, total: dict) -> Table:
    columns = [Column("unit", unit_label, "text"), Column("records", _("学校/区/市录入记录")),
               Column("confirmed", _("学生已确认")), Column("defaulted", _("逾期默认通过")),
               Column("rejected_all", _("确认不通过")), Column("rejected", _("其中待修改")),
               Column("corrected", _("其中已修改")), Column("problem", _("其中转问题数据")),
               Column("pending", _("待确认")), Column("done_pct", _("确认完成率"), "pct", bar=True)]

    def cells(name, f):
        c = f["conf"]
        records = sum(c.values())
        rejected = c["rejected"] + c["corrected"] + c["problem"]
        return [name, records, c["confirmed"], c["defaulted"], rejected, c["rejected"], c["corrected"], c["problem"],
                c["pending"], pct(records - c["pending"], records)]

    rows = [Row(uid, cells(name, figures[uid]), url) for uid, name, url in units]
    return Table("confirmations", _("确认情况（学校、区、市录入的记录）"), columns, rows, Row(None, cells(_("合计"), total)),
                 note=_("确认完成率：学生已确认、逾期默认通过或确认不通过的记录占全部录入记录的比例。"))


def own_table(units, figures, unit_label: str, total: dict) -> Table:
    columns = [Column("unit", unit_label, "text"), Column("draft", _("草稿")), Column("submitted", _("待班主任审阅")),
               Column("reviewed", _("班主任已审阅")), Column("final", _("已提交公示"))]

    def cells(name, f):
        return [name, *(f["own"][k] for k in OWN_KEYS)]

    rows = [Row(uid, cells(name, figures[uid]), url) for uid, name, url in units]
    return Table("own", _("学生自填记录"), columns, rows, Row(None, cells(_("合计"), total)))


def case_table(units, figures, unit_label: str, total: dict) -> Table:
    columns = [Column("unit", unit_label, "text"), Column("total", _("合计")), Column("open", _("待处理")),
               Column("accepted", _("待修改")), Column("corrected", _("待审核")), Column("in_progress", _("处理中")),
               Column("overdue", _("逾期未办结")), Column("closed", _("已办结")), Column("dismissed", _("已驳回"))]
    columns += [Column(f"flow{f}", _("流程(%(n)s)", n=f)) for f in FLOW_NUMBERS]
    columns += [Column(f"flow{f}_open", _("流程(%(n)s)处理中", n=f)) for f in FLOW_NUMBERS]

    def cells(name, f):
        c = f["cases"]
        return [name, c["total"], c["open"], c["accepted"], c["corrected"], c["open"] + c["accepted"] + c["corrected"],
                c["overdue"], c["closed"], c["dismissed"], *(c[f"flow{n}"] for n in FLOW_NUMBERS),
                *(c[f"flow{n}_open"] for n in FLOW_NUMBERS)]

    rows = [Row(uid, cells(name, figures[uid]), url) for uid, name, url in units]
    return Table("cases", _("申诉与问题数据"), columns, rows, Row(None, cells(_("合计"), total)),
                 note=_("流程(1) 问题数据；(2) 对校级或学生录入数据的申诉；(3) 对区级录入数据的申诉；(4) 对市级录入数据的申诉。"))


def archive_table(units, figures, unit_label: str, total: dict) -> Table:
    columns = [Column("unit", unit_label, "text"), Column("g9", _("九年级参与学生")), Column("signed", _("学生和家长均已签字")),
               Column("signed_pct", _("签字完成率"), "pct", bar=True), Column("pass", _("合格")), Column("fail", _("不合格")),
               Column("unrated", _("未评定"))]

    def cells(name, f):
        a = f["archive"]
        return [name, f["g9"], a["signed"], pct(a["signed"], f["g9"]), a["pass"], a["fail"],
                max(f["g9"] - a["pass"] - a["fail"], 0)]

    rows = [Row(uid, cells(name, figures[uid]), url) for uid, name, url in units if figures[uid]["g9"]]
    return Table("archive", _("归档签字（九年级）"), columns, rows, Row(None, cells(_("合计"), total)))


def student_tables(students, figures, categories, grade: int) -> list[Table]:
    """A class: a row per student (non-participants listed, without figures) and who has which category."""
    applicable = [c for c in categories if grade in c.grades]
    columns = [Column("name", _("姓名"), "text"), Column("status", _("状态"), "text"),
               Column("categories", _("已录入类别"), "frac"), Column("confirmed", _("学生已确认")),
               Column("defaulted", _("逾期默认通过")), Column("rejected_all", _("确认不通过")),
               Column("pending", _("待确认")), Column("own_final", _("自填已提交公示")),
               Column("cases_open", _("申诉/问题处理中")), Column("overdue", _("逾期未办结"))]
    if grade == 9:
        columns += [Column("signed", _("确认单已签字"), "check"), Column("result", _("评定"), "text")]
    columns.append(Column("xjh", _("学籍号"), "text"))
    rows, matrix = [], []
    for s in students:
        status = STUDENT_STATUSES.get(s.status, s.status)
        if s.status in NON_PARTICIPANT_STATUSES:
            rows.append(Row(s.id, [s.name, status] + [None] * (len(columns) - 3) + [s.xjh], muted=True))
            continue
        f = figures[s.id]
        c, cases = f["conf"], f["cases"]
        done = sum(1 for cat in applicable if f["cats"][cat.id]["entered"])
        cells = [s.name, status, (done, len(applicable)), c["confirmed"], c["defaulted"],
                 c["rejected"] + c["corrected"] + c["problem"], c["pending"], f["own"]["final"],
                 cases["open"] + cases["accepted"] + cases["corrected"], cases["overdue"]]
        if grade == 9:
            a = f["archive"]
            cells += [bool(a["signed"]), _("合格") if a["pass"] else (_("不合格") if a["fail"] else "")]
        rows.append(Row(s.id, [*cells, s.xjh]))
        matrix.append(Row(s.id, [s.name, *(bool(f["cats"][cat.id]["entered"]) for cat in applicable), s.xjh]))
    mcolumns = [Column("name", _("姓名"), "text"), *(Column(f"cat{c.id}", _category_name(c), "check") for c in applicable),
                Column("xjh", _("学籍号"), "text")]
    return [Table("students", _("学生"), columns, rows),
            Table("matrix", _("各类记录录入（参与学生）"), mcolumns, matrix,
                  note=_("✓ 已录入；— 尚无记录（学生自填的草稿不计）。"))]


def summary(total: dict, categories) -> list[tuple[str, str, str]]:
    """The cards at the top: (label, value, detail)."""
    roster = sum(total["cats"][c.id]["roster"] for c in categories)
    entered = sum(total["cats"][c.id]["entered"] for c in categories)
    conf = total["conf"]
    records = sum(conf.values())
    cases = total["cases"]

    def percent(done, of):
        value = pct(done, of)
        return "—" if value is None else f"{value:.1%}"

    out = [(_("参与学生"), f"{total['students']:,}", _("不参与 %(n)s 人", n=f"{total['out']:,}")),
           (_("录入完成率"), percent(entered, roster), f"{entered:,} / {roster:,}"),
           (_("确认完成率"), percent(records - conf["pending"], records), _("待确认 %(n)s 条", n=f"{conf['pending']:,}")),
           (_("确认不通过"), f"{conf['rejected'] + conf['corrected'] + conf['problem']:,}",
            _("待修改 %(n)s 条", n=f"{conf['rejected']:,}")),
           (_("申诉与问题数据处理中"), f"{cases['open'] + cases['accepted'] + cases['corrected']:,}",
            _("逾期 %(n)s 件", n=f"{cases['overdue']:,}"))]
    if total["g9"]:
        out.append((_("确认单签字（九年级）"), percent(total["archive"]["signed"], total["g9"]),
                    f"{total['archive']['signed']:,} / {total['g9']:,}"))
    return out


def short_labels(names: list[str]) -> list[str]:
    """Chart labels without the place name all units share (上海市宝山区…): the tables keep the full names."""
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    cut = max(prefix.rfind(ch) for ch in "市区县") + 1
    return [n[cut:] or n for n in names] if cut else names


def charts(units, figures) -> list[dict]:
    """Chart.js data for stacked bars per unit: confirmations (as shares) and cases by state (counts)."""
    labels = short_labels([name for _uid, name, _url in units])
    confirm = [
        {"label": _("学生已确认"), "color": COLORS["confirmed"], "data": [figures[u]["conf"]["confirmed"] for u, *_ in units]},
        {"label": _("逾期默认通过"), "color": COLORS["defaulted"], "data": [figures[u]["conf"]["defaulted"] for u, *_ in units]},
        {"label": _("确认不通过"), "color": COLORS["rejected"],
         "data": [sum(figures[u]["conf"][k] for k in ("rejected", "corrected", "problem")) for u, *_ in units]},
        {"label": _("待确认"), "color": COLORS["pending"], "data": [figures[u]["conf"]["pending"] for u, *_ in units]},
    ]
    names = {"open": _("待处理"), "accepted": _("待修改"), "corrected": _("待审核"), "closed": _("已办结"),
             "dismissed": _("已驳回")}
    cases = [{"label": names[k], "color": COLORS[k], "data": [figures[u]["cases"][k] for u, *_ in units]}
             for k in CASE_STATE_KEYS]
    return [
        {"id": "chart-confirmations", "title": _("确认情况（占比）"), "labels": labels, "datasets": confirm,
         "percent": True, "table": "table-confirmations"},
        {"id": "chart-cases", "title": _("申诉与问题数据（按状态，件）"), "labels": labels, "datasets": cases,
         "percent": False, "table": "table-cases"},
    ]


def category_chart(categories, total: dict) -> dict:
    """A class: confirmations by category (as shares)."""
    cats = [c for c in categories if sum(total["cats"][c.id][k] for k in CONFIRMATION_KEYS)]
    f = [total["cats"][c.id] for c in cats]
    return {"id": "chart-confirmations", "title": _("各类记录确认情况（占比）"), "labels": [_category_name(c) for c in cats],
            "percent": True, "table": "table-categories", "datasets": [
                {"label": _("学生已确认"), "color": COLORS["confirmed"], "data": [x["confirmed"] for x in f]},
                {"label": _("逾期默认通过"), "color": COLORS["defaulted"], "data": [x["defaulted"] for x in f]},
                {"label": _("确认不通过"), "color": COLORS["rejected"],
                 "data": [x["rejected"] + x["corrected"] + x["problem"] for x in f]},
                {"label": _("待确认"), "color": COLORS["pending"], "data": [x["pending"] for x in f]}]}


# ---------------------------------------------------------------------------------------------
# The workbook


def workbook(title: str, tables: list[Table]) -> bytes:
    """One sheet per table: a title line, the header (a 已录入/应录入 pair under each category), the rows, 合计."""
    wb = Workbook()
    wb.remove(wb.active)
    bold = Font(bold=True)
    for table in tables:
        ws = wb.create_sheet(_sheet_name(table.title, wb.sheetnames))
        ws.append([title + " · " + table.title])
        ws["A1"].font = Font(bold=True, size=12)
        two_rows = any(c.kind == "frac" for c in table.columns)
        top, sub = [], []
        for c in table.columns:
            if c.kind == "frac":
                top += [c.label, None]
                sub += [_("已录入"), _("应录入")]
            else:
                top.append(c.label)
                sub.append(None)
        ws.append(top)
        if two_rows:
            ws.append(sub)
            col = 1
            for c in table.columns:
                if c.kind == "frac":
                    ws.merge_cells(start_row=2, start_column=col, end_row=2, end_column=col + 1)
                    col += 2
                else:
                    ws.merge_cells(start_row=2, start_column=col, end_row=3, end_column=col)
                    col += 1
        header_rows = 3 if two_rows else 2
        for r in range(2, header_rows + 1):
            for cell in ws[r]:
                cell.font = bold
                cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        for row in table.rows + ([table.total] if table.total else []):
            values = []
            for c, value in zip(table.columns, row.cells, strict=True):
                if c.kind == "frac":
                    values += list(value) if value is not None else [None, None]
                elif c.kind == "check":
                    values.append(None if value is None else (_("是") if value else _("否")))
                else:
                    values.append(value)
            ws.append(values)
            for cell in ws[ws.max_row]:
                if isinstance(cell.value, str) and cell.value.startswith("="):
                    cell.data_type = "s"  # a name like "=1+1" stays text, never a live formula
            if row is table.total:
                for cell in ws[ws.max_row]:
                    cell.font = bold
        col = 1
        for c in table.columns:
            width = 2 if c.kind == "frac" else 1
            for k in range(width):
                letter = get_column_letter(col + k)
                ws.column_dimensions[letter].width = 24 if c.kind == "text" else 12
                if c.kind == "pct":
                    for cell in ws[letter][header_rows:]:
                        cell.number_format = "0.0%"
            col += width
        ws.freeze_panes = ws.cell(row=header_rows + 1, column=2)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _sheet_name(title: str, taken: list[str]) -> str:
    name = "".join(ch for ch in title if ch not in "[]:*?/\\")[:31] or "Sheet"
    base, n = name, 2
    while name in taken:
        name = f"{base[:28]}({n})"
        n += 1
    return name


# ---------------------------------------------------------------------------------------------
# The pages


class DashboardView(BaseView):
    """进度统计: district → school → class, each with its xlsx."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated and policy.can(current_user, "dashboard", School)

    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(403, description=_("您的角色不能查看进度统计。"))

    # --- loading, through the user's scope (404 for anything outside it)

    def _school(self, scope: Scope, school_id: int) -> School:
        school = next((s for s in scope.schools if s.id == school_id), None)
        if school is None:
            abort(404, description=_("学校不存在或不在您的权限范围内。"))
        return school

    def _class(self, scope: Scope, class_id: int) -> SchoolClass:
        klass = db.session.get(SchoolClass, class_id)
        if klass is None or klass.school_id not in {s.id for s in scope.schools}:
            abort(404, description=_("班级不存在或不在您的权限范围内。"))
        return klass

    # --- the figures of each level

    def _district(self, scope: Scope) -> dict:
        at = now()
        school_ids = [s.id for s in scope.schools]
        term_ids = [t.id for t in scope.terms]

        def build():
            return {"figures": compute(district_level(school_ids), school_ids, scope.categories, term_ids, at),
                    "at": at}

        data = cached(("dashboard", tuple(school_ids), tuple(term_ids)), build)
        figures = data["figures"]
        units = [(s.id, s.name, url_for(".school", school_id=s.id)) for s in scope.schools]
        total = add_up(figures, scope.categories)
        label = _("学校")
        tables = [category_table(scope.categories, total),
                  matrix_table(units, figures, scope.categories, label, total),
                  confirmation_table(units, figures, label, total), own_table(units, figures, label, total),
                  case_table(units, figures, label, total), archive_table(units, figures, label, total)]
        title = self._top_title(scope)
        return {"level": "district", "title": title, "crumbs": [(title, None)], "tables": tables,
                "summary": summary(total, scope.categories), "charts": charts(units, figures),
                "computed_at": data["at"], "cached": True, "xlsx": url_for(".district_xlsx")}

    @staticmethod
    def _top_title(scope: Scope) -> str:
        """The district's name, when all the user's schools are in one (they are, but for a city-wide grant)."""
        districts = {s.district_id: s.district for s in scope.schools}
        return next(iter(districts.values())).name if len(districts) == 1 else _("全部学校")

    def _root_crumbs(self, scope: Scope) -> list:
        return [(self._top_title(scope), url_for(".index"))] if scope.wide else []

    def _school_page(self, scope: Scope, school: School) -> dict:
        at = now()
        classes = db.session.execute(sa.select(SchoolClass).where(SchoolClass.school_id == school.id)
                                     .order_by(SchoolClass.grade, SchoolClass.number)).scalars().all()
        ids = [c.id for c in classes]
        figures = compute(school_level(school), ids, scope.categories, [t.id for t in scope.terms], at)
        units = [(c.id, c.name, url_for(".klass", class_id=c.id)) for c in classes]
        total = add_up(figures, scope.categories)
        label = _("班级")
        tables = [category_table(scope.categories, total),
                  matrix_table(units, figures, scope.categories, label, total),
                  confirmation_table(units, figures, label, total), own_table(units, figures, label, total),
                  case_table(units, figures, label, total), archive_table(units, figures, label, total)]
        crumbs = self._root_crumbs(scope) + [(school.name, None)]
        return {"level": "school", "title": school.name, "crumbs": crumbs, "tables": tables,
                "summary": summary(total, scope.categories), "charts": charts(units, figures),
                "computed_at": at, "cached": False, "xlsx": url_for(".school_xlsx", school_id=school.id)}

    def _class_page(self, scope: Scope, klass: SchoolClass) -> dict:
        at = now()
        students = db.session.execute(sa.select(Student).where(Student.class_id == klass.id)
                                      .order_by(Student.xjh)).scalars().all()
        ids = [s.id for s in students if s.status not in NON_PARTICIPANT_STATUSES]
        categories = [c for c in scope.categories if klass.grade in c.grades]
        figures = compute(class_level(klass), ids, categories, [t.id for t in scope.terms], at)
        total = add_up(figures, categories)
        total["out"] = sum(1 for s in students if s.status in NON_PARTICIPANT_STATUSES)
        tables = [category_table(categories, total), *student_tables(students, figures, categories, klass.grade)]
        school = klass.school
        crumbs = self._root_crumbs(scope) + [(school.name, url_for(".school", school_id=school.id)),
                                                     (klass.name, None)]
        return {"level": "class", "title": f"{school.name} · {klass.name}", "crumbs": crumbs, "tables": tables,
                "summary": summary(total, categories), "charts": [category_chart(categories, total)],
                "computed_at": at, "cached": False, "xlsx": url_for(".class_xlsx", class_id=klass.id)}

    # --- endpoints

    def _render(self, page: dict, scope: Scope):
        return self.render("cqe/dashboard.html", page=page, terms=scope.terms, page_title=_("进度统计"),
                           computed_at=local(page["computed_at"]))

    def _xlsx(self, page: dict, scope: Scope, filename: str):
        terms = "、".join(t.name for t in scope.terms)
        stamp = local(page["computed_at"]).strftime("%Y-%m-%d %H:%M")
        data = workbook(f"{page['title']} · {terms} · {_('统计时间')} {stamp}", page["tables"])
        name = f"{page['title']}{_('进度统计')}.xlsx"
        return Response(data, mimetype=XLSX_MIME, headers={
            "Content-Disposition": f"attachment; filename={filename}; filename*=UTF-8''{quote(name)}",
            "Cache-Control": "no-store"})

    @expose("/")
    def index(self):
        scope = user_scope(current_user)
        if not scope.wide and len(scope.schools) == 1:
            return redirect(url_for(".school", school_id=scope.schools[0].id))
        return self._render(self._district(scope), scope)

    @expose("/xlsx")
    def district_xlsx(self):
        scope = user_scope(current_user)
        if not scope.wide and len(scope.schools) == 1:
            return redirect(url_for(".school_xlsx", school_id=scope.schools[0].id))
        return self._xlsx(self._district(scope), scope, "progress.xlsx")

    @expose("/school/<int:school_id>/")
    def school(self, school_id: int):
        scope = user_scope(current_user)
        return self._render(self._school_page(scope, self._school(scope, school_id)), scope)

    @expose("/school/<int:school_id>/xlsx")
    def school_xlsx(self, school_id: int):
        scope = user_scope(current_user)
        return self._xlsx(self._school_page(scope, self._school(scope, school_id)), scope,
                          f"progress-school-{school_id}.xlsx")

    @expose("/class/<int:class_id>/")
    def klass(self, class_id: int):
        scope = user_scope(current_user)
        return self._render(self._class_page(scope, self._class(scope, class_id)), scope)

    @expose("/class/<int:class_id>/xlsx")
    def class_xlsx(self, class_id: int):
        scope = user_scope(current_user)
        return self._xlsx(self._class_page(scope, self._class(scope, class_id)), scope,
                          f"progress-class-{class_id}.xlsx")

