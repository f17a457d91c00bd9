"""学籍导入 (issue 6, part 4): stand a district up from an xlsx export of the student register, and the
initial passwords printed on account slips (账号单).

The workbook
    The first sheet (other than 教职工) holds the students, one per row, under a header row found by its
    column names (exports often put a title above it): 学校代码, 学校名称, 年级, 班级, 学籍号, 姓名, 性别,
    学籍状态, optionally 家长姓名 and 家长手机. An optional sheet 教职工 holds staff: 学校代码, 姓名, 工号 or
    用户名, 角色 (Chinese role names), and 年级 + 班级 for the class roles.

Reconciling, not appending
    Schools are matched by code (within the importing district; a code of another district is refused),
    classes by (school, grade, number), students by 学籍号, a student's and a parent's account by their
    role grant on the student, staff accounts by username. Whatever matches is updated only where the file
    differs, so re-running a file changes nothing and an updated file updates. Nothing is deleted: a
    student missing from a later file stays (leaving is a status, 离校/转学). The same code computes the
    preview counts (``check``) and does the writing (``apply``), so the preview says exactly what happens.

Accounts
    Students' usernames are their 学籍号 and parents' ``p_<学籍号>``. The demo's ``s1g9c1n01`` names encode
    school, grade, class and position: they are wrong as soon as a student changes class, and depend on
    the file's order. The 学籍号 is unique nationally, never changes, and students know it. Staff use the
    file's 用户名, or ``<学校代码>_<工号>`` (a 工号 is only unique within its school).

Passwords
    Plaintext passwords are never stored, and hashing is slow on purpose (werkzeug's scrypt: ~0.1 s each,
    so 10,000 accounts would hold a request for minutes). So the import creates accounts *without a usable
    password* (``UNUSABLE_PASSWORD``: nothing can log in with it) and with ``must_change_password``. A
    password exists only once somebody prints the class's account slips: printing generates a fresh
    random initial password for every account of the class still waiting for its first login, stores its
    hash, and shows the plaintext once, on the printed page. Reprinting (a lost slip) replaces them.

    Initial passwords are random (8 characters from 31 unambiguous lower-case letters and digits, ~40
    bits), one-time (the holder must replace them at first login, and the replacement is hashed with the
    default scrypt), and short-lived, so they are hashed with PBKDF2-SHA256 at ``INITIAL_HASH_ITERATIONS``
    (~10 ms; a class's ~90 accounts in about a second). A stolen database still costs an attacker weeks of
    GPU time per initial password, which has long been replaced by then. werkzeug reads the method
    from the stored hash, so logging in needs no special case.
"""
from __future__ import annotations

import re
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from io import BytesIO

import sqlalchemy as sa
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from sqlalchemy.orm import selectinload
from werkzeug.security import generate_password_hash

from forms.imports import ImportFileError, readable_rows
from models import policy
from models.accounts import RoleGrant, User
from models.audit import acting
from models.base import db
from models.clock import local, now
from models.org import GRADE_NAMES, STUDENT_STATUSES, District, School, SchoolClass, Student
from models.roles import ROLES

STUDENT_SHEET = "学籍"
STAFF_SHEET = "教职工"
GUIDE_SHEET = "说明"
MAX_ROWS = 50_000
HEADER_SCAN = 20  # rows searched for the header row
BATCH = 500

UNUSABLE_PASSWORD = "!"  # not a werkzeug hash (no "$"): check_password_hash is always False for it
SLIP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no i l o 0 1
SLIP_PASSWORD_LENGTH = 8
INITIAL_HASH_ITERATIONS = 50_000
INITIAL_HASH_METHOD = f"pbkdf2:sha256:{INITIAL_HASH_ITERATIONS}"

# Column → the header texts that mean it (exports of different systems word them differently).
STUDENT_COLUMNS = {
    "学校代码": ("学校代码", "学校标识码", "学校编码", "学校编号"),
    "学校名称": ("学校名称", "学校"),
    "年级": ("年级", "年级名称"),
    "班级": ("班级", "班级名称", "班号"),
    "学籍号": ("学籍号", "全国学籍号", "学籍号码"),
    "姓名": ("姓名", "学生姓名"),
    "性别": ("性别",),
    "学籍状态": ("学籍状态", "在校状态"),
    "家长姓名": ("家长姓名", "监护人姓名", "监护人"),
    "家长手机": ("家长手机", "监护人手机", "家长电话", "监护人电话", "家长手机号"),
}
STUDENT_REQUIRED = ("学校代码", "学校名称", "年级", "班级", "学籍号", "姓名", "性别", "学籍状态")
STAFF_COLUMNS = {
    "学校代码": ("学校代码", "学校标识码", "学校编码"),
    "姓名": ("姓名", "教师姓名"),
    "工号": ("工号", "教工号", "教职工号"),
    "用户名": ("用户名", "账号"),
    "角色": ("角色",),
    "年级": ("年级",),
    "班级": ("班级", "班号"),
    "手机": ("手机", "手机号", "联系电话"),
}
STAFF_REQUIRED = ("学校代码", "姓名", "角色")

