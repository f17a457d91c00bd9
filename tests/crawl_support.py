"""The access crawl's machinery (tests/test_crawl.py, issue 8).

Four parts:

- **Markers** (``MARKERS``, ``Oracle``): unique strings planted in students, records, cases, contacts,
  activities, accounts and uploads at each scope level around 九年级(1)班 of bs01, and the check that a
  response (HTML, JSON with its \\uXXXX escapes, CSV, the XML inside an XLSX, a PDF through ``pdftotext``,
  every member of a ZIP, the file name in Content-Disposition) holds no marker the role may not see, and
  for students and parents no other student's 学籍号 and no mobile number.
- **World** (``build_world``): the objects every id-bearing URL takes, one inside each role's scope and
  the nearest one outside it, created in the module's rolled-back transaction (cases of every flow,
  queue records, import uploads, register uploads, report batches, summary scans, RQ jobs, signed links).
- **Inventory** (``inventory``): every rule of ``app.url_map`` mapped to a handler that knows how to fill
  it; a rule with an unknown endpoint or URL variable is reported, so nothing is added uncrawled.
- **Crawler**: one logged-in client per role; each role's requests of a phase run inside a SAVEPOINT
  between two ``table_fingerprint()`` calls (not one pair per request: that alone would take minutes);
  when the pair differs, the batch is replayed in chunks and then request by request, each in its own
  SAVEPOINT, to name the requests that changed the database.

What is sent, and why not more (the crawl must stay within 90 s per database on two cores):

- Entry phase: every rule, for every role, with the inside and the outside object. A model view whose list
  answers 403 is closed to the role (Flask-Admin's ``is_accessible`` refuses every endpoint of the view
  before any id is read): one request per rule and method then shows it closed.
- Publication: the blueprint and BaseView pages again (reports, appeals, cases, the home page: their
  rules depend on the phase, a student's classmates above all), not the model views, whose scope
  (``policy.scope``) has no time in it; PDFs and zips again only for students, parents and anonymous.
- Archive window: the 归档签字 pages and their POSTs (rating, signing, the summary upload).
- A POST without a CSRF token is sent as anonymous and as one signed-in role: CSRF protection is one check
  before every view (``flask_wtf.CSRFProtect``), the same whoever is signed in.

Expectations about who may act are written by hand from SPEC §1 and §6 (as in tests/test_scope_matrix.py),
never read from models/policy.py.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import subprocess
import tempfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import unquote, urlencode

import sqlalchemy as sa
from conftest import table_fingerprint
from test_scope_matrix import MODEL_VIEWS, USERS

from models import clock, db

# ---------------------------------------------------------------------------------------------
# Markers and the oracle

MARKERS = {
    "self": "泄露标记-本人",
    "classmate": "泄露标记-classmate",
    "classmate_draft": "泄露标记-草稿-classmate",
    "parent": "泄露标记-家长-classmate",
    "other_class": "泄露标记-other-class",
    "other_school": "泄露标记-other-school",
    "other_city": "泄露标记-other-city",
}
MARKER_PREFIX = "泄露标记"
# Where the student n01 is: the levels of the organisation around them, nearest first.
LEVELS = ["self", "classmate", "other_class", "other_school", "other_city"]
NEAREST_OUTSIDE = {"student": "classmate", "class": "other_class", "school": "other_school", "district": "other_city",
                   "city": "other_city", "anonymous": "other_city"}
# The finest level at which objects of a kind differ (a class is never "the classmate's").
GRAIN = {"student": "classmate", "record": "classmate", "case": "classmate", "class": "other_class",
         "school": "other_school", "contact": "other_school", "activity": "other_school", "audit": "other_school",
         "upload": "other_school", "user": "other_school", "grant": "other_school", "district": "other_city",
         "term": "other_city", "window": "other_city", "cohort": "other_city"}
MOBILE_RE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
UNICODE_ESCAPE_RE = re.compile(r"\\u([0-9a-fA-F]{4})")
UNREADABLE = "\x00a PDF pdftotext cannot read\x00"

PHASES = {"entry": "2022-03-01 09:00", "publication": "2022-04-01 10:00", "archive": "2022-04-20 10:00"}
# Endpoints whose classmate rule comes from models.policy.report_scope: their classmate violations outside
# publication are reported by a test of their own (test_student_reads_classmates_only_during_publication).
REPORT_SCOPE_ENDPOINTS = {"me.classmates", "me.report", "me.appeal", "reports.student_report",
                          "reports.student_report_pdf"}
CLASSMATE_BUCKET = "classmates_outside_publication"
# CSRF protection is one check before every view (flask_wtf.CSRFProtect), the same for every role: a POST
# without a token is sent as anonymous and as a signed-in user (the token belongs to the session).
NOCSRF_ROLES = {"anonymous", "district_admin"}


def forbidden_markers(role: str, kind: str, phase: str) -> set[str]:
    """Marker names the role may never see in this phase."""
    if role == "anonymous":
        return set(MARKERS) - {"self"}  # "self" only through the signed link, checked per URL
    out = {"other_city"}
    if kind in ("school", "class", "student"):
        out.add("other_school")
    if kind in ("class", "student"):
        out.add("other_class")
    if kind == "student":
        out |= {"classmate_draft", "parent"}
        if role != "student" or phase != "publication":
            out.add("classmate")
    return out


def expected_markers(role: str, kind: str, phase: str) -> set[str]:
    """Markers the role must see somewhere in the phase: the crawl reached the data (not vacuous)."""
    if role == "anonymous":
        return {"self"}
    if kind in ("district", "city"):
        return {"classmate", "other_class", "other_school"}
    if kind == "school":
        return {"classmate", "other_class"}
    if kind == "class":
        return {"classmate"}
    return {"self", "classmate"} if role == "student" and phase == "publication" else {"self"}


def pdf_text(data: bytes) -> str:
    """The text of a PDF as a reader sees it (the fonts are subset: raw bytes hold no characters)."""
    with tempfile.NamedTemporaryFile(suffix=".pdf") as fh:
        fh.write(data)
        fh.flush()
        done = subprocess.run(["pdftotext", "-enc", "UTF-8", fh.name, "-"], capture_output=True, timeout=60)
    if done.returncode != 0:
        return UNREADABLE
    return done.stdout.decode("utf-8", "replace")


def _zip_text(data: bytes) -> str:
    parts = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            parts.append(name)
            parts.append(body_text(zf.read(name)))
    return "\n".join(parts)


def body_text(data: bytes, content_type: str = "", disposition: str = "") -> str:
    """Everything a person could read from a response: text (with JSON's \\uXXXX escapes decoded), the
    XML of an XLSX, a PDF's text, each member of a ZIP, and the file name it is saved under."""
    parts = [unquote(disposition)] if disposition else []
    if data.startswith(b"%PDF"):
        parts.append(pdf_text(data))
    elif data.startswith(b"PK\x03\x04"):
        try:
            parts.append(_zip_text(data))
        except zipfile.BadZipFile:
            parts.append(data.decode("utf-8", "replace"))
    elif content_type.startswith("image/"):
        pass
    else:
        text = data.decode("utf-8", "replace")
        parts.append(UNICODE_ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), text))
    text = "\n".join(parts)
    return text + "\n" + re.sub(r"\s+", "", text)  # pdftotext may break a line inside a name


@dataclass
class Oracle:
    """What a role may not read: markers by name, and for students and parents every other student's 学籍号
    and any mobile number."""

    forbidden: dict[str, str]  # marker name → string
    xjh: dict[str, str] = field(default_factory=dict)  # 学籍号 → whose (label)
    mobiles: set[str] = field(default_factory=set)
    family: bool = False

    def leaks(self, text: str) -> list[str]:
        found = [f"marker {name} ({marker})" for name, marker in self.forbidden.items() if marker in text]
        if UNREADABLE in text:
            found.append("a PDF the oracle cannot read (so cannot check)")
        if self.family:
            found += [f"学籍号 of {who} ({x})" for x, who in self.xjh.items() if x in text]
            # Any mobile-like number in what the page says (not in its tags: a CSRF token or a signed link may
            # hold eleven digits by chance), and the known numbers anywhere.
            shown = re.sub(r"<[^>]*>", " ", text)
            numbers = set(MOBILE_RE.findall(shown)) | {m for m in self.mobiles
                                                      if re.search(rf"(?<![0-9]){re.escape(m)}(?![0-9])", text)}
            found += [f"mobile number {m}" for m in sorted(numbers)]
        return found


def seen_markers(text: str) -> set[str]:
    return {name for name, marker in MARKERS.items() if marker in text} if MARKER_PREFIX in text else set()


# ---------------------------------------------------------------------------------------------
# The world: objects inside and outside each scope


@dataclass
class World:
    ids: dict = field(default_factory=dict)  # (kind, level) → id
    records: dict = field(default_factory=dict)  # (category code, level) → (id, origin)
    cases: dict = field(default_factory=dict)  # (case key, level) → id
    case_keys: dict = field(default_factory=dict)  # username → the case key it sees inside (or None)
    import_tokens: dict = field(default_factory=dict)  # (category code, username) → token
    register_tokens: dict = field(default_factory=dict)  # username → token
    batch_tokens: dict = field(default_factory=dict)  # username → token
    jobs: dict = field(default_factory=dict)  # username → job id
    links: dict = field(default_factory=dict)  # valid / tampered / expired / nonparticipant → token
    users: dict = field(default_factory=dict)  # username → id
    own_student: dict = field(default_factory=dict)  # username → student id
    xjh: dict = field(default_factory=dict)  # student id → 学籍号
    mobiles: set = field(default_factory=set)
    categories: dict = field(default_factory=dict)  # code → spec
    category_ids: dict = field(default_factory=dict)
    activity_in: int = 0
    redis_jobs: list = field(default_factory=list)
    redis_down: bool = False

    def get(self, kind: str, level: str):
        return self.ids.get((kind, level))


CASE_SPECS = {  # key → (flow, handler level, corrector level, origin, state, kind)
    "f2s": (2, "school", "school", "school", "open", "error"),
    "f2st": (2, "school", "student", "student", "accepted", "error"),
    "f1": (1, "district", "school", "school", "accepted", "problem"),
    "f3": (3, "district", "district", "district", "accepted", "error"),
    "f4": (4, "city", "city", "city", "accepted", "error"),
}


