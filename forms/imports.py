"""XLSX templates and imports of a category's records (issue 6): the template a clerk fills in Excel or
WPS, and the reader that checks a whole file before anything is written.

Every row is checked by the same workflow checks as the form (scope, role, window, field types and
choices, grade rules, limits, counting earlier rows of the same file); nothing is written until the
clerk chooses to import, and then the chosen rows go in one transaction or not at all.

Any size streams, in bounded memory: the sheet is read row by row (openpyxl read-only), checked in
chunks of ``CHUNK`` rows (one student query and one limit count a chunk, ``workflow.RecordBatch``) and
written chunk by chunk inside that one transaction (``workflow.add_records``). Past its chunk nothing
of a row is kept but, for a bad row, its number and message (the error workbook) and, for a good one,
a key to tell duplicates. A large file is checked and imported by RQ jobs (jobs/imports.py); either
way the report is stored next to the upload (``Upload``) and the page shows it from there.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from io import BytesIO

import sqlalchemy as sa
from flask import current_app
from openpyxl import Workbook, load_workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from sqlalchemy.dialects import postgresql

from models import policy, workflow
from models.audit import acting
from models.base import db
from models.fields import FieldErrors, validate_data
from models.org import Student

DATA_SHEET = "录入"
ROSTER_SHEET = "名单"
CHOICES_SHEET = "选项"
XJH = "学籍号"
NAME = "姓名"
ERRORS = "错误"
MAX_ROWS = 200_000
CHUNK = 500  # rows checked (one student query) and written (one INSERT) together
SHOWN = 200  # bad rows listed on the page; the error workbook has every one
INLINE_ROWS = 2000  # default of CQE_IMPORT_INLINE_ROWS: larger files are checked and imported by a job


class ImportFileError(Exception):
    """The file as a whole cannot be read: a message for the clerk, nothing was written."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ImportRefused(Exception):
    """"Import all" met a bad row (the data changed since the check): nothing was written."""


@dataclass(slots=True)
class Row:
    number: int  # the spreadsheet's row number
    xjh: str
    name: str
    data: dict
    errors: dict = field(default_factory=dict)  # field label (or "") → message

    @property
    def message(self) -> str:
        return "；".join(self.errors.values())


@dataclass
class Report:
    """What a check found: the counts, and the first ``SHOWN`` bad rows for the page."""

    total: int = 0
    valid: int = 0
    invalid: int = 0
    shown: list[Row] = field(default_factory=list)
    error: str = ""  # the file as a whole was refused (ImportFileError), when checked by a job

    def as_json(self) -> dict:
        return {**asdict(self), "shown": [asdict(r) for r in self.shown]}

    @classmethod
    def from_json(cls, data: dict) -> Report:
        return cls(**{**data, "shown": [Row(**r) for r in data["shown"]]})


def inline_rows() -> int:
    return int(current_app.config.get("CQE_IMPORT_INLINE_ROWS") or INLINE_ROWS)


def _text(value) -> str:
    if value is None:
        return ""
    if type(value) is str:
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (datetime, date)):
        return value.date().isoformat() if isinstance(value, datetime) else value.isoformat()
    return str(value).strip()


# ---------------------------------------------------------------------------------------------
# The template


