"""The evidence portfolio (实证材料, Changsha: seed 001, 4月3日—5月20日 and 5月24日前): each student's files for the
profile's required items, checked by their content, stored by content hash, counted against each item's rule.

- ``check_file``: is this upload an original, readable PDF / JPEG / PNG that the item accepts, within its size?
- ``save_evidence`` / ``delete_evidence``: the one way a file is added or taken away (policy, audit, one commit).
- ``completeness`` / ``student_items`` / ``chasing_list``: who has what and what is missing, per student, class
  and school, each in one statement (GROUP BY), never one query per student.

The bytes live under ``<instance>/evidence/<sha256>`` (``CQE_EVIDENCE_DIR`` overrides the folder), written whole
before the row that names them; a deleted row leaves its bytes in place, so what the history names can still be
shown (and two rows with the same content share one file).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from models import policy
from models.accounts import User
from models.audit import acting
from models.base import db
from models.calendar import Term
from models.catalog import Dimension
from models.changsha import EvidenceFile, EvidenceItem
from models.clock import now
from models.fields import BAD_CHARS, FieldErrors, trim
from models.org import NON_PARTICIPANT_STATUSES, STUDENT_STATUSES, SchoolClass, Student
from models.workflow import WorkflowError, _commit, _fail

KIND_NAMES = {"pdf": "PDF", "jpeg": "JPG", "png": "PNG"}
KIND_MIMETYPES = {"pdf": "application/pdf", "jpeg": "image/jpeg", "png": "image/png"}
KIND_EXTENSIONS = {"pdf": "pdf", "jpeg": "jpg", "png": "png"}
# A photo from a phone is 12–50 million pixels; an A3 page scanned at 1200 dpi about 70 million.
MAX_IMAGE_PIXELS = 120_000_000
PHASES = ("evidence", "self_peer")  # the windows in which files are added and removed (models/policy.py)
_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF", re.S)
_OBJ = re.compile(rb"\d+\s+\d+\s+obj\b")


# ---------------------------------------------------------------------------------------------
# The file itself


def size_text(n: int) -> str:
    """A size as people read it: 1.5 MB, 320 KB."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f}".rstrip("0").rstrip(".") + " MB"
    return f"{max(n, 1) / 1024:.1f}".rstrip("0").rstrip(".") + " KB"


def formats_text(formats) -> str:
    return "、".join(KIND_NAMES.get(k, k) for k in formats)


