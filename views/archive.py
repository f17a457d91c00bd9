"""归档签字 (SPEC §7, grade 9): the principal's 合格/不合格, the signatures on the 确认单, and the 汇总表.

Four pages under one menu, each shown only to the roles policy lets use it:

- 评定: the principal rates the graduating cohort, one student or a selection at once.
- 签字登记: the homeroom teacher (own class) or the school clerk (any class) records the dates the
  student and the parent signed the paper 确认单, one by one or in bulk, and can take a record back.
- 签字进度: progress by class and by school for the school's staff and the district.
- 汇总表: once every participating student is rated and has both signatures, the principal downloads the
  summary table (xlsx, PDF), prints, signs and stamps it, and uploads the scan; the district sees which
  schools are done.

Every change goes through ``workflow`` (policy, window, audit, one transaction); these views only load
through ``policy.scope`` and say what happened. Uploaded scans are recognised by their content, never by
their name, and stored under ``instance/summaries/<sha256>.<ext>``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import warnings
from datetime import date
from urllib.parse import quote

import sqlalchemy as sa
from flask import Response, abort, current_app, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_babel import gettext as _
from flask_login import current_user

from forms.base import db_id, posted_text
from models import policy, workflow
from models.archive import RESULTS, ArchiveEntry, Progress, SummaryUpload, archive_grades, progress
from models.base import db
from models.calendar import PhaseWindow, Term
from models.clock import local, now
from models.fields import FieldErrors
from models.org import NON_PARTICIPANT_STATUSES, School, SchoolClass, Student
from views.export import XLSX_MIME, printable_sheet, send_private_file

SUMMARY_HEADER = ["序号", "学籍号", "姓名", "班级", "评价结果", "不合格原因", "学生签字日期", "家长签字日期"]
UPLOAD_KINDS = {"pdf": ("pdf", "application/pdf"), "jpeg": ("jpg", "image/jpeg"), "png": ("png", "image/png")}
KIND_NAMES = {"pdf": "PDF", "jpeg": "JPG", "png": "PNG"}
SIGN_KINDS = ("student", "parent", "both", "clear")
MAX_IMAGE_PIXELS = 120_000_000  # an A3 page scanned at 1200 dpi is about 70 million pixels


# ---------------------------------------------------------------------------------------------
# The graduating cohort, its window and its progress


def archive_window(term: Term | None) -> PhaseWindow | None:
    for cohort in (term.cohorts if term else []):
        w = cohort.window("archive")
        if w is not None:
            return w
    return None


def window_status(term: Term | None) -> dict:
    """The archive window as the pages show it: when, and whether it is open now."""
    w = archive_window(term)
    if w is None:
        return {"state": "none", "open": False, "text": _("当前学期没有归档签字阶段。")}
    at = now()
    start, end = local(w.starts_at).strftime("%Y-%m-%d %H:%M"), local(w.ends_at).strftime("%Y-%m-%d %H:%M")
    state = "before" if at < w.starts_at else ("open" if at < w.ends_at else "after")
    text = {
        "before": _("「%(name)s」阶段（%(cohort)s）：%(start)s 至 %(end)s（北京时间），尚未开始；开始前不能评定、登记签字或上传汇总表。"),
        "open": _("「%(name)s」阶段（%(cohort)s）：%(start)s 至 %(end)s（北京时间），进行中。"),
        "after": _("「%(name)s」阶段（%(cohort)s）：%(start)s 至 %(end)s（北京时间），已结束；不能再评定、登记签字或上传汇总表。"),
    }[state] % {"name": w.name, "cohort": w.cohort.name, "start": start, "end": end}
    return {"state": state, "open": state == "open", "text": text, "start": start, "end": end,
            "cohort": w.cohort.name}


def _term_of(school: School) -> Term | None:
    return policy.current_term(school.district_id)


def _grade_classes(school: School, grades: list[int]) -> list[SchoolClass]:
    """The school's classes of the archive grades that the user may see."""
    return db.session.execute(
        sa.select(SchoolClass).where(SchoolClass.school_id == school.id, SchoolClass.grade.in_(grades),
                                     policy.scope(current_user, SchoolClass))
        .order_by(SchoolClass.grade, SchoolClass.number)).scalars().all()