def template(category, students: list[Student]) -> bytes:
    """The category's workbook: 录入 (学籍号, 姓名, one column per field, dropdowns for choices, the
    roster's students pre-filled), 名单 (the roster) and a hidden 选项 sheet the dropdowns point at."""
    wb = Workbook()
    ws = wb.active
    ws.title = DATA_SHEET
    headers = [XJH, NAME] + [f["label"] for f in category.fields]
    ws.append(headers)
    bold = Font(bold=True)
    for i, spec in enumerate([None, None, *category.fields], start=1):
        cell = ws.cell(row=1, column=i)
        cell.font = bold
        if spec is not None and spec.get("required", True):
            cell.fill = PatternFill("solid", fgColor="FFF2CC")
        ws.column_dimensions[get_column_letter(i)].width = 18 if i > 2 else 16
    for s in students:
        ws.append([s.xjh, s.name])
    for row in ws.iter_rows(min_row=2, max_col=2):
        for cell in row:
            cell.data_type = "s"
            cell.number_format = "@"  # 学籍号 stays text (leading zeros)
    options = wb.create_sheet(CHOICES_SHEET)
    last = max(len(students) + 1, 1000)
    col = 0
    for i, spec in enumerate(category.fields, start=3):
        letter = get_column_letter(i)
        if spec["type"] == "choice":
            col += 1
            opt = get_column_letter(col)
            for r, choice in enumerate(spec["choices"], start=1):
                options.cell(row=r, column=col, value=choice)
            dv = DataValidation(type="list", formula1=f"'{CHOICES_SHEET}'!${opt}$1:${opt}${len(spec['choices'])}",
                                allow_blank=not spec.get("required", True), showErrorMessage=True,
                                errorTitle="请选择", error=f"{spec['label']}：请从下拉列表中选择")
            dv.add(f"{letter}2:{letter}{last}")
            ws.add_data_validation(dv)
        elif spec["type"] == "date":
            for r in range(2, last + 1):
                ws.cell(row=r, column=i).number_format = "yyyy-mm-dd"
        else:
            for r in range(2, len(students) + 2):
                ws.cell(row=r, column=i).number_format = "@"
    options.sheet_state = "hidden"
    roster = wb.create_sheet(ROSTER_SHEET)
    roster.append([XJH, NAME, "班级"])
    for s in students:
        roster.append([s.xjh, s.name, s.school_class.name])
    ws.freeze_panes = "C2"
    out = BytesIO()
    wb.save(out)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Reading and checking a file


class Sheet:
    """The 录入 sheet of an uploaded file, opened read-only and read row by row; the header is checked
    on opening (``ImportFileError`` for a file that is not the template)."""

    def __init__(self, source, category):
        # The file is opened here, not by openpyxl, so that it is closed whatever openpyxl fails on.
        self._fh = open(source, "rb") if isinstance(source, (str, os.PathLike)) else None  # noqa: SIM115
        self.scanned = 0  # rows read so far, blank ones included (the progress bar)
        try:
            self._wb = load_workbook(self._fh or source, read_only=True, data_only=False)
        except Exception:  # noqa: BLE001 - whatever the parser trips on (a zip, XML, zlib error …), the file is bad
            self._close_file()
            raise ImportFileError("文件无法读取：请上传用模板填写的 .xlsx 文件（不是改了扩展名的其他文件）。") from None
        try:
            self._open(category)
        except BaseException:
            self.close()
            raise

    def _open(self, category) -> None:
        if DATA_SHEET not in self._wb.sheetnames:
            raise ImportFileError(f"缺少工作表「{DATA_SHEET}」：请使用本类别下载的模板。")
        ws = self._wb[DATA_SHEET]
        # The size the sheet declares (formatted blank rows count): it decides whether a job checks the
        # file and sizes the progress bar. The rows themselves are read to the end, whatever it says.
        self.size = max(ws.max_row - 1, 0) if ws.max_row else None
        ws.reset_dimensions()
        self._rows = readable_rows(ws.iter_rows(), DATA_SHEET)
        header = next(self._rows, None)
        labels = [_text(c.value) for c in header] if header else []
        if XJH not in labels:
            raise ImportFileError(f"工作表「{DATA_SHEET}」第1行缺少「{XJH}」列：请使用本类别下载的模板。")
        missing = [f["label"] for f in category.fields if f["label"] not in labels]
        if missing:
            raise ImportFileError(f"工作表「{DATA_SHEET}」第1行缺少列：{'、'.join(missing)}。")
        col = {label: i for i, label in enumerate(labels) if label}
        self._xjh, self._name = col[XJH], col.get(NAME, 1 << 30)  # no 姓名 column: an index no row reaches
        self._fields = [(f["name"], f["label"], col[f["label"]]) for f in category.fields]

    def rows(self) -> Iterator[Row]:
        """The data rows, blank ones skipped: a few operations a cell beyond openpyxl's own parsing."""
        ix, iname, fields = self._xjh, self._name, self._fields
        count = 0
        for number, cells in enumerate(self._rows, start=2):
            self.scanned = number - 1
            for c in cells:
                v = c.value
                if v is not None and (type(v) is not str or v.strip()):
                    break
            else:
                continue  # blank
            count += 1
            if count > MAX_ROWS:
                raise ImportFileError(f"文件超过 {MAX_ROWS:,} 行，请分批导入。")
            n = len(cells)
            row = Row(number, _text(cells[ix].value) if ix < n else "", _text(cells[iname].value) if iname < n else "",
                      {})
            data = row.data
            for name, label, i in fields:
                if i < n:
                    c = cells[i]
                    if c.data_type == "f":
                        row.errors[label] = f"{label}：不接受公式，请填写或粘贴为文本"
                    data[name] = _text(c.value)
                else:
                    data[name] = ""
            yield row

    def chunks(self, size: int | None = None) -> Iterator[list[Row]]:
        size = size or CHUNK
        chunk = []
        for row in self.rows():
            chunk.append(row)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self) -> None:
        try:
            self._wb.close()
        finally:
            self._close_file()

    def _close_file(self) -> None:
        if self._fh is not None:
            self._fh.close()

    def __enter__(self) -> Sheet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def readable_rows(rows: Iterator, sheet: str) -> Iterator:
    """A sheet's rows as openpyxl reads them, or ImportFileError naming where the file is damaged (a part of
    the zip cut off or garbled: openpyxl meets it only when it reads that far)."""
    number = 0
    while True:
        try:
            cells = next(rows)
        except StopIteration:
            return
        except Exception:  # noqa: BLE001 - XML, zlib, zip errors of a damaged file
            raise ImportFileError(f"文件已损坏：工作表「{sheet}」第{number + 1}行起无法读取。请在 Excel 或 WPS 中打开后"
                                  "重新保存为 .xlsx 再上传。") from None
        number += 1
        yield cells


