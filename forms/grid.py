"""The roster grid (issue 6): one class, one category, one row per participating student for a new
entry and one row per record already entered, checked and saved through the workflow layer.

Rows travel as JSON: ``{"key", "student_id", "record_id", "version", "values": {field: text}}``; the
key is ``n<student id>`` for a new entry and ``r<record id>`` for a saved record. ``check`` runs every
row through the same checks as the form (``workflow.prepare_record`` / ``prepare_update``) and keeps
the prepared changes; ``save`` writes the valid ones in one transaction and leaves the others, with
their errors, for the grid to show again.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa

from forms.base import db_id, posted_version
from models import policy, workflow
from models.base import db
from models.calendar import Term
from models.fields import FieldErrors, display_value
from models.org import SchoolClass, Student
from models.records import RECORD_STATES, Record

ROW = "_row"  # the errors key of a message about the whole row
MAX_ROWS = 2000  # a class is at most a few dozen students; anything far bigger is not a grid save


class GridError(Exception):
    """The request as a whole is wrong (not a row): a message for the clerk."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Checked:
    rows: list[dict]  # the submitted rows, each given "errors" (empty when valid)
    records: list[Record] = field(default_factory=list)
    updates: list[workflow.Update] = field(default_factory=list)

    @property
    def invalid(self) -> list[dict]:
        return [r for r in self.rows if r["errors"]]


def _students(klass: SchoolClass, user) -> list[Student]:
    return db.session.execute(
        sa.select(Student).where(Student.class_id == klass.id, policy.scope(user, Student)).order_by(Student.xjh)
    ).scalars().all()


def _term(klass: SchoolClass) -> Term | None:
    return policy.current_term(klass.school.district_id)


def _limit_counts(category, students: list[Student], term: Term) -> Counter:
    """Records each student has toward the category's limit (per term, or per school year)."""
    if not category.per_term_limit and not category.per_year_limit:
        return Counter()
    if category.per_term_limit:
        terms = sa.select(sa.literal(term.id))
    else:
        terms = sa.select(Term.id).where(Term.district_id == term.district_id, Term.school_year == term.school_year)
    rows = db.session.execute(
        sa.select(Record.student_id, sa.func.count()).where(
            Record.category_id == category.id, Record.term_id.in_(terms),
            Record.student_id.in_([s.id for s in students])).group_by(Record.student_id))
    return Counter(dict(rows.all()))


def _limit(category) -> int | None:
    return category.per_term_limit or category.per_year_limit or None


def _values(category, data: dict) -> dict:
    return {spec["name"]: display_value(spec, (data or {}).get(spec["name"])) for spec in category.fields}


def rows(user, category, klass: SchoolClass) -> list[dict]:
    """The grid's rows: a blank row per participating student with room under the category's limit,
    then every record of the category this term, in roster order."""
    term = _term(klass)
    if term is None:
        return []
    students = [s for s in _students(klass, user) if s.participates]
    counts = _limit_counts(category, students, term)
    limit = _limit(category)
    levels = workflow.entry_levels(user, category, klass.grade)
    out = []
    if levels:
        for s in students:
            if limit is None or counts[s.id] < limit:
                out.append({"key": f"n{s.id}", "student_id": s.id, "record_id": None, "version": None,
                            "xjh": s.xjh, "name": s.name, "state": "新增", "editable": True,
                            "values": {spec["name"]: "" for spec in category.fields}, "errors": {}})
    by_id = {s.id: s for s in students}
    records = db.session.execute(
        sa.select(Record).where(Record.category_id == category.id, Record.term_id == term.id,
                                Record.student_id.in_(list(by_id)), policy.scope(user, Record))
        .order_by(Record.id)
    ).scalars().all()
    records.sort(key=lambda r: (by_id[r.student_id].xjh, r.id))
    # Whether a record can be edited here depends on its state and origin only: one class, one term, one
    # cohort, one school, one user. Decide once per (state, origin).
    decisions: dict[tuple, policy.Decision] = {}
    for r in records:
        action = "correct" if r.state == "rejected" else "edit"
        if (r.state, r.origin) not in decisions:
            decisions[(r.state, r.origin)] = policy.check(user, action, r, in_scope=True)
        decision = decisions[(r.state, r.origin)]
        s = by_id[r.student_id]
        out.append({"key": f"r{r.id}", "student_id": s.id, "record_id": r.id, "version": r.version_id,
                    "xjh": s.xjh, "name": s.name, "state": RECORD_STATES.get(r.state, r.state),
                    "editable": bool(decision), "locked": "" if decision else decision.reason,
                    "values": _values(category, r.data), "errors": {}})
    return out