def _one(stmt):
    return db.session.execute(stmt).scalars().first()


def _tiny_pdf(text: str) -> bytes:
    from views.pdf import summary_pdf

    return summary_pdf(text, ["序号", "姓名"], [[1, text]], text)


def build_world(app) -> World:
    """Plant the markers and create what the demo lacks. Runs inside the module's transaction."""
    from werkzeug.datastructures import FileStorage

    from forms import imports, register
    from jobs import imports as import_jobs
    from jobs import reports as report_jobs
    from models import (
        Activity,
        AuditEvent,
        Case,
        Category,
        Cohort,
        Contact,
        PhaseWindow,
        Record,
        RoleGrant,
        School,
        SchoolClass,
        Student,
        Term,
        User,
    )
    from models.archive import SummaryUpload
    from seed import shanghai
    from views.archive import store
    from views.reports import link_token

    w = World()
    w.categories = {c["code"]: c for c in shanghai.CATEGORIES}
    w.users = dict(db.session.execute(sa.select(User.username, User.id)).all())
    for username in [u for u, _k in USERS.values()]:
        grant = _one(sa.select(RoleGrant).join(User).where(User.username == username))
        if grant.student_id:
            w.own_student[username] = grant.student_id

    def student_of(username):
        return db.session.get(Student, w.own_student.get(username) or _one(
            sa.select(RoleGrant.student_id).join(User).where(User.username == username)))

    def zz_student(grade):
        return _one(sa.select(Student).join(SchoolClass).join(School).where(School.code == "zz01",
                                                                             SchoolClass.grade == grade)
                    .order_by(Student.xjh))

    students = {
        "self": student_of("s1g9c1n01"), "classmate": student_of("s1g9c1n02"),
        "other_class": student_of("s1g9c2n01"), "other_school": student_of("s2g9c1n01"),
        "other_city": zz_student(9),
        # typical_case is a grades 6–8 category: its records live with grade-7 students
        "g7_school": student_of("s1g7c1n01"), "g7_other_school": student_of("s2g7c1n01"),
        "g7_other_city": zz_student(7),
    }
    names = {"self": MARKERS["self"], "classmate": MARKERS["classmate"], "other_class": MARKERS["other_class"],
             "other_school": MARKERS["other_school"], "other_city": MARKERS["other_city"],
             "g7_school": MARKERS["other_class"] + "七", "g7_other_school": MARKERS["other_school"] + "七",
             "g7_other_city": MARKERS["other_city"] + "七"}
    for level, student in students.items():
        student.name = names[level]
        w.ids[("student", level)] = student.id
    nonparticipant = student_of("s1g9c2n04")
    assert not nonparticipant.participates
    db.session.commit()

    for level in LEVELS:
        s = students[level]
        w.ids[("class", level)] = s.class_id
        w.ids[("school", level)] = s.school_id
        district = s.school.district_id
        w.ids[("district", level)] = district
        term = _one(sa.select(Term).where(Term.district_id == district, Term.is_current.is_(True)))
        w.ids[("term", level)] = term.id
        cohort = _one(sa.select(Cohort).where(Cohort.term_id == term.id).order_by(Cohort.id))
        w.ids[("cohort", level)] = cohort.id
        w.ids[("window", level)] = _one(sa.select(PhaseWindow.id).where(PhaseWindow.cohort_id == cohort.id)
                                        .order_by(PhaseWindow.id))
    # the classmate's class is n01's: objects of a class, school or district vary at coarser levels only
    w.ids[("class", "classmate")] = w.ids[("class", "self")]

    # Contacts, activities, accounts: one per school level, the outside ones marked.
    by_school = {"self": students["self"].school, "other_school": students["other_school"].school,
                 "other_city": students["other_city"].school}
    clerks = {"self": "s1_clerk", "other_school": "s2_clerk", "other_city": "zz_clerk"}
    for level, school in by_school.items():
        contact = _one(sa.select(Contact).where(Contact.school_id == school.id).order_by(Contact.id))
        activity = _one(sa.select(Activity).where(Activity.school_id == school.id).order_by(Activity.id))
        clerk = _one(sa.select(User).where(User.username == clerks[level]))
        if level != "self":
            contact.name = MARKERS[level] + "联系人"
            activity.name = MARKERS[level] + "活动"
            clerk.display_name = MARKERS[level] + "录入员"
        w.ids[("contact", level)], w.ids[("activity", level)] = contact.id, activity.id
        w.ids[("user", level)] = clerk.id
        w.ids[("grant", level)] = clerk.grants[0].id
    w.activity_in = w.ids[("activity", "self")]
    parent = _one(sa.select(User).where(User.username == "p_s1g9c1n02"))
    parent.display_name = MARKERS["parent"]
    parent.mobile = "13700000002"
    _one(sa.select(User).where(User.username == "p_s1g9c1n01")).mobile = "13700000001"
    db.session.commit()

    # Records: a published one with the level's marker, for every category one per level.
    cats = {c.code: c for c in db.session.execute(sa.select(Category)).scalars()}
    w.category_ids = {code: c.id for code, c in cats.items()}

    def record(code, student, state=None, text=None, origin=None):
        cat = cats[code]
        origin = origin or cat.entry[0]["level"]
        data = {}
        for spec in cat.fields:
            if spec["type"] in ("text", "textarea"):
                data[spec["name"]] = text or "爬虫记录"
            elif spec["type"] == "choice":
                data[spec["name"]] = spec["choices"][0]
            elif spec["type"] == "date":
                data[spec["name"]] = "2022-03-01"
            elif spec["type"] == "int":
                data[spec["name"]] = 1
            elif spec["type"] == "activity":
                data[spec["name"]] = _one(sa.select(Activity.id).where(Activity.school_id == student.school_id))
        term = _one(sa.select(Term).where(Term.district_id == student.school.district_id, Term.is_current.is_(True)))
        rec = Record(term=term, category=cat, student=student, school_id=student.school_id, origin=origin,
                     state=state or ("draft" if origin == "student" else "entered"), data=data)
        db.session.add(rec)
        return rec

    marked = {}
    for level, student in students.items():
        marked[level] = record("honour_title", student, state="confirmed", text=names[level] + "荣誉")
    draft = record("honour_title", students["classmate"], state="entered", text=MARKERS["classmate_draft"])
    own_draft = record("self_intro", students["classmate"], state="draft", text=MARKERS["classmate_draft"],
                       origin="student")
    db.session.commit()
    assert draft.id and own_draft.id and marked
    for code, spec in w.categories.items():
        levels = LEVELS if 9 in spec["grades"] else ["g7_school", "g7_other_school", "g7_other_city"]
        for level in levels:
            student = students[level]
            rec = marked[level] if code == "honour_title" else _one(
                sa.select(Record).where(Record.category_id == cats[code].id, Record.student_id == student.id)
                .order_by(Record.id))
            if rec is None:
                rec = record(code, student)
                db.session.commit()
            w.records[(code, level)] = (rec.id, rec.origin)

    # What waits in the queues: a record a student rejected (the clerks' corrections) and an entry submitted
    # to the homeroom teacher (the review queue), at every level.
    for level in LEVELS:
        rejected = record("honour_title", students[level], state="rejected", text=names[level] + "待修改")
        rejected.reject_reason = names[level] + "不通过原因"
        submitted = record("self_intro", students[level], state="submitted", text=names[level] + "待审阅",
                           origin="student")
        db.session.commit()
        w.records[("queue:rejected", level)] = (rejected.id, "school")
        w.records[("queue:submitted", level)] = (submitted.id, "student")

    # Cases: every flow at every level, the description marked with the student's level.
    for level in LEVELS:
        student = students[level]
        filer = _one(sa.select(RoleGrant.user_id).where(RoleGrant.student_id == student.id,
                                                        RoleGrant.role == "student"))
        for key, (flow, handler, corrector, origin, state, kind) in CASE_SPECS.items():
            rec = record("honour_title", student, state="confirmed", text=names[level] + "申诉记录", origin=origin)
            case = Case(term=rec.term, flow=flow, kind=kind, student=student, record=rec, category=cats["honour_title"],
                        school_id=student.school_id, class_id=student.class_id,
                        district_id=student.school.district_id, handler_level=handler, corrector_level=corrector,
                        filed_by_id=filer if flow != 1 else None, description=names[level] + "申诉",
                        state=state, handler_note="", corrector_note="")
            db.session.add(case)
            db.session.commit()
            w.cases[(key, level)] = case.id
    from models import policy

    for username in [u for u, _k in USERS.values()]:
        user = _one(sa.select(User).where(User.username == username))
        visible = set(db.session.execute(sa.select(Case.id).where(policy.scope(user, Case))).scalars())
        w.case_keys[username] = next((k for k in CASE_SPECS if w.cases[(k, "self")] in visible), None)

    # Audit events of each school (the marker renames above wrote some).
    for level, school in by_school.items():
        w.ids[("audit", level)] = _one(sa.select(AuditEvent.id).where(AuditEvent.school_id == school.id)
                                       .order_by(AuditEvent.id))

    # 汇总表 scans of three schools, the files in the module's own summary folder.
    for level, school in by_school.items():
        data = _tiny_pdf(MARKERS["self" if level == "self" else level] + "汇总表")
        term = _one(sa.select(Term).where(Term.district_id == school.district_id, Term.is_current.is_(True)))
        sha = store(data, "pdf")
        uploader = _one(sa.select(User).join(RoleGrant).where(RoleGrant.school_id == school.id)
                        .order_by(User.id))
        up = SummaryUpload(term=term, school=school, filename="汇总表.pdf", kind="pdf", size=len(data), sha256=sha,
                           uploaded_by=uploader)
        db.session.add(up)
        db.session.commit()
        w.ids[("upload", level)] = up.id

    # Import uploads: s1_clerk's (inside for them) and s2_clerk's (outside for everyone) of each category a
    # school clerk imports, and district_clerk's of 学业水平考试; each checked, so its report page has rows.
    def import_upload(code, username, klass_id, check=True):
        cat = cats[code]
        class_students = db.session.execute(sa.select(Student).where(Student.class_id == klass_id)
                                            .order_by(Student.xjh)).scalars().all()
        data = imports.template(cat, class_students)
        meta = {"user_id": w.users[username], "category": code, "category_id": cat.id, "name": "导入.xlsx",
                "ip": "127.0.0.1"}
        upload = imports.Upload.create(FileStorage(io.BytesIO(data), filename="导入.xlsx"), meta)
        if check:
            import_jobs.check_upload(upload.token)
        return upload.token

    for code, spec in w.categories.items():
        levels = {r["level"] for r in spec["entry"]}
        if "school" in levels:
            w.import_tokens[(code, "s1_clerk")] = import_upload(code, "s1_clerk", w.get("class", "self"))
            # another school's upload only has to exist: it is nobody's but its clerk's
            w.import_tokens[(code, "s2_clerk")] = import_upload(code, "s2_clerk", w.get("class", "other_school"),
                                                                check=False)
        if "district" in levels:
            w.import_tokens[(code, "district_clerk")] = import_upload(code, "district_clerk",
                                                                      w.get("class", "self"))

    # 学籍导入 uploads: the district admin's, and one of another user for another district.
    folder = os.path.join(app.instance_path, "imports")
    os.makedirs(folder, exist_ok=True)
    for username, district in (("admin", w.get("district", "self")), ("zz_clerk", w.get("district", "other_city"))):
        token = os.urandom(16).hex()
        with open(os.path.join(folder, token + ".xlsx"), "wb") as fh:
            fh.write(register.template())
        with open(os.path.join(folder, token + ".json"), "w") as fh:
            json.dump({"user_id": w.users[username], "kind": "register", "district_id": district,
                       "name": "学籍.xlsx"}, fh)
        w.register_tokens[username] = token

    # Report batches: a class's 确认单 for its homeroom teacher, and another school's class for theirs.
    for username, level in (("s1_g9c1_teacher", "self"), ("s2_g9c1_teacher", "other_school")):
        result = report_jobs.build_batch(w.users[username], "class", w.get("class", level), "slips",
                                         "http://localhost/", report=lambda *a: None)
        w.batch_tokens[username] = result["token"]
        db.session.rollback()

    # Signed report links (the QR code's page): valid, tampered, expired, of a non-participant.
    clock.pin("2022-01-01 09:00")
    w.links["expired"] = link_token(students["self"], days=1)[0]
    clock.pin("2022-03-01 09:00")
    valid = link_token(students["self"], days=365)[0]
    w.links["valid"] = valid
    w.links["tampered"] = valid[:-3] + ("AAA" if not valid.endswith("AAA") else "BBB")
    w.links["nonparticipant"] = link_token(nonparticipant, days=365)[0]
    clock.pin(None)

    # Background jobs with an owner (the progress bar's JSON): in a queue no worker listens to. Without Redis
    # (a local run) /jobs/<id> knows no job at all, and every id answers 404.
    w.jobs = {"s1_clerk": "crawl-no-redis-1", "zz_clerk": "crawl-no-redis-2"}
    if app.config.get("REDIS_URL"):
        import jobs

        q = jobs.queue("cqe-crawl-never-run")
        try:
            q.connection.ping()
        except Exception:  # noqa: BLE001 - unreachable: a failure in CI, a 503 for /jobs/<id> locally
            if os.environ.get("CI", "").lower() == "true":
                raise
            w.redis_down = True
        else:
            for username in ("s1_clerk", "zz_clerk"):
                job = q.enqueue("jobs.health.probe", "crawl",
                                meta={"user_id": w.users[username], "progress": None})
                w.jobs[username] = job.id
                w.redis_jobs.append(job)

    # What students and parents may never read.
    w.xjh = dict(db.session.execute(sa.select(Student.id, Student.xjh)).all())
    w.mobiles = {m for m in db.session.execute(sa.select(Contact.mobile)).scalars() if m}
    w.mobiles |= {m for m in db.session.execute(sa.select(User.mobile)).scalars() if m}
    db.session.commit()
    return w


