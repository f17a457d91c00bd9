"""实证材料 (Changsha, SPEC §8, seed 001: 4月3日—5月20日, checked and chased by 5月24日): uploads checked by their
content (a renamed text or zip, a cut-off image or PDF, an empty, oversize or wrong-format file are refused with
a message naming the item and the file, and nothing is saved), at most ``max_files`` per item, only while the
window is open, only for one's own (404 outside scope, 403 for a role that may not), completeness per student,
class and school equal to independent counts, the chasing list and its xlsx, and the history of every change."""
from __future__ import annotations

import hashlib
import io
import re
import zipfile

import pytest
import sqlalchemy as sa
from conftest import table_fingerprint, user

from models import AuditEvent, EvidenceFile, EvidenceItem, School, SchoolClass, Student, db
from models import evidence as ev
from models.fields import FieldErrors
from models.policy import Denied
from models.workflow import WorkflowError
from seed.changsha_demo import seed_changsha

IN_WINDOW = "2017-04-10 09:00"


# ---------------------------------------------------------------------------------------------
# The world and the files


@pytest.fixture
def cs(session, at):
    """The Changsha district in the test's transaction: yl01 with classes of 6 and 5, yl02 with one of 4."""
    at(IN_WINDOW)
    info = seed_changsha(class_sizes={"yl01": [6, 5], "yl02": [4]})
    db.session.commit()
    return info


@pytest.fixture
def store(app, data_app, tmp_path, monkeypatch):
    """The evidence folder of this test (both apps: the client's requests and the test's own calls)."""
    path = tmp_path / "evidence"
    for a in (app, data_app):
        monkeypatch.setitem(a.config, "CQE_EVIDENCE_DIR", str(path))
    return path