GRADE_WORDS = {
    **{name: g for g, name in GRADE_NAMES.items()},
    "预备": 6, "预备年级": 6, "预初": 6, "六": 6, "七": 7, "八": 8, "九": 9,
    "初一": 7, "初二": 8, "初三": 9, "初中一年级": 7, "初中二年级": 8, "初中三年级": 9,
}
GENDERS = {"男": "男", "女": "女", "男性": "男", "女性": "女", "1": "男", "2": "女"}
STATUS_WORDS = {**{name: code for code, name in STUDENT_STATUSES.items()}, "在读": "enrolled", "在校": "enrolled"}
# Roles a school's staff sheet may grant: the school's and the class's (never district, city, family).
STAFF_ROLES = {r.name: r.code for r in ROLES.values() if r.scope in ("school", "class")}
STAFF_ROLES.update({"校管理员": "school_admin", "校录入员": "school_clerk", "校审核员": "school_auditor",
                    "分管领导": "school_leader"})

KINDS = {
    "school": "学校", "class": "班级", "student": "学生", "student_account": "学生账号",
    "parent_account": "家长账号", "staff_account": "教职工账号", "staff_grant": "教职工角色",
}

_XJH_RE = re.compile(r"^[A-Za-z0-9]{5,32}$")
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{3,64}$")
_MOBILE_RE = re.compile(r"^1\d{10}$")
_CLASS_RE = re.compile(r"^[（(]?\s*(\d{1,2})\s*[）)]?\s*班?$")
_GRADE_CLASS_RE = re.compile(r"^(.+?)\s*[（(]\s*(\d{1,2})\s*[）)]\s*班?$")


# ---------------------------------------------------------------------------------------------
# What a file says, and what is wrong with it


@dataclass
class Issue:
    sheet: str
    row: int
    column: str
    message: str

    @property
    def text(self) -> str:
        where = f"「{self.column}」" if self.column else ""
        return f"工作表「{self.sheet}」第{self.row}行{where}：{self.message}"


@dataclass
class StudentRow:
    number: int
    values: dict  # column → text as read
    school_code: str = ""
    school_name: str = ""
    grade: int | None = None
    class_number: int | None = None
    xjh: str = ""
    name: str = ""
    gender: str = ""
    status: str = ""
    parent_name: str = ""
    parent_mobile: str = ""
    errors: dict = field(default_factory=dict)  # column → message


@dataclass
class StaffRow:
    number: int
    values: dict
    school_code: str = ""
    name: str = ""
    username: str = ""
    role: str = ""
    grade: int | None = None
    class_number: int | None = None
    mobile: str = ""
    errors: dict = field(default_factory=dict)


@dataclass
class Sheets:
    student_sheet: str
    students: list[StudentRow]
    staff: list[StaffRow]
    header_rows: dict  # sheet title → the header's row number


@dataclass
class Report:
    sheets: Sheets
    counts: dict  # kind → Counter(created=, updated=, unchanged=)

    @property
    def issues(self) -> list[Issue]:
        out = [Issue(self.sheets.student_sheet, r.number, col, msg) for r in self.sheets.students
               for col, msg in r.errors.items()]
        out += [Issue(STAFF_SHEET, r.number, col, msg) for r in self.sheets.staff for col, msg in r.errors.items()]
        return out

    @property
    def ok(self) -> bool:
        return not any(r.errors for r in self.sheets.students) and not any(r.errors for r in self.sheets.staff)

    @property
    def bad_rows(self) -> int:
        return sum(1 for r in self.sheets.students if r.errors) + sum(1 for r in self.sheets.staff if r.errors)

    def table(self) -> list[dict]:
        """The counts as rows for a page: kind, 新建, 更新, 不变."""
        return [{"kind": name, "created": self.counts[k]["created"], "updated": self.counts[k]["updated"],
                 "unchanged": self.counts[k]["unchanged"]} for k, name in KINDS.items()]

    def summary(self) -> str:
        parts = []
        for k, name in KINDS.items():
            c = self.counts[k]
            if sum(c.values()):
                parts.append(f"{name} 新建 {c['created']}、更新 {c['updated']}、不变 {c['unchanged']}")
        return "；".join(parts) or "没有数据"


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).replace("\u3000", " ").strip()


def _header_key(value) -> str:
    """A header cell without spaces, required-marks and parenthesised notes: 「学籍号（必填）*」→ 学籍号."""
    text = re.sub(r"[（(][^）)]*[）)]", "", _text(value))
    return re.sub(r"[\s*＊]", "", text)


def _columns(header: list, columns: dict) -> dict:
    """Column name → index of the first header cell meaning it."""
    found = {}
    keys = [_header_key(v) for v in header]
    for name, aliases in columns.items():
        for alias in aliases:
            if alias in keys:
                found[name] = keys.index(alias)
                break
    return found


def _find_header(rows: list, columns: dict, needed: tuple) -> tuple[int, dict] | None:
    for i, cells in enumerate(rows):
        cols = _columns([c.value for c in cells], columns)
        if all(n in cols for n in needed):
            return i, cols
    return None


def parse_grade(text: str) -> int | None:
    text = text.strip().replace(" ", "")
    if text in GRADE_WORDS:
        return GRADE_WORDS[text]
    m = re.fullmatch(r"([6-9])(?:年级)?", text)
    return int(m.group(1)) if m else None