# ---------------------------------------------------------------------------------------------
# Probes: one request each, with what it must answer


@dataclass
class Probe:
    method: str
    url: str
    endpoint: str
    rule: str
    kind: str  # page | in | out | refuse | nocsrf | public | closed (a view closed to the role)
    data: dict | None = None  # form fields; a file as (bytes, filename)
    json: object = None
    csrf: bool = True
    expect: frozenset | None = None  # allowed statuses (None: any but a server error)
    phases: frozenset | None = None  # default: GETs in entry and publication, POSTs in entry
    classmate: bool = False  # the student's classmate (published data only during publication)
    public_self: bool = False  # a signed link to n01's report: n01's data may show
    model_view: bool = False  # a Flask-Admin model view: scoped by policy.scope, which has no time in it
    heavy: bool = False  # builds a PDF or a zip: after the entry phase only for students, parents, anonymous
    note: str = ""

    def __post_init__(self):
        self.heavy = self.heavy or self.endpoint in HEAVY_ENDPOINTS
        if self.phases is None:
            self.phases = GET_PHASES if self.method == "GET" else POST_PHASE

    @property
    def mutating(self) -> bool:
        return self.method != "GET"


GET_PHASES = frozenset({"entry", "publication"})
HEAVY_ENDPOINTS = {"reports.student_report_pdf", "reports.class_slips", "reports.public_report_pdf",
                   "reports.batch_download", "dashboard.district_xlsx", "dashboard.school_xlsx", "dashboard.class_xlsx",
                   "archive_summary.pdf", "archive_summary.xlsx", "archive_summary.scan"}
POST_PHASE = frozenset({"entry"})
ARCHIVE_GET = frozenset({"archive"})
ARCHIVE_POST = frozenset({"archive"})
PUBLICATION_POST = frozenset({"publication"})
OUT = frozenset({403, 404})
REFUSE = frozenset({403})
NOCSRF = frozenset({400})


class Ctx:
    """One role's view of the world: its objects inside and the nearest ones outside."""

    def __init__(self, role: str, world: World, app):
        self.role, self.world, self.app = role, world, app
        if role == "anonymous":
            self.username, self.kind = None, "anonymous"
        else:
            self.username, self.kind = USERS[role]

    def level_out(self, what: str) -> str:
        return LEVELS[max(LEVELS.index(NEAREST_OUTSIDE[self.kind]), LEVELS.index(GRAIN[what]))]

    def inside(self, what: str):
        return self.world.get(what, "self")

    def outside(self, what: str):
        return self.world.get(what, self.level_out(what))

    def record(self, code: str, side: str):
        """(id, origin) of a record of the category inside or outside the role's scope, or None."""
        spec = self.world.categories.get(code, {"grades": [9]})
        if 9 in spec["grades"]:
            level = "self" if side == "in" else self.level_out("record")
        else:  # a grades 6–8 category: n01's class and n01 hold none of its records
            wide = self.kind in ("school", "district", "city")
            if side == "in":
                if not wide:
                    return None
                level = "g7_school"
            else:
                level = {"school": "g7_other_school", "district": "g7_other_city", "city": "g7_other_city"}.get(
                    self.kind, "g7_school")
        return self.world.records.get((code, level))

    def case(self, side: str):
        key = self.world.case_keys.get(self.username) if self.username else None
        if side == "in":
            return self.world.cases[(key, "self")] if key else None
        return self.world.cases[(key or "f2s", self.level_out("case"))]


def _url(rule, values: dict | None = None, query: dict | None = None) -> str:
    _domain, path = rule.build(values or {}, append_unknown=False)
    if query:
        path += ("&" if "?" in path else "?") + urlencode(query, doseq=True)
    return path


# --- who may act: hand-written from SPEC §1 ----------------------------------------------------

CREATORS = {"students": {"district_admin", "school_admin"}, "schools": {"district_admin"},
            "classes": {"district_admin", "school_admin"}, "contacts": {"district_admin", "school_admin"},
            "activities": {"school_clerk", "district_clerk"}, "users": {"district_admin"},
            "grants": {"district_admin"}}
DELETERS = {"students": {"district_admin"}, "schools": {"district_admin"}, "classes": {"district_admin"},
            "contacts": {"district_admin", "school_admin"}, "activities": {"school_clerk"},
            "grants": {"district_admin"}}
EXTRA_EDITORS = {"districts": {"district_admin"}}
CLERK_OF = {"school": "school_clerk", "district": "district_clerk", "city": "city_clerk", "student": "student"}
CASE_ACTORS = {"school_auditor", "district_auditor", "city_auditor", "school_clerk", "district_clerk", "city_clerk",
               "student"}
SLIP_PRINTERS = {"class": {"district_admin", "school_admin", "homeroom_teacher"},
                 "school": {"district_admin", "school_admin"}}
UNLOCKERS = {"district_admin", "school_admin", "homeroom_teacher"}
REPORT_PRINTERS = {"district_admin", "school_admin", "school_leader", "principal", "school_clerk", "homeroom_teacher"}


def view_editors(endpoint: str) -> set:
    if endpoint in MODEL_VIEWS:
        return set(MODEL_VIEWS[endpoint][1])
    return EXTRA_EDITORS.get(endpoint, set())


def category_creators(spec: dict) -> set:
    roles = {CLERK_OF[r["level"]] for r in spec["entry"]}
    if "student" in roles and 9 not in spec["grades"]:
        roles.discard("student")  # n01 is in grade 9
    return roles


def category_importers(spec: dict) -> set:
    return {CLERK_OF[r["level"]] for r in spec["entry"] if r["level"] != "student"}


def record_editors(origin: str, level: str) -> set:
    role = CLERK_OF[origin]
    if role == "student" and level != "self":
        return set()
    return {role}


def _field_values(spec: dict, activity_id: int) -> dict:
    values = {}
    for f in spec["fields"]:
        if f["type"] in ("text", "textarea"):
            values[f["name"]] = "爬虫修改"
        elif f["type"] == "choice":
            values[f["name"]] = f["choices"][0]
        elif f["type"] == "date":
            values[f["name"]] = "2022-03-01"
        elif f["type"] == "int":
            values[f["name"]] = "1"
        elif f["type"] == "activity":
            values[f["name"]] = str(activity_id)
    return values


# --- Flask-Admin model views ------------------------------------------------------------------