def _participants(class_ids: list[int]) -> list[Student]:
    if not class_ids:
        return []
    return db.session.execute(
        sa.select(Student).join(SchoolClass, SchoolClass.id == Student.class_id)
        .where(Student.class_id.in_(class_ids), Student.status.notin_(NON_PARTICIPANT_STATUSES),
               policy.scope(current_user, Student))
        .order_by(SchoolClass.grade, SchoolClass.number, Student.xjh)).scalars().all()


def _non_participants(class_ids: list[int]) -> int:
    if not class_ids:
        return 0
    return db.session.execute(sa.select(sa.func.count(Student.id)).where(
        Student.class_id.in_(class_ids), Student.status.in_(NON_PARTICIPANT_STATUSES))).scalar_one()


def _entries(students: list[Student], term: Term | None) -> dict[int, ArchiveEntry]:
    if term is None or not students:
        return {}
    return {e.student_id: e for e in db.session.execute(sa.select(ArchiveEntry).where(
        ArchiveEntry.term_id == term.id, ArchiveEntry.student_id.in_([s.id for s in students]))).scalars()}


def _probe(student: Student, term: Term) -> ArchiveEntry:
    """An unsaved entry, only to ask policy whether the user could act on this student now."""
    return ArchiveEntry(term=term, student=student, school_id=student.school_id, class_id=student.class_id)


def _may(action: str, student: Student | None, term: Term | None) -> tuple[bool, bool]:
    """(holds the role for this student, may act now): the second also needs the window open."""
    if student is None or term is None:
        return False, False
    probe = _probe(student, term)
    rule = dataclasses.replace(policy.RULES[ArchiveEntry][action], windows=())
    if not policy.check(current_user, action, probe, rule=rule):
        return False, False
    return True, bool(policy.check(current_user, action, probe))


def _scoped_students(ids: list[str], **where) -> list[Student]:
    """The posted students, all inside the user's scope (and the given class), or 404: never a partial set."""
    wanted = {db_id(i) for i in ids}
    if None in wanted:
        abort(400, description=_("学生编号无效。"))
    if not wanted:
        return []
    stmt = sa.select(Student).where(Student.id.in_(wanted), policy.scope(current_user, Student))
    for name, value in where.items():
        stmt = stmt.where(getattr(Student, name) == value)
    students = db.session.execute(stmt.order_by(Student.xjh)).scalars().all()
    if len(students) != len(wanted):
        abort(404, description=_("学生不存在或不在您的权限范围内。"))
    return students


def _holds(rule: policy.Rule, obj) -> bool:
    """Whether one of the user's grants with a role of ``rule`` contains ``obj`` (role and scope, no window)."""
    return any(g.role in rule.roles and policy.contains(g, obj) for g in current_user.grants)


def _run(change, done) -> bool:
    """Run a workflow call. Out of scope → 404; any other refusal, bad input or a conflict is flashed on
    the page the user came from (nothing was saved); success is flashed."""
    try:
        result = change()
    except policy.Denied as exc:
        if exc.status == 404:
            abort(404, description=exc.reason)
        flash(exc.reason, "error")
        return False
    except FieldErrors as exc:
        flash(exc.message, "error")
        return False
    except workflow.WorkflowError as exc:
        flash(exc.message, "error")
        return False
    flash(done(result) if callable(done) else str(done), "success")
    return True


class _ArchivePage(BaseView):
    def inaccessible_callback(self, name, **kwargs):
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path))
        abort(403, description=_("您的角色不能使用此页面。"))

    def _schools(self, rule: policy.Rule) -> list[School]:
        """The schools in the user's scope where one of their grants holds a role of ``rule``."""
        schools = db.session.execute(sa.select(School).where(policy.scope(current_user, School))
                                     .order_by(School.code)).scalars().all()
        return [s for s in schools if _holds(rule, s)]

    def _pick_school(self, schools: list[School]) -> School | None:
        """The school chosen by ``?school_id=`` (404 when not the user's), or the only one."""
        wanted = request.args.get("school_id", type=int)
        if wanted is not None:
            school = next((s for s in schools if s.id == wanted), None)
            if school is None:
                abort(404, description=_("学校不存在或不在您的权限范围内。"))
            return school
        return schools[0] if len(schools) == 1 else None

    def _class(self, class_id: int) -> tuple[SchoolClass, Term]:
        """A class of the graduating cohort in the user's scope, and its current term; 404 otherwise."""
        klass = policy.get_scoped(current_user, SchoolClass, class_id)
        term = _term_of(klass.school) if klass is not None else None
        if klass is None or klass.grade not in archive_grades(term):
            abort(404, description=_("班级不存在、不在您的权限范围内，或该年级没有归档签字阶段。"))
        return klass, term


