"""Fixtures: one app and one seeded database per run, a rolled-back transaction per test,
``login_as(username)``, the app clock, and a dedicated Redis DB flushed per test.

The database is SQLite unless ``CQE_TEST_DB=postgresql``, which uses ``TEST_DATABASE_URL``.
Under ``CI=true`` an unreachable PostgreSQL or Redis fails the run; it is never skipped there.
"""
from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlalchemy.util import ThreadLocalRegistry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from app import create_app  # noqa: E402
from models import clock, db  # noqa: E402

DB_KIND = os.environ.get("CQE_TEST_DB", "sqlite")
IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_URL = os.environ.get("REDIS_URL")
STUDENTS_PER_CLASS = 4  # the demo district, smaller: 3 schools × 8 classes × 4 students


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def _database_url(tmp_dir: str) -> str:
    if DB_KIND == "postgresql":
        url = os.environ.get("TEST_DATABASE_URL")
        if not url:
            pytest.exit("CQE_TEST_DB=postgresql but TEST_DATABASE_URL is not set", returncode=3)
        return url
    return "sqlite:///" + os.path.join(tmp_dir, "cqe-test.sqlite")


def _redis_status() -> str:
    if not REDIS_URL:
        return "not set"
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        return "reachable"
    except Exception as exc:  # noqa: BLE001 - reported, and fails the run in CI
        return f"UNREACHABLE ({exc.__class__.__name__})"


def pytest_report_header(config):
    if DB_KIND == "postgresql":
        where = _redacted(os.environ.get("TEST_DATABASE_URL", ""))
    else:
        where = "(a temporary file)"
    return [
        f"CQE database: {DB_KIND} {where}",
        f"CQE redis: {_redacted(REDIS_URL) if REDIS_URL else '-'} ({_redis_status()})",
        f"CI: {IN_CI}",
    ]


def pytest_sessionstart(session):
    if IN_CI and (not REDIS_URL or _redis_status() != "reachable"):
        pytest.exit(f"CI=true needs a reachable Redis (REDIS_URL={REDIS_URL!r})", returncode=3)


def _reset_schema(app) -> None:
    from flask_migrate import upgrade

    engine = db.engine
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    upgrade(directory=os.path.join(ROOT, "migrations"))


def own_database_url(tmp_path_factory, suffix: str) -> str:
    """A database of a test module's own, for tests whose other processes or threads must see committed
    data (a worker, a live server): ``<test db>_<suffix>`` on PostgreSQL, a fresh file on SQLite."""
    pg = os.environ.get("TEST_DATABASE_URL") if DB_KIND == "postgresql" else None
    if not pg:
        return f"sqlite:///{tmp_path_factory.mktemp(suffix)}/{suffix}.sqlite"
    base = sa.engine.make_url(pg)
    name = f"{base.database}_{suffix}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@contextmanager
def demo_app(tmp_path_factory, suffix: str, students_per_class: int = 2):
    """An app on a database of its own (``own_database_url``) migrated and seeded with the demo district, for a
    live server and a browser; yields the app with its app context pushed while the caller adds its own data."""
    from app import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": own_database_url(tmp_path_factory, suffix), "TESTING": True,
                      "SECRET_KEY": "test-secret", "REDIS_URL": None, "CQE_NOW": None, "SERVER_NAME": None,
                      "CQE_TICKER": False})
    with app.app_context():
        _reset_schema(app)
        from seed.demo import seed_demo

        seed_demo(students_per_class=students_per_class)
        yield app
        db.session.remove()


def dispose(app) -> None:
    """The end of a module's own app: no connection left behind."""
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def console_problems(page) -> list[str]:
    """Console errors, page errors and failed responses (status >= 400) of a page, as they happen."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return problems


CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "artifacts")


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (no browser download): missing in CI is a failure."""
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield b
        b.close()