def clean_filename(filename: str | None) -> str:
    """The name as shown: its last path part (never used as a path), without control characters, ≤ 255."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = trim(BAD_CHARS.sub("", name))
    return name[-255:] or "未命名文件"


class _Unreadable(Exception):
    """The content is of a known kind but cannot be read whole."""


class _Unknown(Exception):
    """The content is none of the kinds we take; ``seen`` names what it looks like, if anything."""

    def __init__(self, seen: str = ""):
        super().__init__(seen)
        self.seen = seen


class _Oversized(Exception):
    """An image of more pixels than anybody needs (or a decompression bomb)."""

    def __init__(self, width: int, height: int):
        super().__init__(f"{width}×{height}")
        self.pixels = f"{width}×{height}"


def _pdf_readable(data: bytes) -> None:
    """A PDF a reader can open: its trailer is there (``startxref`` … ``%%EOF`` at the end) and points at a
    cross-reference table or stream inside the file. A cut-off upload loses its trailer."""
    tail = data[-1024:]
    found = list(_STARTXREF.finditer(tail))
    if not found:
        raise _Unreadable("no trailer")
    offset = int(found[-1].group(1))
    if not 0 < offset < len(data):
        raise _Unreadable("startxref outside the file")
    # Some producers are a few bytes off (line ends); readers tolerate that, and so do we.
    near = data[max(0, offset - 16):offset + 48]
    if b"xref" not in near and not _OBJ.search(near):
        raise _Unreadable("startxref points at nothing")


def _image_kind(data: bytes) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                # Many phone cameras write JPEGs with a second, preview picture: Pillow calls them MPO.
                fmt = "JPEG" if im.format == "MPO" else im.format
                width, height = im.size
                if fmt not in ("JPEG", "PNG"):
                    raise _Unknown(fmt or "")
                if width * height > MAX_IMAGE_PIXELS:
                    raise _Oversized(width, height)
                im.verify()  # PNG: every chunk and its checksum, up to IEND
            if fmt == "PNG" and b"IEND" not in data[-64:]:
                raise _Unreadable("PNG without its end")
            with Image.open(io.BytesIO(data)) as im:
                if fmt == "JPEG":
                    # verify() does not read a JPEG's data: decode it (at 1/8 scale: cheap) to find a cut-off file.
                    im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                im.load()
    except (_Unknown, _Unreadable, _Oversized):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _Oversized(0, 0) from None
    except UnidentifiedImageError:
        raise _Unknown() from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error):
        raise _Unreadable("image") from None
    return fmt.lower()


def sniff(data: bytes) -> str:
    """What the bytes are: "pdf", "jpeg" or "png"; _Unknown or _Unreadable otherwise. Names and the browser's
    content type are never asked."""
    if data.startswith(b"%PDF-"):
        _pdf_readable(data)
        return "pdf"
    return _image_kind(data)


def check_file(item: EvidenceItem, data: bytes, filename: str) -> str:
    """The kind of an upload for ``item`` ("pdf", "jpeg", "png"), or FieldErrors with a message naming the item
    and the file: empty, over the item's size cap, not a PDF/JPG/PNG by its content, cut off or damaged (原始、
    可读取), or a kind the item does not take."""
    name = clean_filename(filename)
    where = f"「{item.name}」的文件「{name}」"

    def refuse(text: str):
        raise FieldErrors({"file": where + text})

    if not data:
        refuse("是空文件，请重新选择。")
    if len(data) > item.max_bytes:
        refuse(f"太大（{size_text(len(data))}）：本项每个文件不能超过 {size_text(item.max_bytes)}。"
               "请压缩或降低分辨率后重新上传。")
    try:
        kind = sniff(data)
    except _Oversized as exc:
        size = f"（{exc.pixels} 像素）" if exc.pixels != "0×0" else ""
        refuse(f"的图片尺寸过大{size}，请降低分辨率后重新上传。")
    except _Unknown as exc:
        seen = f"（看起来是 {exc.seen} 格式）" if exc.seen else ""
        refuse(f"不是 PDF、JPG 或 PNG 文件{seen}：系统按文件内容识别，与文件名无关。请上传原始的 PDF 文件或照片。")
    except _Unreadable:
        if data.startswith(b"%PDF-"):
            refuse("看起来是 PDF，但文件不完整或已损坏，无法打开。请重新导出或扫描后上传。")
        refuse("是不完整或已损坏的图片，无法打开。请重新拍摄或扫描后上传。")
    if kind not in item.formats:
        refuse(f"是 {KIND_NAMES[kind]} 文件，本项只接受 {formats_text(item.formats)} 文件。")
    return kind


def evidence_dir() -> str:
    from flask import current_app

    path = current_app.config.get("CQE_EVIDENCE_DIR") or os.path.join(current_app.instance_path, "evidence")
    os.makedirs(path, exist_ok=True)
    return path


def file_path(sha256: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", sha256 or ""):
        raise ValueError("not a sha256")
    return os.path.join(evidence_dir(), sha256)


def store(data: bytes) -> str:
    """Keep the bytes under their hash, written whole and then renamed (never a half file); idempotent."""
    sha = hashlib.sha256(data).hexdigest()
    path = file_path(sha)
    if not os.path.exists(path):
        tmp = f"{path}.{os.getpid()}.{id(data)}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    return sha


@dataclass
class Sweep:
    removed: int = 0
    removed_bytes: int = 0
    kept_young: int = 0  # unreferenced but too recent to be sure (an upload whose row is being committed)
    referenced: int = 0


def sweep_orphans(min_age: timedelta, *, dry_run: bool = False) -> Sweep:
    """Remove stored bytes no evidence file refers to any more: files taken off (the history keeps what they were,
    not the student's photo for ever) and bytes whose upload failed before its row was saved; likewise temporary
    files of interrupted writes. Only what has not been touched for ``min_age``: a file stored a moment ago may
    belong to a row still being committed. Stored files are named by their hash, so one still used by any other
    student's row stays. Ages are the files' own times on the real clock (never the app's, which a demo pins)."""
    root = evidence_dir()
    used = set(db.session.execute(sa.select(EvidenceFile.sha256).distinct()).scalars())
    result = Sweep()
    cutoff = time.time() - min_age.total_seconds()
    for entry in os.scandir(root):
        if not entry.is_file(follow_symlinks=False):
            continue
        name = entry.name
        if not (re.fullmatch(r"[0-9a-f]{64}", name) or re.fullmatch(r"[0-9a-f]{64}\..+\.tmp", name)):
            continue  # not ours: leave it
        if name in used:
            result.referenced += 1
            continue
        info = entry.stat(follow_symlinks=False)
        if info.st_mtime > cutoff:
            result.kept_young += 1
            continue
        result.removed += 1
        result.removed_bytes += info.st_size
        if not dry_run:
            try:
                os.remove(entry.path)
            except FileNotFoundError:  # another sweep got there first
                pass
    return result


# ---------------------------------------------------------------------------------------------
# Adding and removing files


def term_of(student: Student) -> Term | None:
    return policy.current_term(student.school.district_id)


def items_of(term: Term | None) -> list[EvidenceItem]:
    """The term's profile's required items, in the profile's order."""
    if term is None:
        return []
    return db.session.execute(sa.select(EvidenceItem).where(EvidenceItem.profile_id == term.profile_id)
                              .order_by(EvidenceItem.position, EvidenceItem.id)).scalars().all()


def evidence_grades(term: Term | None) -> list[int]:
    """The grades whose cohort collects evidence this term."""
    return sorted({g for c in (term.cohorts if term else []) if c.window("evidence") is not None for g in c.grades})


def probe(student: Student, term: Term, item: EvidenceItem | None = None) -> EvidenceFile:
    """An unsaved file of the student, to ask policy whether somebody may add one now."""
    return EvidenceFile(term=term, student=student, school_id=student.school_id, class_id=student.class_id,
                        item=item, item_id=item.id if item else None, filename="", kind="pdf", size=0, sha256="")


def _count(student: Student, term: Term, item: EvidenceItem) -> int:
    return db.session.execute(sa.select(sa.func.count(EvidenceFile.id)).where(
        EvidenceFile.student_id == student.id, EvidenceFile.term_id == term.id,
        EvidenceFile.item_id == item.id)).scalar_one()


def save_evidence(user: User, student: Student, item: EvidenceItem, filename: str, data: bytes, *,
                  at: datetime | None = None) -> EvidenceFile:
    """Add one file to a student's item: policy (role, scope, window), the file's content and the item's
    rule (formats, size, at most ``max_files``), then the bytes by their hash, then the row, in one commit.
    Refused: nothing saved (a file written only for this row may stay on disk, named by nobody)."""
    at = at or now()
    try:
        term = term_of(student)
        if term is None:
            raise WorkflowError("当前没有进行中的学期，不能上传实证材料。")
        if item.profile_id != term.profile_id:
            raise FieldErrors({"item": f"「{item.name}」不是本学期评价方案的实证材料项目。"})
        if not student.participates:
            raise WorkflowError(f"{student.name}为「{STUDENT_STATUSES.get(student.status, student.status)}」，"
                                "不参与本次综合素质评价，不需要上传实证材料。")
        name = clean_filename(filename)
        row = probe(student, term, item)
        row.filename, row.size = name, len(data)
        policy.require(user, "create", row, at)
        row.kind = check_file(item, data, name)
        row.sha256 = hashlib.sha256(data).hexdigest()
        row.uploaded_by_id = user.id
        # One upload of a student at a time (PostgreSQL: row lock; SQLite has one writer anyway), so two
        # at once cannot both pass the count below.
        db.session.execute(sa.select(Student.id).where(Student.id == student.id).with_for_update())
        have = db.session.execute(sa.select(EvidenceFile.filename, EvidenceFile.sha256).where(
            EvidenceFile.student_id == student.id, EvidenceFile.term_id == term.id,
            EvidenceFile.item_id == item.id).order_by(EvidenceFile.id)).all()
        if len(have) >= item.max_files:
            raise FieldErrors({"file": f"「{item.name}」已上传{len(have)}个，最多{item.max_files}个："
                                       f"「{name}」未保存。请先删除不需要的文件再上传。"})
        same = next((f for f, sha in have if sha == row.sha256), None)
        if same is not None:
            raise FieldErrors({"file": f"「{item.name}」已有内容完全相同的文件「{same}」，「{name}」未重复保存。"})
        row.sha256 = store(data)
        with acting("create", f"上传实证材料：{item.name}（{name}）"):
            db.session.add(row)
            _commit("create")
        return row
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def delete_evidence(user: User, evidence_file: EvidenceFile, *, at: datetime | None = None) -> None:
    """Take a file off a student's item (while the window is open); the history keeps what it was."""
    at = at or now()
    try:
        policy.require(user, "delete", evidence_file, at)
        reason = f"删除实证材料：{evidence_file.item.name}（{evidence_file.filename}）"
        with acting("delete", reason):
            db.session.delete(evidence_file)
            _commit("delete")
    except (policy.Denied, WorkflowError) as exc:
        _fail(exc)


# ---------------------------------------------------------------------------------------------
# Completeness


@dataclass
class Tally:
    """Participating students of a class or school: how many have every item, how many item slots and files
    are still missing."""

    students: int = 0
    complete: int = 0
    missing_items: int = 0  # (student, item) pairs below the item's minimum
    files_short: int = 0  # files still needed to reach every minimum

    @property
    def incomplete(self) -> int:
        return self.students - self.complete

    @property
    def percent(self) -> int:
        return round(100 * self.complete / self.students) if self.students else 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.students + other.students, self.complete + other.complete,
                     self.missing_items + other.missing_items, self.files_short + other.files_short)


def _participating():
    return Student.status.notin_(NON_PARTICIPANT_STATUSES)


def _per_student(term: Term, students):
    """Per student of the ``students`` subquery (ids): how many items reach their minimum (``done``) and how
    many files count towards the minimums (``counted``: a file beyond an item's minimum does not)."""
    n = sa.func.count(EvidenceFile.id)
    per_item = (
        sa.select(EvidenceFile.student_id.label("student_id"), EvidenceItem.min_files.label("min_files"),
                  sa.case((n < EvidenceItem.min_files, n), else_=EvidenceItem.min_files).label("counted"))
        .join(EvidenceItem, EvidenceItem.id == EvidenceFile.item_id)
        .where(EvidenceFile.term_id == term.id, EvidenceItem.profile_id == term.profile_id,
               EvidenceFile.student_id.in_(students))
        .group_by(EvidenceFile.student_id, EvidenceFile.item_id, EvidenceItem.min_files)
        .subquery()
    )
    return (
        sa.select(per_item.c.student_id,
                  sa.func.sum(sa.case((per_item.c.counted >= per_item.c.min_files, 1), else_=0)).label("done"),
                  sa.func.sum(per_item.c.counted).label("counted"))
        .group_by(per_item.c.student_id)
        .subquery()
    )


def _needs(term: Term) -> tuple[int, int]:
    """(number of items, files needed in all) of the term's profile."""
    row = db.session.execute(sa.select(sa.func.count(EvidenceItem.id), sa.func.coalesce(sa.func.sum(
        EvidenceItem.min_files), 0)).where(EvidenceItem.profile_id == term.profile_id)).one()
    return int(row[0]), int(row[1])


def completeness(group_col, where: list, term: Term) -> dict[int, Tally]:
    """Participating students of the evidence grades matching ``where``, tallied per ``group_col``
    (``Student.class_id`` or ``Student.school_id``) in one statement."""
    n_items, n_files = _needs(term)
    grades = evidence_grades(term)
    students = (sa.select(Student.id).join(SchoolClass, SchoolClass.id == Student.class_id)
                .where(_participating(), SchoolClass.grade.in_(grades), *where))
    per = _per_student(term, students)
    done = sa.func.coalesce(per.c.done, 0)
    counted = sa.func.coalesce(per.c.counted, 0)
    stmt = (
        sa.select(group_col, sa.func.count(Student.id), sa.func.sum(sa.case((done >= n_items, 1), else_=0)),
                  sa.func.sum(n_items - done), sa.func.sum(n_files - counted))
        .select_from(Student).join(SchoolClass, SchoolClass.id == Student.class_id)
        .outerjoin(per, per.c.student_id == Student.id)
        .where(_participating(), SchoolClass.grade.in_(grades), *where)
        .group_by(group_col)
    )
    return {row[0]: Tally(int(row[1]), int(row[2] or 0), int(row[3] or 0), int(row[4] or 0))
            for row in db.session.execute(stmt).all()}


@dataclass
class StudentTally:
    student: Student
    done: int  # items at their minimum
    items: int  # items in all
    files_short: int

    @property
    def complete(self) -> bool:
        return self.done >= self.items

    @property
    def missing_items(self) -> int:
        return self.items - self.done


def class_students(klass: SchoolClass, term: Term) -> list[StudentTally]:
    """Every participating student of the class with their tally, in seat order (考号), in one statement."""
    n_items, n_files = _needs(term)
    students = sa.select(Student.id).where(Student.class_id == klass.id, _participating())
    per = _per_student(term, students)
    rows = db.session.execute(
        sa.select(Student, sa.func.coalesce(per.c.done, 0), sa.func.coalesce(per.c.counted, 0))
        .outerjoin(per, per.c.student_id == Student.id)
        .where(Student.class_id == klass.id, _participating())
        .order_by(sa.func.coalesce(Student.exam_number, Student.xjh), Student.xjh)).all()
    return [StudentTally(s, int(done), n_items, n_files - int(counted)) for s, done, counted in rows]


@dataclass
class Shortfall:
    item: EvidenceItem
    have: int

    @property
    def short(self) -> int:
        return self.item.min_files - self.have


@dataclass
class Chase:
    """催交清单 line: a student and the items still below their minimum."""

    student: Student
    missing: list[Shortfall] = field(default_factory=list)

    @property
    def files_short(self) -> int:
        return sum(m.short for m in self.missing)

    @property
    def text(self) -> str:
        return "；".join(f"{m.item.name}（还缺{m.short}个）" for m in self.missing)


def shortfalls(where: list, term: Term) -> list[tuple[int, int, int]]:
    """(student id, item id, files uploaded) for every participating student matching ``where`` and every
    item below its minimum: students × items, left-joined to the files and grouped, in one statement."""
    n = sa.func.count(EvidenceFile.id)
    stmt = (
        sa.select(Student.id, EvidenceItem.id, n)
        .select_from(Student)
        .join(EvidenceItem, EvidenceItem.profile_id == term.profile_id)
        .outerjoin(EvidenceFile, sa.and_(EvidenceFile.student_id == Student.id, EvidenceFile.item_id == EvidenceItem.id,
                                         EvidenceFile.term_id == term.id))
        .where(_participating(), *where)
        .group_by(Student.id, EvidenceItem.id, EvidenceItem.min_files)
        .having(n < EvidenceItem.min_files)
    )
    return [tuple(r) for r in db.session.execute(stmt).all()]


def chasing_list(klass: SchoolClass, term: Term) -> list[Chase]:
    """催交清单 of a class: every participating student with a missing item, which ones, how many files short;
    in seat order, items in the profile's order."""
    items = {i.id: i for i in items_of(term)}
    rows = shortfalls([Student.class_id == klass.id], term)
    by_student: dict[int, list[Shortfall]] = {}
    for student_id, item_id, have in rows:
        by_student.setdefault(student_id, []).append(Shortfall(items[item_id], int(have)))
    if not by_student:
        return []
    students = db.session.execute(sa.select(Student).where(Student.id.in_(by_student)).order_by(
        sa.func.coalesce(Student.exam_number, Student.xjh), Student.xjh)).scalars().all()
    order = {i: n for n, i in enumerate(items)}
    return [Chase(s, sorted(by_student[s.id], key=lambda m: order[m.item.id])) for s in students]


@dataclass
class ItemStatus:
    item: EvidenceItem
    files: list[EvidenceFile]

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def complete(self) -> bool:
        return self.count >= self.item.min_files

    @property
    def short(self) -> int:
        return max(0, self.item.min_files - self.count)

    @property
    def full(self) -> bool:
        return self.count >= self.item.max_files


@dataclass
class DimensionItems:
    dimension: Dimension
    items: list[ItemStatus]


def student_items(student: Student, term: Term) -> list[DimensionItems]:
    """A student's items with their files, grouped by dimension (two statements, whatever the count)."""
    items = items_of(term)
    files: dict[int, list[EvidenceFile]] = {}
    for f in db.session.execute(sa.select(EvidenceFile).where(
            EvidenceFile.student_id == student.id, EvidenceFile.term_id == term.id)
            .order_by(EvidenceFile.created_at, EvidenceFile.id)).scalars():
        files.setdefault(f.item_id, []).append(f)
    groups: dict[int, DimensionItems] = {}
    for item in items:
        group = groups.setdefault(item.dimension_id, DimensionItems(item.dimension, []))
        group.items.append(ItemStatus(item, files.get(item.id, [])))
    return sorted(groups.values(), key=lambda g: (g.dimension.position, g.dimension.id))