# ---------------------------------------------------------------------------------------------
# 评定: the principal's 合格 / 不合格


class ArchiveRateView(_ArchivePage):
    def is_accessible(self) -> bool:
        return current_user.is_authenticated and policy.can(current_user, "rate", ArchiveEntry) \
            and policy.runs_phase(current_user, "archive")

    @expose("/")
    def index(self):
        schools = self._schools(policy.RULES[ArchiveEntry]["rate"])
        school = self._pick_school(schools) or (schools[0] if schools else None)
        term = _term_of(school) if school else None
        classes = _grade_classes(school, archive_grades(term)) if school else []
        klass = None
        class_id = request.args.get("class_id", type=int)
        if class_id is not None:
            klass = next((c for c in classes if c.id == class_id), None)
            if klass is None:
                abort(404, description=_("班级不存在或不在您的权限范围内。"))
        shown = [klass] if klass else classes
        students = _participants([c.id for c in shown])
        entries = _entries(students, term)
        _role, can_rate = _may("rate", students[0] if students else None, term)
        result_filter = request.args.get("result", "")
        if result_filter in ("pass", "fail"):
            students = [s for s in students if entries.get(s.id) and entries[s.id].result == result_filter]
        elif result_filter == "none":
            students = [s for s in students if not (entries.get(s.id) and entries[s.id].result)]
        else:
            result_filter = ""
        groups = [(c, [s for s in students if s.class_id == c.id]) for c in shown]
        counts = progress(Student.class_id, [Student.class_id.in_([c.id for c in shown])], [term.id] if term else [],
                          archive_grades(term))
        total = sum(counts.values(), Progress())
        return self.render("cqe/archive/rate.html", school=school, schools=schools, term=term, classes=classes,
                           klass=klass, groups=groups, entries=entries, total=total, can_rate=can_rate,
                           window=window_status(term), result_filter=result_filter, results=RESULTS,
                           excluded=_non_participants([c.id for c in shown]), page_title=_("评定（合格/不合格）"))

    @expose("/rate", methods=("POST",))
    def rate(self):
        students = _scoped_students(request.form.getlist("student"))
        result = request.form.get("result", "")
        back = {k: v for k in ("school_id", "class_id", "result_filter") if (v := request.form.get(k))}
        if "result_filter" in back:
            back["result"] = back.pop("result_filter")
        target = self.get_url(".index", **back)
        if not students:
            flash(_("请先勾选学生。"), "error")
            return redirect(target)
        name = RESULTS.get(result, "")

        def done(changed: int) -> str:
            if len(students) == 1:
                return _("已将%(name)s评为「%(result)s」。", name=students[0].name, result=name)
            same = len(students) - changed
            text = _("已将 %(n)s 名学生评为「%(result)s」。", n=len(students), result=name)
            return text + (_("其中 %(m)s 名原已是该结果。", m=same) if same else "")

        _run(lambda: workflow.rate_students(current_user, students, result,
                                            posted_text(request.form.get("reason"), "reason", _("不合格原因"))), done)
        anchor = f"#s{students[0].id}" if len(students) == 1 else ""
        return redirect(target + anchor)


# ---------------------------------------------------------------------------------------------
# 签字登记 and 签字进度


def _parse_day(value: str | None) -> date | None:
    try:
        return date.fromisoformat((value or "").strip())
    except ValueError:
        return None


def _slips_url(klass: SchoolClass) -> str | None:
    """The class's 确认单 PDF, when the user may print it."""
    if policy.check(current_user, "print_reports", klass, in_scope=True):
        return url_for("reports.class_slips", class_id=klass.id)
    return None


