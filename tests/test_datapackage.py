"""数据上报 (SPEC §8, seed 001: 5月26—27日 电子档案上传市数据中心, 6月26—27日 最终评价数据上报): a school's package with a
manifest whose counts equal independent counts and whose checksums match every file; verification of an intact
package is empty, and each kind of damage is reported naming the student and the item, file or dimension (a
package or a file gone, a flipped byte, an evidence file that is garbage, a student added since, a rating
missing); a closed window and a wrong role are refused with nothing saved; the RQ job with its progress and the
inline build without Redis; the pages over HTTP (404 outside scope, 403 for the wrong role, CSRF)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import table_fingerprint, user
from test_changsha import organise
from test_evidence import jpeg, minimal_pdf, png

from models import (
    AuditEvent,
    DataPackage,
    EvidenceFile,
    EvidenceItem,
    MaterialReview,
    PeerRating,
    Rating,
    Record,
    School,
    SchoolClass,
    Student,
    db,
    evaluation,
    policy,
)
from models import datapackage as dp
from models import evidence as evi
from models.catalog import Category
from models.workflow import WorkflowError
from seed import changsha
from seed.changsha_demo import seed_changsha

DIMS = [d["code"] for d in changsha.DIMENSIONS]
FIRST_UPLOAD = "2017-05-26 10:00"
FINAL_UPLOAD = "2017-06-26 10:00"


# ---------------------------------------------------------------------------------------------
# Files and the world


def school(code: str) -> School:
    return db.session.execute(sa.select(School).where(School.code == code)).scalar_one()


def klass(code: str, number: int) -> SchoolClass:
    return db.session.execute(sa.select(SchoolClass).join(School).where(
        School.code == code, SchoolClass.number == number)).scalar_one()


def pupils(k: SchoolClass) -> list[Student]:
    return list(db.session.execute(sa.select(Student).where(Student.class_id == k.id).order_by(Student.id)).scalars())


def item(code: str) -> EvidenceItem:
    return db.session.execute(sa.select(EvidenceItem).where(EvidenceItem.code == code)).scalar_one()


def category(code: str) -> Category:
    return db.session.execute(sa.select(Category).where(Category.code == code)).scalar_one()


@pytest.fixture
def folders(app, data_app, tmp_path, monkeypatch):
    """This test's evidence store and package folder, for both apps (the client's requests and the test's calls)."""
    for a in (app, data_app):
        monkeypatch.setitem(a.config, "CQE_EVIDENCE_DIR", str(tmp_path / "evidence"))
        monkeypatch.setitem(a.config, "CQE_PACKAGE_DIR", str(tmp_path / "packages"))
    return tmp_path


