"""The public results lookup (views/lookup.py; SPEC §8, seed 001: 7月3日 学生输入考号查询): the right exam number
with the right 学籍号后六位 shows the published levels and nothing else; every wrong number, wrong identifier,
unpublished result and guessed format gets one identical answer; guessing is throttled per address and per exam
number; a wrong number runs the same statements as a right one and every answer takes at least the floor."""
from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from conftest import csrf_from

from models import Dimension, Rating, RatingFinal, School, SchoolClass, Student, Term, User, db
from models.evaluation import published_result
from seed.changsha_demo import seed_changsha
from views.lookup import mask_name, normalise

GENERIC = "未查到结果：请核对考号和学籍号后六位。结果自公布之日起可查询。"
TOO_MANY = "查询次数过多，请稍后再试。"
# yl01 九年级(1)班 of 5 students: 考号 17010101001…17010101005; yl02 九年级(1)班 of 3: 17010201001…17010201003.
SIZES = {"yl01": [5], "yl02": [3]}
LEVELS = ["A", "B", "C", "D", "A", "B"]  # one per dimension, in the profile's order: no two rows alike by chance


@pytest.fixture
def cs(session):
    info = seed_changsha(class_sizes=SIZES)
    session.commit()
    return info


@pytest.fixture
def setting(app):
    """Set app config for one test; restored afterwards."""
    saved = {}

    def _set(**values):
        for key, value in values.items():
            saved.setdefault(key, app.config.get(key))
            app.config[key] = value

    yield _set
    app.config.update(saved)


@pytest.fixture
def generous(setting):
    """Limits out of the way, for tests that send many lookups on purpose."""
    setting(CQE_LOOKUP_RATE="1000 per minute", CQE_LOOKUP_NUMBER_RATE="1000 per minute")


def pupil(exam_number: str) -> Student:
    return db.session.execute(sa.select(Student).where(Student.exam_number == exam_number)).scalar_one()


def finalise(school_code: str, levels=LEVELS) -> None:
    """Ratings for every student and dimension of the school, and the school's finalisation, inserted directly."""
    school = db.session.execute(sa.select(School).where(School.code == school_code)).scalar_one()
    term = db.session.execute(sa.select(Term).where(Term.district_id == school.district_id,
                                                    Term.is_current.is_(True))).scalar_one()
    dims = db.session.execute(sa.select(Dimension).where(Dimension.profile_id == term.profile_id)
                              .order_by(Dimension.position)).scalars().all()
    assert len(dims) == len(levels)
    students = db.session.execute(sa.select(Student).where(Student.school_id == school.id)).scalars().all()
    for st in students:
        for dim, level in zip(dims, levels, strict=True):
            db.session.add(Rating(term_id=term.id, student_id=st.id, school_id=school.id, class_id=st.class_id,
                                  dimension_id=dim.id, level=level))
    principal = db.session.execute(sa.select(User).where(User.username == f"cs_{school_code}_principal")).scalar_one()
    db.session.add(RatingFinal(term_id=term.id, school_id=school.id, class_id=None, finalised_by_id=principal.id,
                               finalised_at=datetime(2017, 6, 26, 2, 0, tzinfo=UTC)))
    db.session.commit()


def six(st: Student) -> str:
    return st.xjh[-6:]


def lookup(client, exam_number, identifier, address="192.0.2.10", token=True):
    data = {"exam_number": exam_number, "identifier": identifier}
    if token:
        data["csrf_token"] = csrf_from(client.get("/results").get_data(as_text=True))
    return client.post("/results", data=data, environ_base={"REMOTE_ADDR": address})


def same_page(body: str) -> str:
    """The answer without what differs from request to request whatever was asked (the CSRF token)."""
    return re.sub(r'(name="csrf_token"[^>]*value=")[^"]+"', r'\1"', body)


def shown_levels(body: str) -> dict[str, str]:
    return dict(re.findall(r'<tr><td>([^<]+)</td><td class="lv">([^<]+)</td></tr>', body))


def expected_levels(levels=LEVELS) -> dict[str, str]:
    return {name: level for (name,), level in zip(db.session.execute(
        sa.select(Dimension.name).join(Term, Term.profile_id == Dimension.profile_id)
        .where(Term.is_current.is_(True), Term.district_id == db.session.execute(
            sa.select(School.district_id).where(School.code == "yl01")).scalar_one())
        .order_by(Dimension.position)).all(), levels, strict=True)}