def _roster(view: _ArchivePage, klass: SchoolClass, term: Term, back_url: str | None):
    students = _participants([klass.id])
    entries = _entries(students, term)
    stats = progress(Student.class_id, [Student.class_id == klass.id], [term.id], archive_grades(term)).get(
        klass.id, Progress())
    role, can_sign = _may("sign", students[0] if students else None, term)
    return view.render("cqe/archive/roster.html", klass=klass, school=klass.school, term=term, students=students, entries=entries,
                       stats=stats, role=role, can_sign=can_sign, window=window_status(term),
                       today=local(now()).date().isoformat(), excluded=_non_participants([klass.id]),
                       slips_url=_slips_url(klass),
                       sign_url=url_for("archive_sign.sign", class_id=klass.id) if role else None, back_url=back_url,
                       page_title=_("签字登记"))


class ArchiveSignView(_ArchivePage):
    """签字登记: the homeroom teacher's own class, or any class of the clerk's school."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated and policy.can(current_user, "sign", ArchiveEntry) \
            and policy.runs_phase(current_user, "archive")

    def _signable(self) -> list[tuple[SchoolClass, Term]]:
        out = []
        schools = db.session.execute(sa.select(School).where(School.id.in_(
            sa.select(SchoolClass.school_id).where(policy.scope(current_user, SchoolClass)))).order_by(School.code)
        ).scalars().all()
        for school in schools:
            term = _term_of(school)
            for klass in _grade_classes(school, archive_grades(term)):
                first = db.session.execute(sa.select(Student).where(
                    Student.class_id == klass.id, Student.status.notin_(NON_PARTICIPANT_STATUSES)).limit(1)
                ).scalar_one_or_none()
                if first is not None and _may("sign", first, term)[0]:
                    out.append((klass, term))
        return out

    @expose("/")
    def index(self):
        signable = self._signable()
        if len(signable) == 1:
            return redirect(self.get_url(".roster", class_id=signable[0][0].id))
        stats = {}
        for term_id in {t.id for _k, t in signable}:
            term = db.session.get(Term, term_id)
            ids = [k.id for k, t in signable if t.id == term_id]
            stats.update(progress(Student.class_id, [Student.class_id.in_(ids)], [term_id], archive_grades(term)))
        rows = [{"klass": k, "stats": stats.get(k.id, Progress()), "url": self.get_url(".roster", class_id=k.id),
                 "slips": _slips_url(k)} for k, _t in signable]
        school = signable[0][0].school if signable else None
        term = signable[0][1] if signable else None
        return self.render("cqe/archive/classes.html", rows=rows, school=school, term=term,
                           window=window_status(term), total=sum((r["stats"] for r in rows), Progress()),
                           up_url=None, page_title=_("签字登记"), heading=_("签字登记"))

    @expose("/class/<int:class_id>/")
    def roster(self, class_id: int):
        klass, term = self._class(class_id)
        back = self.get_url(".index") if len(self._signable()) > 1 else None
        return _roster(self, klass, term, back)

    @expose("/class/<int:class_id>/", methods=("POST",))
    def sign(self, class_id: int):
        klass, term = self._class(class_id)
        target = self.get_url(".roster", class_id=klass.id)
        students = _scoped_students(request.form.getlist("student"), class_id=klass.id)
        kind = request.form.get("kind", "")
        if kind not in SIGN_KINDS:
            abort(400, description=_("未知操作。"))
        if not students:
            flash(_("请先勾选学生。"), "error")
            return redirect(target)
        day = None
        if kind != "clear":
            day = _parse_day(request.form.get("date"))
            if day is None:
                flash(_("签字日期：请填写有效日期（如 %(d)s）。", d=local(now()).date().isoformat()), "error")
                return redirect(target)
            # A slip is signed in the school year of its report: an earlier date is a typo (0022, 1900 …).
            first = date(term.school_year, 9, 1)
            if day < first:
                flash(_("签字日期：不能早于本学年开始（%(d)s），现填的是 %(v)s。", d=first.isoformat(), v=day.isoformat()),
                      "error")
                return redirect(target)
        who = {"student": _("学生"), "parent": _("家长"), "both": _("学生和家长")}.get(kind, "")

        def done(changed: int) -> str:
            if kind == "clear":
                return _("已撤销 %(n)s 名学生的签字登记。", n=changed)
            if len(students) == 1:
                return _("已登记%(name)s：%(who)s已于 %(d)s 签字。", name=students[0].name, who=who, d=day.isoformat())
            return _("已登记 %(n)s 名学生：%(who)s已于 %(d)s 签字。", n=len(students), who=who, d=day.isoformat())

        _run(lambda: workflow.record_signatures(
            current_user, students, student_on=day if kind in ("student", "both") else None,
            parent_on=day if kind in ("parent", "both") else None, clear=kind == "clear"), done)
        return redirect(target + (f"#s{students[0].id}" if len(students) == 1 else ""))


class ArchiveProgressView(_ArchivePage):
    """签字进度: by class for a school's staff, by school (then class) for the district."""

    def is_accessible(self) -> bool:
        # Whoever may print a school's 确认单 follows their signing: the school's staff and the district admin.
        return current_user.is_authenticated and policy.can(current_user, "print_reports", School) \
            and policy.runs_phase(current_user, "archive")

    @expose("/")
    def index(self):
        schools = self._schools(policy.RULES[School]["print_reports"])
        school = self._pick_school(schools)
        if school is None:
            return self._district(schools)
        term = _term_of(school)
        classes = _grade_classes(school, archive_grades(term))
        stats = progress(Student.class_id, [Student.class_id.in_([c.id for c in classes])],
                         [term.id] if term else [], archive_grades(term))
        rows = [{"klass": c, "stats": stats.get(c.id, Progress()), "url": self._class_url(c, term),
                 "slips": _slips_url(c)} for c in classes]
        return self.render("cqe/archive/classes.html", rows=rows, school=school, term=term,
                           window=window_status(term), total=sum((r["stats"] for r in rows), Progress()),
                           up_url=self.get_url(".index") if len(schools) > 1 else None,
                           page_title=_("签字进度"), heading=_("签字进度"))

    def _class_url(self, klass: SchoolClass, term: Term) -> str:
        first = db.session.execute(sa.select(Student).where(
            Student.class_id == klass.id, Student.status.notin_(NON_PARTICIPANT_STATUSES)).limit(1)).scalar_one_or_none()
        if first is not None and _may("sign", first, term)[0]:
            return url_for("archive_sign.roster", class_id=klass.id)
        return self.get_url(".roster", class_id=klass.id)

    def _district(self, schools: list[School]):
        rows = _school_rows(schools)
        term = _term_of(schools[0]) if schools else None
        return self.render("cqe/archive/schools.html", rows=rows, term=term, window=window_status(term),
                           total=sum((r["stats"] for r in rows), Progress()), summary=False,
                           page_title=_("签字进度"), heading=_("签字进度"))

    @expose("/class/<int:class_id>/")
    def roster(self, class_id: int):
        klass, term = self._class(class_id)
        return _roster(self, klass, term, self.get_url(".index", school_id=klass.school_id))