def stored(path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def png(seed: int = 0, size=(60, 40)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (seed % 256, (seed // 256) % 256, 200)).save(out, "PNG")
    return out.getvalue()


def jpeg(seed: int = 0) -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (320, 240), "white")
    ImageDraw.Draw(im).rectangle((10 + seed % 50, 10, 200, 120), outline="red", width=4)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=85)
    return out.getvalue()


def minimal_pdf(text: str = "evidence") -> bytes:
    """A one-page PDF written by hand, with a correct cross-reference table."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def reportlab_pdf() -> bytes:
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    c = canvas.Canvas(out)
    c.drawString(72, 720, "volunteer certificate")
    c.showPage()
    c.save()
    return out.getvalue()


def item(code: str) -> EvidenceItem:
    return db.session.execute(sa.select(EvidenceItem).where(EvidenceItem.code == code)).scalar_one()


def items() -> list[EvidenceItem]:
    return db.session.execute(sa.select(EvidenceItem).order_by(EvidenceItem.position)).scalars().all()


def klass(school: str = "yl01", number: int = 1) -> SchoolClass:
    return db.session.execute(sa.select(SchoolClass).join(School).where(
        School.code == school, SchoolClass.number == number)).scalar_one()


def school(code: str = "yl01") -> School:
    return db.session.execute(sa.select(School).where(School.code == code)).scalar_one()


def students(k: SchoolClass) -> list[Student]:
    return db.session.execute(sa.select(Student).where(Student.class_id == k.id)
                              .order_by(Student.exam_number)).scalars().all()


def files() -> list[EvidenceFile]:
    db.session.expire_all()
    return db.session.execute(sa.select(EvidenceFile).order_by(EvidenceFile.id)).scalars().all()


def _html(resp) -> str:
    return resp.get_data(as_text=True)


def _flashes(html: str) -> str:
    found = re.findall(r'<div class="alert alert-\w+ alert-dismissable">(.*?)</div>', html, re.S)
    return " ".join(" ".join(re.sub(r"<[^>]+>|&times;", " ", m).split()) for m in found)


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def upload(client, token, it: EvidenceItem, data: bytes, name: str, url: str | None = None):
    return client.post(url or f"/me/evidence/item/{it.id}", data={"csrf_token": token, "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data", follow_redirects=True)


def fill(student: Student, codes=None, *, skip=(), short=()) -> None:
    """Upload, through the workflow as the student, each item's minimum (``short``: one file fewer)."""
    actor = user(f"cs_yl01c{student.school_class.number}n{int(student.exam_number[-3:]):02d}") \
        if student.school.code == "yl01" else user(f"cs_yl02c1n{int(student.exam_number[-3:]):02d}")
    for it in items():
        if (codes is not None and it.code not in codes) or it.code in skip:
            continue
        need = it.min_files - (1 if it.code in short else 0)
        for k in range(need):
            data = minimal_pdf(f"{student.id}-{it.code}-{k}") if it.formats == ["pdf"] else png(student.id * 100 + k,
                                                                                                (it.position + 8, 9))
            ev.save_evidence(actor, student, it, f"{it.code}-{k}.{'pdf' if it.formats == ['pdf'] else 'png'}", data)


# ---------------------------------------------------------------------------------------------
# The content of a file


def test_real_pdf_png_jpeg_are_accepted_stored_by_hash_and_downloadable(cs, store, client, login_as):
    token = login_as("cs_yl01c1n01")
    me = students(klass())[0]
    uploads = [(item("e04"), minimal_pdf(), "志愿服务证明.pdf", "pdf"),
               (item("e04"), reportlab_pdf(), "certificate.PDF", "pdf"),
               (item("e04"), png(1), "photo.png", "png"),
               (item("e23"), jpeg(), "IMG_0001.jpg", "jpeg"),
               # the name does not matter, the content does
               (item("e01"), png(2), "成绩单.pdf", "png")]
    for it, data, name, _kind in uploads:
        resp = upload(client, token, it, data, name)
        assert resp.status_code == 200
        assert f"已上传「{it.name}」：{name}" in _flashes(_html(resp)), name
    rows = files()
    assert [(f.item.code, f.kind, f.filename, f.size, f.student_id, f.uploaded_by_id) for f in rows] == [
        (it.code, kind, name, len(data), me.id, user("cs_yl01c1n01").id) for it, data, name, kind in uploads]
    assert all(f.class_id == me.class_id and f.school_id == me.school_id for f in rows)
    assert stored(store) == sorted(hashlib.sha256(d).hexdigest() for _i, d, _n, _k in uploads)
    for f, (_it, data, _name, kind) in zip(rows, uploads, strict=True):
        assert f.sha256 == hashlib.sha256(data).hexdigest()
        resp = client.get(f"/evidence/file/{f.id}")
        assert resp.status_code == 200 and resp.data == data and resp.mimetype == ev.KIND_MIMETYPES[kind]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        resp.close()
    # the page lists each file under its item, with the count against the rule
    html = _html(client.get("/me/evidence"))
    e04 = re.search(r'<div class="card mb-2 cqe-evidence-item" id="item-e04"[^>]*data-count="(\d+)"', html)
    assert e04 and e04.group(1) == "3"
    assert "已达上限 3 个" in html  # e04 takes at most 3: no more upload form for it
    assert html.count('action="/me/evidence/item/') == 23 - 2  # e01 (1 of 1) and e04 (3 of 3) are full
    assert f'action="/me/evidence/item/{item("e23").id}"' in html  # e23: 1 of 3
    assert html.count('data-action="delete"') == 5


@pytest.mark.parametrize("code, data, name, words", [
    ("e01", b"This is my certificate, honestly.\n" * 30, "诚信证明.pdf", "不是 PDF、JPG 或 PNG 文件"),
    ("e01", "zip", "photo.png", "不是 PDF、JPG 或 PNG 文件"),
    ("e01", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + bytes(4000), "setup.png", "不是 PDF、JPG 或 PNG 文件"),
    ("e01", "gif", "moving.png", "看起来是 GIF 格式"),
    ("e01", "cut-png", "cut.png", "不完整或已损坏的图片"),
    ("e01", "cut-jpeg", "cut.jpg", "不完整或已损坏的图片"),
    ("e01", "cut-pdf", "half.pdf", "看起来是 PDF，但文件不完整或已损坏"),
    ("e01", b"%PDF-1.4\n%%EOF\n", "fake.pdf", "看起来是 PDF，但文件不完整或已损坏"),
    ("e01", b"", "empty.pdf", "是空文件"),
    ("e01", "big", "big.png", "太大"),
    ("e10", "png", "report.png", "是 PNG 文件，本项只接受 PDF 文件"),
    ("e23", "pdf", "painting.pdf", "是 PDF 文件，本项只接受 JPG、PNG 文件"),
])
def test_bad_files_are_refused_naming_item_and_file_and_nothing_is_saved(cs, store, client, login_as, code, data,
                                                                         name, words):
    if data == "zip":
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            zf.writestr("photo.png", png())
        data = out.getvalue()
    elif data == "gif":
        from PIL import Image

        out = io.BytesIO()
        Image.new("RGB", (20, 20), "blue").save(out, "GIF")
        data = out.getvalue()
    elif data == "cut-png":
        whole = png(size=(400, 300))
        data = whole[: len(whole) // 2]
    elif data == "cut-jpeg":
        data = jpeg()[:-400]
    elif data == "cut-pdf":
        whole = reportlab_pdf()
        data = whole[: len(whole) // 2]
    elif data == "big":
        data = png() + bytes(item(code).max_bytes)  # a PNG with 2 MB of trailing bytes: over the cap first
    elif data == "png":
        data = png()
    elif data == "pdf":
        data = minimal_pdf()
    it = item(code)
    token = login_as("cs_yl01c1n01")
    before = table_fingerprint()
    resp = upload(client, token, it, data, name)
    flashed = _flashes(_html(resp))
    assert resp.status_code == 200
    assert f"「{it.name}」的文件「{name}」" in flashed and words in flashed, flashed
    assert table_fingerprint() == before
    assert stored(store) == []
    # the domain function says the same, whoever calls it
    with pytest.raises(FieldErrors) as exc:
        ev.check_file(it, data, name)
    assert words in exc.value.message and it.name in exc.value.message


def test_size_cap_is_per_item(cs, store):
    small, large = item("e01"), item("e09")  # 2 MB and 5 MB
    # a PDF with a comment of 3 MB before its trailer: fine for e09, too big for e01
    data = minimal_pdf().replace(b"%PDF-1.4\n", b"%PDF-1.4\n%" + b"x" * (3 * 1024 * 1024) + b"\n", 1)
    with pytest.raises(FieldErrors) as exc:
        ev.check_file(small, data, "scan.pdf")
    assert "太大（3 MB）：本项每个文件不能超过 2 MB" in exc.value.message
    # the xref offsets now point 3 MB early: that is a broken PDF, not a big one
    with pytest.raises(FieldErrors) as exc:
        ev.check_file(large, data, "scan.pdf")
    assert "不完整或已损坏" in exc.value.message
    assert ev.check_file(large, png(size=(1200, 900)), "scan.png") == "png"


# ---------------------------------------------------------------------------------------------
# The item's rule, the window, the scope


def test_max_files_per_item_and_no_duplicates(cs, store, client, login_as):
    token = login_as("p_cs_yl01c1n02")  # a parent uploads for their child
    child = students(klass())[1]
    e01, e04 = item("e01"), item("e04")
    assert "已上传" in _flashes(_html(upload(client, token, e01, png(1), "a.png")))
    before = table_fingerprint()
    flashed = _flashes(_html(upload(client, token, e01, png(2), "b.png")))
    assert "「思想品德课程学业成绩记录」已上传1个，最多1个" in flashed and "「b.png」未保存" in flashed
    for k in range(3):
        upload(client, token, e04, png(10 + k), f"v{k}.png")
    before = table_fingerprint()
    assert "已上传3个，最多3个" in _flashes(_html(upload(client, token, e04, png(20), "v4.png")))
    assert table_fingerprint() == before
    # the same content twice for one item is not a second piece of evidence
    e05 = item("e05")
    upload(client, token, e05, jpeg(1), "a.jpg")
    flashed = _flashes(_html(upload(client, token, e05, jpeg(1), "again.jpg")))
    assert "已有内容完全相同的文件「a.jpg」" in flashed
    assert [(f.item.code, f.filename) for f in files()] == [
        ("e01", "a.png"), ("e04", "v0.png"), ("e04", "v1.png"), ("e04", "v2.png"), ("e05", "a.jpg")]
    assert all(f.student_id == child.id and f.uploaded_by_id == user("p_cs_yl01c1n02").id for f in files())
    # after a deletion there is room again
    first = files()[1]
    resp = client.post(f"/evidence/file/{first.id}/delete", data={"csrf_token": token}, follow_redirects=True)
    assert "已删除「志愿服务记录」的文件：v0.png" in _flashes(_html(resp))
    assert "已上传「志愿服务记录」" in _flashes(_html(upload(client, token, e04, png(20), "v4.png")))
    # the bytes of a deleted file stay (the history names them); the row is gone
    assert hashlib.sha256(png(10)).hexdigest() in stored(store)
    assert first.id not in [f.id for f in files()]


@pytest.mark.parametrize("instant, allowed, words", [
    ("2017-04-02 23:59", False, "该阶段尚未开始"),
    ("2017-04-03 00:00", True, ""),
    ("2017-05-20 23:59", True, ""),
    ("2017-05-23 23:59", True, ""),  # 学生自评: students complete the evidence until 5月24日
    ("2017-05-24 00:00", False, "该阶段已结束"),
])
def test_uploads_only_while_the_window_is_open(cs, store, client, login_as, at, instant, allowed, words):
    token = login_as("cs_yl01c1n01")
    at(instant)
    before = table_fingerprint()
    resp = upload(client, token, item("e01"), png(), "a.png")
    if allowed:
        assert resp.status_code == 200 and len(files()) == 1
        return
    html = _html(resp)
    assert resp.status_code == 403
    assert "「实证材料完善整理」阶段进行（初三毕业年级：2017-04-03 00:00 至 2017-05-21 00:00）" in html and words in html
    assert table_fingerprint() == before and stored(store) == []
    # the page is read-only and says why
    page = _html(client.get("/me/evidence"))
    assert 'data-open="no"' in page and "现在只能查看" in page and words in page
    assert "cqe-evidence-upload" not in page and 'data-action="delete"' not in page


def test_deletion_refused_after_the_window(cs, store, client, login_as, at):
    me = students(klass())[0]
    fill(me, ["e01"])
    token = login_as("cs_yl01c1n01")
    at("2017-06-01 09:00")
    f = files()[0]
    before = table_fingerprint()
    resp = client.post(f"/evidence/file/{f.id}/delete", data={"csrf_token": token})
    assert resp.status_code == 403 and "该阶段已结束" in _html(resp)
    assert table_fingerprint() == before
    with pytest.raises(Denied):
        ev.delete_evidence(user("cs_yl01c1n01"), f)


def test_ids_outside_scope_are_404_and_roles_that_may_not_are_403(cs, store, client, login_as):
    c1, c2, other = klass("yl01", 1), klass("yl01", 2), klass("yl02", 1)
    mate, stranger = students(c1)[1], students(c2)[0]
    fill(mate, ["e01"])
    fill(stranger, ["e01"])
    mate_file, stranger_file = files()

    token = login_as("cs_yl01c1n01")
    assert client.get(f"/evidence/file/{mate_file.id}").status_code == 404  # a classmate's file
    assert client.post(f"/evidence/file/{mate_file.id}/delete", data={"csrf_token": token}).status_code == 404
    assert client.get(f"/evidence/class/{c1.id}").status_code == 404
    assert client.get(f"/evidence/student/{mate.id}").status_code == 404
    before = table_fingerprint()
    resp = client.post(f"/evidence/student/{mate.id}/item/{item('e02').id}", data={
        "csrf_token": token, "file": (io.BytesIO(png()), "x.png")}, content_type="multipart/form-data")
    assert resp.status_code == 404 and table_fingerprint() == before

    login_as("cs_yl01c1_teacher")
    assert client.get(f"/evidence/class/{c1.id}").status_code == 200
    resp = client.get(f"/evidence/file/{mate_file.id}")
    assert resp.status_code == 200 and resp.data == png(mate.id * 100, (item("e01").position + 8, 9))
    resp.close()
    for url in (f"/evidence/class/{c2.id}", f"/evidence/class/{other.id}", f"/evidence/student/{stranger.id}",
                f"/evidence/file/{stranger_file.id}", f"/evidence/class/{c2.id}/chasing.xlsx",
                f"/evidence/school/{school('yl02').id}", "/evidence/class/999999999", "/evidence/file/99999999999"):
        assert client.get(url).status_code == 404, url
    resp = client.get(f"/evidence/school/{school().id}")  # their own school: visible, not theirs to follow
    assert resp.status_code == 403 and "查看实证材料完成情况" in _html(resp)

    login_as("cs_yl01_principal")
    assert client.get(f"/evidence/school/{school().id}").status_code == 200
    assert client.get(f"/evidence/class/{c2.id}").status_code == 200
    assert client.get(f"/evidence/school/{school('yl02').id}").status_code == 404
    assert client.get(f"/evidence/class/{other.id}").status_code == 404

    login_as("cs_city")  # the city clerk sees the classes (quotas) but not the students' evidence
    resp = client.get(f"/evidence/class/{c1.id}")
    assert resp.status_code == 403
    assert client.get(f"/evidence/file/{mate_file.id}").status_code == 404

    login_as("cs_yl01c1_eval1")  # a class evaluator follows the class, but uploads nothing
    assert client.get(f"/evidence/class/{c1.id}").status_code == 200
    html = _html(client.get(f"/evidence/student/{mate.id}"))
    assert "cqe-evidence-upload" not in html and 'data-action="delete"' not in html
    token = login_as("cs_yl01c1_eval1")
    assert client.post(f"/evidence/file/{mate_file.id}/delete", data={"csrf_token": token}).status_code == 403
    assert len(files()) == 2

    login_as("s1g9c1n01")  # a Shanghai student: no evidence portfolio, no link to one
    assert client.get("/me/evidence").status_code == 404
    assert "/me/evidence" not in _html(client.get("/me/records"))


def test_homeroom_teacher_uploads_for_a_student_of_their_class(cs, store, client, login_as):
    token = login_as("cs_yl01c1_teacher")
    s = students(klass())[2]
    resp = upload(client, token, item("e03"), png(7), "诚信记录.png", url=f"/evidence/student/{s.id}/item/{item('e03').id}")
    assert resp.status_code == 200 and "已上传「诚信记录」" in _flashes(_html(resp))
    (f,) = files()
    assert f.student_id == s.id and f.uploaded_by_id == user("cs_yl01c1_teacher").id
    # …and the student sees it on their page, with who uploaded it
    login_as("cs_yl01c1n03")
    html = _html(client.get("/me/evidence"))
    assert "诚信记录.png" in html and user("cs_yl01c1_teacher").display_name in html


def test_csrf_is_required(cs, store, client, login_as):
    login_as("cs_yl01c1n01")
    resp = client.post(f"/me/evidence/item/{item('e01').id}", data={"file": (io.BytesIO(png()), "a.png")},
                       content_type="multipart/form-data")
    assert resp.status_code == 400 and files() == []


# ---------------------------------------------------------------------------------------------
# Completeness and the chasing list


def _independent(student_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per student: files per item code, counted in Python from every row."""
    counts = {sid: {} for sid in student_ids}
    for f in files():
        if f.student_id in counts:
            counts[f.student_id][f.item.code] = counts[f.student_id].get(f.item.code, 0) + 1
    return counts


def _expect(student_ids):
    rule = {i.code: i.min_files for i in items()}
    out = {}
    for sid, have in _independent(student_ids).items():
        short = {code: need - have.get(code, 0) for code, need in rule.items() if have.get(code, 0) < need}
        out[sid] = short
    return out


@pytest.fixture
def filled(cs, store):
    """Class 1: two complete (one with extra files), one short of one file of e05, one with nothing, one with
    e01 only, one who has left the school (complete, but not counted). Class 2: one complete; yl02: one missing
    e23 only."""
    c1, c2 = klass("yl01", 1), klass("yl01", 2)
    s1 = students(c1)
    fill(s1[0])
    fill(s1[1])
    ev.save_evidence(user("cs_yl01c1n02"), s1[1], item("e04"), "extra.png", png(9999))  # beyond the minimum
    fill(s1[2], short=("e05",))
    fill(s1[4], ["e01"])
    fill(s1[5])
    left = s1[5]
    left.status = "left"
    db.session.commit()
    fill(students(c2)[0])
    fill(students(klass("yl02", 1))[0], skip=("e23",))
    return {"c1": c1, "c2": c2, "left": left}


def test_completeness_equals_independent_counts(filled, client, login_as):
    from models import Term

    c1, c2, left = filled["c1"], filled["c2"], filled["left"]
    term = db.session.execute(sa.select(Term).join(School, School.district_id == Term.district_id)
                              .where(School.code == "yl01")).scalar_one()
    n_items = len(items())
    everyone = [s for s in db.session.execute(sa.select(Student).join(School).where(School.district_id == term.district_id))
                .scalars()]
    expect = _expect([s.id for s in everyone if s.participates])
    assert left.id not in expect

    def tally(group):
        members = [s for s in everyone if s.participates and group(s)]
        return ev.Tally(len(members), sum(1 for s in members if not expect[s.id]),
                        sum(len(expect[s.id]) for s in members), sum(sum(expect[s.id].values()) for s in members))

    by_class = ev.completeness(Student.class_id, [Student.school_id == school().id], term)
    assert by_class == {c.id: tally(lambda s, c=c: s.class_id == c.id) for c in (c1, c2)}
    assert by_class[c1.id] == ev.Tally(5, 2, 1 + n_items + (n_items - 1), 1 + 25 + 24)
    by_school = ev.completeness(Student.school_id, [Student.school_id.in_([school().id, school("yl02").id])], term)
    assert by_school == {sc.id: tally(lambda s, sc=sc: s.school_id == sc.id) for sc in (school(), school("yl02"))}

    per_student = {t.student.id: t for t in ev.class_students(c1, term)}
    assert set(per_student) == {s.id for s in students(c1) if s.participates}
    for sid, t in per_student.items():
        assert (t.complete, t.missing_items, t.files_short) == (not expect[sid], len(expect[sid]),
                                                                sum(expect[sid].values()))

    chases = ev.chasing_list(c1, term)
    assert {c.student.id: {m.item.code: m.short for m in c.missing} for c in chases} == {
        sid: short for sid, short in expect.items() if short and sid in per_student}
    # the short one lacks exactly one file of e05 (需2个)
    third = students(c1)[2]
    (line,) = [c for c in chases if c.student.id == third.id]
    assert [(m.item.code, m.have, m.short) for m in line.missing] == [("e05", 1, 1)]
    assert line.text == "社会实践活动记录（还缺1个）"

    # the pages show the same figures
    login_as("cs_yl01_principal")
    html = _html(client.get(f"/evidence/school/{school().id}"))
    for c in (c1, c2):
        t = by_class[c.id]
        assert (f'<tr data-class="{c.id}" data-students="{t.students}" data-complete="{t.complete}" '
                f'data-missing-items="{t.missing_items}" data-files-short="{t.files_short}">') in html
    total = by_class[c1.id] + by_class[c2.id]
    assert f'data-students="{total.students}" data-complete="{total.complete}"' in html
    login_as("cs_admin")  # the district: every school
    resp = client.get("/evidence/")
    html = _html(resp)
    for sc in (school(), school("yl02")):
        t = by_school[sc.id]
        assert f'<tr data-school="{sc.id}" data-students="{t.students}" data-complete="{t.complete}"' in html


def test_class_page_chasing_list_and_xlsx_agree(filled, client, login_as):
    from openpyxl import load_workbook

    c1 = filled["c1"]
    login_as("cs_yl01c1_teacher")
    html = _html(client.get(f"/evidence/class/{c1.id}"))
    table = re.search(r'<table class="table table-sm" id="cqe-chase-table">(.*?)</table>', html, re.S).group(1)
    page_rows = []
    for tr in re.findall(r"<tr data-student=\"\d+\">(.*?)</tr>", table, re.S):
        # A long list is folded under a summary on the page (phones): the list itself is what the xlsx holds.
        cells = re.findall(r"<td[^>]*>(.*?)</td>", re.sub(r"<summary.*?</summary>", "", tr, flags=re.S), re.S)
        page_rows.append([" ".join(re.sub(r"<[^>]+>", "", td).split()) for td in cells])
    assert [row[2] for row in page_rows] == [s.name for s in students(c1)[2:5]]  # not the complete two, nor who left
    assert [row[0] for row in page_rows] == ["1", "2", "3"]

    resp = client.get(f"/evidence/class/{c1.id}/chasing.xlsx")
    assert resp.status_code == 200 and resp.mimetype.endswith("spreadsheetml.sheet")
    ws = load_workbook(io.BytesIO(resp.data)).active
    rows = [list(r) for r in ws.iter_rows(min_row=3, values_only=True) if r[0] is not None and isinstance(r[0], int)]
    assert [list(map(str, r)) for r in rows] == page_rows
    assert [c.value for c in ws[2]] == ["序号", "考号", "姓名", "缺少的实证材料", "缺项数", "还缺文件数"]
    nothing = next(r for r in rows if r[2] == students(c1)[3].name)
    assert nothing[4] == len(items()) and nothing[5] == 25
    assert html.count("<details>") == sum(1 for r in rows if r[4] > 3) >= 1 and "缺 23 项，展开" in html

    # the parent sees what their child still lacks
    login_as("p_cs_yl01c1n03")
    html = _html(client.get("/me/evidence"))
    chase = re.search(r'id="cqe-evidence-chase" data-missing="(\d+)" data-files-short="(\d+)"', html)
    assert chase and chase.groups() == ("1", "1")
    assert '<li data-item="e05"><a href="#item-e05">社会实践活动记录</a>（还缺 1 个）</li>' in html
    assert 'href="/me/evidence"' in html  # the nav link
    login_as("p_cs_yl01c1n01")
    assert 'id="cqe-evidence-complete"' in _html(client.get("/me/evidence"))


def test_history_records_uploads_and_deletions(cs, store, client, login_as):
    token = login_as("cs_yl01c1n01")
    upload(client, token, item("e07"), png(3), "公益劳动.png")
    (f,) = files()
    client.post(f"/evidence/file/{f.id}/delete", data={"csrf_token": token})
    assert files() == []
    events = db.session.execute(sa.select(AuditEvent).where(AuditEvent.object_type == "EvidenceFile",
                                                            AuditEvent.object_id == str(f.id))
                                .order_by(AuditEvent.id)).scalars().all()
    me = user("cs_yl01c1n01")
    assert [(e.action, e.actor_id, e.school_id) for e in events] == [("create", me.id, school().id),
                                                                     ("delete", me.id, school().id)]
    assert events[0].reason == "上传实证材料：公益劳动记录（公益劳动.png）"
    assert events[0].after["sha256"] == hashlib.sha256(png(3)).hexdigest() and events[0].before is None
    assert events[1].reason == "删除实证材料：公益劳动记录（公益劳动.png）"
    assert events[1].before["filename"] == "公益劳动.png" and events[1].after is None
    # refusals leave no history
    count = db.session.execute(sa.select(sa.func.count(AuditEvent.id))).scalar_one()
    upload(client, token, item("e07"), b"not an image", "x.png")
    assert db.session.execute(sa.select(sa.func.count(AuditEvent.id))).scalar_one() == count


def test_non_participants_upload_nothing(cs, store):
    s = students(klass())[0]
    s.status = "transferred"
    db.session.commit()
    with pytest.raises(WorkflowError) as exc:
        ev.save_evidence(user("cs_yl01c1n01"), s, item("e01"), "a.png", png())
    assert "不参与本次综合素质评价" in exc.value.message
    assert files() == [] and stored(store) == []


def test_the_sweep_removes_only_old_unreferenced_bytes(cs, store, data_app):
    import os
    import time
    from datetime import timedelta

    a, b = students(klass())[:2]
    kept = ev.save_evidence(user("cs_yl01c1n01"), a, item("e07"), "劳动.png", png(21))
    ev.save_evidence(user("cs_yl01c1_teacher"), b, item("e07"), "同一张.png", png(21))  # same bytes, other student
    gone = ev.save_evidence(user("cs_yl01c1n01"), a, item("e08"), "删掉.png", png(22))
    gone_sha = gone.sha256
    ev.delete_evidence(user("cs_yl01c1n01"), gone)
    ev.delete_evidence(user("cs_yl01c1n01"), kept)  # b's row still uses these bytes
    young = ev.store(png(23))  # an upload whose row is not saved yet (or failed a moment ago)
    stale_tmp = store / f"{'0' * 64}.4242.77.tmp"
    stale_tmp.write_bytes(b"half a file")
    foreign = store / "README.txt"
    foreign.write_text("not ours")
    week_ago = time.time() - 8 * 86400
    for name in (kept.sha256, gone_sha, stale_tmp.name, foreign.name):
        os.utime(store / name, (week_ago, week_ago))

    dry = ev.sweep_orphans(timedelta(days=7), dry_run=True)
    assert (dry.removed, dry.referenced, dry.kept_young) == (2, 1, 1)
    assert dry.removed_bytes == len(png(22)) + len(b"half a file")
    assert {gone_sha, stale_tmp.name} <= set(stored(store))  # a dry run removes nothing

    result = data_app.test_cli_runner().invoke(args=["cqe", "evidence-sweep", "--days", "7"])
    assert result.exit_code == 0, result.output
    assert "Removed 2 unreferenced file(s)" in result.output and "kept 1 in use and 1 unreferenced" in result.output
    assert stored(store) == sorted([kept.sha256, young, foreign.name])
    # What stays is still served to whoever may see it.
    (row,) = files()
    with open(ev.file_path(row.sha256), "rb") as fh:
        assert fh.read() == png(21)