class Checker:
    """Checks a file's rows chunk by chunk as the form would (``workflow.RecordBatch``: the checks of
    ``prepare_record``), counting earlier rows of the file toward the limits and reporting exact
    duplicates. It keeps the report's counts and first bad rows, every bad row's message when asked
    (``errors``: the error workbook), and no row past its chunk."""

    def __init__(self, user, category, *, at=None, errors: dict | None = None):
        self.batch = workflow.RecordBatch(user, category, at=at)
        self.labels = {f["name"]: f["label"] for f in category.fields} | {"student": NAME}
        self.report = Report()
        self.errors = errors  # row number → message
        self._earlier: Counter = Counter()
        self._seen: dict[tuple, int] = {}  # (student id, clean values) → first row number

    def _students(self, rows: list[Row]) -> dict:
        """The chunk's students by 学籍号 (whether the user may see them: ``RecordBatch.load``)."""
        xjhs = {r.xjh for r in rows if r.xjh and not r.errors}
        if not xjhs:
            return {}
        if db.session.get_bind().dialect.name == "postgresql":  # one array parameter: planned once, not per count
            among = Student.xjh == sa.any_(sa.literal(sorted(xjhs), postgresql.ARRAY(sa.String)))
        else:
            among = Student.xjh.in_(xjhs)
        return {s.xjh: s for s in db.session.execute(sa.select(
            Student.id, Student.xjh, Student.name, Student.class_id, Student.school_id, Student.status).where(among))}

    def check(self, rows: list[Row]) -> list[dict]:
        """Check one chunk; the column values of the new records of its good rows."""
        students = self._students(rows)
        self.batch.load(students.values())
        report, prepared = self.report, []
        for row in rows:
            if row.errors:  # a formula cell: the row is refused, and its other bad cells are named too
                self._name_other_cells(row)
                values = None
            else:
                values = self._check_row(row, students)
            report.total += 1
            if values is None:
                report.invalid += 1
                if len(report.shown) < SHOWN:
                    report.shown.append(row)
                if self.errors is not None:
                    self.errors[row.number] = row.message
            else:
                report.valid += 1
                prepared.append(values)
        return prepared

    def _name_other_cells(self, row: Row) -> None:
        try:
            validate_data(self.batch.category.fields, row.data)
        except FieldErrors as exc:
            for name, message in exc.errors.items():
                label = self.labels.get(name, "") if name else ""
                row.errors.setdefault(label, message)

    def _check_row(self, row: Row, students: dict) -> dict | None:
        if not row.xjh:
            row.errors[XJH] = f"{XJH}：必填"
            return None
        student = students.get(row.xjh)
        if student is None or not self.batch.visible(student):
            row.errors[XJH] = f"{XJH}：{row.xjh} 不存在或不是您管理范围内的学生"
            return None
        if row.name and row.name != student.name:
            row.errors[NAME] = f"{NAME}：学籍号 {row.xjh} 是{student.name}，不是{row.name}"
            return None
        try:
            values = self.batch.prepare(student, row.data, self._earlier[student.id])
        except FieldErrors as exc:
            row.errors.update({self.labels.get(k, "") if k else "": v for k, v in exc.errors.items()})
            return None
        except (policy.Denied, workflow.WorkflowError) as exc:
            row.errors[""] = getattr(exc, "reason", None) or exc.message
            return None
        key = (student.id, *values["data"].values())  # clean data: the category's fields, in order
        first = self._seen.get(key)
        if first is not None:
            row.errors[""] = f"与第{first}行重复"
            return None
        self._seen[key] = row.number
        self._earlier[student.id] += 1
        return values