VIEW_OBJECT = {"students": "student", "preconfirm": "student", "schools": "school", "classes": "class",
               "contacts": "contact", "activities": "activity", "terms": "term", "windows": "window",
               "users": "user", "grants": "grant", "audit": "audit", "districts": "district"}
MODELVIEW_METHODS = {"index_view", "create_view", "edit_view", "details_view", "delete_view", "action_view",
                     "export", "ajax_lookup", "ajax_update", "grid_view", "grid_rows", "grid_check", "grid_save",
                     "import_view", "import_template", "import_report", "import_commit", "import_errors", "sheet",
                     "advance_view", "bulk_dismiss"}
MODELVIEW_VARS = {"export": {"export_type"}, "import_report": {"token"}, "import_commit": {"token"},
                  "import_errors": {"token"}}


def _view_pair(ctx: Ctx, view) -> tuple:
    """(inside id, outside id, editors of the inside object) of a model view."""
    ep = view.endpoint
    if ep.startswith("cat_"):
        code = ep[4:]
        inside, outside = ctx.record(code, "in"), ctx.record(code, "out")
        editors = record_editors(inside[1], "self") if inside else set()
        return (inside[0] if inside else None), (outside[0] if outside else None), editors
    if ep in ("review_queue", "corrections"):
        code = "queue:submitted" if ep == "review_queue" else "queue:rejected"
        inside, outside = ctx.record(code, "in"), ctx.record(code, "out")
        return inside[0], outside[0], set()
    if ep == "cases_admin":
        return ctx.case("in"), ctx.case("out"), set()
    if ep == "categories":
        return ctx.world.category_ids["sports"], None, set()
    what = VIEW_OBJECT[ep]
    return ctx.inside(what), ctx.outside(what), view_editors(ep)


def _create_payload(ctx: Ctx, view) -> dict | None:
    """A create form that is valid but for one reference to an object outside the role's scope."""
    ep = view.endpoint
    if ep.startswith("cat_"):
        spec = ctx.world.categories[ep[4:]]
        out = ctx.record(ep[4:], "out")
        student = ctx.outside("student") if 9 in spec["grades"] else None
        if student is None and out is not None:
            from models import Record

            student = db.session.get(Record, out[0]).student_id
        return {"student": str(student), **_field_values(spec, ctx.world.activity_in)}
    if ep == "students":
        return {"xjh": "CRAWL0000000001", "name": "爬虫新生", "gender": "男", "school_class": str(ctx.outside("class")),
                "status": "enrolled"}
    if ep == "classes":
        return {"school": str(ctx.outside("school")), "grade": "9", "number": "7"}
    if ep == "schools":
        return {"code": "crawl01", "name": "爬虫学校", "district": str(ctx.outside("district"))}
    if ep == "contacts":
        return {"school": str(ctx.outside("school")), "kind": "leader", "name": "爬虫联系人", "mobile": "13800000000"}
    if ep == "grants":
        return {"user": str(ctx.outside("user")), "role": "school_clerk", "school": str(ctx.outside("school"))}
    return None


def modelview_probes(ctx: Ctx, view, method: str, rule) -> list[Probe]:
    ep = view.endpoint
    base = dict(endpoint=rule.endpoint, rule=rule.rule)
    role = ctx.role
    in_id, out_id, editors = _view_pair(ctx, view)
    queue = ep in ("review_queue", "corrections", "cases_admin")  # read-only lists of what waits
    refuse = frozenset({302, 403, 404}) if queue else REFUSE
    spec = ctx.world.categories.get(ep[4:]) if ep.startswith("cat_") else None
    creators = category_creators(spec) if spec else CREATORS.get(ep, set())
    deleters = editors if spec else DELETERS.get(ep, set())
    importers = category_importers(spec) if spec else set()
    if spec and any(f["type"] == "activity" for f in spec["fields"]):
        grid_users = set()
    else:
        grid_users = importers
    probes: list[Probe] = []

    def get(url, kind="page", **kw):
        probes.append(Probe("GET", url, kind=kind, model_view=True, **base, **kw))

    def post(url, kind, data=None, **kw):
        probes.append(Probe("POST", url, kind=kind, data=data, model_view=True, **base, **kw))

    def nocsrf(url, data=None, **kw):
        post(url, "nocsrf", data=data, csrf=False, expect=NOCSRF, **kw)

    if method == "index_view":
        # searched for the markers, where the view searches: every marked row in scope is on the first page
        get(_url(rule, query={"search": MARKER_PREFIX} if view.column_searchable_list else None))
    elif method == "create_view":
        if "GET" in rule.methods:
            get(_url(rule))
        if "POST" in rule.methods:
            nocsrf(_url(rule), {})
            if role not in creators:
                # Flask-Admin answers a create it does not offer with a redirect to the list
                post(_url(rule), "refuse", {}, expect=frozenset({302, 403}))
            elif role != "student":  # a student's own entry: the form has no student to choose
                payload = _create_payload(ctx, view)
                if payload is not None:
                    post(_url(rule), "out", payload, expect=frozenset({200, 403, 404}), note="create with outside ref")
    elif method == "edit_view":
        if "GET" in rule.methods:
            if in_id is not None:
                get(_url(rule, query={"id": in_id}), "in")
            if out_id is not None:
                get(_url(rule, query={"id": out_id}), "out", expect=OUT)
        if "POST" in rule.methods:
            values = _field_values(spec, ctx.world.activity_in) if spec else {}
            nocsrf(_url(rule, query={"id": in_id if in_id is not None else out_id}), values)
            if out_id is not None:
                post(_url(rule, query={"id": out_id}), "out", values, expect=OUT)
            if in_id is not None and role not in editors:
                post(_url(rule, query={"id": in_id}), "refuse", values, expect=refuse)
    elif method == "details_view":
        if in_id is not None:
            get(_url(rule, query={"id": in_id}), "in")
        if out_id is not None:
            get(_url(rule, query={"id": out_id}), "out", expect=OUT)
    elif method == "delete_view":
        nocsrf(_url(rule), {"id": in_id if in_id is not None else out_id})
        if out_id is not None:
            post(_url(rule), "out", {"id": out_id}, expect=OUT)
        if in_id is not None and role not in deleters:
            post(_url(rule), "refuse", {"id": in_id}, expect=refuse)
    elif method == "action_view":
        names = ["accept", "dismiss"] if ep == "cases_admin" else ["delete"]
        for name in names:
            nocsrf(_url(rule), {"action": name, "rowid": [in_id if in_id is not None else out_id]})
            if out_id is not None:
                post(_url(rule), "out", {"action": name, "rowid": [out_id]}, expect=frozenset({302, 403}))
            actors = deleters if name == "delete" else set()
            if in_id is not None and role not in actors and not (ep == "cases_admin" and role in CASE_ACTORS):
                post(_url(rule), "refuse", {"action": name, "rowid": [in_id]}, expect=frozenset({302, 403}))
    elif method == "export":
        # every category view is the same generated class: each one is exported in one format, both in turn
        types = ("csv", "xlsx") if not spec else (("csv",) if sorted(ctx.world.categories).index(ep[4:]) % 2
                                                  else ("xlsx",))
        for export_type in types:
            get(_url(rule, {"export_type": export_type}))
    elif method == "ajax_lookup":
        for name in sorted(getattr(view, "_form_ajax_refs", None) or {"student": None}):
            get(_url(rule, query={"name": name, "query": MARKER_PREFIX, "limit": 100}))
    elif method == "ajax_update":
        editable = list(view.column_editable_list or ["notes"])
        values = {name: "爬虫" for name in editable}
        nocsrf(_url(rule), {"list_form_pk": in_id if in_id is not None else out_id, **values})
        if out_id is not None:
            post(_url(rule), "out", {"list_form_pk": out_id, **values}, expect=OUT)
        if in_id is not None and view.column_editable_list and role not in editors:
            post(_url(rule), "refuse", {"list_form_pk": in_id, **values}, expect=frozenset({403, 404}))
    elif method in ("grid_view", "grid_rows"):
        get(_url(rule, query={"class_id": ctx.inside("class")}), "in")
        get(_url(rule, query={"class_id": ctx.outside("class")}), "out", expect=OUT)
    elif method in ("grid_check", "grid_save"):
        values = _field_values(spec, ctx.world.activity_in)
        own = {"key": "n1", "student_id": ctx.inside("student"), "record_id": None, "version": None, "values": values}
        nocsrf(_url(rule), json={"class_id": ctx.inside("class"), "rows": [own]})
        post(_url(rule), "out", json={"class_id": ctx.outside("class"), "rows": []}, expect=OUT)
        if role not in grid_users:
            post(_url(rule), "refuse", json={"class_id": ctx.inside("class"), "rows": [own]},
                 expect=frozenset({403, 404}))
        else:
            out_rec = ctx.record(ep[4:], "out")
            rows = [{"key": "r1", "student_id": ctx.outside("student"), "record_id": out_rec[0], "version": 1,
                     "values": values},
                    {"key": "n2", "student_id": ctx.outside("student"), "record_id": None, "version": None,
                     "values": values}]
            post(_url(rule), "out", json={"class_id": ctx.inside("class"), "rows": rows},
                 expect=frozenset({200, 404}), note="outside rows in an inside class")
    elif method == "import_view":
        if "GET" in rule.methods:
            get(_url(rule))
        if "POST" in rule.methods:
            file = {"file": (b"not really a workbook", "crawl.xlsx")}
            nocsrf(_url(rule), file)
            if role not in importers:
                post(_url(rule), "refuse", file, expect=REFUSE)
    elif method == "import_template":
        get(_url(rule, query={"class_id": ctx.inside("class")}), "in")
        get(_url(rule, query={"class_id": ctx.outside("class")}), "out", expect=OUT)
    elif method in ("import_report", "import_errors", "import_commit"):
        code = ep[4:]
        mine = ctx.world.import_tokens.get((code, ctx.username))
        other = ctx.world.import_tokens.get((code, "s2_clerk")) or ctx.world.import_tokens.get(("sports", "s2_clerk"))
        if ctx.username == "s2_clerk":
            other = ctx.world.import_tokens.get((code, "s1_clerk"))
        if method == "import_commit":
            nocsrf(_url(rule, {"token": mine or other}), {"mode": "valid"})
            post(_url(rule, {"token": other}), "out", {"mode": "valid"}, expect=OUT)
        else:
            if mine:
                get(_url(rule, {"token": mine}), "in")
            get(_url(rule, {"token": other}), "out", expect=OUT)
    elif method == "sheet":
        get(_url(rule))
    elif method == "advance_view":
        nocsrf(_url(rule), {"id": in_id, "edge": "start", "reason": "爬虫"})
        post(_url(rule), "out", {"id": out_id, "edge": "start", "reason": "爬虫"}, expect=OUT)
        if role not in editors:
            post(_url(rule), "refuse", {"id": in_id, "edge": "start", "reason": "爬虫"}, expect=REFUSE)
    elif method == "bulk_dismiss":
        if "GET" in rule.methods:
            if in_id is not None:
                get(_url(rule, query={"ids": str(in_id)}), "in")
            get(_url(rule, query={"ids": str(out_id)}), "page", note="outside id: must list nothing")
        if "POST" in rule.methods:
            nocsrf(_url(rule), {"ids": str(out_id), "reason": "爬虫"})
            post(_url(rule), "out", {"ids": str(out_id), "reason": "爬虫"}, expect=frozenset({302, 403}))
            if in_id is not None and role not in CASE_ACTORS:
                post(_url(rule), "refuse", {"ids": str(in_id), "reason": "爬虫"}, expect=frozenset({302, 403}))
    return probes