def parse_class(text: str, grade: int | None) -> tuple[int | None, str]:
    """The class number of 3 / 3班 / (3)班 / 七年级(3)班, or None and why not."""
    text = text.strip()
    m = _CLASS_RE.fullmatch(text)
    if m is None:
        m2 = _GRADE_CLASS_RE.fullmatch(text)
        if m2 is None:
            return None, f"无法识别「{text}」：请填班号，如 3、3班 或 (3)班"
        named = parse_grade(m2.group(1))
        if named is None:
            return None, f"无法识别「{text}」：请填班号，如 3、3班 或 (3)班"
        if grade is not None and named != grade:
            return None, f"「{text}」与年级「{GRADE_NAMES[grade]}」不一致"
        number = int(m2.group(2))
    else:
        number = int(m.group(1))
    if not 1 <= number <= 99:
        return None, f"班号须为 1 至 99，不是「{text}」"
    return number, ""


def _cell_values(cells, cols: dict) -> tuple[dict, dict]:
    """Text per column, and the columns whose cell is a formula or a number too long to be exact."""
    values, problems = {}, {}
    for name, i in cols.items():
        cell = cells[i] if i < len(cells) else None
        value = getattr(cell, "value", None)
        if cell is not None and getattr(cell, "data_type", None) == "f":
            problems[name] = "不接受公式，请填写或粘贴为文本"
        elif isinstance(value, float) and not (value.is_integer() and abs(value) < 2**53):
            if name in ("学籍号", "家长手机", "手机", "学校代码", "工号"):
                problems[name] = "单元格是数字格式，Excel 已改变了它（科学计数法或丢失末位）：请将该列设为文本后重新导出"
        values[name] = _text(value)
    return values, problems


def _required(row, values: dict, names: tuple) -> None:
    for name in names:
        if not values.get(name) and name not in row.errors:
            row.errors[name] = "必填"


def _student_row(number: int, values: dict, problems: dict) -> StudentRow:
    row = StudentRow(number, values, errors=dict(problems))
    _required(row, values, STUDENT_REQUIRED)
    e = row.errors
    row.school_code = values.get("学校代码", "")
    if row.school_code and "学校代码" not in e and not _CODE_RE.fullmatch(row.school_code):
        e["学校代码"] = f"「{row.school_code}」不是有效的学校代码（字母、数字，至多32位）"
    row.school_name = values.get("学校名称", "")
    if len(row.school_name) > 128:
        e["学校名称"] = "至多128个字"
    text = values.get("年级", "")
    if text and "年级" not in e:
        row.grade = parse_grade(text)
        if row.grade is None:
            e["年级"] = f"无法识别「{text}」：可填 六年级、七年级、八年级、九年级，6 至 9，预备，初一、初二、初三"
    text = values.get("班级", "")
    if text and "班级" not in e:
        row.class_number, why = parse_class(text, row.grade)
        if row.class_number is None:
            e["班级"] = why
    row.xjh = values.get("学籍号", "")
    if row.xjh and "学籍号" not in e and not _XJH_RE.fullmatch(row.xjh):
        e["学籍号"] = f"「{row.xjh}」不是有效的学籍号（5至32位字母或数字）"
    row.name = values.get("姓名", "")
    if len(row.name) > 60:
        e["姓名"] = "至多60个字"
    text = values.get("性别", "")
    if text and "性别" not in e:
        row.gender = GENDERS.get(text, "")
        if not row.gender:
            e["性别"] = f"无法识别「{text}」：请填 男 或 女"
    text = values.get("学籍状态", "")
    if text and "学籍状态" not in e:
        row.status = STATUS_WORDS.get(text, "")
        if not row.status:
            e["学籍状态"] = f"无法识别「{text}」：可填 在籍（在读）、离校、休学、转学"
    row.parent_name = values.get("家长姓名", "")
    if len(row.parent_name) > 64:
        e["家长姓名"] = "至多64个字"
    row.parent_mobile = re.sub(r"[\s-]", "", values.get("家长手机", ""))
    if row.parent_mobile and "家长手机" not in e and not _MOBILE_RE.fullmatch(row.parent_mobile):
        e["家长手机"] = f"「{row.parent_mobile}」不是11位手机号"
    return row


def _staff_row(number: int, values: dict, problems: dict) -> StaffRow:
    row = StaffRow(number, values, errors=dict(problems))
    _required(row, values, STAFF_REQUIRED)
    e = row.errors
    row.school_code = values.get("学校代码", "")
    row.name = values.get("姓名", "")
    if len(row.name) > 64:
        e["姓名"] = "至多64个字"
    username, staff_no = values.get("用户名", ""), values.get("工号", "")
    if username:
        row.username = username
        if not _USERNAME_RE.fullmatch(username):
            e["用户名"] = f"「{username}」不可用：3至64位字母、数字或 _ . @ -"
    elif staff_no:
        row.username = f"{row.school_code}_{staff_no}"
        if not _USERNAME_RE.fullmatch(row.username):
            e["工号"] = f"「{staff_no}」不可用：工号只能是字母、数字或 _ . @ -"
    elif "用户名" not in e and "工号" not in e:
        e["用户名" if "用户名" in values else "工号"] = "必填：请填写用户名或工号"
    text = values.get("角色", "")
    if text and "角色" not in e:
        row.role = STAFF_ROLES.get(text, "")
        if not row.role:
            names = "、".join(r.name for r in ROLES.values() if r.scope in ("school", "class"))
            e["角色"] = f"无法识别「{text}」：可填 {names}"
    if row.role and ROLES[row.role].scope == "class":
        grade_text, class_text = values.get("年级", ""), values.get("班级", "")
        if not grade_text:
            e.setdefault("年级", f"必填：{ROLES[row.role].name}须指定年级和班级")
        else:
            row.grade = parse_grade(grade_text)
            if row.grade is None:
                e.setdefault("年级", f"无法识别「{grade_text}」")
        if not class_text:
            e.setdefault("班级", f"必填：{ROLES[row.role].name}须指定年级和班级")
        elif "年级" not in e:
            row.class_number, why = parse_class(class_text, row.grade)
            if row.class_number is None:
                e.setdefault("班级", why)
    row.mobile = re.sub(r"[\s-]", "", values.get("手机", ""))
    if row.mobile and "手机" not in e and not _MOBILE_RE.fullmatch(row.mobile):
        e["手机"] = f"「{row.mobile}」不是11位手机号"
    return row