# --- the result ------------------------------------------------------------------------------------


def test_the_right_pair_after_publication_shows_exactly_the_levels(client, cs, at, generous):
    finalise("yl01")
    at("2017-07-03 08:00")
    st = pupil("17010101003")
    assert published_result(st) is not None
    resp = lookup(client, "17010101003", six(st))
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and GENERIC not in body
    assert shown_levels(body) == expected_levels() and len(shown_levels(body)) == 6
    assert f'id="result-name">{mask_name(st.name)}<' in body and mask_name(st.name) != st.name
    assert st.name not in body
    assert f'id="result-school">{st.school.name}<' in body
    klass = db.session.get(SchoolClass, st.class_id)
    others = db.session.execute(sa.select(Student).where(Student.id != st.id)).scalars().all()
    # nothing else: no 学籍号 (whole or its end), no exam number, no class, no classmate
    for secret in (st.xjh, six(st), "17010101003", klass.name,
                   *[o.name for o in others if o.exam_number], *[o.xjh for o in others]):
        assert secret not in body, secret
    assert not re.search(r'value="[^"]', re.sub(r'name="csrf_token"[^>]*value="[^"]+"', "", body)), \
        "no field is filled back in"
    # the other school is not finalised: its right pair gets the generic answer
    other = pupil("17010201001")
    assert GENERIC in lookup(client, "17010201001", six(other)).get_data(as_text=True)


def test_before_the_results_day_or_before_finalisation_the_generic_answer(client, cs, at, generous):
    st = pupil("17010101001")
    wrong = None
    at("2017-07-03 09:00")
    resp = lookup(client, "17010101001", six(st))  # published day, not finalised
    assert resp.status_code == 200 and GENERIC in resp.get_data(as_text=True)
    wrong = same_page(lookup(client, "17010101999", six(st)).get_data(as_text=True))
    assert same_page(resp.get_data(as_text=True)) == wrong
    finalise("yl01")
    at("2017-07-02 23:59")
    resp = lookup(client, "17010101001", six(st))  # finalised, a minute before the results window
    assert resp.status_code == 200 and same_page(resp.get_data(as_text=True)) == wrong
    assert st.name not in resp.get_data(as_text=True)
    at("2017-07-03 00:00")
    resp = lookup(client, "17010101001", six(st))
    assert resp.status_code == 200 and shown_levels(resp.get_data(as_text=True)) == expected_levels()


# --- one answer for every failure ------------------------------------------------------------------


def test_every_failure_and_every_guessed_format_gets_the_same_answer(client, cs, at, generous):
    finalise("yl01")
    finalise("yl02")
    at("2017-07-03 09:00")
    st, mate, far = pupil("17010101002"), pupil("17010101004"), pupil("17010201003")
    left = pupil("17010101005")
    left.status = "left"
    db.session.commit()
    attempts = {
        "unknown number in the class's range": ("17010101009", six(st)),
        "unknown number below every number": ("000000001", six(st)),
        "unknown number above every number": ("999999999", six(st)),
        "unknown number with letters": ("A7010101002", six(st)),
        "right number, wrong identifier": ("17010101002", "000000" if six(st) != "000000" else "111111"),
        "right number, a classmate's identifier": ("17010101002", six(mate)),
        "right number, another school's student's identifier": ("17010101002", six(far)),
        "right number, the whole 学籍号": ("17010101002", st.xjh),
        "right number, identifier one short": ("17010101002", six(st)[1:]),
        "a student who left, right identifier": ("17010101005", six(left)),
        "SQL in the number": ("17010101002' OR '1'='1", six(st)),
        "SQL in the identifier": ("17010101002", "' OR 1=1 --"),
        "SQL comment": ("17010101002--", six(st)),
        "union select": ("1 UNION SELECT xjh FROM students", six(st)),
        "10,000 characters": ("1" * 10_000, six(st)),
        "10,000 characters of identifier": ("17010101002", "9" * 10_000),
        "NUL inside": ("17010101\x00002", six(st)),
        "NUL identifier": ("17010101002", six(st)[:3] + "\x00" + six(st)[3:]),
        "control characters": ("\x1b[2J17010101002", six(st)),
        "a tab inside": ("17010101\t002", six(st)),
        "empty": ("", ""),
        "blanks only": ("   ", "\u3000"),
        "punctuation": ("1701-0101-002", six(st)),
        "emoji": ("17010101002😀", six(st)),
        "a wildcard": ("1701010100%", six(st)),
        "underscore wildcard": ("1701010100_", six(st)),
    }
    reference = None
    for label, (number, identifier) in attempts.items():
        resp = lookup(client, number, identifier)
        body = resp.get_data(as_text=True)
        assert resp.status_code == 200, label
        assert GENERIC in body, label
        for name in (st.name, mate.name, far.name, left.name, st.school.name, far.school.name):
            assert name not in body, (label, name)
        assert "result-name" not in body and not shown_levels(body), label
        page = same_page(body)
        reference = reference or page
        assert page == reference, f"{label}: a different page"
    # and the right pair still works (the failures above did not lock it: limits are generous here)
    assert shown_levels(lookup(client, "17010101002", six(st)).get_data(as_text=True)) == expected_levels()