@pytest.fixture
def world(session, at, folders):
    """岳麓区 with yl01 (classes of 4 and 3) and yl02 (2): evidence uploaded by students and parents in April,
    imported results and self-evaluations, two teacher reviews and a few peer ratings in May."""
    at("2017-04-10 09:00")
    seed_changsha(class_sizes={"yl01": [4, 3], "yl02": [2]})
    db.session.commit()
    c1, c2 = klass("yl01", 1), klass("yl01", 2)
    a, b, c = pupils(c1)[:3]
    d = pupils(c2)[0]
    uploads = [
        (a, "cs_yl01c1n01", "e01", minimal_pdf("a-e01"), "思想品德.pdf"),
        (a, "cs_yl01c1n01", "e04", png(1), "志愿服务1.png"),
        (a, "p_cs_yl01c1n01", "e04", jpeg(2), "志愿服务2.jpg"),
        (a, "cs_yl01c1n01", "e10", minimal_pdf("a-e10"), "研究性学习.pdf"),
        (b, "cs_yl01c1n02", "e01", jpeg(3), "思想品德.jpg"),
        (b, "cs_yl01c1n02", "e23", png(4), "作品.png"),
        (d, "cs_yl01c2n01", "e05", minimal_pdf("d-e05"), "社会实践.pdf"),
    ]
    for student, username, code, data, name in uploads:
        evi.save_evidence(user(username), student, item(code), name, data)
    other = pupils(klass("yl02", 1))[0]
    evi.save_evidence(user("cs_yl02c1n01"), other, item("e01"), "外校.pdf", minimal_pdf("other"))
    term = policy.current_term(c1.school.district_id)
    clerk = user("cs_yl01_clerk")
    for student, level in ((a, "A"), (b, "B"), (d, "C")):
        db.session.add(Record(term=term, category=category("cs_oral_chinese"), student=student,
                              school_id=student.school_id, origin="school", entered_by_id=clerk.id,
                              state="confirmed", data={"level": level}))
    db.session.add(Record(term=term, category=category("cs_lab_exam"), student=a, school_id=a.school_id,
                          origin="school", entered_by_id=clerk.id, state="entered",
                          data={"subject": "物理", "score": 95}))
    db.session.add(Record(term=term, category=category("cs_self_evaluation"), student=c, school_id=c.school_id,
                          origin="student", state="final", data={"text": "三年来我热爱集体，积极参加志愿服务。"}))
    evaluator = user("cs_yl01c1_eval1")
    db.session.add(MaterialReview(term=term, student=a, school_id=a.school_id, class_id=a.class_id,
                                  reviewer_id=evaluator.id, authentic=True, complete=True, note=""))
    db.session.add(MaterialReview(term=term, student=c, school_id=c.school_id, class_id=c.class_id,
                                  reviewer_id=evaluator.id, authentic=True, complete=False, note="缺少志愿服务记录"))
    dim = {dd.code: dd for dd in evaluation.dimensions(term)}
    for rater, ratee, level in ((b, a, "A"), (c, a, "B"), (a, b, "B")):
        db.session.add(PeerRating(term_id=term.id, class_id=c1.id, school_id=c1.school_id, rater_id=rater.id,
                                  ratee_id=ratee.id, dimension_id=dim["moral"].id, level=level))
    db.session.commit()
    return {"term": term, "school": c1.school, "a": a, "b": b, "c": c, "d": d, "c1": c1, "c2": c2}


def finalise(at, w):
    """Quotas set and checked, every yl01 student rated by the class groups, both classes and the school finalised."""
    s = w["school"]
    for k in (w["c1"], w["c2"]):
        organise(at, k)
        for j in range(1, 6):
            u = user(f"cs_yl01c{k.number}_eval{j}")
            evaluation.sign_pledge(u, w["term"], u.display_name)
    at("2017-06-03 10:00")
    evaluation.set_quotas(user("cs_city"), s, {code: {"A": 30, "B": 50} for code in DIMS})
    at("2017-06-14 10:00")
    evaluation.acknowledge_quotas(user("cs_yl01_principal"), s)
    at("2017-06-20 10:00")
    for k, levels in ((w["c1"], ["B", "C", "C", "C"]), (w["c2"], ["C", "B", "C"])):
        evaluation.save_ratings(user(f"cs_yl01c{k.number}_eval1"), [
            (st, code, lv) for st, lv in zip(pupils(k), levels, strict=True) for code in DIMS])
        evaluation.finalise_class(user(f"cs_yl01c{k.number}_eval1"), k)
    evaluation.finalise_school(user("cs_yl01_principal"), s)


def build(username: str, kind: str, code: str = "yl01") -> DataPackage:
    package = dp.request_package(user(username), school(code), kind)
    return dp.build_package(package.id)


def open_zip(package: DataPackage) -> zipfile.ZipFile:
    return zipfile.ZipFile(dp.package_path(package))


def manifest_of(package: DataPackage) -> dict:
    with open_zip(package) as zf:
        return json.loads(zf.read("manifest.json"))


def csv_rows(zf: zipfile.ZipFile, name: str) -> list[dict]:
    raw = zf.read(name)
    assert raw.startswith(b"\xef\xbb\xbf"), f"{name} has no BOM for Excel"
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))