# --- blueprints and BaseViews -----------------------------------------------------------------


def _student_pages(ctx: Ctx, rule, extra_query=None, phases=GET_PHASES) -> list[Probe]:
    """GET a page about one student: n01, the nearest outside student (and, for the student, the classmate:
    published data during publication only)."""
    base = dict(endpoint=rule.endpoint, rule=rule.rule, phases=phases)
    out = [Probe("GET", _url(rule, {"student_id": ctx.inside("student")}, extra_query), kind="in", **base)]
    if ctx.role == "student":
        out.append(Probe("GET", _url(rule, {"student_id": ctx.world.get("student", "other_class")}, extra_query),
                         kind="out", expect=OUT, **base))
        # outside publication a classmate's page is refused (403 naming the window, or 404)
        out.append(Probe("GET", _url(rule, {"student_id": ctx.world.get("student", "classmate")}, extra_query),
                         kind="out", expect=OUT, classmate=True, **base))
    else:
        out.append(Probe("GET", _url(rule, {"student_id": ctx.outside("student")}, extra_query), kind="out",
                         expect=OUT, **base))
    return out


def _by_id(ctx: Ctx, rule, var: str, what: str, phases=GET_PHASES, extra=None) -> list[Probe]:
    base = dict(endpoint=rule.endpoint, rule=rule.rule, phases=phases)
    out = []
    if ctx.inside(what) is not None:
        out.append(Probe("GET", _url(rule, {var: ctx.inside(what), **(extra or {})}), kind="in", **base))
    out.append(Probe("GET", _url(rule, {var: ctx.outside(what), **(extra or {})}), kind="out", expect=OUT, **base))
    return out


def _page(rule, phases=GET_PHASES, query=None, kind="page", expect=None) -> Probe:
    return Probe("GET", _url(rule, query=query), endpoint=rule.endpoint, rule=rule.rule, kind=kind, phases=phases,
                 expect=expect)


def _post(rule, kind, data=None, values=None, expect=None, phases=POST_PHASE, csrf=True, **kw) -> Probe:
    if kind == "nocsrf":
        csrf, expect = False, NOCSRF
    return Probe("POST", _url(rule, values), endpoint=rule.endpoint, rule=rule.rule, kind=kind, data=data or {},
                 expect=expect, phases=phases, csrf=csrf, **kw)


def h_page(ctx, rule):
    return [_page(rule)]


def h_self_service(ctx, rule):
    """Login, logout, password, inbox: the user's own; only the request without a CSRF token is refused here
    (a valid one would log the crawler out or change its password)."""
    out = []
    if "GET" in rule.methods:
        out.append(_page(rule))
    if "POST" in rule.methods:
        out.append(_post(rule, "nocsrf"))
    return out


def h_health(ctx, rule):
    return [_page(rule, kind="public", expect=frozenset({200}))]


def h_job_status(ctx, rule):
    mine = ctx.world.jobs.get(ctx.username)
    other = ctx.world.jobs["zz_clerk" if ctx.username != "zz_clerk" else "s1_clerk"]
    base = dict(endpoint=rule.endpoint, rule=rule.rule)
    expect = OUT | {503} if ctx.world.redis_down else OUT
    out = [Probe("GET", _url(rule, {"job_id": other}), kind="out", expect=expect, **base),
           Probe("GET", _url(rule, {"job_id": other + "/../x"}), kind="out", expect=OUT, **base)]
    if mine:
        out.append(Probe("GET", _url(rule, {"job_id": mine}), kind="in", **base))
    return out


def h_me_record_action(ctx, rule):
    out = []
    mine = ctx.record("honour_title", "in")[0]
    other = ctx.world.records[("honour_title", "classmate" if ctx.kind == "student" else ctx.level_out("record"))][0]
    for action in ("confirm", "reject", "submit", "publish"):
        values = {"record_id": mine, "action": action}
        out.append(_post(rule, "nocsrf", values=values))
        out.append(_post(rule, "out", {"reason": "爬虫"}, values={"record_id": other, "action": action}, expect=OUT))
        if ctx.role != "student":
            out.append(_post(rule, "refuse", {"reason": "爬虫"}, values=values, expect=REFUSE))
    out.append(_post(rule, "out", values={"record_id": mine, "action": "delete"}, expect=frozenset({403, 404}),
                     note="unknown action"))
    return out


def h_me_confirm_all(ctx, rule):
    out = [_post(rule, "nocsrf")]
    if ctx.role != "student":
        out.append(_post(rule, "refuse", expect=REFUSE))
    return out


def h_me_report(ctx, rule):
    if "student_id" in (rule.defaults or {}):  # /me/report: one's own
        return [_page(rule)]
    return _student_pages(ctx, rule)


def h_me_appeal(ctx, rule):
    out = []
    if "GET" in rule.methods:
        out += _student_pages(ctx, rule)
    if "POST" in rule.methods:
        cat = ctx.world.category_ids["honour_title"]
        data = {"category": cat, "kind": "missing", "description": "爬虫申诉"}
        own = {"student_id": ctx.inside("student")}
        out.append(_post(rule, "nocsrf", data, values=own, phases=PUBLICATION_POST))
        outside = ctx.world.get("student", "other_class") if ctx.role == "student" else ctx.outside("student")
        out.append(_post(rule, "out", data, values={"student_id": outside}, expect=OUT, phases=PUBLICATION_POST))
        if ctx.role != "student":
            out.append(_post(rule, "refuse", data, values=own, expect=REFUSE, phases=PUBLICATION_POST))
    return out


def h_case_show(ctx, rule):
    base = dict(endpoint=rule.endpoint, rule=rule.rule)
    out = [Probe("GET", _url(rule, {"case_id": ctx.case("out")}), kind="out", expect=OUT, **base)]
    if ctx.case("in"):
        out.append(Probe("GET", _url(rule, {"case_id": ctx.case("in")}), kind="in", **base))
    return out


def h_case_act(ctx, rule):
    out = []
    inside, outside = ctx.case("in"), ctx.case("out")
    for action in ("accept", "dismiss", "correct", "approve", "send_back"):
        data = {"reason": "爬虫", "op": "edit"}
        out.append(_post(rule, "nocsrf", data, values={"case_id": inside or outside, "action": action},
                         phases=PUBLICATION_POST))
        out.append(_post(rule, "out", data, values={"case_id": outside, "action": action}, expect=OUT,
                         phases=PUBLICATION_POST))
        if inside and ctx.role not in CASE_ACTORS:
            out.append(_post(rule, "refuse", data, values={"case_id": inside, "action": action}, expect=REFUSE,
                             phases=PUBLICATION_POST))
    return out


def h_review(ctx, rule):
    inside = ctx.record("queue:submitted", "in")
    outside = ctx.record("queue:submitted", "out")
    base = dict(endpoint=rule.endpoint, rule=rule.rule)
    out = []
    if "GET" in rule.methods:
        out.append(Probe("GET", _url(rule, {"record_id": inside[0]}), kind="in", **base))
        out.append(Probe("GET", _url(rule, {"record_id": outside[0]}), kind="out", expect=OUT, **base))
    if "POST" in rule.methods:
        for action in ("review", "return"):
            data = {"action": action, "reason": "爬虫"}
            out.append(_post(rule, "nocsrf", data, values={"record_id": inside[0]}))
            out.append(_post(rule, "out", data, values={"record_id": outside[0]}, expect=OUT))
            if ctx.role != "homeroom_teacher":
                out.append(_post(rule, "refuse", data, values={"record_id": inside[0]}, expect=REFUSE))
    return out


def h_record_history(ctx, rule):
    base = dict(endpoint=rule.endpoint, rule=rule.rule)
    return [Probe("GET", _url(rule, {"record_id": ctx.record("honour_title", "in")[0]}), kind="in", **base),
            Probe("GET", _url(rule, {"record_id": ctx.record("honour_title", "out")[0]}), kind="out", expect=OUT,
                  **base)]


def h_student_report(ctx, rule):
    return _student_pages(ctx, rule)


def h_class_slips(ctx, rule):
    return _by_id(ctx, rule, "class_id", "class", phases=ARCHIVE_GET)


def h_public_report(ctx, rule):
    base = dict(endpoint=rule.endpoint, rule=rule.rule, kind="public")
    links = ctx.world.links
    return [Probe("GET", _url(rule, {"token": links["valid"]}), expect=frozenset({200}), public_self=True, **base),
            Probe("GET", _url(rule, {"token": links["tampered"]}), expect=frozenset({404}), **base),
            Probe("GET", _url(rule, {"token": links["expired"]}), expect=frozenset({410}), **base),
            Probe("GET", _url(rule, {"token": links["nonparticipant"]}), expect=frozenset({404}), **base)]


