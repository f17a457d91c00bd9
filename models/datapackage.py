"""The data package for the city data centre (SPEC §8, seed 001: 5月26—27日 学生电子档案数据上传市教育局数据中心, "核对
是否上报成功，图文是否能读取、识别"; 6月26—27日 学校最终评价数据上报, "确认每个维度评价结果是否导入上报，数据是否正确").

A package is one zip per school, term and kind ("evidence": the students' electronic archive; "final": the same
with the final ratings and the peer and teacher-review summaries), stored under ``<instance>/packages/<sha256>.zip``
(``CQE_PACKAGE_DIR`` overrides the folder). Its ``manifest.json`` names every other file in it with its size and
sha256, and counts what it holds. ``verify_package`` re-reads the stored zip and reports, in sentences naming the
student (考号, 姓名) and the item, file or dimension, whatever is missing, altered or unreadable, and whatever no
longer matches the database.

Only base models are imported at the top: models/policy.py imports ``DataPackage`` for its rules, and this module's
functions need policy (and the evaluation and evidence modules that import it) only when they run.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
import zipfile
import zlib
from collections import defaultdict
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import JSONType, UTCDateTime, db, utcnow

KINDS = {"evidence": "学生电子档案", "final": "最终评价数据"}
KINDS_EN = {"evidence": "Student archive", "final": "Final evaluation data"}
# The phase of the profile in which each kind is built, and the policy action that builds it.
KIND_PHASES = {"evidence": "first_upload", "final": "final_upload"}
KIND_ACTIONS = {"evidence": "package_evidence", "final": "package_final"}
STATES = {"building": "生成中", "ready": "已生成", "failed": "生成失败"}
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
BUILD_LIMIT = 2 * 3600  # seconds: the build job's time limit (jobs/datapackage.py)
_KEY_UNSAFE = re.compile(r"[^0-9A-Za-z_-]")


class DataPackage(db.Model):
    """One package of a school's data for the city data centre, and what its verification found."""

    __tablename__ = "data_packages"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('evidence', 'final')", name="kind_value"),
        sa.CheckConstraint("state IN ('building', 'ready', 'failed')", name="state_value"),
        sa.Index("ix_data_packages_school_term", "school_id", "term_id", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(sa.ForeignKey("schools.id"))
    term_id: Mapped[int] = mapped_column(sa.ForeignKey("terms.id"))
    kind: Mapped[str] = mapped_column(sa.String(8))
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    state: Mapped[str] = mapped_column(sa.String(8), default="building")
    # The zip's own digest and size (its name on disk); NULL until built.
    sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    size: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    # manifest.json's "counts": students, dimensions, files per item, ratings per dimension and level, records.
    counts: Mapped[dict | None] = mapped_column(JSONType, nullable=True)
    error: Mapped[str] = mapped_column(sa.Text, default="")
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The last verification's problems, one sentence each; an empty list: verified.
    verification: Mapped[list | None] = mapped_column(JSONType, nullable=True)
    school = relationship("School")
    term = relationship("Term")
    created_by = relationship("User")

    @property
    def kind_name(self) -> str:
        return KINDS.get(self.kind, self.kind)

    @property
    def state_name(self) -> str:
        return STATES.get(self.state, self.state)

    @property
    def job_id(self) -> str:
        """The RQ job that builds it: deterministic, so the page finds its progress."""
        return f"datapackage-{self.id}"

    @property
    def totals(self) -> dict:
        """The manifest's counts added up, as the page shows them."""
        c = self.counts or {}
        return {"students": c.get("students", 0), "dimensions": c.get("dimensions", 0),
                "files": sum((c.get("evidence_files") or {}).values()), "records": sum((c.get("records") or {}).values()),
                "ratings": sum(sum(v.values()) for v in (c.get("ratings") or {}).values()) if "ratings" in c else None}

    @property
    def verified(self) -> bool:
        return self.verified_at is not None and not self.verification

    def __str__(self) -> str:
        return f"{self.kind_name}数据包 · {self.school.name if self.school else self.school_id}"


# ---------------------------------------------------------------------------------------------
# Where packages live


def package_dir() -> str:
    from flask import current_app

    path = current_app.config.get("CQE_PACKAGE_DIR") or os.path.join(current_app.instance_path, "packages")
    os.makedirs(path, exist_ok=True)
    return path


def package_path(package: DataPackage) -> str | None:
    if not re.fullmatch(r"[0-9a-f]{64}", package.sha256 or ""):
        return None
    return os.path.join(package_dir(), f"{package.sha256}.zip")


def _sha_of_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# What a school's package holds, read from the database


def student_key(student) -> str:
    """The student's folder and row key in the package: the 考号 (the 学籍号 when there is none yet)."""
    return _KEY_UNSAFE.sub("_", student.exam_number or student.xjh)


def package_students(term, school_id: int) -> list:
    """The school's participating students of the term's graduating grades, in 考号 order."""
    from models import evaluation as ev
    from models.org import NON_PARTICIPANT_STATUSES, SchoolClass, Student

    return list(db.session.execute(
        sa.select(Student).join(SchoolClass, SchoolClass.id == Student.class_id)
        .where(Student.school_id == school_id, SchoolClass.grade.in_(ev._graduating_grades(term)),
               Student.status.notin_(NON_PARTICIPANT_STATUSES))
        .order_by(sa.func.coalesce(Student.exam_number, Student.xjh), Student.xjh)).scalars())


def _student_ids(term, school_id: int):
    """The same students as ``package_students``, as a subquery of ids."""
    from models import evaluation as ev
    from models.org import NON_PARTICIPANT_STATUSES, SchoolClass, Student

    return (sa.select(Student.id).join(SchoolClass, SchoolClass.id == Student.class_id)
            .where(Student.school_id == school_id, SchoolClass.grade.in_(ev._graduating_grades(term)),
                   Student.status.notin_(NON_PARTICIPANT_STATUSES)))


def database_counts(term, school_id: int, kind: str) -> dict:
    """What the package of this school and kind should count, from the database now: each figure in one
    GROUP BY statement, with every item, category, dimension and level present (zeros included)."""
    from models import evaluation as ev
    from models import evidence
    from models.catalog import Category
    from models.changsha import EvidenceFile, MaterialReview, PeerRating, Rating
    from models.records import Record

    ids = _student_ids(term, school_id)
    items = evidence.items_of(term)
    dims = ev.dimensions(term)
    per_item = dict(db.session.execute(
        sa.select(EvidenceFile.item_id, sa.func.count(EvidenceFile.id))
        .where(EvidenceFile.term_id == term.id, EvidenceFile.student_id.in_(ids))
        .group_by(EvidenceFile.item_id)).all())
    categories = db.session.execute(sa.select(Category).where(Category.profile_id == term.profile_id)
                                    .order_by(Category.position, Category.id)).scalars().all()
    per_category = dict(db.session.execute(
        sa.select(Record.category_id, sa.func.count(Record.id))
        .where(Record.term_id == term.id, Record.student_id.in_(ids))
        .group_by(Record.category_id)).all())
    counts = {
        "students": db.session.execute(sa.select(sa.func.count()).select_from(ids.subquery())).scalar_one(),
        "dimensions": len(dims),
        "evidence_files": {i.code: int(per_item.get(i.id, 0)) for i in items},
        "records": {c.code: int(per_category.get(c.id, 0)) for c in categories},
    }
    if kind == "final":
        levels = ev.level_codes(term)
        per_level = defaultdict(int)
        for dim_id, level, n in db.session.execute(
                sa.select(Rating.dimension_id, Rating.level, sa.func.count(Rating.id))
                .where(Rating.term_id == term.id, Rating.student_id.in_(ids))
                .group_by(Rating.dimension_id, Rating.level)):
            per_level[(dim_id, level)] = int(n)
        counts["ratings"] = {d.code: {lv: per_level[(d.id, lv)] for lv in levels} for d in dims}
        counts["peer_ratings"] = db.session.execute(sa.select(sa.func.count(PeerRating.id)).where(
            PeerRating.term_id == term.id, PeerRating.ratee_id.in_(ids))).scalar_one()
        counts["material_reviews"] = db.session.execute(sa.select(sa.func.count(MaterialReview.id)).where(
            MaterialReview.term_id == term.id, MaterialReview.student_id.in_(ids))).scalar_one()
    return counts


def _csv(header: list[str], rows) -> bytes:
    """UTF-8 with a BOM and CRLF line ends: Excel opens it with the Chinese intact."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8-sig")


def _read_csv(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def _record_text(category, data: dict) -> str:
    """The record's fields in the category's order (JSONB keeps keys in an order of its own), with their labels."""
    data = data or {}
    labels = {f["name"]: f.get("label", f["name"]) for f in category.fields or []}
    keys = [k for k in labels if k in data] + sorted(k for k in data if k not in labels)
    return "；".join(f"{labels.get(k, k)}：{data[k]}" for k in keys if data[k] not in (None, ""))


# ---------------------------------------------------------------------------------------------
# Asking for a package (policy, history) and building it (the job)


def request_package(user, school, kind: str, *, at: datetime | None = None) -> DataPackage:
    """Ask for a school's package: the school admin, the principal or the district admin, while the kind's window
    is open (5月26—27日 for "evidence", 6月26—27日 for "final"); "final" only once the school's ratings are
    finalised. Saves the package as "building" with its history; refused: nothing saved and a sentence says why."""
    from models import evaluation as ev
    from models import policy
    from models.audit import acting
    from models.clock import now
    from models.fields import FieldErrors
    from models.workflow import WorkflowError, _commit, _fail

    at = at or now()
    try:
        if kind not in KINDS:
            raise FieldErrors({"kind": "数据包类型只能是" + "、".join(KINDS.values())})
        term = ev.changsha_term(school.district_id)
        package = DataPackage(school=school, school_id=school.id, term=term, term_id=term.id, kind=kind,
                              created_by_id=user.id, created_at=at, state="building", error="")
        policy.require(user, KIND_ACTIONS[kind], package, at)
        if kind == "final" and ev._final(term, school.id, None) is None:
            raise WorkflowError(f"{school.name}的评价尚未全校定稿，不能生成最终评价数据包。")
        # A build older than the job's time limit was lost with its worker: it no longer holds the school up.
        busy = db.session.execute(sa.select(DataPackage.id).where(
            DataPackage.school_id == school.id, DataPackage.term_id == term.id, DataPackage.kind == kind,
            DataPackage.state == "building", DataPackage.created_at > at - timedelta(seconds=BUILD_LIMIT))).first()
        if busy is not None:
            raise WorkflowError(f"{school.name}的{KINDS[kind]}数据包正在生成，请等待完成后再试。")
        with acting("create", f"生成{KINDS[kind]}数据包"):
            db.session.add(package)
            _commit("create")
        return package
    except (policy.Denied, FieldErrors, WorkflowError) as exc:
        _fail(exc)


def build_package(package_id: int, report=lambda done, total, label="": None) -> DataPackage:
    """Write the package's zip and mark it ready (or failed, with the reason); one commit at the end.
    ``report(done, total, label)`` is the progress bar's (jobs.progress in an RQ job)."""
    from models.audit import acting

    package = db.session.get(DataPackage, package_id)
    if package is None:
        raise ValueError(f"no data package {package_id}")
    if package.state != "building":
        return package
    tmp = None
    try:
        tmp, sha, size, counts = _write_zip(package, report)
        final_path = os.path.join(package_dir(), f"{sha}.zip")
        os.replace(tmp, final_path)
        tmp = None
        with acting("edit", f"{package.kind_name}数据包已生成"):
            package.sha256, package.size, package.counts = sha, size, counts
            package.state, package.error = "ready", ""
            db.session.commit()
    except Exception as exc:  # noqa: BLE001 - any failure is the package's state, shown on the page
        db.session.rollback()
        if tmp and os.path.exists(tmp):
            os.remove(tmp)
        package = db.session.get(DataPackage, package_id)
        with acting("edit", f"{package.kind_name}数据包生成失败"):
            package.state = "failed"
            package.error = f"生成失败：{exc.__class__.__name__}: {exc}"[:2000]
            db.session.commit()
    return package


def mark_failed(package: DataPackage, reason: str) -> None:
    """A build whose job failed or was lost: say so on the package (one commit), so it can be asked for again."""
    from models.audit import acting

    if package.state != "building":
        return
    with acting("edit", f"{package.kind_name}数据包生成失败"):
        package.state, package.error = "failed", reason[:2000]
        db.session.commit()


def _write_zip(package: DataPackage, report) -> tuple[str, str, int, dict]:
    from models import evaluation as ev
    from models import evidence
    from models.catalog import Category
    from models.changsha import EvidenceFile, EvidenceItem, MaterialReview, Rating
    from models.clock import local, now
    from models.org import STUDENT_STATUSES
    from models.records import RECORD_STATES, Record

    term, school, kind = package.term, package.school, package.kind
    students = package_students(term, school.id)
    ids = _student_ids(term, school.id)
    keys = {s.id: student_key(s) for s in students}
    order = {s.id: n for n, s in enumerate(students)}
    dims = ev.dimensions(term)
    files_rows = db.session.execute(
        sa.select(EvidenceFile, EvidenceItem).join(EvidenceItem, EvidenceItem.id == EvidenceFile.item_id)
        .where(EvidenceFile.term_id == term.id, EvidenceFile.student_id.in_(ids))
        .order_by(EvidenceItem.position, EvidenceItem.id, EvidenceFile.created_at, EvidenceFile.id)).all()
    files_rows.sort(key=lambda r: order[r[0].student_id])  # stable: item order within each student
    total = len(files_rows) + 3
    generated = now()
    stamp = local(generated).timetuple()[:6]
    entries: list[dict] = []
    missing: list[dict] = []
    per_item: dict[str, int] = defaultdict(int)

    tmp = os.path.join(package_dir(), f".build-{package.id}-{secrets.token_hex(6)}.part")
    with zipfile.ZipFile(tmp, "w") as zf:
        def put(path: str, data: bytes, compress=zipfile.ZIP_DEFLATED, **meta) -> None:
            info = zipfile.ZipInfo(path, date_time=stamp)
            info.compress_type = compress
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
            entries.append({"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), **meta})

        report(0, total, "学生名单")
        put("students.csv", _csv(["考号", "学籍号", "姓名", "性别", "班级", "学籍状态"], [
            [s.exam_number or "", s.xjh, s.name, s.gender, s.school_class.name,
             STUDENT_STATUSES.get(s.status, s.status)] for s in students]))

        categories = {c.id: c for c in db.session.execute(
            sa.select(Category).where(Category.profile_id == term.profile_id)).scalars()}
        records = db.session.execute(sa.select(Record).where(Record.term_id == term.id, Record.student_id.in_(ids))
                                     .order_by(Record.category_id, Record.id)).scalars().all()
        by_student = {s.id: s for s in students}
        records.sort(key=lambda r: (order[r.student_id], categories[r.category_id].position, r.id))
        put("results.csv", _csv(["考号", "学籍号", "姓名", "班级", "类别代码", "类别", "状态", "内容"], [
            [by_student[r.student_id].exam_number or "", by_student[r.student_id].xjh, by_student[r.student_id].name,
             by_student[r.student_id].school_class.name, categories[r.category_id].code,
             categories[r.category_id].name, RECORD_STATES.get(r.state, r.state),
             _record_text(categories[r.category_id], r.data)] for r in records]))
        report(1, total, "考查成绩与自评")

        numbers: dict[tuple[int, int], int] = defaultdict(int)
        for done, (f, item) in enumerate(files_rows, start=1):
            key = keys[f.student_id]
            numbers[(f.student_id, item.id)] += 1
            ext = evidence.KIND_EXTENSIONS.get(f.kind, "bin")
            path = f"evidence/{key}/{item.code}-{numbers[(f.student_id, item.id)]}.{ext}"
            meta = {"student": key, "item": item.code, "kind": f.kind, "filename": f.filename,
                    "uploaded_sha256": f.sha256}
            try:
                with open(evidence.file_path(f.sha256), "rb") as fh:
                    data = fh.read()
            except (OSError, ValueError):
                missing.append({"path": path, **meta})
                continue
            # Images and PDFs are compressed already: stored as they are.
            put(path, data, zipfile.ZIP_STORED, **meta)
            per_item[item.code] += 1
            if done % 20 == 0:
                report(done + 1, total, f"实证材料：{done} / {len(files_rows)}")

        if kind == "final":
            levels = {(r.student_id, r.dimension_id): r.level for r in db.session.execute(
                sa.select(Rating).where(Rating.term_id == term.id, Rating.student_id.in_(ids))).scalars()}
            put("ratings.csv", _csv(["考号", "姓名"] + [d.name for d in dims], [
                [s.exam_number or s.xjh, s.name] + [levels.get((s.id, d.id), "") for d in dims] for s in students]))
            codes = ev.level_codes(term)
            peer_rows = []
            for klass_id in sorted({s.class_id for s in students}):
                summary = ev.peer_summary(term, klass_id)
                for s in (s for s in students if s.class_id == klass_id):
                    for d in dims:
                        given = summary.get(s.id, {}).get(d.id, {})
                        peer_rows.append([s.exam_number or s.xjh, s.name, d.name] + [given.get(c, 0) for c in codes]
                                         + [sum(given.values())])
            put("peer_summary.csv", _csv(["考号", "姓名", "维度"] + codes + ["互评人数"], peer_rows))
            reviews = defaultdict(list)
            for r in db.session.execute(sa.select(MaterialReview).where(
                    MaterialReview.term_id == term.id, MaterialReview.student_id.in_(ids))
                    .order_by(MaterialReview.id)).scalars():
                reviews[r.student_id].append(r)
            put("material_reviews.csv", _csv(["考号", "姓名", "审核人数", "认定真实", "认定完整", "问题说明"], [
                [s.exam_number or s.xjh, s.name, len(reviews[s.id]), sum(r.authentic for r in reviews[s.id]),
                 sum(r.complete for r in reviews[s.id]), "；".join(r.note for r in reviews[s.id] if r.note)]
                for s in students]))

        counts = database_counts(term, school.id, kind)
        counts["evidence_files"] = {code: per_item.get(code, 0) for code in counts["evidence_files"]}
        manifest = {
            "format": FORMAT_VERSION,
            "school": {"code": school.code, "name": school.name},
            "district": school.district.name,
            "term": {"id": term.id, "name": term.name},
            "kind": kind,
            "kind_name": KINDS[kind],
            "generated_at": local(generated).isoformat(timespec="seconds"),
            "dimensions": [{"code": d.code, "name": d.name} for d in dims],
            "counts": counts,
            "files": entries,
            "missing_sources": missing,
        }
        info = zipfile.ZipInfo(MANIFEST, date_time=stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        zf.writestr(info, json.dumps(manifest, ensure_ascii=False, indent=1).encode())
    report(total, total, "完成")
    return tmp, _sha_of_file(tmp), os.path.getsize(tmp), counts


# ---------------------------------------------------------------------------------------------
# Verification (核对: every student, every dimension, every file readable, the counts as the database has them)


COUNT_LABELS = {"students": "学生人数", "dimensions": "维度数", "peer_ratings": "互评记录数",
                "material_reviews": "材料审核记录数"}


def verify_package(package: DataPackage, *, at: datetime | None = None) -> list[str]:
    """Re-open the stored zip and check it whole; store the problems (one Chinese sentence each, naming the
    student by 考号 and 姓名 and the item, file or dimension) and the time. An empty list: verified."""
    from models.audit import acting
    from models.clock import now

    at = at or now()
    problems = _problems(package)
    with acting("verify", "数据包校验通过" if not problems else f"数据包校验发现{len(problems)}个问题"):
        package.verification = problems
        package.verified_at = at
        db.session.add(package)
        db.session.flush()
    return problems


def _problems(package: DataPackage) -> list[str]:
    from models import evaluation as ev
    from models import evidence
    from models.changsha import EvidenceFile, EvidenceItem
    from models.org import Student

    if package.state != "ready":
        return [f"数据包{package.state_name}，没有可校验的文件。"]
    path = package_path(package)
    if path is None or not os.path.exists(path):
        return [f"数据包文件不存在（{package.sha256}.zip），可能已被删除，请重新生成。"]
    problems: list[str] = []
    if _sha_of_file(path) != package.sha256:
        problems.append("数据包文件的校验值（SHA-256）与生成时不符：文件已被改动或损坏。")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return problems + ["数据包不是完整的 zip 文件，无法打开。"]
    with zf:
        try:
            manifest = json.loads(zf.read(MANIFEST).decode("utf-8"))
            entries = {e["path"]: e for e in manifest["files"]}
        except (KeyError, ValueError, TypeError, zipfile.BadZipFile, zlib.error, OSError):
            return problems + ["数据包中的清单 manifest.json 缺失或无法读取。"]
        term, school = package.term, package.school
        # Names of every student of the school (also those who left since): the report names them.
        people = {student_key(s): s for s in db.session.execute(
            sa.select(Student).where(Student.school_id == school.id)).scalars()}

        def who(key: str | None) -> str:
            s = people.get(key or "")
            return f"（考号 {key} {s.name}）" if s is not None else (f"（考号 {key}）" if key else "")

        items = {i.code: i for i in evidence.items_of(term)}

        def item_name(code: str | None) -> str:
            return items[code].name if code in items else (code or "")

        # Every file of the manifest: there, of its size and checksum; evidence opens as what it claims.
        contents: dict[str, bytes] = {}
        names = set(zf.namelist())
        for p, e in entries.items():
            student = e.get("student")
            label = f"「{item_name(e.get('item'))}」的文件 {p}" if e.get("item") else p
            if p not in names:
                problems.append(f"文件缺失：{label}{who(student)}。")
                continue
            try:
                data = zf.read(p)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError):
                problems.append(f"文件校验值不符（内容已损坏）：{label}{who(student)}。")
                continue
            if len(data) != e.get("size") or hashlib.sha256(data).hexdigest() != e.get("sha256"):
                problems.append(f"文件校验值不符：{label}{who(student)}。")
                continue
            contents[p] = data
            if e.get("item"):
                problem = _unreadable(evidence, data, e.get("kind"))
                if problem:
                    problems.append(f"实证材料无法读取：{label}{who(student)}{problem}。")
                if e.get("uploaded_sha256") != e.get("sha256"):
                    problems.append(f"实证材料与上传时的内容不一致（存储的文件已被改动）：{label}{who(student)}。")
        for p in sorted(names - set(entries) - {MANIFEST}):
            problems.append(f"数据包中有清单未登记的文件：{p}。")

        # Every participating student of the school, now.
        now_students = package_students(term, school.id)
        listed = {row.get("考号") or row.get("学籍号"): row for row in _rows(contents, "students.csv")}
        listed = {_KEY_UNSAFE.sub("_", k): v for k, v in listed.items() if k}
        if "students.csv" in contents:
            for s in now_students:
                if student_key(s) not in listed:
                    problems.append(f"学生不在数据包中：{who(student_key(s))[1:-1]}（{s.school_class.name}）。")
            current = {student_key(s) for s in now_students}
            for key in listed:
                if key not in current:
                    problems.append(f"数据包中的学生现已不在本校参评名单中{who(key)}。")

        # Every evidence file of the database is in the package.
        packed = {(e.get("student"), e.get("item"), e.get("uploaded_sha256")) for e in entries.values()
                  if e.get("item")}
        keys = {s.id: student_key(s) for s in now_students}
        for f, item in db.session.execute(
                sa.select(EvidenceFile, EvidenceItem).join(EvidenceItem, EvidenceItem.id == EvidenceFile.item_id)
                .where(EvidenceFile.term_id == term.id, EvidenceFile.student_id.in_(list(keys) or [0]))
                .order_by(EvidenceFile.student_id, EvidenceItem.position, EvidenceFile.id)).all():
            if (keys[f.student_id], item.code, f.sha256) not in packed:
                problems.append(f"实证材料未打包：「{item.name}」的文件「{f.filename}」{who(keys[f.student_id])}。")

        # "final": every student rated on every dimension.
        if package.kind == "final" and "ratings.csv" in contents:
            dims = ev.dimensions(term)
            rated = {_KEY_UNSAFE.sub("_", row.get("考号") or ""): row for row in _rows(contents, "ratings.csv")}
            for key in listed:
                row = rated.get(key)
                if row is None:
                    problems.append(f"评价结果缺失：{who(key)[1:-1]}没有任何维度的评价等级。")
                    continue
                for d in dims:
                    if not (row.get(d.name) or "").strip():
                        problems.append(f"评价结果缺失：{who(key)[1:-1]}「{d.name}」没有评价等级。")

        # The counts, as the database has them now.
        problems += _count_problems(manifest.get("counts") or {}, database_counts(term, school.id, package.kind),
                                    items, {d.code: d.name for d in ev.dimensions(term)}, term)
    return problems


def _rows(contents: dict[str, bytes], name: str) -> list[dict]:
    try:
        return _read_csv(contents[name]) if name in contents else []
    except (UnicodeDecodeError, csv.Error):
        return []


def _unreadable(evidence, data: bytes, kind: str | None) -> str:
    """"" when the bytes open as the kind the manifest claims; else why not, as the report says it."""
    try:
        found = evidence.sniff(data)
    except evidence._Oversized:
        return "（图片尺寸过大，无法打开）"
    except evidence._Unknown:
        return "（不是 PDF、JPG 或 PNG 文件）"
    except evidence._Unreadable:
        return "（文件不完整或已损坏）"
    if found != kind:
        return f"（登记为 {evidence.KIND_NAMES.get(kind or '', kind)}，实际是 {evidence.KIND_NAMES.get(found, found)}）"
    return ""


def _count_problems(packed: dict, live: dict, items: dict, dim_names: dict, term) -> list[str]:
    from models.catalog import Category

    cats = {c.code: c.name for c in db.session.execute(
        sa.select(Category).where(Category.profile_id == term.profile_id)).scalars()}
    out = []

    def differ(label: str, a, b) -> None:
        if a != b:
            out.append(f"清单中{label}为 {a if a is not None else '（缺）'}，数据库现为 {b}。")

    for key, label in COUNT_LABELS.items():
        if key in live:
            differ(label, packed.get(key), live[key])
    for code, n in live["evidence_files"].items():
        differ(f"「{items[code].name if code in items else code}」的文件数", (packed.get("evidence_files") or {})
               .get(code), n)
    for code, n in live["records"].items():
        differ(f"「{cats.get(code, code)}」的记录数", (packed.get("records") or {}).get(code), n)
    for code, by_level in (live.get("ratings") or {}).items():
        for level, n in by_level.items():
            differ(f"「{dim_names.get(code, code)}」{level}等的人数", ((packed.get("ratings") or {}).get(code) or {})
                   .get(level), n)
    return out


# ---------------------------------------------------------------------------------------------
# Verification asked for by a person


def verify(user, package: DataPackage, *, at: datetime | None = None) -> list[str]:
    """Verify a package on a user's request (policy, history, one commit); returns the problems."""
    from models import policy
    from models.clock import now
    from models.workflow import WorkflowError, _commit, _fail

    at = at or now()
    try:
        policy.require(user, "verify", package, at)
        if package.state != "ready":
            raise WorkflowError(f"数据包{package.state_name}，不能校验。")
        problems = verify_package(package, at=at)
        _commit("verify")
        return problems
    except (policy.Denied, WorkflowError) as exc:
        _fail(exc)