def evidence_entry(package: DataPackage, student: Student, code: str) -> dict:
    return next(e for e in manifest_of(package)["files"] if e.get("student") == student.exam_number
                and e.get("item") == code)


def rewrite_zip(path: str, drop: str | None = None, replace: dict | None = None) -> None:
    """Rewrite a stored zip without member ``drop`` and with members of ``replace`` given new bytes."""
    with zipfile.ZipFile(path) as zf:
        members = [(i, zf.read(i.filename)) for i in zf.infolist() if i.filename != drop]
    with zipfile.ZipFile(path, "w") as out:
        for info, data in members:
            out.writestr(info, (replace or {}).get(info.filename, data))


# ---------------------------------------------------------------------------------------------
# The package and its manifest


def test_the_evidence_package_counts_and_checksums_match(world, at):
    at(FIRST_UPLOAD)
    package = build("cs_yl01_principal", "evidence")
    assert package.state == "ready", package.error
    path = dp.package_path(package)
    assert os.path.basename(path) == f"{package.sha256}.zip" and os.path.dirname(path).endswith("packages")
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == package.sha256 == path[-68:-4]
    assert package.size == os.path.getsize(path)

    s, term = world["school"], world["term"]
    participants = db.session.execute(sa.select(Student).where(Student.school_id == s.id)).scalars().all()
    files = db.session.execute(sa.select(EvidenceFile).where(EvidenceFile.school_id == s.id)).scalars().all()
    records = db.session.execute(sa.select(Record).where(Record.school_id == s.id)).scalars().all()
    manifest = manifest_of(package)
    assert manifest["school"] == {"code": "yl01", "name": s.name} and manifest["kind"] == "evidence"
    assert manifest["term"]["name"] == term.name and manifest["generated_at"].startswith("2017-05-26T10:00")
    counts = manifest["counts"]
    assert counts == package.counts
    assert counts["students"] == len(participants) == 7
    assert counts["dimensions"] == len(changsha.DIMENSIONS) == 6
    by_item = Counter(f.item.code for f in files)
    assert counts["evidence_files"] == {i["code"]: by_item.get(i["code"], 0) for i in changsha.EVIDENCE_ITEMS}
    assert sum(counts["evidence_files"].values()) == 7 and counts["evidence_files"]["e04"] == 2
    by_cat = Counter(r.category.code for r in records)
    assert counts["records"] == {c["code"]: by_cat.get(c["code"], 0) for c in changsha.CATEGORIES}
    assert counts["records"]["cs_oral_chinese"] == 3 and counts["records"]["cs_self_evaluation"] == 1
    assert "ratings" not in counts  # the evidence upload is before teacher evaluation

    with open_zip(package) as zf:
        names = set(zf.namelist())
        listed = {e["path"]: e for e in manifest["files"]}
        assert names == set(listed) | {"manifest.json"}
        for name, entry in listed.items():
            data = zf.read(name)
            assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest(), name
        a = world["a"]
        assert {n for n in names if n.startswith(f"evidence/{a.exam_number}/")} == {
            f"evidence/{a.exam_number}/e01-1.pdf", f"evidence/{a.exam_number}/e04-1.png",
            f"evidence/{a.exam_number}/e04-2.jpg", f"evidence/{a.exam_number}/e10-1.pdf"}
        stored = {f.sha256 for f in files if f.student_id == a.id}
        assert {listed[n]["sha256"] for n in names if n.startswith(f"evidence/{a.exam_number}/")} == stored
        assert not any("外校" in e.get("filename", "") for e in listed.values())  # yl02's file is not here
        students = csv_rows(zf, "students.csv")
        assert [r["考号"] for r in students] == sorted(p.exam_number for p in participants)
        row = next(r for r in students if r["考号"] == a.exam_number)
        assert (row["学籍号"], row["姓名"], row["性别"], row["班级"]) == (a.xjh, a.name, a.gender, "九年级(1)班")
        results = csv_rows(zf, "results.csv")
        assert len(results) == len(records) == 5
        assert {(r["考号"], r["类别代码"], r["内容"]) for r in results} >= {
            (a.exam_number, "cs_oral_chinese", "等级：A"), (a.exam_number, "cs_lab_exam", "学科：物理；成绩（分）：95"),
            (world["c"].exam_number, "cs_self_evaluation", "自我评价：三年来我热爱集体，积极参加志愿服务。")}
        assert "ratings.csv" not in names
    # The history names who asked for it.
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.object_type == "DataPackage",
                                                           AuditEvent.object_id == str(package.id),
                                                           AuditEvent.action == "create")).scalar_one()
    assert event.reason == "生成学生电子档案数据包" and event.school_id == s.id
    assert dp.verify_package(package) == [] and package.verified
    assert package.verification == [] and package.verified_at is not None