def _read_sheet(ws, columns: dict, needed: tuple, required: tuple, make, one_of: tuple = ()) -> tuple[int, list]:
    it = readable_rows(ws.iter_rows(), ws.title)
    head = []
    for cells in it:
        head.append(cells)
        if len(head) >= HEADER_SCAN:
            break
    found = _find_header(head, columns, needed)
    if found is None:
        raise ImportFileError(f"工作表「{ws.title}」前{HEADER_SCAN}行中找不到表头（须有「{'」「'.join(needed)}」列）。")
    index, cols = found
    missing = [n for n in required if n not in cols]
    if one_of and not any(n in cols for n in one_of):
        missing.append("或".join(one_of))
    if missing:
        raise ImportFileError(f"工作表「{ws.title}」第{index + 1}行（表头）缺少列：{'、'.join(missing)}。")
    rows = []

    def take(number, cells):
        values, problems = _cell_values(cells, cols)
        if not any(values.values()):
            return
        if len(rows) >= MAX_ROWS:
            raise ImportFileError(f"工作表「{ws.title}」超过 {MAX_ROWS:,} 行，请按学校分批导入。")
        rows.append(make(number, values, problems))

    for number, cells in enumerate(head[index + 1:], start=index + 2):
        take(number, cells)
    for number, cells in enumerate(it, start=len(head) + 1):
        take(number, cells)
    return index + 1, rows


def read(stream) -> Sheets:
    """The workbook's rows with their format errors, or ImportFileError for a file that cannot be used."""
    try:
        wb = load_workbook(stream, read_only=True, data_only=False)
    except Exception:  # noqa: BLE001 - whatever the parser trips on (a zip, XML, zlib error …), the file is bad
        raise ImportFileError("文件无法读取：请上传学籍系统导出的 .xlsx 文件（不是改了扩展名的其他文件）。") from None
    try:
        sheets = [ws for ws in wb.worksheets if ws.title not in (STAFF_SHEET, GUIDE_SHEET)]
        if not sheets:
            raise ImportFileError("文件中没有学生名单工作表：第一个工作表应为学籍名单。")
        ws = sheets[0]
        header_rows = {}
        header_rows[ws.title], students = _read_sheet(ws, STUDENT_COLUMNS, ("学籍号", "姓名"), STUDENT_REQUIRED,
                                                      _student_row)
        staff = []
        if STAFF_SHEET in wb.sheetnames:
            header_rows[STAFF_SHEET], staff = _read_sheet(wb[STAFF_SHEET], STAFF_COLUMNS, ("姓名", "角色"),
                                                          STAFF_REQUIRED, _staff_row, one_of=("工号", "用户名"))
        if not students and not staff:
            raise ImportFileError(f"工作表「{ws.title}」中没有学生数据行。")
        return Sheets(ws.title, students, staff, header_rows)
    finally:
        wb.close()


# ---------------------------------------------------------------------------------------------
# Checking against the database, and writing


def _chunks(values):
    values = sorted(values)
    for i in range(0, len(values), BATCH):
        yield values[i:i + BATCH]


class _New:
    """Stands for an object the import would create (counted, not built) while only checking."""

    id = None


NEW = _New()


