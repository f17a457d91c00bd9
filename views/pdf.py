"""PDFs with ReportLab: the 纪实报告, a class's 确认单 (each with a QR code to the student's report) and a
school's 汇总表. Chinese is set in Noto Sans SC (fetched by ``make vendor``), embedded as a subset in
every file, so the text reads right wherever the PDF is opened.
"""
from __future__ import annotations

import os
import threading
from io import BytesIO
from xml.sax.saxutils import escape

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (
    CondPageBreak,
    KeepTogether,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from models.reports import Report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FONT_DIR = os.path.join(ROOT, "static", "vendor", "noto-sans-sc")
REGULAR, BOLD = "NotoSansSC", "NotoSansSC-Bold"
_fonts_lock = threading.Lock()
_fonts_ready = False


class FontsMissing(RuntimeError):
    pass


def _fonts() -> None:
    """Register the fonts once per process (a few hundred ms; every PDF after that reuses them)."""
    global _fonts_ready
    if _fonts_ready:
        return
    with _fonts_lock:
        if _fonts_ready:
            return
        # ReportLab fills its named-colour table lazily and publishes it before it is full: two threads'
        # first PDFs could see it empty ("Invalid color value 'black'"). Fill it here, under the lock.
        from reportlab.lib import colors as _colors

        _colors.getAllNamedColors()
        regular = os.path.join(FONT_DIR, "NotoSansSC-Regular.ttf")
        bold = os.path.join(FONT_DIR, "NotoSansSC-Bold.ttf")
        if not (os.path.exists(regular) and os.path.exists(bold)):
            raise FontsMissing("中文字体未安装：请运行 make vendor（Noto Sans SC）。")
        pdfmetrics.registerFont(TTFont(REGULAR, regular))
        pdfmetrics.registerFont(TTFont(BOLD, bold))
        pdfmetrics.registerFontFamily(REGULAR, normal=REGULAR, bold=BOLD, italic=REGULAR, boldItalic=BOLD)
        _fonts_ready = True


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("base", fontName=REGULAR, fontSize=10, leading=15, wordWrap="CJK")
    return {
        "base": base,
        "small": ParagraphStyle("small", parent=base, fontSize=8.5, leading=12, textColor=colors.HexColor("#555555")),
        "title": ParagraphStyle("title", parent=base, fontName=BOLD, fontSize=17, leading=24, alignment=1,
                                spaceAfter=4 * mm),
        "term": ParagraphStyle("term", parent=base, fontName=BOLD, fontSize=13, leading=19, spaceBefore=5 * mm,
                               spaceAfter=2 * mm, textColor=colors.HexColor("#1a4f8b")),
        "dim": ParagraphStyle("dim", parent=base, fontName=BOLD, fontSize=11, leading=16, spaceBefore=3 * mm,
                              spaceAfter=1.5 * mm),
        "cell": ParagraphStyle("cell", parent=base, fontSize=9.5, leading=13.5),
        "head": ParagraphStyle("head", parent=base, fontName=BOLD, fontSize=9.5, leading=13.5),
        "prose": ParagraphStyle("prose", parent=base, fontSize=10, leading=16, firstLineIndent=20),
    }


def _p(text, style) -> Paragraph:
    return Paragraph(escape("" if text is None else str(text)).replace("\n", "<br/>"), style)


GRID = [("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#9aa5b1")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 3), ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]
HEAD = [("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef5"))]


def _footer(title: str):
    def draw(canvas, doc):
        canvas.saveState()
        canvas.setFont(REGULAR, 8)
        canvas.setFillColor(colors.HexColor("#666666"))
        canvas.drawString(doc.leftMargin, 10 * mm, title)
        canvas.drawRightString(doc.pagesize[0] - doc.rightMargin, 10 * mm, f"第 {doc.page} 页")
        canvas.restoreState()

    return draw


def _doc(out, title: str, pagesize=A4) -> SimpleDocTemplate:
    return SimpleDocTemplate(out, pagesize=pagesize, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=16 * mm,
                             bottomMargin=18 * mm, title=title, author="CQE", subject=title)