def test_the_final_package_has_every_rating_and_the_summaries(world, at):
    finalise(at, world)
    at(FINAL_UPLOAD)
    package = build("cs_yl01_admin", "final")
    assert package.state == "ready", package.error
    s = world["school"]
    ratings = db.session.execute(sa.select(Rating).where(Rating.school_id == s.id)).scalars().all()
    assert len(ratings) == 7 * 6
    by = Counter((r.dimension.code, r.level) for r in ratings)
    counts = manifest_of(package)["counts"]
    assert counts["ratings"] == {code: {lv: by.get((code, lv), 0) for lv in "ABCD"} for code in DIMS}
    assert counts["ratings"]["moral"] == {"A": 0, "B": 2, "C": 5, "D": 0}
    assert counts["peer_ratings"] == 3 and counts["material_reviews"] == 2
    with open_zip(package) as zf:
        rows = csv_rows(zf, "ratings.csv")
        assert list(rows[0]) == ["考号", "姓名"] + [d["name"] for d in changsha.DIMENSIONS]
        levels = {r.student_id: r.level for r in ratings if r.dimension.code == "civic"}
        by_exam = {st.exam_number: st for st in db.session.execute(
            sa.select(Student).where(Student.school_id == s.id)).scalars()}
        assert {r["考号"]: r["公民素养"] for r in rows} == {k: levels[v.id] for k, v in by_exam.items()}
        peer = csv_rows(zf, "peer_summary.csv")
        a_moral = next(r for r in peer if r["考号"] == world["a"].exam_number and r["维度"] == "道德品质")
        assert (a_moral["A"], a_moral["B"], a_moral["互评人数"]) == ("1", "1", "2")
        reviews = {r["考号"]: r for r in csv_rows(zf, "material_reviews.csv")}
        assert reviews[world["c"].exam_number]["问题说明"] == "缺少志愿服务记录"
        assert reviews[world["c"].exam_number]["认定完整"] == "0"
    assert dp.verify_package(package) == []


# ---------------------------------------------------------------------------------------------
# Verification: each kind of damage, by name


def test_a_package_removed_from_disk_is_reported(world, at):
    at(FIRST_UPLOAD)
    package = build("cs_yl01_principal", "evidence")
    os.remove(dp.package_path(package))
    problems = dp.verify_package(package)
    assert problems == [f"数据包文件不存在（{package.sha256}.zip），可能已被删除，请重新生成。"]
    assert package.verification == problems and not package.verified