class _Reconciler:
    """Compares the file with the database and counts (``write=False``) or makes (``write=True``) every
    change. Existing objects are loaded in a few batched queries up front; nothing is queried per row."""

    def __init__(self, user: User, district: District, sheets: Sheets, write: bool, at: datetime):
        self.user, self.district, self.sheets, self.write, self.at = user, district, sheets, write, at
        self.counts = {k: Counter(created=0, updated=0, unchanged=0) for k in KINDS}
        self._seen_schools: set = set()
        self._seen_classes: set = set()
        self._granted: set = set()

    # --- loading ---------------------------------------------------------------------------
    def load(self) -> None:
        s = self.sheets
        codes = {r.school_code for r in s.students if r.school_code} | {r.school_code for r in s.staff if r.school_code}
        self.schools: dict[str, School] = {}
        for chunk in _chunks(codes):
            for school in db.session.execute(sa.select(School).where(School.code.in_(chunk))).scalars():
                self.schools[school.code] = school
        own = [sc.id for sc in self.schools.values() if sc.district_id == self.district.id]
        self.classes: dict[tuple, SchoolClass] = {}
        for chunk in _chunks(own):
            for klass in db.session.execute(sa.select(SchoolClass).where(SchoolClass.school_id.in_(chunk))).scalars():
                self.classes[(klass.school.code, klass.grade, klass.number)] = klass
        self.district_schools = set(db.session.execute(
            sa.select(School.id).where(School.district_id == self.district.id)).scalars())
        self.students: dict[str, Student] = {}
        for chunk in _chunks({r.xjh for r in s.students if r.xjh}):
            for student in db.session.execute(sa.select(Student).where(Student.xjh.in_(chunk))).scalars():
                self.students[student.xjh] = student
        # The accounts of those students: their role grants, with the users.
        self.family: dict[tuple, User] = {}
        ids = [st.id for st in self.students.values() if st.school_id in self.district_schools]
        for chunk in _chunks(ids):
            grants = db.session.execute(
                sa.select(RoleGrant).where(RoleGrant.student_id.in_(chunk), RoleGrant.role.in_(("student", "parent")))
                .options(selectinload(RoleGrant.user)).order_by(RoleGrant.id)).scalars()
            for g in grants:
                self.family.setdefault((g.student_id, g.role), g.user)
        names = {r.username for r in s.staff if r.username}
        for r in s.students:
            if r.xjh:
                names |= {r.xjh, f"p_{r.xjh}"}
        self.users: dict[str, User] = {}
        for chunk in _chunks(names):
            for u in db.session.execute(sa.select(User).where(User.username.in_(chunk))).scalars():
                self.users[u.username] = u
        # Staff accounts the admin may extend: inside the district (or not granted anything yet).
        staff_ids = [self.users[n].id for n in {r.username for r in s.staff} if n in self.users]
        self.manageable = set()
        for chunk in _chunks(staff_ids):
            self.manageable |= set(db.session.execute(sa.select(User.id).where(
                User.id.in_(chunk), policy.scope(self.user, User, "edit"))).scalars())
        self.locks = self._status_locks()

    def _status_locks(self) -> dict[int, str]:
        """Grade → why its students' 学籍状态 can no longer change: the non-participant list of its cohort
        was locked when preparation ended (SPEC §4). Before that, or without a current term, it can."""
        term = policy.current_term(self.district.id)
        locks = {}
        for grade in GRADE_NAMES:
            cohort = term.cohort_for_grade(grade) if term else None
            window = cohort.window("preparation") if cohort else None
            if window is not None and self.at >= window.ends_at:
                locks[grade] = (f"{cohort.name}的不参与填报名单已于 {local(window.ends_at):%Y-%m-%d %H:%M} 锁定，"
                                "不能再通过导入修改学籍状态")
        return locks

    # --- counting and writing --------------------------------------------------------------
    def _count(self, kind: str, outcome: str) -> None:
        self.counts[kind][outcome] += 1

    def _update(self, kind: str, obj, changes: dict) -> None:
        """Set the attributes that differ; count the object as updated or unchanged."""
        diff = {k: v for k, v in changes.items() if getattr(obj, k) != v}
        if diff and self.write:
            for k, v in diff.items():
                setattr(obj, k, v)
        self._count(kind, "updated" if diff else "unchanged")

    def _account(self, username: str, display_name: str, mobile: str | None = None) -> User | _New:
        if not self.write:
            return NEW
        user = User(username=username, display_name=display_name[:64], password_hash=UNUSABLE_PASSWORD,
                    active=True, must_change_password=True, mobile=mobile or None)
        db.session.add(user)
        return user

    def run(self) -> Report:
        self.load()
        self._check_rows()
        report = Report(self.sheets, self.counts)
        if not report.ok:
            return report
        self._students()
        self._staff()
        return report

    def _check_rows(self) -> None:
        """What needs the database or other rows: duplicates, other districts, taken usernames, locks."""
        seen_xjh: dict[str, int] = {}
        school_names: dict[str, tuple[str, int]] = {}
        for r in self.sheets.students:
            e = r.errors
            if r.xjh and "学籍号" not in e:
                if r.xjh in seen_xjh:
                    e["学籍号"] = f"{r.xjh} 与第{seen_xjh[r.xjh]}行重复"
                else:
                    seen_xjh[r.xjh] = r.number
            if r.school_code and "学校代码" not in e:
                school = self.schools.get(r.school_code)
                if school is not None and school.district_id != self.district.id:
                    e["学校代码"] = f"{r.school_code} 是其他区的学校，不能导入到{self.district.name}"
                elif r.school_name and "学校名称" not in e:
                    first = school_names.setdefault(r.school_code, (r.school_name, r.number))
                    if first[0] != r.school_name:
                        e["学校名称"] = f"学校代码 {r.school_code} 在第{first[1]}行是「{first[0]}」，与本行「{r.school_name}」不一致"
            student = self.students.get(r.xjh)
            if student is not None and "学籍号" not in e:
                if student.school_id not in self.district_schools:
                    e["学籍号"] = f"{r.xjh} 是其他区学校的学生，不能由{self.district.name}导入（请由原学校办理转出）"
                    continue
                if r.status and r.status != student.status and "学籍状态" not in e:
                    lock = self.locks.get(student.school_class.grade) or self.locks.get(r.grade)
                    if lock:
                        e["学籍状态"] = (f"{lock}（{student.name}现为「{student.status_name}」，"
                                      f"文件中为「{STUDENT_STATUSES[r.status]}」）")
            if r.xjh and "学籍号" not in e:
                for role, username in (("student", r.xjh), ("parent", f"p_{r.xjh}")):
                    owner = self.users.get(username)
                    mine = self.family.get((student.id, role)) if student is not None else None
                    if owner is not None and mine is None and not self._family_of(owner, student):
                        e["学籍号"] = f"用户名 {username} 已被其他账号使用，无法为该生创建{ROLES[role].name}账号"
                        break
        self._check_staff_rows(seen_xjh)

    @staticmethod
    def _family_of(user: User, student: Student | None) -> bool:
        return student is not None and any(g.student_id == student.id for g in user.grants)

    def _check_staff_rows(self, student_usernames: dict) -> None:
        classes_in_file = {(r.school_code, r.grade, r.class_number) for r in self.sheets.students if not r.errors}
        schools_in_file = {r.school_code for r in self.sheets.students}
        names: dict[str, tuple[str, int]] = {}
        for r in self.sheets.staff:
            e = r.errors
            col = "用户名" if r.values.get("用户名") else "工号"
            if r.school_code and "学校代码" not in e:
                school = self.schools.get(r.school_code)
                in_file = r.school_code in schools_in_file
                if school is not None and school.district_id != self.district.id:
                    e["学校代码"] = f"{r.school_code} 是其他区的学校，不能导入到{self.district.name}"
                elif school is None and not in_file:
                    e["学校代码"] = f"{r.school_code} 不是{self.district.name}的学校，学籍表中也没有该校"
            if r.grade and r.class_number and not e:
                key = (r.school_code, r.grade, r.class_number)
                if key not in self.classes and key not in classes_in_file:
                    e["班级"] = f"{GRADE_NAMES[r.grade]}({r.class_number})班 在该校不存在，学籍表中也没有"
            if r.username and col not in e and "用户名" not in e:
                first = names.setdefault(r.username, (r.name, r.number))
                existing = self.users.get(r.username)
                if first[0] != r.name:
                    e[col] = f"用户名 {r.username} 在第{first[1]}行是{first[0]}，与本行{r.name}不一致"
                elif r.username in student_usernames or r.username.startswith("p_") and \
                        r.username[2:] in student_usernames:
                    e[col] = f"用户名 {r.username} 与学籍表中的学生或家长账号相同"
                elif existing is not None:
                    if existing.has_role("student", "parent"):
                        e[col] = f"用户名 {r.username} 是学生或家长账号，不能授予教职工角色"
                    elif existing.id not in self.manageable:
                        e[col] = f"用户名 {r.username} 已被其他账号使用"

    def _school(self, r: StudentRow):
        school = self.schools.get(r.school_code)
        if school is None:
            self._count("school", "created")
            school = NEW
            if self.write:
                school = School(code=r.school_code, name=r.school_name, district_id=self.district.id)
                db.session.add(school)
            self.schools[r.school_code] = school
            self._seen_schools.add(r.school_code)
        elif r.school_code not in self._seen_schools:
            self._seen_schools.add(r.school_code)
            if school is not NEW:
                self._update("school", school, {"name": r.school_name})
        return school

    def _class(self, r: StudentRow, school):
        key = (r.school_code, r.grade, r.class_number)
        klass = self.classes.get(key)
        if klass is None:
            self._count("class", "created")
            klass = NEW
            if self.write:
                klass = SchoolClass(school=school, grade=r.grade, number=r.class_number)
                db.session.add(klass)
            self.classes[key] = klass
        elif key not in self._seen_classes:
            self._count("class", "unchanged")
        self._seen_classes.add(key)
        return klass

    def _students(self) -> None:
        for r in self.sheets.students:
            school = self._school(r)
            klass = self._class(r, school)
            student = self.students.get(r.xjh)
            old_name = student.name if student is not None else r.name
            if student is None:
                self._count("student", "created")
                if self.write:
                    student = Student(xjh=r.xjh, name=r.name, gender=r.gender, school_class=klass, status=r.status,
                                      school_id=0)  # school_id follows the class on flush
                    db.session.add(student)
            else:
                class_changed = klass is NEW or student.class_id != klass.id
                changes = {"name": r.name, "gender": r.gender, "status": r.status}
                if class_changed:
                    self._count("student", "updated")
                    if self.write:
                        student.school_class = klass
                        for k, v in changes.items():
                            if getattr(student, k) != v:
                                setattr(student, k, v)
                else:
                    self._update("student", student, changes)
            existing = student if isinstance(student, Student) and student.id is not None else None
            self._family(student, "student", r.xjh, r.name, None, existing)
            self._family(student, "parent", f"p_{r.xjh}", r.parent_name or f"{r.name}家长", r.parent_mobile, existing,
                         default_name=None if r.parent_name else f"{old_name}家长")

    def _family(self, student, role, username, display_name, mobile, existing, default_name=None) -> None:
        """The student's (or parent's) account: created with its grant, or its name and mobile updated. A parent
        named by the file keeps that name; one the file does not name keeps theirs, unless it is the default
        「<student>家长」, which follows the student's name."""
        kind = f"{role}_account"
        user = self.family.get((existing.id, role)) if existing is not None else None
        if user is None:
            self._count(kind, "created")
            account = self._account(username, display_name, mobile)
            if self.write:
                db.session.add(RoleGrant(user=account, role=role, student=student))
            return
        changes = {}
        if default_name is None or user.display_name == default_name:
            changes["display_name"] = display_name[:64]
        if mobile:
            changes["mobile"] = mobile
        self._update(kind, user, changes)

    def _staff(self) -> None:
        done: dict[str, object] = {}
        for r in self.sheets.staff:
            user = done.get(r.username)
            if user is None:
                user = self.users.get(r.username)
                if user is None:
                    self._count("staff_account", "created")
                    user = self._account(r.username, r.name, r.mobile)
                else:
                    changes = {"display_name": r.name}
                    if r.mobile:
                        changes["mobile"] = r.mobile
                    self._update("staff_account", user, changes)
                done[r.username] = user
            school = self.schools[r.school_code]
            scope_kind = ROLES[r.role].scope
            target = school if scope_kind == "school" else self.classes[(r.school_code, r.grade, r.class_number)]
            key = (r.username, r.role, r.school_code if scope_kind == "school" else (r.school_code, r.grade,
                                                                                   r.class_number))
            if key in self._granted:
                self._count("staff_grant", "unchanged")
                continue
            self._granted.add(key)
            held = isinstance(user, User) and user.id is not None and target is not NEW and target.id is not None \
                and any(g.role == r.role and g.scope_kind == scope_kind and g.scope_id == target.id for g in user.grants)
            if held:
                self._count("staff_grant", "unchanged")
                continue
            self._count("staff_grant", "created")
            if self.write:
                scope = {"school": school} if scope_kind == "school" else {"school_class": target}
                db.session.add(RoleGrant(user=user, role=r.role, **scope))