def _student_table(report: Report, st) -> Table:
    rows = [[_p("姓名", st["head"]), _p(report.name, st["cell"]), _p("性别", st["head"]), _p(report.gender, st["cell"]),
             _p("学籍号", st["head"]), _p(report.xjh, st["cell"])],
            [_p("学校", st["head"]), _p(report.school, st["cell"]), _p("班级", st["head"]), _p(report.klass, st["cell"]),
             _p("区", st["head"]), _p(report.district, st["cell"])]]
    table = Table(rows, colWidths=[14 * mm, 50 * mm, 14 * mm, 32 * mm, 16 * mm, 48 * mm])
    table.setStyle(TableStyle(GRID + [("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#e8eef5")),
                                      ("BACKGROUND", (2, 0), (2, -1), colors.HexColor("#e8eef5")),
                                      ("BACKGROUND", (4, 0), (4, -1), colors.HexColor("#e8eef5"))]))
    return table


def report_story(report: Report, title: str) -> list:
    st = _styles()
    story = [_p(title, st["title"]), _student_table(report, st)]
    if report.graduate and len(report.terms) > 1:
        story.append(Spacer(1, 2 * mm))
        story.append(_p(f"本报告汇总六至九年级各学期公示的记录（共 {len(report.terms)} 个学期）。", st["small"]))
    for term in report.terms:
        story.append(CondPageBreak(40 * mm))
        story.append(_p(term.name, st["term"]))
        if not term.sections:
            story.append(_p("本学期暂无公示的记录。", st["small"]))
        for section in term.sections:
            story.append(CondPageBreak(25 * mm))
            story.append(_p(section.name, st["dim"]))
            if section.prose:
                for item in section.items:
                    parts = [KeepTogether([_p(item.category, st["head"])])]
                    for label, value in item.fields:
                        if len(item.fields) > 1:
                            parts.append(_p(label, st["small"]))
                        parts.append(_p(value, st["prose"]))
                    story.extend(parts)
                continue
            rows = [[_p("类别", st["head"]), _p("内容", st["head"]), _p("录入方", st["head"])]]
            for item in section.items:
                content = "；".join(f"{label}：{value}" for label, value in item.fields if value not in (None, ""))
                rows.append([_p(item.category, st["cell"]), _p(content, st["cell"]), _p(item.level, st["cell"])])
            table = Table(rows, colWidths=[42 * mm, 112 * mm, 20 * mm], repeatRows=1)
            table.setStyle(TableStyle(GRID + HEAD))
            story.append(table)
        if term.result:
            text = f"校长评定：{term.result}" + (f"（{term.result_reason}）" if term.result_reason else "")
            story.append(Spacer(1, 2 * mm))
            story.append(_p(text, st["dim"]))
    return story


def report_pdf(report: Report, title: str) -> bytes:
    """One student's 纪实报告."""
    _fonts()
    out = BytesIO()
    doc = _doc(out, f"{title} · {report.name}")
    doc.build(report_story(report, title), onFirstPage=_footer(f"{report.name} · {report.xjh}"),
              onLaterPages=_footer(f"{report.name} · {report.xjh}"))
    return out.getvalue()


def _qr(url: str, size: float) -> Drawing:
    widget = QrCodeWidget(url, barLevel="M")
    x0, y0, x1, y1 = widget.getBounds()
    drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0])
    drawing.add(widget)
    return drawing