def test_a_flipped_byte_and_a_removed_file_are_reported_by_name(world, at):
    at(FIRST_UPLOAD)
    package = build("cs_yl01_principal", "evidence")
    a, b = world["a"], world["b"]
    path = dp.package_path(package)
    flipped = evidence_entry(package, a, "e04")["path"]
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(flipped)
        assert info.compress_type == zipfile.ZIP_STORED
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw = bytearray(Path(path).read_bytes())
    raw[start + 20] ^= 0xFF
    Path(path).write_bytes(bytes(raw))
    problems = dp.verify_package(package)
    assert problems[0] == "数据包文件的校验值（SHA-256）与生成时不符：文件已被改动或损坏。"
    assert f"文件校验值不符（内容已损坏）：「志愿服务记录」的文件 {flipped}（考号 {a.exam_number} {a.name}）。" in problems
    assert len(problems) == 2

    # The same package with one of b's files taken out (and everything else intact).
    gone = evidence_entry(package, b, "e23")["path"]
    raw[start + 20] ^= 0xFF
    Path(path).write_bytes(bytes(raw))
    rewrite_zip(path, drop=gone)
    problems = dp.verify_package(package)
    assert f"文件缺失：「艺术作品或展演记录」的文件 {gone}（考号 {b.exam_number} {b.name}）。" in problems
    assert not any(p.startswith("实证材料未打包") for p in problems)  # the package lists it: missing, once
    assert not any("校验值不符：" in p and a.exam_number in p for p in problems)


def test_an_evidence_file_that_is_garbage_is_unreadable(world, at):
    a = world["a"]
    f = db.session.execute(sa.select(EvidenceFile).join(EvidenceItem).where(
        EvidenceFile.student_id == a.id, EvidenceItem.code == "e10")).scalar_one()
    with open(evi.file_path(f.sha256), "wb") as fh:  # the store's copy went bad before packaging
        fh.write(b"PK\x03\x04 this is not the report any more")
    at(FIRST_UPLOAD)
    package = build("cs_yl01_principal", "evidence")
    assert package.state == "ready"
    problems = dp.verify_package(package)
    path = f"evidence/{a.exam_number}/e10-1.pdf"
    assert problems == [f"实证材料无法读取：「研究性学习报告」的文件 {path}（考号 {a.exam_number} {a.name}）"
                        "（不是 PDF、JPG 或 PNG 文件）。",
                        f"实证材料与上传时的内容不一致（存储的文件已被改动）：「研究性学习报告」的文件 {path}"
                        f"（考号 {a.exam_number} {a.name}）。"]

    # Garbage that keeps the manifest consistent (its checksum rewritten) is still caught by its content.
    good = build("cs_yl01_principal", "evidence")
    target = evidence_entry(good, world["b"], "e01")["path"]
    cut = jpeg(3)[:200]
    manifest = manifest_of(good)
    for e in manifest["files"]:
        if e["path"] == target:
            e["size"], e["sha256"] = len(cut), hashlib.sha256(cut).hexdigest()
    rewrite_zip(dp.package_path(good), replace={target: cut, "manifest.json": json.dumps(manifest).encode()})
    problems = dp.verify_package(good)
    b = world["b"]
    assert f"实证材料无法读取：「思想品德课程学业成绩记录」的文件 {target}（考号 {b.exam_number} {b.name}）（文件不完整或已损坏）。" \
        in problems
    assert sum("无法读取" in p for p in problems) == 2  # a's garbage again, b's cut-off photo


def test_a_student_added_after_packaging_is_missing(world, at):
    at(FIRST_UPLOAD)
    package = build("cs_yl01_principal", "evidence")
    newcomer = Student(xjh="G43010420030101XXXX", name="插班生", gender="女", class_id=world["c1"].id,
                       school_id=world["school"].id, exam_number="1701010199")
    db.session.add(newcomer)
    db.session.commit()
    problems = dp.verify_package(package)
    assert problems == ["学生不在数据包中：考号 1701010199 插班生（九年级(1)班）。", "清单中学生人数为 7，数据库现为 8。"]
    # A student who left since is named too, and so is the record added for another.
    newcomer.status = "left"
    db.session.add(Record(term=world["term"], category=category("cs_pe_score"), student=world["d"],
                          school_id=world["school"].id, origin="school", state="entered", data={"score": 88}))
    world["b"].status = "transferred"
    db.session.commit()
    problems = dp.verify_package(package)
    b = world["b"]
    assert f"数据包中的学生现已不在本校参评名单中（考号 {b.exam_number} {b.name}）。" in problems
    assert "清单中「体育平时考查成绩」的记录数为 0，数据库现为 1。" in problems
    assert "清单中学生人数为 7，数据库现为 6。" in problems


