"""XLSX templates and imports of a category's records (issue 6): the template a clerk fills in Excel or
WPS, and the reader that checks a whole file before anything is written.

Every row is checked by the same workflow checks as the form (scope, role, window, field types and
choices, grade rules, limits, counting earlier rows of the same file); nothing is written until the
clerk chooses to import, and then the chosen rows go in one transaction or not at all.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from io import BytesIO
from zipfile import BadZipFile

import sqlalchemy as sa
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
from openpyxl.worksheet.datavalidation import DataValidation

from models import policy, workflow
from models.base import db
from models.fields import FieldErrors
from models.org import Student

DATA_SHEET = "录入"
ROSTER_SHEET = "名单"
CHOICES_SHEET = "选项"
XJH = "学籍号"
NAME = "姓名"
MAX_ROWS = 200_000
BATCH = 500


class ImportFileError(Exception):
    """The file as a whole cannot be read: a message for the clerk, nothing was written."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class Row:
    number: int  # the spreadsheet's row number
    xjh: str
    name: str
    data: dict
    errors: dict = field(default_factory=dict)  # field label (or "") → message
    record: object = None


@dataclass
class Report:
    rows: list[Row]

    @property
    def valid(self) -> list[Row]:
        return [r for r in self.rows if not r.errors]

    @property
    def invalid(self) -> list[Row]:
        return [r for r in self.rows if r.errors]


def _text(value) -> str:
    if value is None:
        return ""
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


def read(stream, category) -> list[Row]:
    """The file's data rows (blank rows skipped), or ImportFileError for a file that is not the template."""
    try:
        wb = load_workbook(stream, read_only=True, data_only=False)
    except (InvalidFileException, BadZipFile, KeyError, OSError, ValueError):
        raise ImportFileError("文件无法读取：请上传用模板填写的 .xlsx 文件（不是改了扩展名的其他文件）。") from None
    try:
        if DATA_SHEET not in wb.sheetnames:
            raise ImportFileError(f"缺少工作表「{DATA_SHEET}」：请使用本类别下载的模板。")
        ws = wb[DATA_SHEET]
        it = ws.iter_rows()
        header = next(it, None)
        labels = [_text(c.value) for c in header] if header else []
        if XJH not in labels:
            raise ImportFileError(f"工作表「{DATA_SHEET}」第1行缺少「{XJH}」列：请使用本类别下载的模板。")
        missing = [f["label"] for f in category.fields if f["label"] not in labels]
        if missing:
            raise ImportFileError(f"工作表「{DATA_SHEET}」第1行缺少列：{'、'.join(missing)}。")
        col = {label: i for i, label in enumerate(labels) if label}
        rows = []
        for number, cells in enumerate(it, start=2):
            values = [c.value for c in cells]
            if all(_text(v) == "" for v in values):
                continue
            if len(rows) >= MAX_ROWS:
                raise ImportFileError(f"文件超过 {MAX_ROWS:,} 行，请分批导入。")

            def cell(label, cells=cells):
                i = col.get(label)
                return cells[i] if i is not None and i < len(cells) else None

            row = Row(number, _text(getattr(cell(XJH), "value", None)), _text(getattr(cell(NAME), "value", None)), {})
            for spec in category.fields:
                c = cell(spec["label"])
                if c is not None and c.data_type == "f":
                    row.errors[spec["label"]] = f"{spec['label']}：不接受公式，请填写或粘贴为文本"
                row.data[spec["name"]] = _text(getattr(c, "value", None))
            rows.append(row)
        if not rows:
            raise ImportFileError(f"工作表「{DATA_SHEET}」中没有数据行。")
        return rows
    finally:
        wb.close()


def check(user, category, rows: list[Row], at=None) -> Report:
    """Check every row as the form would, counting earlier rows of the file toward the limits and
    reporting exact duplicates. Prepared records are kept on the rows; nothing is saved."""
    students: dict[str, Student] = {}
    xjhs = sorted({r.xjh for r in rows if r.xjh})
    for i in range(0, len(xjhs), BATCH):
        chunk = xjhs[i:i + BATCH]
        for s in db.session.execute(sa.select(Student).where(
                Student.xjh.in_(chunk), policy.scope(user, Student))).scalars():
            students[s.xjh] = s
    terms: dict[int, object] = {}
    earlier: Counter = Counter()
    seen: dict[tuple, int] = {}
    for row in rows:
        if row.errors:
            continue
        if not row.xjh:
            row.errors[XJH] = f"{XJH}：必填"
            continue
        student = students.get(row.xjh)
        if student is None:
            row.errors[XJH] = f"{XJH}：{row.xjh} 不存在或不是您管理范围内的学生"
            continue
        if row.name and row.name != student.name:
            row.errors[NAME] = f"{NAME}：学籍号 {row.xjh} 是{student.name}，不是{row.name}"
            continue
        district_id = student.school.district_id
        if district_id not in terms:
            terms[district_id] = policy.current_term(district_id)
        try:
            record = workflow.prepare_record(user, category, student, row.data, at=at, earlier=earlier[student.id],
                                             term=terms[district_id], in_scope=True)
        except FieldErrors as exc:
            labels = {f["name"]: f["label"] for f in category.fields}
            labels["student"] = NAME
            row.errors.update({labels.get(k, "") if k else "": v for k, v in exc.errors.items()})
            continue
        except (policy.Denied, workflow.WorkflowError) as exc:
            row.errors[""] = getattr(exc, "reason", None) or exc.message
            continue
        key = (student.id, tuple(sorted((k, str(v)) for k, v in record.data.items())))
        if key in seen:
            row.errors[""] = f"与第{seen[key]}行重复"
            continue
        seen[key] = row.number
        earlier[student.id] += 1
        row.record = record
    return Report(rows)


def error_workbook(stream, report: Report) -> bytes:
    """The uploaded file with a 错误 column on its data sheet, naming each bad row's fields."""
    stream.seek(0)
    wb = load_workbook(stream)
    ws = wb[DATA_SHEET]
    col = ws.max_column + 1
    ws.cell(row=1, column=col, value="错误").font = Font(bold=True, color="C00000")
    errors = {r.number: "；".join(r.errors.values()) for r in report.invalid}
    for number, message in errors.items():
        cell = ws.cell(row=number, column=col, value=message)
        cell.data_type = "s"
        cell.font = Font(color="C00000")
    ws.column_dimensions[get_column_letter(col)].width = 60
    out = BytesIO()
    wb.save(out)
    return out.getvalue()
