"""Exports of any list a user can see, as CSV or XLSX: the list's own scoped query with its filters,
search and sort, read in batches and streamed, so a district-wide export holds a few hundred rows in
memory, not the district. Text that a spreadsheet would run as a formula (=, +, -, @ …) stays text:
in XLSX the cell is typed as a string, in CSV it gets the customary leading apostrophe."""
from __future__ import annotations

import csv
import tempfile
from urllib.parse import quote

from flask import Response, abort, send_file, stream_with_context
from flask_admin import expose
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from werkzeug.utils import secure_filename

BATCH = 500
CHUNK = 64 * 1024
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def send_private_file(path: str, mimetype: str, name: str, fallback: str, *, inline: bool = False) -> Response:
    """A stored file for somebody allowed to read it: its own name in UTF-8 beside an ASCII ``fallback``, never kept
    by a cache, and never sniffed as another type (its bytes were checked to be what ``mimetype`` says)."""
    response = send_file(path, mimetype=mimetype, max_age=0)
    how = "inline" if inline else "attachment"
    response.headers["Content-Disposition"] = f"{how}; filename={fallback}; filename*=UTF-8''{quote(name)}"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def printable_sheet(sheet: str, title: str, header: list, rows: list[list], widths: dict[str, int]):
    """A titled, bordered A4-landscape sheet to print and sign or hand out (汇总表, 催交清单): the title merged over
    the header, the header bold on a tint and repeated on every page, text cells typed as text (a value starting
    with "=" is never a formula), dates as dates. Returns (workbook, sheet) for the caller's footer lines."""
    from datetime import date

    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append([title])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(header))
    ws["A1"].font = Font(bold=True, size=14)
    ws["A1"].alignment = Alignment(horizontal="center")
    ws.row_dimensions[1].height = 26
    ws.append([str(h) for h in header])
    for cell in ws[2]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="E8EEF5")
    for row in rows:
        ws.append(row)
        for cell in ws[ws.max_row]:
            if isinstance(cell.value, str):
                cell.data_type = "s"
            elif isinstance(cell.value, date):
                cell.number_format = "yyyy-mm-dd"
    thin = Side(style="thin", color="9AA5B1")
    for line in ws.iter_rows(min_row=2, max_row=ws.max_row):
        for cell in line:
            cell.border = Border(left=thin, right=thin, top=thin, bottom=thin)
            cell.alignment = Alignment(vertical="top", wrap_text=True)
    for col, width in widths.items():
        ws.column_dimensions[col].width = width
    ws.print_title_rows = "2:2"
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    return wb, ws


def csv_safe(value) -> str:
    """A cell's text for CSV, never a live formula when a spreadsheet opens it (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _plain(value):
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return str(value)


class _Echo:
    def write(self, value):
        return value


class StreamedExport:
    """Mixed into ScopedModelView: replaces Flask-Admin's export (which loads every row, and builds
    XLSX in memory) with a streamed one over the same scoped list query."""

    def export_loader_options(self) -> tuple:
        """Loader options that fetch each batch's related rows in one statement (no query per row)."""
        return ()

    def _export_rows(self):
        view_args = self._get_list_extra_args()
        sort = self._get_column_by_idx(view_args.sort)
        _count, query = self.get_list(0, sort[0] if sort else None, view_args.sort_desc, view_args.search,
                                      view_args.filters, execute=False, page_size=0)
        columns = self._export_columns
        options = self.export_loader_options()
        if options:
            query = query.options(*options)
        for model in query.yield_per(BATCH):
            yield [self.get_export_value(model, name) for name, _label in columns]

    def _filename(self, export_type: str) -> str:
        return secure_filename(self.get_export_name(export_type=export_type)) or f"export.{export_type}"

    @expose("/export/<export_type>/")
    def export(self, export_type: str):
        if not self.can_export or export_type not in self.export_types:
            abort(404)
        headers = [str(label) for _name, label in self._export_columns]
        rows = self._export_rows()
        disposition = {"Content-Disposition": f"attachment; filename={self._filename(export_type)}"}
        if export_type == "csv":
            writer = csv.writer(_Echo())

            def generate():
                yield "\ufeff"  # Excel reads the Chinese right only with a BOM
                yield writer.writerow([csv_safe(h) for h in headers])
                for row in rows:
                    yield writer.writerow([csv_safe(v) for v in row])

            return Response(stream_with_context(generate()), headers=disposition, mimetype="text/csv; charset=utf-8")
        if export_type == "xlsx":
            return Response(stream_with_context(self._xlsx(headers, rows)), headers=disposition, mimetype=XLSX_MIME)
        abort(404)

    def _xlsx(self, headers, rows):
        """Rows go into a write-only workbook (openpyxl keeps them in a temporary file, not in memory);
        the finished file is then sent in chunks."""
        wb = Workbook(write_only=True)
        ws = wb.create_sheet(title=str(self.name)[:31] if self.name else "Sheet1")
        ws.append([_text_cell(ws, h) for h in headers])
        for row in rows:
            ws.append([_text_cell(ws, v) if isinstance(_plain(v), str) else _plain(v) for v in row])
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as fh:
            wb.save(fh)
            fh.seek(0)
            while chunk := fh.read(CHUNK):
                yield chunk


def _text_cell(ws, value) -> WriteOnlyCell:
    """A string cell that stays a string: openpyxl would otherwise store "=…" as a formula."""
    cell = WriteOnlyCell(ws, value=None)
    cell.value = _plain(value)
    cell.data_type = "s"
    return cell