Progress = Callable[[int, int, str], None]


def _no_progress(done: int, total: int, label: str = "") -> None:
    pass


def check_upload(upload: Upload, user, category, *, progress: Progress = _no_progress) -> Report:
    """Check the whole file; store the report and, when rows are bad, the error workbook."""
    errors: dict[int, str] = {}
    checker = Checker(user, category, errors=errors)
    with Sheet(upload.path(), category) as sheet:
        total = sheet.size or 0
        for rows in sheet.chunks():
            checker.check(rows)
            progress(sheet.scanned, max(total, sheet.scanned), f"已检查 {sheet.scanned:,} 行")
        progress(sheet.scanned, sheet.scanned, "检查完成")
    report = checker.report
    if not report.total:
        raise ImportFileError(f"工作表「{DATA_SHEET}」中没有数据行。")
    if errors:
        error_workbook(upload.path(), errors, upload.path("-errors.xlsx"), keep_format=report.total <= inline_rows())
    elif upload.errors_file():
        os.remove(upload.errors_file())  # an earlier check's
    upload.save_report(report)
    return report


def import_upload(upload: Upload, user, category, mode: str, *, progress: Progress = _no_progress) -> dict:
    """Read and check the file again (the data may have changed since) and write its good rows (mode
    "valid") or every row (mode "all": refused, nothing written, if a row is bad now) in one
    transaction. The outcome: {"ok", "message", "imported", "skipped"}."""
    checker = Checker(user, category)
    reason = f"从 Excel 导入（{upload.meta.get('name', '')}）"
    with Sheet(upload.path(), category) as sheet:
        total = sheet.size or 0

        def prepared() -> Iterator[list[dict]]:
            for rows in sheet.chunks():
                values = checker.check(rows)
                if checker.report.invalid and mode != "valid":
                    raise ImportRefused
                progress(sheet.scanned, max(total, sheet.scanned), f"已检查并写入 {sheet.scanned:,} 行")
                yield values

        try:
            with acting("create", reason, user_id=user.id, name=user.display_name, ip=upload.meta.get("ip", "")):
                imported = workflow.add_records(prepared(), reason)
        except ImportRefused:
            report = check_upload(upload, user, category)  # the page shows the file as it checks now
            return {"ok": False, "imported": 0, "skipped": report.invalid, "message":
                    f"文件中有 {report.invalid} 行错误，未导入任何数据。可修改后重新上传，或选择仅导入无误的行。"}
        except (FieldErrors, workflow.WorkflowError) as exc:
            return {"ok": False, "imported": 0, "skipped": 0, "message": f"导入失败，未写入任何数据：{exc.message}"}
        progress(sheet.scanned, sheet.scanned, "导入完成")
    report = checker.report
    if not report.total:
        raise ImportFileError(f"工作表「{DATA_SHEET}」中没有数据行。")
    if not imported:
        return {"ok": False, "imported": 0, "skipped": report.invalid, "message": "没有可以导入的行。"}
    upload.meta["imported"] = imported
    upload.save()
    skipped = f"，有错误的 {report.invalid} 行未导入" if report.invalid else ""
    return {"ok": True, "imported": imported, "skipped": report.invalid, "message": f"已导入 {imported} 条记录{skipped}。"}