def _blank(values: dict) -> bool:
    return all(isinstance(v, str) and v.strip() == "" for v in values.values())


def _field_errors(category, exc: FieldErrors) -> dict:
    names = {spec["name"] for spec in category.fields}
    return {(k if k in names else ROW): v for k, v in exc.errors.items()}


def check(user, category, klass: SchoolClass, submitted: list[dict]) -> Checked:
    """Check the submitted rows (only the ones the clerk changed), as the form would, counting new
    rows of the same student toward the limits in order. Nothing is saved."""
    if len(submitted) > MAX_ROWS:
        raise GridError(f"一次最多保存 {MAX_ROWS} 行。")
    term = _term(klass)
    if term is None:
        raise GridError("当前没有进行中的学期。", 403)
    students = {s.id: s for s in _students(klass, user)}
    record_ids = [db_id(r.get("record_id")) for r in submitted if r.get("record_id")]
    if None in record_ids:
        raise GridError("数据格式错误：记录编号无效。")
    records = {r.id: r for r in db.session.execute(
        sa.select(Record).where(Record.id.in_(record_ids), policy.scope(user, Record))).scalars()} if record_ids else {}
    fields = [spec["name"] for spec in category.fields]
    result = Checked([])
    earlier: Counter = Counter()
    for raw in submitted:
        values = raw.get("values") if isinstance(raw.get("values"), dict) else {}
        values = {name: _cell(values.get(name)) for name in fields}
        student = students.get(db_id(raw.get("student_id")))
        row = {"key": str(raw.get("key", "")), "student_id": raw.get("student_id"), "record_id": raw.get("record_id"),
               "version": raw.get("version"), "values": values, "errors": {},
               "xjh": student.xjh if student else "", "name": student.name if student else ""}
        result.rows.append(row)
        try:
            if row["record_id"]:
                record = records.get(db_id(row["record_id"]))
                if record is None or record.category_id != category.id or record.student_id not in students:
                    raise policy.Denied("记录不存在或不在您的权限范围内。", 404)
                result.updates.append(workflow.prepare_update(
                    user, record, values, expected_version=posted_version(row["version"]), in_scope=True))
            else:
                if _blank(values):
                    row["skip"] = True  # an untouched blank row: nothing to check, nothing to save
                    continue
                if student is None:
                    raise policy.Denied("学生不存在或不在本班名单中。", 404)
                record = workflow.prepare_record(user, category, student, values, earlier=earlier[student.id],
                                                 term=term, in_scope=True)
                earlier[student.id] += 1
                result.records.append(record)
        except FieldErrors as exc:
            row["errors"] = _field_errors(category, exc)
        except (policy.Denied, workflow.WorkflowError) as exc:
            row["errors"] = {ROW: getattr(exc, "reason", None) or exc.message}
    result.rows = [r for r in result.rows if not r.pop("skip", False)]
    return result


def _cell(value):
    """A submitted cell as the field checks take it: text (a number as its text); a list, an object or
    true/false stays what it is, and the check names the field it was sent for."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def save(user, category, klass: SchoolClass, submitted: list[dict]) -> tuple[Checked, int, int]:
    """Check, then write every valid row in one transaction (history per record); invalid rows are
    returned with their errors and nothing of them is written."""
    checked = check(user, category, klass, submitted)  # prepared records are transient until saved
    created, updated = 0, 0
    if checked.records or checked.updates:
        n = len(checked.records)
        created, updated = workflow.save_records(
            checked.records, checked.updates, f"表格录入（{klass.school.name} {klass.name}，{n} 条新增）")
    return checked, created, updated