def test_a_missing_rating_is_reported_in_the_final_package(world, at):
    finalise(at, world)
    c = world["c"]
    civic = db.session.execute(sa.select(Rating).join(Rating.dimension).where(
        Rating.student_id == c.id, Rating.dimension.has(code="civic"))).scalar_one()
    db.session.delete(civic)
    db.session.commit()
    at(FINAL_UPLOAD)
    package = build("cs_yl01_principal", "final")
    problems = dp.verify_package(package)
    assert problems == [f"评价结果缺失：考号 {c.exam_number} {c.name}「公民素养」没有评价等级。"]


# ---------------------------------------------------------------------------------------------
# Who and when


def test_wrong_window_wrong_role_and_unfinalised_are_refused_with_nothing_saved(world, at):
    before = table_fingerprint()
    s = world["school"]
    at("2017-05-25 23:59")
    with pytest.raises(policy.Denied) as exc:
        dp.request_package(user("cs_yl01_principal"), s, "evidence")
    assert exc.value.status == 403
    assert exc.value.reason == ("生成学生电子档案数据包只能在「电子档案上传市数据中心」阶段进行（初三毕业年级：2017-05-26 00:00 至 "
                                "2017-05-28 00:00），该阶段尚未开始。")
    at("2017-05-28 00:00")
    with pytest.raises(policy.Denied) as exc:
        dp.request_package(user("cs_yl01_admin"), s, "evidence")
    assert "该阶段已结束" in exc.value.reason
    at(FIRST_UPLOAD)
    with pytest.raises(policy.Denied) as exc:
        dp.request_package(user("cs_yl01_principal"), s, "final")
    assert "「最终评价数据上报」阶段" in exc.value.reason and "2017-06-26 00:00" in exc.value.reason
    for username in ("cs_yl01_committee", "cs_yl01_clerk", "cs_yl01c1_teacher", "cs_yl01c1_eval1", "cs_leader",
                     "cs_yl01c1n01"):
        with pytest.raises(policy.Denied) as exc:
            dp.request_package(user(username), s, "evidence")
        assert exc.value.status == 403, username
    with pytest.raises(policy.Denied) as exc:
        dp.request_package(user("cs_yl02_admin"), s, "evidence")
    assert "不在您的管理范围内" in exc.value.reason
    at(FINAL_UPLOAD)
    with pytest.raises(WorkflowError) as exc:
        dp.request_package(user("cs_yl01_principal"), s, "final")
    assert exc.value.message == f"{s.name}的评价尚未全校定稿，不能生成最终评价数据包。"
    assert table_fingerprint() == before
    # The district admin may, in the window.
    at(FIRST_UPLOAD)
    assert build("cs_admin", "evidence").state == "ready"


def test_verification_is_for_the_schools_admins(world, at):
    at(FIRST_UPLOAD)
    package = build("cs_yl01_principal", "evidence")
    with pytest.raises(policy.Denied) as exc:
        dp.verify(user("cs_yl01_committee"), package)
    assert exc.value.status == 403
    with pytest.raises(policy.Denied) as exc:
        dp.verify(user("cs_yl02_admin"), package)
    assert exc.value.status == 404
    at("2017-07-10 10:00")  # the data centre's questions come later: verification has no window
    assert dp.verify(user("cs_yl01_admin"), package) == []
    db.session.expire_all()
    assert db.session.get(DataPackage, package.id).verification == []
    assert db.session.execute(sa.select(sa.func.count(AuditEvent.id)).where(
        AuditEvent.object_type == "DataPackage", AuditEvent.action == "verify")).scalar() == 1


# ---------------------------------------------------------------------------------------------
# The job and the pages