@contextmanager
def serving(app):
    """The app on a real HTTP server in a thread; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def browser_login(page, base: str, username: str, password: str = "cqe2022") -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def _seed_other_city() -> None:
    """A second city with one district, school, class, students, records and a clerk: the
    "outside" that district and city roles must never see."""
    from models import (
        Activity,
        AuditEvent,
        Category,
        City,
        Contact,
        District,
        Profile,
        Record,
        RoleGrant,
        School,
        SchoolClass,
        Student,
        User,
    )
    from seed import shanghai
    from seed.loader import create_term

    profile = db.session.execute(sa.select(Profile).where(Profile.code == shanghai.CODE)).scalar_one()
    city = City(code="zz", name="外市")
    district = District(code="zzd", name="外区", city=city, settings={})
    school = School(code="zz01", name="外区第一中学", district=district)
    db.session.add_all([city, district, school])
    db.session.flush()
    term = create_term(district, profile, 2021, 1, shanghai.SCHEDULE_2021_1, is_current=True)
    template = db.session.execute(sa.select(User).where(User.username == "admin")).scalar_one()
    clerk = User(username="zz_clerk", display_name="外区录入员", password_hash=template.password_hash)
    db.session.add(clerk)
    db.session.add(RoleGrant(user=clerk, role="school_clerk", school=school))
    db.session.add(Contact(school=school, kind="clerk", name="外联系人", mobile="13900000000"))
    db.session.add(Activity(term=term, level="school", district=district, school=school, name="外校活动"))
    for grade in (6, 7, 8, 9):
        klass = SchoolClass(school=school, grade=grade, number=1)
        db.session.add(klass)
        for k in range(2):
            db.session.add(Student(xjh=f"ZZ{grade}{k:016d}", name=f"外生{grade}{k}", gender="男", school_class=klass,
                                   school_id=0))
    db.session.flush()
    categories = db.session.execute(sa.select(Category).where(Category.profile_id == profile.id)).scalars().all()
    for student in db.session.execute(sa.select(Student).where(Student.school_id == school.id)).scalars():
        for cat in categories:
            if student.school_class.grade in cat.grades:
                level = cat.entry[0]["level"]
                db.session.add(Record(term=term, category=cat, student=student, school_id=school.id, origin=level,
                                      state="draft" if level == "student" else "entered", data={}))
    db.session.commit()
    # History in three places, so the audit view has an inside and an outside for every scope.
    for code in ("bs01", "bs02", "zz01"):
        s = db.session.execute(sa.select(School).where(School.code == code)).scalar_one()
        student = db.session.execute(sa.select(Student).where(Student.school_id == s.id).limit(1)).scalar_one()
        student.gender = "女" if student.gender == "男" else "男"
        db.session.commit()
    assert db.session.execute(sa.select(sa.func.count(AuditEvent.id))).scalar() > 0


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    url = _database_url(str(tmp_path_factory.mktemp("db")))
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": url,
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "REDIS_URL": REDIS_URL,
        "CQE_NOW": None,
        "SERVER_NAME": None,
        # Throttling counts in memory, reset per test (tests/test_security.py covers the Redis storage).
        "CQE_THROTTLE_STORAGE": "memory://",
        # Safety net: a connection left idle inside a transaction (see rolled_back_session) must not hold
        # table locks for the rest of the run and hang a later ALTER TABLE; PostgreSQL ends it after three
        # minutes, and the test that owned it fails loudly instead.
        **({"SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "connect_args": {
            "options": "-c idle_in_transaction_session_timeout=180000"}}} if DB_KIND == "postgresql" else {}),
    })
    with app.app_context():
        try:
            with db.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001
            pytest.exit(f"test database unreachable: {_redacted(url)}: {exc}", returncode=3)
        _reset_schema(app)
        from seed.demo import seed_demo

        seed_demo(students_per_class=STUDENTS_PER_CLASS)
        db.session.commit()
        _seed_other_city()
        db.session.remove()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(autouse=True)
def _unpinned_clock():
    yield
    clock.pin(None)


@pytest.fixture(autouse=True)
def _fresh_limits(app):
    """Failed-login counters of one test must not throttle the next."""
    app.extensions["cqe_throttle"].reset()
    yield


@pytest.fixture(autouse=True)
def _fresh_count_cache():
    """Cached district-wide counts must not outlive the rolled-back data of one test."""
    from views import counts

    counts._counts.clear()
    yield
    counts._counts.clear()


class _TestRegistry(ThreadLocalRegistry):
    """Sessions of a test, one per thread, on the test's connection. A request's teardown
    (``db.session.remove()``) neither closes nor forgets the test's session: its objects stay attached."""

    def has(self):
        return False

    def clear(self):
        pass