def _school_rows(schools: list[School]) -> list[dict]:
    """Per school: its progress and its newest summary upload (one statement each, not one per school)."""
    terms = {s.district_id: _term_of(s) for s in schools}
    term_ids = [t.id for t in terms.values() if t is not None]
    grades = sorted({g for t in terms.values() for g in archive_grades(t)})
    ids = [s.id for s in schools]
    stats = progress(Student.school_id, [Student.school_id.in_(ids)], term_ids, grades) if ids else {}
    latest: dict[int, SummaryUpload] = {}
    if ids and term_ids:
        for upload in db.session.execute(sa.select(SummaryUpload).where(
                SummaryUpload.school_id.in_(ids), SummaryUpload.term_id.in_(term_ids),
                policy.scope(current_user, SummaryUpload)).order_by(SummaryUpload.id.desc())).scalars():
            latest.setdefault(upload.school_id, upload)
    return [{"school": s, "stats": stats.get(s.id, Progress()), "upload": latest.get(s.id)} for s in schools]


# ---------------------------------------------------------------------------------------------
# 汇总表: readiness, downloads, the signed and stamped scan


def summary_dir() -> str:
    path = current_app.config.get("CQE_SUMMARY_DIR") or os.path.join(current_app.instance_path, "summaries")
    os.makedirs(path, exist_ok=True)
    return path