def h_lookup(ctx, rule):
    """The public results lookup (views/lookup.py): the page, a lookup (the demo's students have no exam number:
    the one generic answer, whoever asks) and the lookup without a CSRF token."""
    base = dict(endpoint=rule.endpoint, rule=rule.rule, kind="public")
    return [Probe("GET", _url(rule), expect=frozenset({200}), **base),
            Probe("POST", _url(rule), data={"exam_number": "170101001", "identifier": "000001"},
                  expect=frozenset({200}), phases=POST_PHASE, **base),
            _post(rule, "nocsrf", {"exam_number": "170101001", "identifier": "000001"})]


def h_batch(ctx, rule):
    out = []
    if "GET" in rule.methods:
        out.append(_page(rule, phases=ARCHIVE_GET))
    if "POST" in rule.methods:
        out.append(_post(rule, "nocsrf", {"target": f"class:{ctx.inside('class')}", "kind": "slips"}))
        out.append(_post(rule, "out", {"target": f"class:{ctx.outside('class')}", "kind": "slips"}, expect=OUT))
        out.append(_post(rule, "out", {"target": f"school:{ctx.outside('school')}", "kind": "reports"}, expect=OUT))
        if ctx.role not in REPORT_PRINTERS:
            out.append(_post(rule, "refuse", {"target": f"class:{ctx.inside('class')}", "kind": "slips"},
                             expect=REFUSE))
    return out


def h_batch_download(ctx, rule):
    mine = ctx.world.batch_tokens.get(ctx.username)
    other = ctx.world.batch_tokens["s2_g9c1_teacher"]
    base = dict(endpoint=rule.endpoint, rule=rule.rule)
    out = [Probe("GET", _url(rule, {"token": other}), kind="out", expect=OUT, **base),
           Probe("GET", _url(rule, {"token": "0" * 32}), kind="out", expect=OUT, **base)]
    if mine:
        out.append(Probe("GET", _url(rule, {"token": mine}), kind="in", **base))
    return out


def h_slips_print(ctx, rule):
    out = [_post(rule, "nocsrf", {"kind": "class", "id": ctx.inside("class")})]
    for kind, what in (("class", "class"), ("school", "school")):
        out.append(_post(rule, "out", {"kind": kind, "id": ctx.outside(what)}, expect=OUT))
        if ctx.role not in SLIP_PRINTERS[kind]:
            out.append(_post(rule, "refuse", {"kind": kind, "id": ctx.inside(what)}, expect=REFUSE))
    return out


def h_slips_index(ctx, rule):
    return [_page(rule), _page(rule, query={"school_id": ctx.outside("school")},
                               kind="page")]  # an outside school is ignored: the page shows the user's own


def h_school_query_page(ctx, rule):
    """An index that takes ?school_id= (and the archive pages' ?class_id=)."""
    out = [_page(rule, phases=ARCHIVE_GET),
           _page(rule, phases=ARCHIVE_GET, query={"school_id": ctx.inside("school")}, kind="in"),
           _page(rule, phases=ARCHIVE_GET, query={"school_id": ctx.outside("school")}, kind="out", expect=OUT)]
    if rule.endpoint == "archive_rate.index":
        out.append(_page(rule, phases=ARCHIVE_GET, query={"class_id": ctx.inside("class")}, kind="in"))
        out.append(_page(rule, phases=ARCHIVE_GET, query={"class_id": ctx.outside("class")}, kind="out", expect=OUT))
    return out


def h_archive_class(ctx, rule):
    return _by_id(ctx, rule, "class_id", "class", phases=ARCHIVE_GET)


def h_archive_rate(ctx, rule):
    out = [_post(rule, "nocsrf", {"student": [ctx.inside("student")], "result": "pass"}, phases=ARCHIVE_POST),
           _post(rule, "out", {"student": [ctx.outside("student")], "result": "pass"}, expect=OUT,
                 phases=ARCHIVE_POST),
           _post(rule, "out", {"student": [ctx.inside("student"), ctx.outside("student")], "result": "pass"},
                 expect=OUT, phases=ARCHIVE_POST, note="an inside and an outside student at once")]
    if ctx.role != "principal":
        out.append(_post(rule, "refuse", {"student": [ctx.inside("student")], "result": "pass"}, expect=REFUSE,
                         phases=ARCHIVE_POST))
    return out


def h_archive_sign(ctx, rule):
    out = []
    if "GET" in rule.methods:
        out += _by_id(ctx, rule, "class_id", "class", phases=ARCHIVE_GET)
    if "POST" in rule.methods:
        data_in = {"student": [ctx.inside("student")], "kind": "both", "date": "2022-04-20"}
        own_class = {"class_id": ctx.inside("class")}
        out.append(_post(rule, "nocsrf", data_in, values=own_class, phases=ARCHIVE_POST))
        out.append(_post(rule, "out", {"student": [ctx.outside("student")], "kind": "both", "date": "2022-04-20"},
                         values={"class_id": ctx.outside("class")}, expect=OUT, phases=ARCHIVE_POST))
        out.append(_post(rule, "out", {"student": [ctx.world.get("student", "other_class")], "kind": "both",
                                       "date": "2022-04-20"}, values=own_class, expect=OUT, phases=ARCHIVE_POST,
                         note="a student of another class through this class"))
        if ctx.role not in ("homeroom_teacher", "school_clerk"):
            out.append(_post(rule, "refuse", data_in, values=own_class, expect=frozenset({403, 404}),
                             phases=ARCHIVE_POST))
    return out


def h_summary_scan(ctx, rule):
    return _by_id(ctx, rule, "upload_id", "upload", phases=ARCHIVE_GET)


def h_summary_file(ctx, rule):
    return _by_id(ctx, rule, "school_id", "school", phases=ARCHIVE_GET)


def h_summary_upload(ctx, rule):
    file = {"file": (_tiny_pdf("爬虫"), "scan.pdf")}
    out = [_post(rule, "nocsrf", file, values={"school_id": ctx.inside("school")}, phases=ARCHIVE_POST),
           _post(rule, "out", file, values={"school_id": ctx.outside("school")}, expect=OUT, phases=ARCHIVE_POST)]
    if ctx.role != "principal":
        out.append(_post(rule, "refuse", file, values={"school_id": ctx.inside("school")}, expect=REFUSE,
                         phases=ARCHIVE_POST))
    return out


def h_unlock(ctx, rule):
    """账号解锁: a classmate's account is inside every unlocker's people; the nearest outside account is not."""
    inside = ctx.world.users["s1g9c1n02"]
    outside = ctx.world.users[{"student": "s1g9c2n01", "class": "s1g9c2n01", "school": "s2g9c1n01"}.get(
        ctx.kind, "zz_clerk")]
    if "GET" in rule.methods:
        return [_page(rule)]
    out = [_post(rule, "nocsrf", {"user_id": [inside]}),
           _post(rule, "out", {"user_id": [outside]}, expect=OUT),
           _post(rule, "out", {"user_id": [inside, outside]}, expect=OUT, note="an inside and an outside account")]
    if ctx.role not in UNLOCKERS:
        out.append(_post(rule, "refuse", {"user_id": [inside]}, expect=REFUSE))
    return out


def h_dashboard_id(ctx, rule):
    var = "school_id" if "school_id" in rule.arguments else "class_id"
    return _by_id(ctx, rule, var, var[:-3])


def h_deadlines_run(ctx, rule):
    data_in = {"cohort_id": ctx.inside("cohort"), "effect": "auto_confirm"}
    out = [_post(rule, "nocsrf", data_in),
           _post(rule, "out", {"cohort_id": ctx.outside("cohort"), "effect": "auto_confirm"}, expect=OUT)]
    if ctx.role != "district_admin":
        out.append(_post(rule, "refuse", data_in, expect=REFUSE))
    return out


def h_deadlines_catch_up(ctx, rule):
    out = [_post(rule, "nocsrf")]
    if ctx.role != "district_admin":
        out.append(_post(rule, "refuse", expect=REFUSE))
    return out


def h_register_index(ctx, rule):
    out = [_page(rule)]
    file = {"file": (b"not really a workbook", "register.xlsx")}
    out.append(_post(rule, "nocsrf", {"district_id": ctx.inside("district"), **file}))
    out.append(_post(rule, "out", {"district_id": ctx.outside("district"), **file}, expect=OUT))
    if ctx.role != "district_admin":
        out.append(_post(rule, "refuse", {"district_id": ctx.inside("district"), **file}, expect=REFUSE))
    return out


def h_register_token(ctx, rule):
    mine = ctx.world.register_tokens.get(ctx.username)
    other = ctx.world.register_tokens["zz_clerk" if ctx.username != "zz_clerk" else "admin"]
    if "POST" in rule.methods:
        return [_post(rule, "nocsrf", values={"token": mine or other}),
                _post(rule, "out", values={"token": other}, expect=OUT)]
    base = dict(endpoint=rule.endpoint, rule=rule.rule)
    out = [Probe("GET", _url(rule, {"token": other}), kind="out", expect=OUT, **base)]
    if mine:
        out.append(Probe("GET", _url(rule, {"token": mine}), kind="in", **base))
    return out