def test_the_build_runs_as_an_rq_job_with_progress(world, at, client, login_as, redis_conn):
    from rq import Queue, SimpleWorker

    at(FIRST_UPLOAD)
    s = world["school"]
    token = login_as("cs_yl01_principal")
    resp = client.post(f"/cs/package/{s.id}", data={"csrf_token": token, "kind": "evidence"})
    assert resp.status_code == 302
    package = db.session.execute(sa.select(DataPackage).where(DataPackage.school_id == s.id)).scalar_one()
    assert package.state == "building" and package.sha256 is None
    page = client.get(f"/cs/package/{s.id}").get_data(as_text=True)
    assert 'id="cqe-job-bar"' in page and f"/jobs/{package.job_id}" in page
    assert client.get(f"/jobs/{package.job_id}").get_json()["status"] == "queued"
    SimpleWorker([Queue("default", connection=redis_conn)], connection=redis_conn).work(burst=True)
    info = client.get(f"/jobs/{package.job_id}").get_json()
    assert info["status"] == "finished" and info["result"] == {"package_id": package.id, "state": "ready"}
    assert info["progress"]["done"] == info["progress"]["total"] == 7 + 3
    db.session.expire_all()
    package = db.session.get(DataPackage, package.id)
    assert package.state == "ready" and package.counts["students"] == 7
    page = client.get(f"/cs/package/{s.id}").get_data(as_text=True)
    assert 'id="cqe-job-bar"' not in page and "已生成" in page and "学生 7 人" in page
    # Only the one who asked sees its progress.
    login_as("cs_yl01_admin")
    assert client.get(f"/jobs/{package.job_id}").status_code == 404


