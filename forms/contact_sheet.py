"""附件3 (联系信息表) as the seed lays it out: a title, the header row, then every school in a block of its
four contact categories (a school's name merged down its block; a category with nobody yet stays an empty
row, so the district sees what is missing; several people of one category get a row each), the main
contact's 备注 marked "√", and the seed's notes below."""
from __future__ import annotations

from io import BytesIO

from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, Side

from models.clock import local
from models.contacts import CONTACT_KINDS
from settings import parse_instant

HEADERS = ["学校", "类别", "姓名", "职务", "手机", "QQ号码", "备注"]
WIDTHS = [28, 14, 12, 16, 16, 14, 24]


def _due_text(district) -> str:
    due = (district.settings or {}).get("contacts_due") if district is not None else None
    if not due:
        return "请填写后按时反馈至教育局。"
    day = local(parse_instant(due))
    return f"请填写后于{day.year}年{day.month}月{day.day}日前反馈至教育局。"


def contact_sheet(district, schools, contacts) -> bytes:
    """``schools`` in order; ``contacts`` any iterable of Contact rows of those schools."""
    by_school: dict[int, dict[str, list]] = {}
    for c in contacts:
        by_school.setdefault(c.school_id, {}).setdefault(c.kind, []).append(c)
    wb = Workbook()
    ws = wb.active
    ws.title = "联系信息表"
    thin = Side(style="thin", color="000000")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    center = Alignment(horizontal="center", vertical="center", wrap_text=True)
    title = f"{district.name if district else ''}初中学生综合素质评价工作联系信息表"
    ws.append([title])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(HEADERS))
    ws["A1"].font = Font(bold=True, size=14)
    ws["A1"].alignment = center
    ws.row_dimensions[1].height = 30
    ws.append(HEADERS)
    for i, width in enumerate(WIDTHS, start=1):
        cell = ws.cell(row=2, column=i)
        cell.font, cell.alignment, cell.border = Font(bold=True), center, border
        ws.column_dimensions[cell.column_letter].width = width
    row = 3
    for school in schools:
        first = row
        kinds = by_school.get(school.id, {})
        for kind, kind_name in CONTACT_KINDS.items():
            people = sorted(kinds.get(kind, []), key=lambda c: (not c.is_main, c.id)) or [None]
            for person in people:
                values = [school.name, kind_name]
                if person is not None:
                    note = "；".join(x for x in ("√" if person.is_main else "", person.notes or "") if x)
                    values += [person.name, person.position, person.mobile, person.qq, note]
                else:
                    values += [None] * 5  # nobody yet: an empty row shows what is missing
                for col, value in enumerate(values, start=1):
                    cell = ws.cell(row=row, column=col, value=value)
                    if value is not None:
                        cell.data_type = "s"  # phone numbers and QQ stay text (no 1.38E+10)
                    cell.border, cell.alignment = border, center
                row += 1
        if row - 1 > first:
            ws.merge_cells(start_row=first, start_column=1, end_row=row - 1, end_column=1)
    ws.cell(row=row + 1, column=1, value=f"注：1. {_due_text(district)}")
    ws.cell(row=row + 2, column=1, value="2. 请在此项工作主要联系人的备注栏打“√”。")
    ws.freeze_panes = "A3"
    out = BytesIO()
    wb.save(out)
    return out.getvalue()