def test_input_is_normalised_spaces_full_width_and_case(client, cs, at, generous):
    finalise("yl01")
    at("2017-07-03 09:00")
    st = pupil("17010101001")
    st.xjh = st.xjh[:-1] + "X"  # a 学籍号 (G + 身份证号) may end in X
    db.session.commit()
    tail = six(st)
    assert tail.endswith("X")
    for number, identifier in [("  17010101001  ", tail), ("17010101 001", f" {tail} "), ("１７０１０１０１００１", tail),
                               ("17010101001", tail.lower()), ("17010101001", tail[:-1] + "ｘ"),
                               ("\u3000１７０１０１０１\u3000００１", tail[:3] + " " + tail[3:].lower())]:
        body = lookup(client, number, identifier).get_data(as_text=True)
        assert shown_levels(body) == expected_levels(), (number, identifier)


def test_normalise_and_mask_name():
    assert normalise(" １７０１０１ ００１ ") == "170101001"
    assert normalise("g43x") == "G43X"
    assert normalise("12345x", length=6, max_length=6) == "12345X"
    for bad in ("", "   ", "1701\x00", "\x07", "1;DROP", "1" * 33, "1" * 10_000, "17-01", None, "1\t2"):
        assert normalise(bad) is None, repr(bad)
    assert normalise("12345", length=6, max_length=6) is None
    assert normalise("1234567", length=6, max_length=6) is None
    assert mask_name("王小明") == "王*明"
    assert mask_name("李娜") == "李*"
    assert mask_name("欧阳文杰") == "欧阳*杰"
    assert mask_name("司马光") == "司马*"
    assert mask_name("张三丰收") == "张**收"


# --- throttling ------------------------------------------------------------------------------------


def test_many_tries_from_one_address_are_refused_then_even_the_right_pair(client, app, cs, at, setting):
    finalise("yl01")
    at("2017-07-03 09:00")
    setting(CQE_LOOKUP_RATE="3 per 10 minutes")
    st = pupil("17010101002")
    for number in ("17010101009", "17010101008", "17010101007"):
        assert lookup(client, number, six(st), address="198.51.100.7").status_code == 200
    resp = lookup(client, "17010101002", six(st), address="198.51.100.7")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 429 and TOO_MANY in body and st.name not in body and not shown_levels(body)
    # every attempt counts, successes too (a results page is also a try)
    assert shown_levels(lookup(client, "17010101002", six(st), address="198.51.100.8").get_data(as_text=True))
    assert lookup(client, "17010101002", six(st), address="198.51.100.8").status_code == 200
    assert lookup(client, "17010101002", six(st), address="198.51.100.8").status_code == 200
    assert lookup(client, "17010101002", six(st), address="198.51.100.8").status_code == 429
    # another address is not limited
    assert shown_levels(lookup(client, "17010101002", six(st), address="198.51.100.9").get_data(as_text=True))