def check(user: User, district: District, sheets: Sheets, at: datetime | None = None) -> Report:
    """Every row checked against the file and the database, and what an import would create, update and
    leave unchanged. Writes nothing. Refuses (policy.Denied) a user who may not import into the district."""
    policy.require(user, "import_register", district, at)
    rec = _Reconciler(user, district, sheets, write=False, at=at or now())
    with db.session.no_autoflush:
        return rec.run()


class RegisterError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def apply(user: User, district: District, sheets: Sheets, *, reason: str, at: datetime | None = None) -> Report:
    """Check again and write everything in one transaction, each change in the history with ``reason``;
    roll back and raise RegisterError when a row is wrong or the database refuses."""
    policy.require(user, "import_register", district, at)
    rec = _Reconciler(user, district, sheets, write=True, at=at or now())
    try:
        with acting(None, reason):
            with db.session.no_autoflush:
                report = rec.run()
            if not report.ok:
                db.session.rollback()
                raise RegisterError(f"文件中有 {report.bad_rows} 行错误，未导入任何数据。")
            db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()
        raise RegisterError("导入失败，未写入任何数据：数据刚被他人修改（如同时导入了同一文件），请重新上传检查。") from None
    except RegisterError:
        raise
    except Exception:
        db.session.rollback()
        raise
    return report