# endpoint → (handler, URL variables it fills)
HANDLERS = {
    "auth.index": (h_page, set()), "auth.login": (h_self_service, set()), "auth.logout": (h_self_service, set()),
    "auth.password": (h_self_service, set()), "health.healthz": (h_health, set()),
    "health.livez": (h_health, set()), "health.favicon": (h_health, set()), "unlock.index": (h_unlock, set()), "unlock.unlock": (h_unlock, set()),
    "admin.index": (h_page, set()),
    "inbox.inbox": (h_page, set()), "inbox.mark_read": (h_self_service, set()),
    "inbox.job_status": (h_job_status, {"job_id"}),
    "me.records": (h_page, set()), "me.record_action": (h_me_record_action, {"record_id", "action"}),
    "me.confirm_all": (h_me_confirm_all, set()), "me.report": (h_me_report, {"student_id"}),
    "me.classmates": (h_page, set()), "me.appeal": (h_me_appeal, {"student_id"}), "me.appeals": (h_page, set()),
    "cases.show": (h_case_show, {"case_id"}), "cases.act": (h_case_act, {"case_id", "action"}),
    "cases.review": (h_review, {"record_id"}), "cases.record_history": (h_record_history, {"record_id"}),
    "reports.student_report": (h_student_report, {"student_id"}),
    "reports.student_report_pdf": (h_student_report, {"student_id"}),
    "reports.class_slips": (h_class_slips, {"class_id"}),
    "reports.public_report": (h_public_report, {"token"}), "reports.public_report_pdf": (h_public_report, {"token"}),
    "lookup.results": (h_lookup, set()),
    "reports.batch": (h_batch, set()), "reports.batch_download": (h_batch_download, {"token"}),
    "account_slips.index": (h_slips_index, set()), "account_slips.print_view": (h_slips_print, set()),
    "archive_progress.index": (h_school_query_page, set()), "archive_progress.roster": (h_archive_class, {"class_id"}),
    "archive_rate.index": (h_school_query_page, set()), "archive_rate.rate": (h_archive_rate, set()),
    "archive_sign.index": (lambda ctx, rule: [_page(rule, phases=ARCHIVE_GET)], set()),
    "archive_sign.roster": (h_archive_sign, {"class_id"}), "archive_sign.sign": (h_archive_sign, {"class_id"}),
    "archive_summary.index": (h_school_query_page, set()), "archive_summary.scan": (h_summary_scan, {"upload_id"}),
    "archive_summary.pdf": (h_summary_file, {"school_id"}), "archive_summary.xlsx": (h_summary_file, {"school_id"}),
    "archive_summary.upload": (h_summary_upload, {"school_id"}),
    "dashboard.index": (h_page, set()), "dashboard.district_xlsx": (h_page, set()),
    "dashboard.school": (h_dashboard_id, {"school_id"}), "dashboard.school_xlsx": (h_dashboard_id, {"school_id"}),
    "dashboard.klass": (h_dashboard_id, {"class_id"}), "dashboard.class_xlsx": (h_dashboard_id, {"class_id"}),
    "deadlines.index": (h_page, set()), "deadlines.run": (h_deadlines_run, set()),
    "deadlines.catch_up": (h_deadlines_catch_up, set()),
    "register_import.index": (h_register_index, set()), "register_import.template": (h_page, set()),
    "register_import.commit": (h_register_token, {"token"}), "register_import.errors": (h_register_token, {"token"}),
}
# Static files are excluded on purpose: they are the same bytes for everyone.
EXCLUDED = {"static", "admin.static"}
PUBLIC = {"auth.login", "health.healthz", "health.livez", "health.favicon", "reports.public_report", "reports.public_report_pdf",
          "lookup.results"}


@dataclass
class Entry:
    rule: object
    make: object  # (ctx) → [Probe]


def foreign_profile_categories() -> set[str]:
    """Codes of the categories of profiles the crawl's world does not run (Changsha): their views must be closed
    to every account of the world's Shanghai district."""
    from seed import changsha

    return {c["code"] for c in changsha.CATEGORIES}


def foreign_profile_probes(ctx: Ctx, view, method: str, rule) -> list[Probe]:
    """Every endpoint of a category view of another profile is refused: no list, no form, no export, no write."""
    base = dict(endpoint=rule.endpoint, rule=rule.rule, model_view=True)
    url = _url(rule, {"export_type": "csv", "token": "0" * 32} if rule.arguments else None)
    closed = frozenset({302, 403, 404})
    probes = []
    if "GET" in rule.methods:
        probes.append(Probe("GET", url, kind="closed", expect=closed, **base))
    if "POST" in rule.methods:
        probes.append(Probe("POST", url, kind="closed", data={}, expect=closed, **base))
    return probes


# Blueprints of the Changsha profile's pages, and the URL variables their probes fill.
CHANGSHA_BLUEPRINTS = ("changsha.", "changsha_desk.", "evidence.", "datapackage.")
CHANGSHA_VARS = {"class_id", "school_id", "student_id", "item_id", "file_id", "kind", "place_id", "member_id",
                 "complaint_id", "action",
                 "package_id"}


def changsha_probes(ctx: Ctx, rule) -> list[Probe]:
    """The Changsha profile's pages (views/changsha.py, views/evidence.py), for the accounts of the world's
    Shanghai district, with their own class's, school's and student's ids and those of the nearest outside: no
    write goes through (every POST refused, the batch fingerprint unchanged), and whatever a GET answers shows
    none of the world's data the role may not see (the marker oracle). Their Changsha-side scope is tested in
    tests/test_changsha_pages.py and tests/test_evidence.py."""
    base = dict(endpoint=rule.endpoint, rule=rule.rule)
    closed = frozenset({302, 403, 404})
    probes = []
    for side, kind in (("self", "in"), (ctx.level_out("school"), "out")):
        values = {"class_id": ctx.world.get("class", side), "school_id": ctx.world.get("school", side),
                  "student_id": ctx.world.get("student", side), "item_id": 1, "file_id": 1,
                  "kind": "school", "place_id": ctx.world.get("school", side), "member_id": 1,
                  "package_id": 1, "complaint_id": 1, "action": "dismiss"}
        url = _url(rule, {k: v for k, v in values.items() if k in rule.arguments})
        if "GET" in rule.methods:
            probes.append(Probe("GET", url, kind=kind if rule.arguments else "page", **base))
        if "POST" in rule.methods:
            data = {"action": "finalise", "signed_name": "x", "file": (b"%PDF-1.4\n%%EOF\n", "x.pdf")}
            probes.append(Probe("POST", url, kind="closed", data=data, expect=closed, **base))
            probes.append(Probe("POST", url, kind="nocsrf", data={"action": "finalise"}, csrf=False,
                                expect=closed | NOCSRF, **base))
    return probes


def inventory(app, rules=None) -> tuple[list[Entry], list[str]]:
    """Every rule with the handler that fills it, and the rules nobody knows how to fill (each a sentence)."""
    from views.base import ScopedModelView

    admins = app.extensions["admin"]
    admin = admins[0] if isinstance(admins, list) else admins
    views = {v.endpoint: v for v in admin._views}
    entries, unknown = [], []
    for rule in rules if rules is not None else app.url_map.iter_rules():
        if rule.endpoint in EXCLUDED:
            continue
        args = set(rule.arguments)
        view_name, _, method = rule.endpoint.partition(".")
        view = views.get(view_name)
        if rule.endpoint in HANDLERS:
            handler, fills = HANDLERS[rule.endpoint]
            if not args <= fills:
                unknown.append(f"{rule.rule} ({rule.endpoint}): unknown URL variable(s) {sorted(args - fills)}")
                continue
            entries.append(Entry(rule, lambda ctx, rule=rule, handler=handler: handler(ctx, rule)))
        elif rule.endpoint.startswith(CHANGSHA_BLUEPRINTS) and args <= CHANGSHA_VARS:
            entries.append(Entry(rule, lambda ctx, rule=rule: changsha_probes(ctx, rule)))
        elif isinstance(view, ScopedModelView) and view.endpoint.startswith("cat_") \
                and view.endpoint[4:] in foreign_profile_categories():
            entries.append(Entry(rule, lambda ctx, rule=rule, view=view, method=method:
                                 foreign_profile_probes(ctx, view, method, rule)))
        elif isinstance(view, ScopedModelView) and method in MODELVIEW_METHODS:
            fills = MODELVIEW_VARS.get(method, set())
            if not args <= fills:
                unknown.append(f"{rule.rule} ({rule.endpoint}): unknown URL variable(s) {sorted(args - fills)}")
                continue
            if view.endpoint not in VIEW_OBJECT and not view.endpoint.startswith("cat_") and view.endpoint not in (
                    "review_queue", "corrections", "cases_admin", "categories"):
                unknown.append(f"{rule.rule} ({rule.endpoint}): no inside/outside objects known for view "
                               f"{view.endpoint}")
                continue
            entries.append(Entry(rule, lambda ctx, rule=rule, view=view, method=method:
                                 modelview_probes(ctx, view, method, rule)))
        else:
            unknown.append(f"{rule.rule} ({rule.endpoint}): endpoint the crawl cannot classify")
    return entries, unknown


# ---------------------------------------------------------------------------------------------
# The crawler


@dataclass
class Violation:
    role: str
    phase: str
    method: str
    url: str
    status: int | None
    problem: str
    bucket: str = "main"

    def __str__(self) -> str:
        return f"[{self.role} @ {self.phase}] {self.method} {self.url} → {self.status}: {self.problem}"


@dataclass
class RoleResult:
    role: str
    requests: int = 0
    seconds: float = 0.0
    by_phase: Counter = field(default_factory=Counter)
    violations: list = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    time_by_view: Counter = field(default_factory=Counter)  # blueprint or admin view → seconds
    classmate_probes: Counter = field(default_factory=Counter)  # phase → requests for the classmate's pages