def _size_text(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f}".rstrip("0").rstrip(".") + " MB"
    return f"{n / 1024:.1f}".rstrip("0").rstrip(".") + " KB"


class UploadRefused(Exception):
    pass


def sniff(data: bytes, filename: str) -> str:
    """What the upload is, from its bytes: "pdf", "jpeg" or "png"; UploadRefused with a clear reason
    otherwise. The name and the browser's content type are never trusted."""
    name = filename or _("该文件")
    if data.startswith(b"%PDF-"):
        tail = data[-2048:]
        if b"%%EOF" not in tail or b"startxref" not in tail:
            raise UploadRefused(_("「%(name)s」看起来是 PDF，但文件不完整或已损坏，无法打开。请重新扫描或导出后上传。",
                                  name=name))
        return "pdf"
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format
                width, height = im.size
                im.verify()
            if fmt not in ("JPEG", "PNG"):
                raise UnidentifiedImageError(fmt)
            if width * height > MAX_IMAGE_PIXELS:
                raise UploadRefused(_("「%(name)s」的图片尺寸过大（%(w)s×%(h)s 像素），请降低扫描分辨率后上传。",
                                      name=name, w=width, h=height))
            if fmt == "PNG" and b"IEND" not in data[-64:]:
                raise OSError("PNG without its end")
            if fmt == "JPEG":
                # verify() does not read a JPEG's data: decode it at 1/8 scale, which finds a cut-off file cheaply.
                with Image.open(io.BytesIO(data)) as im:
                    im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                    im.load()
    except UploadRefused:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadRefused(_("「%(name)s」不是 PDF、JPG 或 PNG 文件（系统按文件内容识别，与文件名无关）。请上传扫描得到的 PDF 或图片。",
                              name=name)) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise UploadRefused(_("「%(name)s」是不完整或已损坏的图片，无法打开。请重新扫描后上传。", name=name)) from None
    return fmt.lower()


def store(data: bytes, kind: str) -> str:
    """Keep the bytes under their hash (written whole, then renamed: never a half file); the sha256."""
    sha = hashlib.sha256(data).hexdigest()
    path = os.path.join(summary_dir(), f"{sha}.{UPLOAD_KINDS[kind][0]}")
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    return sha


def _missing(school: School, term: Term, classes: list[SchoolClass]) -> list[dict]:
    """Per class, who still lacks a result or a signature (the reason the summary cannot be printed yet)."""
    students = _participants([c.id for c in classes])
    entries = _entries(students, term)
    out = []
    for klass in classes:
        rows = {"klass": klass, "unrated": [], "student": [], "parent": []}
        for s in (s for s in students if s.class_id == klass.id):
            e = entries.get(s.id)
            if not (e and e.result):
                rows["unrated"].append(s)
            if not (e and e.student_signed_on):
                rows["student"].append(s)
            if not (e and e.parent_signed_on):
                rows["parent"].append(s)
        if rows["unrated"] or rows["student"] or rows["parent"]:
            out.append(rows)
    return out


def summary_rows(school: School, term: Term) -> list[list]:
    classes = db.session.execute(sa.select(SchoolClass).where(
        SchoolClass.school_id == school.id, SchoolClass.grade.in_(archive_grades(term)))
        .order_by(SchoolClass.grade, SchoolClass.number)).scalars().all()
    students = _participants([c.id for c in classes])
    entries = _entries(students, term)
    rows = []
    for n, s in enumerate(students, 1):
        e = entries.get(s.id)
        rows.append([n, s.xjh, s.name, s.school_class.name, e.result_name if e else "",
                     (e.reason or "") if e and e.result == "fail" else "",
                     e.student_signed_on if e else None, e.parent_signed_on if e else None])
    return rows


def summary_title(school: School) -> str:
    return f"{school.name}初中学生综合素质评价汇总表"


def summary_note(school: School, term: Term, rows: list[list]) -> str:
    passed = sum(1 for r in rows if r[4] == RESULTS["pass"])
    failed = sum(1 for r in rows if r[4] == RESULTS["fail"])
    w = archive_window(term)
    return (f"{school.district.name} · {school.name} · {term.name} · {w.cohort.name if w else ''}　共 {len(rows)} 名学生：合格 {passed} 名，"
            f"不合格 {failed} 名；学生与家长均已在确认单上签字。生成时间：{local(now()):%Y-%m-%d %H:%M}")