@contextmanager
def rolled_back_session(conn):
    """``db.session`` on ``conn`` (inside its outer transaction) for the duration. The scoped session object
    stays the same and only its registry is swapped: code that captured ``db.session`` at start-up (Flask-Admin's
    Unique validators, form converters) then works in the test's transaction too, instead of opening sessions
    of its own that nothing closes (on PostgreSQL, connections left idle inside a transaction)."""
    scoped = db.session
    saved = scoped.registry
    scoped.registry = _TestRegistry(sessionmaker(bind=conn, join_transaction_mode="create_savepoint",
                                                 expire_on_commit=True))
    try:
        yield scoped
    finally:
        scoped.close()
        scoped.registry = saved


@pytest.fixture(scope="session")
def data_app(app):
    """A second app on the same database, whose context the test code runs in. Requests made by
    ``client`` then push their own app context, as in production: ``g`` (Flask-Login's user,
    Flask-Babel's locale, per-request caches) never leaks from one request into the next."""
    data_app = create_app(dict(app.config))
    yield data_app
    with data_app.app_context():
        db.engine.dispose()


@pytest.fixture
def session(app, data_app):
    """The test's database session: everything it commits is rolled back afterwards."""
    ctx = data_app.app_context()
    ctx.push()
    conn = db.engine.connect()
    outer = conn.begin()
    try:
        with rolled_back_session(conn) as scoped:
            yield scoped
    finally:
        outer.rollback()
        conn.close()
        ctx.pop()


@pytest.fixture
def cs(session):
    """A Changsha district beside the Shanghai demo (tests/test_changsha*.py): 岳麓区, yl01 with a class of 43 and a
    class of 6, yl02 with a class of 5, in the test's rolled-back transaction."""
    from seed.changsha_demo import seed_changsha

    info = seed_changsha(class_sizes={"yl01": [43, 6], "yl02": [5]})
    session.commit()
    return info


@pytest.fixture
def client(app, session):
    return app.test_client()


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_from(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no csrf_token on the page"
    return m.group(1) or m.group(2)


@pytest.fixture
def login_as(client):
    """Log the test client in as a demo user (password cqe2022); returns a CSRF token of the session."""

    def _login(username: str, password: str = "cqe2022") -> str:
        page = client.get("/login")
        token = csrf_from(page.get_data(as_text=True))
        resp = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
        assert resp.status_code == 302, f"login of {username} failed: {resp.status_code}"
        return token

    return _login


@pytest.fixture
def at():
    """Pin the app clock: ``at("2022-03-01 09:00")`` (Beijing time)."""

    def _pin(value):
        clock.pin(value)
        return clock.now()

    return _pin


@pytest.fixture
def redis_conn():
    if not REDIS_URL:
        if IN_CI:
            pytest.fail("REDIS_URL must be set in CI")
        pytest.skip("REDIS_URL not set (local run without Redis)")
    import redis

    conn = redis.Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Redis unreachable at {REDIS_URL}: {exc}")
    conn.flushdb()
    yield conn
    conn.flushdb()


def table_fingerprint() -> dict:
    """Row counts and a digest of every table: equal before and after means nothing changed."""
    import hashlib

    result = {}
    for table in db.metadata.sorted_tables:
        rows = db.session.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
        digest = hashlib.sha1(repr([tuple(r) for r in rows]).encode()).hexdigest()
        result[table.name] = (len(rows), digest)
    return result


def user(username: str):
    """A demo account by username."""
    from models import User

    return db.session.execute(sa.select(User).where(User.username == username)).scalar_one()


def student_of(username: str):
    """The student a student (or parent) account acts for."""
    return user(username).grants[0].student


def category(code: str):
    from models import Category

    return db.session.execute(sa.select(Category).where(Category.code == code)).scalar_one()