# ---------------------------------------------------------------------------------------------
# The template and the error workbook


def template() -> bytes:
    """The register's layout: 学籍 (students), 教职工 (staff), 说明 (accepted values)."""
    wb = Workbook()
    ws = wb.active
    ws.title = STUDENT_SHEET
    bold, need = Font(bold=True), PatternFill("solid", fgColor="FFF2CC")
    headers = [*STUDENT_REQUIRED, "家长姓名", "家长手机"]
    ws.append(headers)
    for i, name in enumerate(headers, start=1):
        cell = ws.cell(row=1, column=i)
        cell.font = bold
        if name in STUDENT_REQUIRED:
            cell.fill = need
        ws.column_dimensions[get_column_letter(i)].width = 24 if name in ("学校名称", "学籍号") else 12
        for r in range(2, 1002):
            ws.cell(row=r, column=i).number_format = "@"  # codes, 学籍号 and phone numbers stay text
    for col, options in (("C", "六年级,七年级,八年级,九年级"), ("G", "男,女"), ("H", "在籍,离校,休学,转学")):
        dv = DataValidation(type="list", formula1=f'"{options}"', allow_blank=True, showErrorMessage=True,
                            errorTitle="请选择", error="请从下拉列表中选择")
        dv.add(f"{col}2:{col}5000")
        ws.add_data_validation(dv)
    ws.freeze_panes = "A2"
    staff = wb.create_sheet(STAFF_SHEET)
    staff_headers = ["学校代码", "姓名", "工号", "用户名", "角色", "年级", "班级", "手机"]
    staff.append(staff_headers)
    for i, name in enumerate(staff_headers, start=1):
        staff.cell(row=1, column=i).font = bold
        if name in STAFF_REQUIRED:
            staff.cell(row=1, column=i).fill = need
        staff.column_dimensions[get_column_letter(i)].width = 14
    roles = ",".join(r.name for r in ROLES.values() if r.scope in ("school", "class"))
    dv = DataValidation(type="list", formula1=f'"{roles}"', allow_blank=True)
    dv.add("E2:E2000")
    staff.add_data_validation(dv)
    guide = wb.create_sheet(GUIDE_SHEET)
    for line in (
        ("学籍导入说明",),
        ("第一个工作表为学生名单，表头可在前20行内；学籍系统导出的文件可直接上传，列名相同即可。",),
        ("必填列", "学校代码、学校名称、年级、班级、学籍号、姓名、性别、学籍状态"),
        ("可选列", "家长姓名、家长手机"),
        ("年级", "六年级/七年级/八年级/九年级，或 6–9、预备、初一、初二、初三"),
        ("班级", "班号：3、3班、(3)班 或 七年级(3)班"),
        ("学籍状态", "在籍（在读）、离校、休学、转学"),
        ("账号", "学生用户名为学籍号，家长为 p_学籍号；教职工为用户名，或「学校代码_工号」"),
        ("初始密码", "导入后在「账号单」中按班级打印；首次登录须修改密码"),
        ("教职工", "可选工作表「教职工」：学校代码、姓名、工号或用户名、角色；班主任和班级评价小组成员须填年级、班级"),
        ("重复导入", "按学校代码、学籍号、用户名更新，不会重复创建；文件中没有的学生不会被删除"),
    ):
        guide.append(list(line))
    guide["A1"].font = Font(bold=True, size=14)
    guide.column_dimensions["A"].width = 14
    guide.column_dimensions["B"].width = 90
    out = BytesIO()
    wb.save(out)
    return out.getvalue()