class Crawler:
    def __init__(self, app, world: World, conn, entries: list[Entry]):
        self.app, self.world, self.conn, self.entries = app, world, conn, entries
        self.results: dict[str, RoleResult] = {}

    # --- one request ----------------------------------------------------------------------
    @staticmethod
    def _send(client, token, probe: Probe):
        headers = {}
        kw = {}
        if probe.json is not None:
            kw["json"] = probe.json
            if probe.csrf and token:
                headers["X-CSRFToken"] = token
        else:
            data = {}
            for key, value in (probe.data or {}).items():
                data[key] = (io.BytesIO(value[0]), value[1]) if isinstance(value, tuple) else value
            if probe.method == "POST" and probe.csrf and token:
                data["csrf_token"] = token
            if probe.method == "POST":
                kw["data"] = data
                if any(isinstance(v, tuple) for v in (probe.data or {}).values()):
                    kw["content_type"] = "multipart/form-data"
        try:
            resp = client.open(probe.url, method=probe.method, headers=headers, **kw)
            body = resp.get_data()
        except Exception as exc:  # noqa: BLE001 - TESTING propagates a view's exception: it is a 500
            db.session.close()  # back to the request's SAVEPOINT (PostgreSQL aborts the transaction)
            return 500, "text/plain", "", "", f"{type(exc).__name__}: {exc}"[:300].encode()
        status, ctype = resp.status_code, resp.content_type or ""
        location = resp.headers.get("Location", "")
        disposition = resp.headers.get("Content-Disposition", "")
        resp.close()
        if db.session.new or db.session.dirty or db.session.deleted:
            # What a request left unsaved dies with it, as with production's session per request. (The session
            # itself is kept: loading the user and their grants again for every request would double the
            # crawl's time; whatever a request commits expires it anyway.)
            db.session.rollback()
        return status, ctype, location, disposition, body

    def _oracle(self, role: str, kind: str, phase: str, probe: Probe) -> Oracle:
        names = forbidden_markers(role, kind, phase)
        if role == "anonymous" and not probe.public_self:
            names.add("self")
        if probe.classmate and phase == "publication":
            names.discard("classmate")
        family = role in ("student", "parent") or role == "anonymous"
        xjh = {}
        if family:
            own = self.world.own_student.get(USERS[role][0]) if role != "anonymous" else None
            if role == "anonymous" and probe.public_self:
                own = self.world.get("student", "self")
            xjh = {x: f"student #{sid}" for sid, x in self.world.xjh.items() if sid != own}
        return Oracle({n: MARKERS[n] for n in names}, xjh, self.world.mobiles, family)

    def _check(self, role, kind, phase, probe: Probe, status, ctype, location, disposition, body, pairs, seen):
        problems = []
        if status >= 500:
            problems.append(f"server error {status}" + (f" ({body.decode(errors='replace')[:200]})"
                                                         if ctype == "text/plain" else ""))
        expect = probe.expect
        if probe.classmate and phase == "publication":
            expect = None  # the classmate's published report is theirs to read now
        anon_login = role == "anonymous" and probe.endpoint not in PUBLIC and probe.kind != "nocsrf"
        if anon_login:
            if status == 302 and "/login" not in location:
                problems.append(f"anonymous redirected to {location!r}, not to /login")
            elif status not in (302, 401, 404):
                problems.append(f"anonymous got {status}, expected 302 to /login (or 401/404)")
        elif role == "anonymous" and probe.kind == "nocsrf":
            if status not in (400, 302):
                problems.append(f"POST without CSRF token answered {status}, expected 400 (or 302 to /login)")
        elif probe.kind == "nocsrf" and status == 400 and b"CSRF" not in body:
            problems.append("POST without CSRF token answered 400, but not for the missing token")
        elif expect is not None and status not in expect:
            if probe.kind == "nocsrf":
                problems.append(f"POST without CSRF token answered {status}, expected 400")
            elif probe.kind == "out":
                problems.append(f"out-of-scope request answered {status}, expected {sorted(expect)}")
            elif probe.kind == "refuse":
                problems.append(f"a role that may not act got {status}, expected {sorted(expect)}")
            elif probe.kind == "closed":
                problems.append(f"the view's list answered 403 (closed to the role), but this answered {status}")
            else:
                problems.append(f"answered {status}, expected {sorted(expect)}")
        if probe.kind == "out" and status == 403 and not probe.classmate and pairs.get((probe.endpoint, probe.method, probe.rule)) == 200:
            problems.append("403 for an outside id while the inside one answers 200: the object's existence leaks "
                            "(expected 404)")
        text = body_text(body, ctype, disposition)
        seen.update(seen_markers(text))
        leaks = self._oracle(role, kind, phase, probe).leaks(text)
        problems += [f"shows {leak}" for leak in leaks]
        return problems

    # --- a role's crawl -------------------------------------------------------------------
    def probes(self, role: str) -> list[Probe]:
        ctx = Ctx(role, self.world, self.app)
        out = []
        for entry in self.entries:
            out += entry.make(ctx)
        if role not in NOCSRF_ROLES:
            out = [p for p in out if p.kind != "nocsrf"]
        # each model view's list first: when it answers 403 the view is closed to the role (see _run_batch)
        out.sort(key=lambda p: not (p.model_view and p.endpoint.endswith(".index_view")))
        if role == "anonymous":
            # Without a login every page but the public ones is a redirect to /login, whatever the id: one
            # request per rule and method (and without a token), all of them for the public pages.
            kept, seen = [], set()
            for p in out:
                key = (p.rule, p.method, p.kind == "nocsrf", p.endpoint in PUBLIC and p.url)
                if key not in seen:
                    seen.add(key)
                    kept.append(p)
            out = kept
        return out

    def login(self, client, username):
        from conftest import csrf_from

        page = client.get("/login")
        token = csrf_from(page.get_data(as_text=True))
        if username is None:
            return token
        resp = client.post("/login", data={"username": username, "password": "cqe2022", "csrf_token": token})
        assert resp.status_code == 302, f"login of {username} failed: {resp.status_code}"
        db.session.close()
        return token

    def run_role(self, role: str) -> RoleResult:
        if role in self.results:
            return self.results[role]
        result = RoleResult(role)
        started = time.perf_counter()
        kind = "anonymous" if role == "anonymous" else USERS[role][1]
        client = self.app.test_client()
        token = self.login(client, None if role == "anonymous" else USERS[role][0])
        probes = self.probes(role)
        try:
            for phase, instant in PHASES.items():
                clock.pin(instant)
                batch = [p for p in probes if phase in p.phases and (phase == "entry" or not (
                    p.model_view or (p.heavy and role not in ("student", "parent", "anonymous"))))]
                self._run_batch(role, kind, phase, client, token, batch, result)
        finally:
            clock.pin(None)
        result.seconds = time.perf_counter() - started
        self.results[role] = result
        return result

    def _fingerprint(self):
        fp = table_fingerprint()
        db.session.close()
        return fp

    def _run_batch(self, role, kind, phase, client, token, batch, result):
        db.session.close()
        savepoint = self.conn.begin_nested()
        before = self._fingerprint()
        pairs, seen = {}, set()
        closed, done, executed = set(), set(), []
        for probe in batch:
            view = probe.endpoint.split(".")[0] if probe.model_view else None
            key = (probe.rule, probe.method, probe.kind == "nocsrf")
            if view in closed:
                # The view's list answered 403: Flask-Admin refuses every endpoint of the view before it reads
                # an id (is_accessible), so one request per rule and method shows it closed.
                if key in done:
                    continue
                if probe.kind != "nocsrf":
                    probe = dataclasses.replace(probe, kind="closed", expect=REFUSE)
            done.add(key)
            executed.append(probe)
            t0 = time.perf_counter()
            status, ctype, location, disposition, body = self._send(client, token, probe)
            result.requests += 1
            result.by_phase[phase] += 1
            result.statuses[status] += 1
            result.classmate_probes[phase] += probe.classmate
            if probe.kind == "in" and probe.method == "GET":
                pairs[(probe.endpoint, probe.method, probe.rule)] = status
            if view and probe.endpoint.endswith(".index_view") and status == 403:
                closed.add(view)
            for problem in self._check(role, kind, phase, probe, status, ctype, location, disposition, body, pairs,
                                       seen):
                result.violations.append(self._violation(role, phase, probe, status, problem))
            result.time_by_view[probe.endpoint.split(".")[0]] += time.perf_counter() - t0
        after = self._fingerprint()
        db.session.close()
        savepoint.rollback()
        if after != before:
            result.violations += self._bisect(role, phase, client, token, executed)
        missing = expected_markers(role, kind, phase) - seen
        # staff pages of later phases are a part of the crawl (model views' scope has no time in it)
        if (phase == "entry" or role in ("student", "parent")) and phase != "archive" and missing:
            result.violations.append(Violation(role, phase, "-", "-", None,
                                               f"never saw the marker(s) {sorted(missing)} of its own scope: the "
                                               "crawl did not reach the data it checks"))

    def _violation(self, role, phase, probe: Probe, status, problem) -> Violation:
        bucket = "main"
        if (role == "student" and phase != "publication" and probe.endpoint in REPORT_SCOPE_ENDPOINTS
                and (probe.classmate or "classmate" in problem)):
            bucket = CLASSMATE_BUCKET
        note = f" [{probe.note}]" if probe.note else ""
        return Violation(role, phase, probe.method, probe.url + note, status, problem, bucket)

    def _changes(self, client, token, probes) -> bool:
        """Whether these requests, replayed in a SAVEPOINT that is then rolled back, change the database."""
        savepoint = self.conn.begin_nested()
        before = self._fingerprint()
        for probe in probes:
            self._send(client, token, probe)
        after = self._fingerprint()
        db.session.close()
        savepoint.rollback()
        return after != before

    def _bisect(self, role, phase, client, token, batch) -> list[Violation]:
        """Replay the batch in chunks (POSTs first), then the changing chunks one request at a time, each in
        its own SAVEPOINT, and name the requests that changed the database."""
        found = []
        posts = [p for p in batch if p.mutating]
        gets = [p for p in batch if not p.mutating]
        for group in (posts, gets):
            for start in range(0, len(group), 24):
                chunk = group[start:start + 24]
                if not self._changes(client, token, chunk):
                    continue
                for probe in chunk:
                    savepoint = self.conn.begin_nested()
                    before = self._fingerprint()
                    status, *_rest = self._send(client, token, probe)
                    after = self._fingerprint()
                    db.session.close()
                    savepoint.rollback()
                    if after != before:
                        tables = sorted(t for t in before if before[t] != after.get(t))
                        found.append(self._violation(role, phase, probe, status,
                                                     f"changed the database (tables {', '.join(tables)})"))
            if found:
                break
        if not found:
            found.append(Violation(role, phase, "-", "-", None,
                                   "the batch changed the database, but no single request did when replayed"))
        return found


def summary(results: dict[str, RoleResult]) -> str:
    lines = ["access crawl: role, requests (entry/publication/archive), seconds, statuses, violations"]
    total = 0
    for role, r in results.items():
        total += r.requests
        phases = "/".join(str(r.by_phase.get(p, 0)) for p in PHASES)
        codes = ", ".join(f"{c}×{n}" for c, n in sorted(r.statuses.items()))
        lines.append(f"  {role:17} {r.requests:5} ({phases}) {r.seconds:6.1f}s  [{codes}]  {len(r.violations)}")
    spent = Counter()
    for r in results.values():
        spent.update(r.time_by_view)
    lines.append("  slowest views: " + ", ".join(f"{name} {t:.1f}s" for name, t in spent.most_common(8)))
    lines.append(f"  total {total} requests, {sum(r.seconds for r in results.values()):.1f}s")
    return "\n".join(lines)