def slips_pdf(slips: list[dict], title: str) -> bytes:
    """确认单, one A4 page a student: who, the term's published records by dimension, the principal's
    result, lines for the student's and the parent's signatures, and a QR code to the report.
    Each slip: {"report": Report, "url": str, "expires": "2022-06-30"}."""
    _fonts()
    st = _styles()
    out = BytesIO()
    doc = _doc(out, title)
    story = []
    for n, slip in enumerate(slips):
        report: Report = slip["report"]
        if n:
            story.append(PageBreak())
        story += [_p(title, st["title"]), _student_table(report, st), Spacer(1, 5 * mm)]
        rows = [[_p("学期", st["head"]), _p("维度", st["head"]), _p("公示记录（条）", st["head"])]]
        for term in report.terms:
            for section in term.sections or []:
                rows.append([_p(term.name, st["cell"]), _p(section.name, st["cell"]), _p(len(section.items), st["cell"])])
            if not term.sections:
                rows.append([_p(term.name, st["cell"]), _p("—", st["cell"]), _p(0, st["cell"])])
        table = Table(rows, colWidths=[64 * mm, 80 * mm, 30 * mm], repeatRows=1)
        table.setStyle(TableStyle(GRID + HEAD))
        story += [table, Spacer(1, 4 * mm)]
        result = next((t for t in reversed(report.terms) if t.result), None)
        story.append(_p("校长评定：" + (result.result + (f"（{result.result_reason}）" if result.result_reason else "")
                                      if result else "尚未评定"), st["dim"]))
        story.append(Spacer(1, 4 * mm))
        story.append(_p("本人已阅读本人的《纪实报告》，确认以上评价结果。", st["base"]))
        story.append(Spacer(1, 10 * mm))
        sign = Table([[_p("学生签字：", st["base"]), "", _p("日期：", st["base"]), ""],
                      [_p("家长签字：", st["base"]), "", _p("日期：", st["base"]), ""]],
                     colWidths=[22 * mm, 58 * mm, 16 * mm, 40 * mm], rowHeights=[14 * mm, 14 * mm])
        sign.setStyle(TableStyle([("LINEBELOW", (1, 0), (1, -1), 0.6, colors.black),
                                  ("LINEBELOW", (3, 0), (3, -1), 0.6, colors.black),
                                  ("VALIGN", (0, 0), (-1, -1), "BOTTOM")]))
        qr = Table([[_qr(slip["url"], 32 * mm)],
                    [_p(f"扫码查看《纪实报告》\n（有效期至 {slip['expires']}）", st["small"])]],
                   colWidths=[40 * mm])
        qr.setStyle(TableStyle([("ALIGN", (0, 0), (-1, -1), "CENTER")]))
        block = Table([[sign, qr]], colWidths=[136 * mm, 40 * mm])
        block.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "BOTTOM")]))
        story.append(block)
    if not story:
        story.append(_p("本班没有参与评价的学生。", st["base"]))
    doc.build(story, onFirstPage=_footer(title), onLaterPages=_footer(title))
    return out.getvalue()


def summary_pdf(title: str, header: list[str], rows: list[list], note: str) -> bytes:
    """汇总表 for the principal to sign and stamp: one row a student, then the signature block."""
    _fonts()
    st = _styles()
    out = BytesIO()
    doc = _doc(out, title, pagesize=landscape(A4))
    data = [[_p(h, st["head"]) for h in header]] + [[_p(v, st["cell"]) for v in row] for row in rows]
    widths = [12 * mm, 48 * mm, 30 * mm, 38 * mm, 24 * mm, 50 * mm, 28 * mm, 28 * mm]
    table = Table(data, colWidths=widths[:len(header)], repeatRows=1)
    table.setStyle(TableStyle(GRID + HEAD))
    sign = Table([[_p("校长签字：", st["base"]), "", _p("学校盖章：", st["base"]), "", _p("日期：", st["base"]), ""]],
                 colWidths=[22 * mm, 50 * mm, 22 * mm, 50 * mm, 16 * mm, 40 * mm], rowHeights=[16 * mm])
    sign.setStyle(TableStyle([("LINEBELOW", (1, 0), (1, 0), 0.6, colors.black),
                              ("LINEBELOW", (3, 0), (3, 0), 0.6, colors.black),
                              ("LINEBELOW", (5, 0), (5, 0), 0.6, colors.black),
                              ("VALIGN", (0, 0), (-1, -1), "BOTTOM")]))
    story = [_p(title, st["title"]), _p(note, st["small"]), Spacer(1, 3 * mm), table, Spacer(1, 8 * mm),
             KeepTogether([sign])]
    doc.build(story, onFirstPage=_footer(title), onLaterPages=_footer(title))
    return out.getvalue()