def error_workbook(source: str, errors: dict[int, str], target: str, *, keep_format: bool) -> None:
    """The uploaded file with a 错误 column on its data sheet naming each bad row's fields. A small
    file is loaded whole and keeps its formats and dropdowns; a large one is copied row by row
    (read-only into write-only: bounded memory), values only."""
    if keep_format:
        wb = load_workbook(source)
        ws = wb[DATA_SHEET]
        col = ws.max_column + 1
        ws.cell(row=1, column=col, value=ERRORS).font = Font(bold=True, color="C00000")
        red = Font(color="C00000")
        for number, message in errors.items():
            cell = ws.cell(row=number, column=col, value=message)
            cell.data_type = "s"
            cell.font = red
        ws.column_dimensions[get_column_letter(col)].width = 60
        wb.save(target)
        return
    src = load_workbook(source, read_only=True, data_only=False)
    out = Workbook(write_only=True)
    try:
        for name in src.sheetnames:
            ws = src[name]
            ws.reset_dimensions()
            copy = out.create_sheet(name)
            copy.sheet_state = getattr(ws, "sheet_state", "visible")
            width = None
            for number, cells in enumerate(ws.iter_rows(), start=1):
                values = [_copied(copy, c) for c in cells]
                if name == DATA_SHEET:
                    if width is None:
                        width = len(values)
                        values.append(ERRORS)
                    elif number in errors:
                        values += [None] * (width - len(values)) + [_as_text(copy, errors[number])]
                copy.append(values)
        out.save(target)
    finally:
        src.close()


def _as_text(sheet, value: str):
    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"  # text that starts with "=" stays text
    return cell


def _copied(sheet, cell):
    value = cell.value
    if type(value) is str and value.startswith("=") and cell.data_type != "f":
        return _as_text(sheet, value)
    return value


# ---------------------------------------------------------------------------------------------
# Uploads kept while the clerk decides


class Upload:
    """An uploaded file under instance/imports/ and what became of it: <token>.xlsx; <token>.json, its
    metadata (whose, which category, its size, the jobs, how many rows were imported); the check's
    <token>-report.json and <token>-errors.xlsx; a job's import outcome, <token>-result.json."""

    KEEP_SECONDS = 7 * 24 * 3600

    def __init__(self, token: str, meta: dict):
        self.token, self.meta = token, meta

    @staticmethod
    def folder() -> str:
        path = os.path.join(current_app.instance_path, "imports")
        os.makedirs(path, exist_ok=True)
        return path

    def path(self, suffix: str = ".xlsx") -> str:
        return os.path.join(self.folder(), self.token + suffix)

    @classmethod
    def create(cls, file, meta: dict) -> Upload:
        cls._forget_old()
        upload = cls(secrets.token_hex(16), meta)
        file.save(upload.path())
        upload.save()
        return upload

    @classmethod
    def load(cls, token: str) -> Upload | None:
        if not re.fullmatch(r"[0-9a-f]{32}", token or ""):
            return None
        upload = cls(token, {})
        meta = upload._read(".json")
        if meta is None:
            return None
        upload.meta = meta
        return upload

    @classmethod
    def _forget_old(cls) -> None:
        cutoff = time.time() - cls.KEEP_SECONDS
        with os.scandir(cls.folder()) as entries:
            for entry in entries:
                try:
                    if entry.stat().st_mtime < cutoff:
                        os.remove(entry.path)
                except OSError:
                    pass

    def _read(self, suffix: str):
        try:
            with open(self.path(suffix), encoding="utf-8") as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None

    def _write(self, suffix: str, data) -> None:
        tmp = self.path(suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False)
        os.replace(tmp, self.path(suffix))  # a page polling meanwhile reads the old file or the new, whole

    def save(self) -> None:
        self._write(".json", self.meta)

    def report(self) -> Report | None:
        data = self._read("-report.json")
        return Report.from_json(data) if data is not None else None

    def save_report(self, report: Report) -> None:
        self._write("-report.json", report.as_json())

    def result(self) -> dict | None:
        return self._read("-result.json")

    def save_result(self, result: dict | None) -> None:
        if result is None:
            try:
                os.remove(self.path("-result.json"))
            except OSError:
                pass
            return
        self._write("-result.json", result)

    def errors_file(self) -> str | None:
        path = self.path("-errors.xlsx")
        return path if os.path.exists(path) else None