def summary_xlsx(school: School, term: Term, rows: list[list]) -> bytes:
    wb, ws = printable_sheet("汇总表", f"{school.name} · {term.name} · 初中学生综合素质评价汇总表（九年级）",
                             SUMMARY_HEADER, rows, dict(zip("ABCDEFGH", (6, 22, 12, 16, 10, 30, 14, 14), strict=True)))
    ws.append([])
    ws.append(["校长签字：", "", "", "学校盖章：", "", "日期："])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _attachment(data: bytes, mimetype: str, name: str, fallback: str, inline: bool = False) -> Response:
    how = "inline" if inline else "attachment"
    return Response(data, mimetype=mimetype, headers={
        "Content-Disposition": f"{how}; filename={fallback}; filename*=UTF-8''{quote(name)}",
        "Cache-Control": "private, no-store"})


class ArchiveSummaryView(_ArchivePage):
    """汇总表: the principal's downloads and upload; the school's leadership and the district look on."""

    def is_accessible(self) -> bool:
        return current_user.is_authenticated and policy.can(current_user, "view", SummaryUpload) \
            and policy.runs_phase(current_user, "archive")

    def _status(self, school: School) -> dict:
        term = _term_of(school)
        grades = archive_grades(term)
        classes = db.session.execute(sa.select(SchoolClass).where(
            SchoolClass.school_id == school.id, SchoolClass.grade.in_(grades))
            .order_by(SchoolClass.grade, SchoolClass.number)).scalars().all()
        stats = progress(Student.school_id, [Student.school_id == school.id], [term.id] if term else [], grades).get(
            school.id, Progress())
        return {"term": term, "classes": classes, "stats": stats}

    def _may_download(self, school: School) -> bool:
        """The summary is the principal's to print and sign (policy: who may upload it, window aside)."""
        return _holds(policy.RULES[SummaryUpload]["create"], school)

    def _viewable(self) -> list[School]:
        return self._schools(policy.RULES[SummaryUpload]["view"])

    def _scoped_school(self, school_id: int) -> School:
        school = next((s for s in self._viewable() if s.id == school_id), None)
        if school is None:
            abort(404, description=_("学校不存在或不在您的权限范围内。"))
        return school

    def _may_upload(self, school: School, term: Term | None) -> tuple[bool, str]:
        if term is None:
            return False, _("当前没有进行中的学期。")
        probe = SummaryUpload(school=school, term=term, filename="", kind="pdf", size=0, sha256="")
        decision = policy.check(current_user, "create", probe)
        return bool(decision), decision.reason

    @expose("/")
    def index(self):
        schools = self._viewable()
        school = self._pick_school(schools)
        if school is None:
            rows = _school_rows(schools)
            term = _term_of(schools[0]) if schools else None
            return self.render("cqe/archive/schools.html", rows=rows, term=term, window=window_status(term),
                               total=sum((r["stats"] for r in rows), Progress()), summary=True,
                               done=sum(1 for r in rows if r["upload"]),
                               page_title=_("汇总表"), heading=_("汇总表"))
        status = self._status(school)
        term, stats = status["term"], status["stats"]
        uploads = db.session.execute(sa.select(SummaryUpload).where(
            SummaryUpload.school_id == school.id, SummaryUpload.term_id == term.id,
            policy.scope(current_user, SummaryUpload)).order_by(SummaryUpload.id.desc())).scalars().all() if term else []
        may_upload, why_not = self._may_upload(school, term)
        return self.render("cqe/archive/summary.html", school=school, term=term, stats=stats,
                           missing=[] if stats.ready else _missing(school, term, status["classes"]) if term else [],
                           uploads=uploads,
                           may_download=self._may_download(school), may_upload=may_upload, why_not=why_not,
                           rate_ok=_holds(policy.RULES[ArchiveEntry]["rate"], school),
                           window=window_status(term), kinds=KIND_NAMES, size_text=_size_text,
                           max_size=_size_text(current_app.config.get("CQE_SUMMARY_MAX_BYTES", 10 * 1024 * 1024)),
                           up_url=self.get_url(".index") if len(schools) > 1 else None, local=local,
                           page_title=_("汇总表"))

    def _ready_school(self, school_id: int) -> tuple[School, Term, list[list]] | Response:
        school = self._scoped_school(school_id)
        if not self._may_download(school):
            abort(403, description=_("汇总表由校长下载、签字盖章后上传。"))
        status = self._status(school)
        if not status["stats"].ready:
            flash(_("还不能生成汇总表：须全部参与评价的学生已评定，且学生和家长均已签字。缺少的见下表。"), "error")
            return redirect(self.get_url(".index", school_id=school.id))
        return school, status["term"], summary_rows(school, status["term"])

    @expose("/school/<int:school_id>/summary.xlsx")
    def xlsx(self, school_id: int):
        got = self._ready_school(school_id)
        if isinstance(got, Response):
            return got
        school, term, rows = got
        return _attachment(summary_xlsx(school, term, rows), XLSX_MIME, f"汇总表-{school.name}-{term.name}.xlsx",
                           "summary.xlsx")

    @expose("/school/<int:school_id>/summary.pdf")
    def pdf(self, school_id: int):
        from views.pdf import summary_pdf

        got = self._ready_school(school_id)
        if isinstance(got, Response):
            return got
        school, term, rows = got
        cells = [[r[0], r[1], r[2], r[3], r[4], r[5], r[6].isoformat() if r[6] else "",
                  r[7].isoformat() if r[7] else ""] for r in rows]
        data = summary_pdf(summary_title(school), SUMMARY_HEADER, cells, summary_note(school, term, rows))
        return _attachment(data, "application/pdf", f"汇总表-{school.name}-{term.name}.pdf", "summary.pdf",
                           inline=True)

    @expose("/school/<int:school_id>/upload", methods=("POST",))
    def upload(self, school_id: int):
        school = self._scoped_school(school_id)
        back = redirect(self.get_url(".index", school_id=school.id))
        status = self._status(school)
        term = status["term"]
        may, why_not = self._may_upload(school, term)
        if not may:
            if not self._may_download(school):
                abort(403, description=why_not)
            flash(why_not, "error")
            return back
        if not status["stats"].ready:
            flash(_("还不能上传汇总表：须全部参与评价的学生已评定，且学生和家长均已签字。"), "error")
            return back
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            flash(_("请选择要上传的扫描件（PDF、JPG 或 PNG）。"), "error")
            return back
        limit = current_app.config.get("CQE_SUMMARY_MAX_BYTES", 10 * 1024 * 1024)
        data = upload.stream.read(limit + 1)
        if len(data) > limit:
            flash(_("「%(name)s」太大：汇总表扫描件不能超过 %(limit)s。请降低扫描分辨率或压缩后重新上传。",
                    name=upload.filename, limit=_size_text(limit)), "error")
            return back
        if not data:
            flash(_("「%(name)s」是空文件。", name=upload.filename), "error")
            return back
        try:
            kind = sniff(data, upload.filename)
        except UploadRefused as exc:
            flash(str(exc), "error")
            return back
        sha = store(data, kind)
        record = SummaryUpload(term=term, school=school, filename=upload.filename[:255], kind=kind, size=len(data),
                               sha256=sha, uploaded_by=current_user._get_current_object())
        _run(lambda: workflow.save_summary_upload(current_user, record),
             _("已上传汇总表扫描件「%(name)s」（%(kind)s，%(size)s）。", name=upload.filename, kind=KIND_NAMES[kind],
               size=_size_text(len(data))))
        return back

    @expose("/scan/<int:upload_id>")
    def scan(self, upload_id: int):
        upload = policy.get_scoped(current_user, SummaryUpload, upload_id)
        if upload is None:
            abort(404, description=_("扫描件不存在或不在您的权限范围内。"))
        ext, mimetype = UPLOAD_KINDS[upload.kind]
        path = os.path.join(summary_dir(), f"{upload.sha256}.{ext}")
        if not os.path.exists(path):
            abort(404, description=_("扫描件文件缺失，请联系管理员。"))
        name = f"汇总表-{upload.school.name}-{local(upload.created_at):%Y%m%d%H%M}.{ext}"
        return send_private_file(path, mimetype, name, f"summary.{ext}", inline=True)  # bytes checked by ``sniff``