def test_the_pages_inline_without_redis(world, at, client, login_as, monkeypatch):
    monkeypatch.setitem(client.application.config, "REDIS_URL", None)
    s = world["school"]
    at(FIRST_UPLOAD)
    token = login_as("cs_yl01_principal")
    desk = client.get("/admin/changsha/").get_data(as_text=True)
    assert f"/cs/package/{s.id}" in desk
    page = client.get(f"/cs/package/{s.id}").get_data(as_text=True)
    assert 'id="build-evidence"' in page and 'id="build-final"' not in page and 'id="no-packages"' in page
    assert "「最终评价数据上报」阶段" in page
    assert client.post(f"/cs/package/{s.id}", data={"kind": "evidence"}).status_code == 400  # no CSRF token
    assert db.session.execute(sa.select(sa.func.count(DataPackage.id))).scalar() == 0
    resp = client.post(f"/cs/package/{s.id}", data={"csrf_token": token, "kind": "evidence"})
    assert resp.status_code == 302
    package = db.session.execute(sa.select(DataPackage).where(DataPackage.school_id == s.id)).scalar_one()
    assert package.state == "ready"
    page = client.get(f"/cs/package/{s.id}").get_data(as_text=True)
    assert f'id="package-{package.id}"' in page and "未校验" in page and 'id="cqe-job-bar"' not in page
    with client.get(f"/cs/package/file/{package.id}") as resp:
        assert resp.status_code == 200 and resp.mimetype == "application/zip"
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        assert "filename*=UTF-8''yl01-" in resp.headers["Content-Disposition"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert hashlib.sha256(resp.data).hexdigest() == package.sha256
    assert client.post(f"/cs/package/{package.id}/verify").status_code == 400  # no CSRF token
    assert client.post(f"/cs/package/{package.id}/verify", data={"csrf_token": token}).status_code == 302
    page = client.get(f"/cs/package/{s.id}").get_data(as_text=True)
    assert "校验通过" in page
    # Damage shows on the page, by name.
    os.remove(dp.package_path(package))
    client.post(f"/cs/package/{package.id}/verify", data={"csrf_token": token})
    page = client.get(f"/cs/package/{s.id}").get_data(as_text=True)
    assert "发现 1 个问题" in page and "数据包文件不存在" in page
    assert client.get(f"/cs/package/file/{package.id}").status_code == 404
    # Outside the window the button is gone and a POST is refused with the reason.
    at("2017-05-29 09:00")
    page = client.get(f"/cs/package/{s.id}").get_data(as_text=True)
    assert 'id="build-evidence"' not in page and "该阶段已结束" in page
    assert client.post(f"/cs/package/{s.id}", data={"csrf_token": token, "kind": "evidence"}).status_code == 403


def test_the_pages_answer_404_outside_scope_and_403_for_the_wrong_role(world, at, client, login_as, monkeypatch):
    monkeypatch.setitem(client.application.config, "REDIS_URL", None)
    at(FIRST_UPLOAD)
    s = world["school"]
    package = build("cs_yl01_principal", "evidence")
    other = school("yl02")
    # Another school's admin: yl01 does not exist for them.
    token = login_as("cs_yl02_admin")
    assert client.get(f"/cs/package/{s.id}").status_code == 404
    assert client.post(f"/cs/package/{s.id}", data={"csrf_token": token, "kind": "evidence"}).status_code == 404
    assert client.get(f"/cs/package/file/{package.id}").status_code == 404
    assert client.post(f"/cs/package/{package.id}/verify", data={"csrf_token": token}).status_code == 404
    assert client.get(f"/cs/package/{other.id}").status_code == 200
    # Teachers see the school but not its packages; students not even the school.
    login_as("cs_yl01c1_teacher")
    assert client.get(f"/cs/package/{s.id}").status_code == 403
    assert client.get(f"/cs/package/file/{package.id}").status_code == 404
    login_as("cs_yl01c1n01")
    assert client.get(f"/cs/package/{s.id}").status_code == 404
    assert client.get(f"/cs/package/file/{package.id}").status_code == 404
    # The school committee reads the page but neither builds nor verifies.
    token = login_as("cs_yl01_committee")
    page = client.get(f"/cs/package/{s.id}").get_data(as_text=True)
    assert f'id="package-{package.id}"' in page and 'id="build-evidence"' not in page
    assert f"/cs/package/{package.id}/verify" not in page
    assert client.post(f"/cs/package/{s.id}", data={"csrf_token": token, "kind": "evidence"}).status_code == 403
    assert client.post(f"/cs/package/{package.id}/verify", data={"csrf_token": token}).status_code == 403
    assert db.session.execute(sa.select(sa.func.count(DataPackage.id))).scalar() == 1
    db.session.expire_all()
    assert db.session.get(DataPackage, package.id).verified_at is None
    # A Shanghai school has no data upload.
    login_as("s1_principal")
    bs01 = school("bs01")
    assert client.get(f"/cs/package/{bs01.id}").status_code == 404
    assert re.search(r"/cs/package/", client.get("/admin/").get_data(as_text=True)) is None


def test_one_build_at_a_time_and_a_failed_build_says_why(world, at, monkeypatch):
    at(FIRST_UPLOAD)
    s = world["school"]
    first = dp.request_package(user("cs_yl01_principal"), s, "evidence")
    with pytest.raises(WorkflowError) as exc:
        dp.request_package(user("cs_yl01_admin"), s, "evidence")
    assert exc.value.message == f"{s.name}的学生电子档案数据包正在生成，请等待完成后再试。"

    def broken(package, report):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(dp, "_write_zip", broken)
        failed = dp.build_package(first.id)
    assert failed.state == "failed" and "No space left on device" in failed.error and failed.sha256 is None
    assert dp.verify_package(failed) == ["数据包生成失败，没有可校验的文件。"]
    # Failed: another may be asked for; one lost with its worker stops holding the school up after the time limit.
    again = dp.request_package(user("cs_yl01_admin"), s, "evidence")
    at("2017-05-26 12:01")
    assert dp.request_package(user("cs_yl01_admin"), s, "evidence").state == "building" and again.state == "building"