def test_failures_per_exam_number_are_limited_from_any_address(client, cs, at, setting):
    finalise("yl01")
    at("2017-07-03 09:00")
    setting(CQE_LOOKUP_NUMBER_RATE="3 per hour")
    st, mate = pupil("17010101002"), pupil("17010101003")
    wrong = "000000" if six(st) != "000000" else "111111"
    # successes never count against the number
    for k in range(5):
        assert shown_levels(lookup(client, "17010101002", six(st), address=f"203.0.113.{k}").get_data(as_text=True))
    # three wrong identifiers from three addresses (full-width or spaced, it is the same number) ...
    for k, number in enumerate(("17010101002", "１７０１０１０１００２", " 17010101 002 ")):
        assert GENERIC in lookup(client, number, wrong, address=f"203.0.113.{10 + k}").get_data(as_text=True)
    # ... and the number is refused from a fourth address, with the right identifier too
    resp = lookup(client, "17010101002", six(st), address="203.0.113.20")
    assert resp.status_code == 429 and TOO_MANY in resp.get_data(as_text=True)
    assert st.name not in resp.get_data(as_text=True)
    # a classmate's number is not affected
    assert shown_levels(lookup(client, "17010101003", six(mate), address="203.0.113.20").get_data(as_text=True))
    # an unknown number is limited exactly alike: a 429 says nothing about whether a number exists
    for k in range(3):
        assert lookup(client, "17010101099", six(st), address=f"203.0.113.{30 + k}").status_code == 200
    assert lookup(client, "17010101099", six(st), address="203.0.113.40").status_code == 429


# --- the same work, the same time ------------------------------------------------------------------


@pytest.fixture
def statements(session):
    """``run(fn)``: the SQL statements the database was sent while ``fn`` ran, and what it returned."""
    seen: list[str] = []
    state = {"on": False}

    def record(conn, cursor, statement, parameters, context, executemany):
        # the test's own SAVEPOINTs (their names count up) are not the view's work
        if state["on"] and not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            seen.append(statement)

    engine = db.engine  # the engine of the test's connection (requests use the test's session on it)
    sa.event.listen(engine, "before_cursor_execute", record)

    def run(fn):
        seen.clear()
        db.session.close()  # a fresh session, as every production request has: nothing cached from before
        state["on"] = True
        try:
            result = fn()
        finally:
            state["on"] = False
        return list(seen), result

    yield run
    sa.event.remove(engine, "before_cursor_execute", record)


def test_wrong_and_right_numbers_run_the_same_statements(client, cs, at, generous, statements):
    finalise("yl01")
    at("2017-07-03 09:00")
    st = pupil("17010101003")
    right, number, wrong_id = six(st), "17010101003", ("000000" if six(st) != "000000" else "111111")
    token = csrf_from(client.get("/results").get_data(as_text=True))

    def post(exam_number, identifier):
        return lambda: client.post("/results", data={"exam_number": exam_number, "identifier": identifier,
                                                     "csrf_token": token})

    found_sql, resp = statements(post(number, right))
    assert shown_levels(resp.get_data(as_text=True)) == expected_levels()
    assert any("ratings" in s for s in found_sql), "published_result ran to the end"
    assert any("rating_finals" in s for s in found_sql)
    cases = {"right number, wrong identifier": (number, wrong_id),
             "unknown number after the class": ("17010101009", right),
             "unknown number between two": ("170101010035", right),
             "unknown number before the class": ("17010101000", right)}
    for label, (exam_number, identifier) in cases.items():
        sql, resp = statements(post(exam_number, identifier))
        assert GENERIC in resp.get_data(as_text=True), label
        assert sql == found_sql, f"{label}: {len(sql)} statements, the right pair {len(found_sql)}"


def test_every_answer_takes_at_least_the_floor(client, cs, at, setting):
    finalise("yl01")
    at("2017-07-03 09:00")
    floor = 0.2
    setting(CQE_LOOKUP_MIN_SECONDS=floor, CQE_LOOKUP_RATE="4 per 10 minutes")
    st = pupil("17010101001")
    token = csrf_from(client.get("/results").get_data(as_text=True))
    cases = [("17010101001", six(st), 200), ("17010101009", six(st), 200), ("x" * 10_000, "\x00", 200),
             ("17010101001", "000000", 200), ("17010101001", six(st), 429)]
    for number, identifier, status in cases:
        started = time.perf_counter()
        resp = client.post("/results", data={"exam_number": number, "identifier": identifier, "csrf_token": token})
        elapsed = time.perf_counter() - started
        assert resp.status_code == status
        assert elapsed >= floor, f"{number[:12]!r}: {elapsed:.3f}s < {floor}s"


# --- the request itself ----------------------------------------------------------------------------