def error_workbook(stream, report: Report) -> bytes:
    """The uploaded file with a 错误 column on each sheet, naming each bad row's columns."""
    stream.seek(0)
    wb = load_workbook(stream)
    per_sheet: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for issue in report.issues:
        per_sheet[issue.sheet][issue.row].append(f"{issue.column}：{issue.message}" if issue.column else issue.message)
    for title, rows in per_sheet.items():
        ws = wb[title]
        col = ws.max_column + 1
        header = report.sheets.header_rows.get(title, 1)
        ws.cell(row=header, column=col, value="错误").font = Font(bold=True, color="C00000")
        for number, messages in rows.items():
            cell = ws.cell(row=number, column=col, value="；".join(messages))
            cell.data_type = "s"
            cell.font = Font(color="C00000")
        ws.column_dimensions[get_column_letter(col)].width = 60
    out = BytesIO()
    wb.save(out)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Initial passwords and account slips


def initial_password() -> str:
    """8 random characters people read off paper without mistakes, with at least a letter and a digit
    (so they pass the password rules too)."""
    while True:
        pw = "".join(secrets.choice(SLIP_ALPHABET) for _ in range(SLIP_PASSWORD_LENGTH))
        if any(c.isalpha() for c in pw) and any(c.isdigit() for c in pw):
            return pw


@dataclass
class Slip:
    user: User
    role: str  # role code
    student: Student | None
    password: str | None = None  # set only on the printed page, never stored

    @property
    def role_name(self) -> str:
        return ROLES[self.role].name

    @property
    def state(self) -> str:
        if not self.user.active:
            return "disabled"
        return "initial" if self.user.must_change_password else "enabled"


def class_slips(klass: SchoolClass) -> list[Slip]:
    """The class's accounts in print order: its teachers, then each student followed by their parent."""
    grants = db.session.execute(
        sa.select(RoleGrant).where(RoleGrant.class_id == klass.id).options(selectinload(RoleGrant.user))
        .order_by(RoleGrant.id)).scalars().all()
    order = list(ROLES)
    slips = [Slip(g.user, g.role, None) for g in sorted(grants, key=lambda g: order.index(g.role))]
    students = db.session.execute(sa.select(Student).where(Student.class_id == klass.id).order_by(Student.xjh)
                                  ).scalars().all()
    family = defaultdict(list)
    ids = [s.id for s in students]
    for chunk in _chunks(ids):
        for g in db.session.execute(
                sa.select(RoleGrant).where(RoleGrant.student_id.in_(chunk), RoleGrant.role.in_(("student", "parent")))
                .options(selectinload(RoleGrant.user)).order_by(RoleGrant.id)).scalars():
            family[g.student_id].append(g)
    for s in students:
        for g in sorted(family[s.id], key=lambda g: (g.role != "student", g.id)):
            slips.append(Slip(g.user, g.role, s))
    return slips


def school_slips(school: School) -> list[Slip]:
    """The accounts of the school's own staff (school-wide roles), one slip per account."""
    grants = db.session.execute(
        sa.select(RoleGrant).where(RoleGrant.school_id == school.id).options(selectinload(RoleGrant.user))
        .order_by(RoleGrant.user_id, RoleGrant.id)).scalars().all()
    slips, seen = [], set()
    order = list(ROLES)
    for g in sorted(grants, key=lambda g: (order.index(g.role), g.user.username)):
        if g.user_id not in seen:
            seen.add(g.user_id)
            slips.append(Slip(g.user, g.role, None))
    return slips


def issue_passwords(user: User, target, slips: list[Slip], *, reason: str, at: datetime | None = None) -> int:
    """Give every account of ``slips`` still waiting for its first login a fresh initial password, shown on
    the slip and stored only as a hash; commit once. The history records which accounts got a new password
    (the hash column is always written as ***), by whom, and why."""
    policy.require(user, "print_slips", target, at)
    issued = 0
    done: dict[int, str] = {}
    try:
        with acting("issue_password", reason):
            for slip in slips:
                if slip.state != "initial":
                    continue
                if slip.user.id in done:  # one account on two slips (e.g. two roles in the class)
                    slip.password = done[slip.user.id]
                    continue
                slip.password = initial_password()
                slip.user.password_hash = generate_password_hash(slip.password, method=INITIAL_HASH_METHOD)
                done[slip.user.id] = slip.password
                issued += 1
            db.session.commit()
    except Exception:
        db.session.rollback()
        for slip in slips:
            slip.password = None
        raise
    return issued