def test_a_lookup_without_csrf_token_is_refused(client, cs, at, generous):
    finalise("yl01")
    at("2017-07-03 09:00")
    st = pupil("17010101001")
    resp = lookup(client, "17010101001", six(st), token=False)
    body = resp.get_data(as_text=True)
    assert resp.status_code == 400 and "CSRF" in body and not shown_levels(body) and st.name not in body


def test_the_headers_reveal_nothing(app, client, cs, at, generous):
    finalise("yl01")
    at("2017-07-03 09:00")
    st = pupil("17010101001")
    wrong = "000000" if six(st) != "000000" else "111111"
    # A client's first POST stores Flask-Login's "_fresh" flag in its session cookie, whatever the answer (a
    # fresh client gets the same cookie for a found result and for the generic answer): warm the session first.
    first = {label: lookup(app.test_client(), number, identifier).headers.get("Set-Cookie", "").split("=")[0]
             for label, (number, identifier) in {"found": ("17010101001", six(st)),
                                                 "unknown": ("17010101009", six(st))}.items()}
    assert first["found"] == first["unknown"]
    lookup(client, "17010101002", six(st))
    answers = {"found": lookup(client, "17010101001", six(st)),
               "wrong identifier": lookup(client, "17010101001", wrong),
               "unknown number": lookup(client, "17010101009", six(st)), "malformed": lookup(client, "1" * 500, "")}
    assert shown_levels(answers["found"].get_data(as_text=True))
    headers = {label: {k: v for k, v in resp.headers.items() if k.lower() != "content-security-policy"}
               for label, resp in answers.items()}
    for label, resp in answers.items():
        assert resp.headers["Cache-Control"] == "no-store", label
        assert "noindex" in resp.headers["X-Robots-Tag"], label
        assert "Set-Cookie" not in resp.headers, label
        for value in resp.headers.values():
            assert st.name not in value and st.xjh not in value and "17010101001" not in value, label
    # the failures: identical headers (length included); the result page differs only in its length
    assert headers["wrong identifier"] == headers["unknown number"] == headers["malformed"]
    found = {k: v for k, v in headers["found"].items() if k != "Content-Length"}
    assert found == {k: v for k, v in headers["unknown number"].items() if k != "Content-Length"}
    assert GENERIC in answers["malformed"].get_data(as_text=True)


def test_the_page_is_public_and_linked_from_the_login_page(client, cs):
    resp = client.get("/results")
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and 'name="exam_number"' in body and 'name="identifier"' in body
    assert "学籍号后六位" in body and "身份证号" in body, "the page says where the identifier is found"
    assert resp.headers["Cache-Control"] == "no-store" and "noindex" in resp.headers["X-Robots-Tag"]
    assert "<script" not in body
    login = client.get("/login").get_data(as_text=True)
    assert 'href="/results"' in login and "综合素质评价结果查询" in login


# --- signed in -------------------------------------------------------------------------------------

def test_a_signed_in_student_and_parent_see_the_result_from_the_results_day(client, cs, at, login_as):
    """/cs/result: the same result as the public lookup, for the student and their parents, from the day results
    are published once the school has finalised; before, when; staff have no child to show."""
    names = {"A": "A（优秀）", "B": "B（良好）", "C": "C（合格）", "D": "D（待合格）"}
    at("2017-06-27 10:00")
    finalise("yl01")
    token = login_as("cs_yl01c1n03")
    body = client.get("/cs/result").get_data(as_text=True)
    assert 'id="result-pending"' in body and "2017-07-03" in body and not shown_levels(body)
    client.post("/logout", data={"csrf_token": token})
    at("2017-07-03 08:00")
    for username in ("cs_yl01c1n03", "p_cs_yl01c1n03"):
        token = login_as(username)
        resp = client.get("/cs/result")
        body = resp.get_data(as_text=True)
        assert resp.status_code == 200 and pupil("17010101003").name in body
        assert shown_levels(body) == {d: names[lv] for d, lv in expected_levels().items()}, username
        client.post("/logout", data={"csrf_token": token})
    # yl02 has not finalised: its students still wait
    token = login_as("cs_yl02c1n01")
    body = client.get("/cs/result").get_data(as_text=True)
    assert 'id="result-pending"' in body and not shown_levels(body)
    client.post("/logout", data={"csrf_token": token})
    login_as("cs_yl01c1_teacher")
    assert client.get("/cs/result").status_code == 403
