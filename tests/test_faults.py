"""Faults (issue 8): what users and operators meet when a service fails under the app, against real services.

1. PostgreSQL restarted during use. The shared server is not restarted (other test processes use it); the
   tests do to a database of their own what a restart (``pg_ctl restart -m fast``, a failover) does to the
   clients of that database: every backend serving it is terminated (``pg_terminate_backend``, waiting until
   each has exited). A client cannot tell the two apart: a fast shutdown terminates every backend the same
   way, so the pooled connections are dead sockets, an open transaction is rolled back by the server, the
   next statement on such a connection fails ("terminating connection due to administrator command" /
   "server closed the connection unexpectedly") and a new connection succeeds. To show that this stands
   for the real thing, one test also starts a PostgreSQL server of its own (initdb in /tmp, a free port, run
   as the postgres account when the tests run as root) and really restarts it, with the same outcome.
   Between requests the next request must succeed (``pool_pre_ping``); in the middle of a multi-row write
   (a grid save, an import) the request fails as a whole, nothing of it is kept, and the same request sent
   again succeeds exactly once.
2. Redis down: pages work, work meant for RQ runs in the request, nothing 500s; deadlines that fell due
   meanwhile are caught up exactly once when Redis is back (the worker's start-up catch-up, then
   ``flask cqe tick`` and another worker start find nothing left to do).
3. A worker killed with SIGKILL in the middle of an import job: nothing of it is kept; RQ 3.0 calls the job
   abandoned (failed) once its heartbeat has lapsed (the page asks at each poll, ``jobs.status``), the page
   then says so and offers the import again; the user's retry and an operator's ``rq requeue`` of the dead
   job together import the file exactly once.
4. Two clerks (or two auditors) saving the same record, grid row or case at the same moment: one wins, the
   other is told in Chinese that someone else changed it, the database holds the winner's change and the
   history has exactly one change.

The tests run on databases of this module's own (copies of one seeded template; tests that share one work
on rows of their own), never on the shared test database.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from conftest import DB_KIND, IN_CI, REDIS_URL, ROOT, _reset_schema, csrf_from, serving, table_fingerprint
from openpyxl import Workbook

from app import create_app
from models import (
    AuditEvent,
    Case,
    Category,
    Record,
    RoleGrant,
    School,
    SchoolClass,
    Student,
    Term,
    User,
    clock,
    db,
    deadlines,
)
from models.deadlines import DeadlineRun

PASSWORD = "cqe2022"
REDIS_DB = 13  # this module's own Redis database (a worker of its own must never meet other tests' jobs)
ENTRY = "2022-03-01 09:00"  # the entry phase of the demo term (Beijing time)
HONOUR = "/admin/records/honour_title"  # a category without limits: as many rows per student as a test needs


# ---------------------------------------------------------------------------------------------
# Services and databases


def _missing(what: str):
    """A service the test needs is not there: a failure under CI, a skip on a developer's machine."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: a missing service is a failure)")
    pytest.skip(what)


def _pg_base() -> sa.engine.URL:
    """The PostgreSQL server of TEST_DATABASE_URL, in the SQLite pass too."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        _missing("TEST_DATABASE_URL is not set: the PostgreSQL fault tests need a server")
    return sa.engine.make_url(url)


def _redis_url() -> str:
    if not REDIS_URL:
        _missing("REDIS_URL is not set")
    return urlunsplit(urlsplit(REDIS_URL)._replace(path=f"/{REDIS_DB}"))


def _admin_engine() -> sa.Engine:
    """A connection to the server's maintenance database, for CREATE/DROP DATABASE and terminating backends."""
    return sa.create_engine(_pg_base().set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def _pg_name(suffix: str) -> str:
    """A database of this module's, per pass: a pass never drops what the other pass (or run) left in use.
    They are left behind like conftest's ``own_database_url`` ones (dropping a database costs a checkpoint
    of the whole server) and dropped when the next run of the same pass creates them again."""
    return f"{_pg_base().database}_faults_{DB_KIND}_{suffix}"


def _terminate(dbname: str) -> int:
    """What a fast restart does to a database's clients: every backend serving it ends (each waited for)."""
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": dbname}).scalar_one()
    finally:
        engine.dispose()


def _app(url: str, **config):
    """The app as production runs it (errors become pages, nothing propagates), on its own database."""
    return create_app({"SQLALCHEMY_DATABASE_URI": url, "TESTING": False, "PROPAGATE_EXCEPTIONS": False,
                       "SECRET_KEY": "test-secret", "REDIS_URL": None, "CQE_NOW": None, "SERVER_NAME": None,
                       "CQE_TICKER": False, **config})


def _dispose(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _seed(app) -> None:
    """The demo district with 3 students a class, a second clerk and auditor of school bs01, and a saved
    先进个人荣誉称号 for each student of 九年级(1)班 (rows to edit in the grid and the form)."""
    with app.app_context():
        _reset_schema(app)
        from seed.demo import seed_demo

        seed_demo(students_per_class=3)
        db.session.commit()
        school = db.session.execute(sa.select(School).where(School.code == "bs01")).scalar_one()
        template = db.session.execute(sa.select(User).where(User.username == "s1_clerk")).scalar_one()
        for username, name, role in (("s1_clerk2", "一中录入员乙", "school_clerk"),
                                     ("s1_auditor2", "一中审核员乙", "school_auditor")):
            other = User(username=username, display_name=name, password_hash=template.password_hash)
            db.session.add_all([other, RoleGrant(user=other, role=role, school=school)])
        term = db.session.execute(sa.select(Term).where(Term.is_current.is_(True))).scalars().first()
        for student in db.session.execute(sa.select(Student).where(Student.class_id == _g9c1())).scalars():
            db.session.add(Record(term=term, category_id=_category_id("honour_title"), student=student,
                                  school_id=school.id, origin="school", entered_by=template, state="entered",
                                  data=_honour(f"校优秀学生{student.xjh[-2:]}")))
        db.session.commit()
        db.session.remove()


def _g9c1() -> int:
    """The id of 九年级(1)班 of school bs01 (student s1g9c1n01's class)."""
    return db.session.execute(sa.select(User).where(User.username == "s1g9c1n01")).scalar_one() \
        .grants[0].student.class_id


class Templates:
    """One seeded database per kind (the demo district, 3 students a class, a second clerk and auditor of
    school bs01); each test gets a fresh copy (a file copy on SQLite, CREATE DATABASE … TEMPLATE on PostgreSQL)."""

    def __init__(self, tmp_path_factory):
        self.tmp = tmp_path_factory.mktemp("faults")
        self.made: dict[str, str] = {}

    def _seed(self, url: str) -> None:
        app = _app(url)
        _seed(app)
        _dispose(app)

    def template(self, kind: str) -> str:
        if kind not in self.made:
            if kind == "postgresql":
                name = _pg_name("template")
                engine = _admin_engine()
                with engine.connect() as conn:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                engine.dispose()
                url = _pg_base().set(database=name).render_as_string(hide_password=False)
            else:
                url = f"sqlite:///{self.tmp}/template.sqlite"
            self._seed(url)
            self.made[kind] = url
        return self.made[kind]

    def fresh(self, kind: str, suffix: str) -> str:
        """A copy of the seeded template: ``kind`` postgresql or sqlite."""
        source = self.template(kind)
        if kind == "postgresql":
            name = _pg_name(suffix)
            engine = _admin_engine()
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{_pg_name("template")}"'))
            engine.dispose()
            return _pg_base().set(database=name).render_as_string(hide_password=False)
        path = f"{self.tmp}/{suffix}.sqlite"
        shutil.copyfile(source.removeprefix("sqlite:///"), path)
        return f"sqlite:///{path}"



@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    return Templates(tmp_path_factory)


# ---------------------------------------------------------------------------------------------
# Pages


def _login(client, username: str) -> None:
    page = client.get("/login")
    assert page.status_code == 200, page.status_code
    resp = client.post("/login", data={"username": username, "password": PASSWORD,
                                       "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert resp.status_code == 302, f"login of {username}: {resp.status_code} {resp.get_data(as_text=True)[:300]}"


def _grid(client, class_id: int, url: str = HONOUR) -> dict:
    page = client.get(f"{url}/grid/?class_id={class_id}")
    assert page.status_code == 200, page.status_code
    html = page.get_data(as_text=True)
    return json.loads(re.search(r'<script type="application/json" id="cqe-grid-config">(.*?)</script>', html,
                                re.S).group(1))


def _honour(title: str, level: str = "校级", issuer: str = "第一中学", on: str = "2022-01-10") -> dict:
    return {"title": title, "level": level, "issuer": issuer, "awarded_on": on}


def _xlsx(rows) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "录入"
    ws.append(["学籍号", "姓名", "荣誉称号", "级别", "授予单位", "授予日期"])
    for row in rows:
        ws.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _upload(client, data: bytes, name: str = "荣誉.xlsx"):
    page = client.get(f"{HONOUR}/import/").get_data(as_text=True)
    resp = client.post(f"{HONOUR}/import/", data={"csrf_token": csrf_from(page), "file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")
    assert resp.status_code == 302, resp.status_code
    token = re.search(r"/import/([0-9a-f]{32})/", resp.location).group(1)
    return token, client.get(resp.location).get_data(as_text=True)


# ---------------------------------------------------------------------------------------------
# The database as tests see it


def _students(school: str = "bs01", grade: int = 9) -> list[Student]:
    """The participating students of a school's grade, by 学籍号."""
    return db.session.execute(sa.select(Student).join(SchoolClass, Student.class_id == SchoolClass.id)
                              .join(School, SchoolClass.school_id == School.id)
                              .where(School.code == school, SchoolClass.grade == grade, Student.status == "enrolled")
                              .order_by(Student.xjh)).scalars().all()


def _titled(prefix: str) -> list[Record]:
    """The 先进个人荣誉称号 records whose title starts with ``prefix``."""
    return [r for r in db.session.execute(sa.select(Record).where(
        Record.category_id == _category_id("honour_title"))).scalars() if r.data["title"].startswith(prefix)]


def _category_id(code: str) -> int:
    return db.session.execute(sa.select(Category.id).where(Category.code == code)).scalar_one()


def _counts() -> dict:
    """Every table's rows and digest (conftest's ``table_fingerprint``), read in a fresh snapshot."""
    db.session.rollback()
    return table_fingerprint()


def _events(object_type: str, object_id, action: str | None = None) -> list[AuditEvent]:
    stmt = sa.select(AuditEvent).where(AuditEvent.object_type == object_type, AuditEvent.object_id == str(object_id))
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    return db.session.execute(stmt.order_by(AuditEvent.id)).scalars().all()


# =============================================================================================
# 1. PostgreSQL restarted during use


@pytest.fixture(scope="module")
def pg_app(templates):
    """An app on a PostgreSQL database of this module's (in both passes), and that database's name. The
    tests using it touch rows of their own and compare counts before and after themselves."""
    url = templates.fresh("postgresql", "pg")
    app = _app(url)
    yield app, sa.engine.make_url(url).database
    _dispose(app)


@pytest.fixture
def pg(pg_app):
    clock.pin(ENTRY)
    return pg_app


def test_a_restart_between_requests_is_not_noticed(pg, templates):
    app, name = pg
    connects = []

    def connected(*args):
        connects.append(1)

    with app.app_context():
        sa.event.listen(db.engine, "connect", connected)
        record = db.session.execute(sa.select(Record).join(School, Record.school_id == School.id).where(
            School.code == "bs01", Record.category_id == _category_id("honour_title"))
            .order_by(Record.id)).scalars().first()
        rid, version, edits = record.id, record.version_id, len(_events("Record", record.id, "edit"))
        db.session.remove()
    client = app.test_client()
    _login(client, "s1_clerk")
    assert client.get(f"{HONOUR}/").status_code == 200
    opened = len(connects)
    assert _terminate(name) >= 1, "the app's pooled connection was open"
    # The next requests: a list, then a save, each on a fresh connection (the dead one is detected first).
    assert client.get(f"{HONOUR}/").status_code == 200
    assert len(connects) > opened, "a new connection replaced the dead one"
    page = client.get(f"{HONOUR}/edit/?id={rid}").get_data(as_text=True)
    assert _terminate(name) >= 1
    resp = client.post(f"{HONOUR}/edit/?id={rid}", data={"csrf_token": csrf_from(page), "version": version,
                                                         **_honour("区优秀学生干部", "区级", "宝山区教育局")})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    with app.app_context():
        saved = db.session.get(Record, rid)
        assert saved.data["title"] == "区优秀学生干部" and saved.version_id == version + 1
        assert len(_events("Record", rid, "edit")) == edits + 1
        sa.event.remove(db.engine, "connect", connected)
        db.session.remove()

    # The control: a pooled connection without the ping is dead after the same restart — the simulated
    # restart really kills the connections a client holds (without pool_pre_ping, a request's 500).
    bare = sa.create_engine(app.config["SQLALCHEMY_DATABASE_URI"], pool_pre_ping=False)
    try:
        with bare.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        assert _terminate(name) >= 1
        with pytest.raises(sa.exc.OperationalError, match="terminating connection|server closed|connection"):
            with bare.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
    finally:
        bare.dispose()


class KillAfter:
    """An engine listener that restarts the database (``restart``: terminate every backend of it, or a
    real ``pg_ctl restart``) right after the ``n``-th statement matching ``pattern`` ran: the writes so far
    are done, uncommitted, and the next statement (or the COMMIT) meets a dead connection."""

    def __init__(self, app, restart, pattern: str, n: int = 1):
        self.app, self.restart, self.pattern, self.n = app, restart, re.compile(pattern, re.I | re.S), n
        self.seen = self.fired = 0

    def __call__(self, conn, cursor, statement, parameters, context, executemany):
        if self.pattern.search(statement):
            self.seen += 1
            if self.seen == self.n:
                self.fired = self.restart()

    def __enter__(self):
        with self.app.app_context():
            sa.event.listen(db.engine, "after_cursor_execute", self)
        return self

    def __exit__(self, *exc):
        with self.app.app_context():
            sa.event.remove(db.engine, "after_cursor_execute", self)


def _grid_save_meets_a_restart(app, restart) -> None:
    """A clerk's grid save of many rows (new and edited) is cut by a restart after the records went in:
    the request fails whole, nothing is kept; the same save again writes everything, once."""
    with app.app_context():
        class_id = _g9c1()
        db.session.remove()
    client = app.test_client()
    _login(client, "s1_clerk")
    config = _grid(client, class_id)
    new = [r for r in config["rows"] if r["record_id"] is None]
    saved = [r for r in config["rows"] if r["record_id"] is not None]
    assert len(new) >= 3 and len(saved) >= 2, config["rows"]
    # Two new titles per student and an edit of each saved row: one transaction of many rows.
    rows = [{"key": f"{r['key']}-{i}", "student_id": r["student_id"], "record_id": None, "version": None,
             "values": _honour(f"演练三好学生{i}")} for r in new for i in (1, 2)]
    rows += [{**r, "values": _honour(f"优秀团员{r['record_id']}", "区级")} for r in saved]
    with app.app_context():
        before = _counts()
        edits = {r["record_id"]: len(_events("Record", r["record_id"], "edit")) for r in saved}
        db.session.remove()
    with KillAfter(app, restart, r"^\s*INSERT INTO records\b") as kill:
        resp = client.post(f"{HONOUR}/grid/save/", json={"class_id": class_id, "rows": rows},
                           headers={"X-CSRFToken": config["csrf"]})
    assert kill.fired >= 1, "the restart happened in the middle of the save"
    assert resp.status_code >= 500, resp.status_code
    with app.app_context():
        assert _counts() == before, "nothing of the failed save was kept"
        db.session.remove()
    # The clerk presses save again: everything once.
    resp = client.post(f"{HONOUR}/grid/save/", json={"class_id": class_id, "rows": rows},
                       headers={"X-CSRFToken": config["csrf"]})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    body = resp.get_json()
    assert (body["created"], body["updated"], body["failed"]) == (2 * len(new), len(saved), 0)
    with app.app_context():
        after = _counts()
        assert after["records"][0] == before["records"][0] + 2 * len(new)
        assert after["audit_events"][0] == before["audit_events"][0] + 2 * len(new) + len(saved)
        created = _titled("演练三好学生")
        assert sorted((r.student_id, r.data["title"]) for r in created) == sorted(
            (r["student_id"], r["values"]["title"]) for r in rows if r["record_id"] is None)
        for r in created:
            assert [e.action for e in _events("Record", r.id)] == ["create"]
        for r in saved:
            record = db.session.get(Record, r["record_id"])
            assert record.data["title"] == f"优秀团员{r['record_id']}" and record.version_id == r["version"] + 1
            assert len(_events("Record", r["record_id"], "edit")) == edits[r["record_id"]] + 1
        db.session.remove()
    # And a third press from the same (now stale) page changes nothing: the edited rows' versions moved on.
    resp = client.post(f"{HONOUR}/grid/save/", json={"class_id": class_id, "rows": rows[-len(saved):]},
                       headers={"X-CSRFToken": config["csrf"]})
    assert resp.status_code == 200 and resp.get_json()["failed"] == len(saved)
    with app.app_context():
        assert _counts() == after
        db.session.remove()


def test_a_restart_in_the_middle_of_a_grid_save_keeps_nothing_and_the_retry_saves_once(pg):
    app, name = pg
    _grid_save_meets_a_restart(app, lambda: _terminate(name))


def test_a_restart_in_the_middle_of_an_import_keeps_nothing_and_the_retry_imports_once(pg, monkeypatch):
    from forms import imports

    monkeypatch.setattr(imports, "CHUNK", 2)  # the file is written two rows at a time
    app, name = pg
    with app.app_context():
        students = _students()[:3]
        rows = [(s.xjh, s.name, f"演练优秀学生{i}", "校级", "第一中学", "2022-01-10") for s in students for i in (1, 2)]
        db.session.remove()
    client = app.test_client()
    _login(client, "s1_clerk")
    token, page = _upload(client, _xlsx(rows))
    with app.app_context():
        before = _counts()
        db.session.remove()
    assert "共 6 行：6 行可以导入，0 行有错误。尚未写入任何数据。" in page
    # The second chunk's ids are drawn after the first chunk's records and history rows went in: restart there.
    with KillAfter(app, lambda: _terminate(name), r"nextval\(pg_get_serial_sequence\('records'", n=2) as kill:
        resp = client.post(f"{HONOUR}/import/{token}/", data={"csrf_token": csrf_from(page), "mode": "all"})
    assert kill.fired >= 1
    assert resp.status_code >= 500, resp.status_code
    with app.app_context():
        assert _counts() == before
        db.session.remove()
    resp = client.post(f"{HONOUR}/import/{token}/", data={"csrf_token": csrf_from(page), "mode": "all"})
    assert resp.status_code == 302
    assert "已导入 6 条记录" in client.get(resp.location).get_data(as_text=True)
    resp = client.post(f"{HONOUR}/import/{token}/", data={"csrf_token": csrf_from(page), "mode": "all"})
    assert "该文件已导入 6 条记录，未重复导入" in client.get(resp.location).get_data(as_text=True)
    with app.app_context():
        after = _counts()
        assert after["records"][0] == before["records"][0] + 6
        assert after["audit_events"][0] == before["audit_events"][0] + 6
        imported = _titled("演练优秀学生")
        assert sorted((r.student_id, r.data["title"]) for r in imported) == sorted(
            (s.id, f"演练优秀学生{i}") for s in students for i in (1, 2))
        db.session.remove()


class PrivateCluster:
    """A PostgreSQL server of the test's own (initdb in a temporary folder, a free port): the one server a
    test may really restart. PostgreSQL refuses to run as root, so as root it runs as the postgres account."""

    OPTIONS = "-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off"

    def __init__(self):
        import glob
        import tempfile

        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = shutil.which("initdb") or (found[-1] if found else None)
        if initdb is None:
            _missing("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
        self.bin = os.path.dirname(initdb)
        self.folder = tempfile.mkdtemp(prefix="cqe-pg-")  # under /tmp: reachable by the postgres account
        self.prefix = []
        if os.geteuid() == 0:
            import pwd

            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = _free_port()
        self.data = os.path.join(self.folder, "data")
        self.options = f"-p {self.port} -k {self.folder} {self.OPTIONS}"
        self.running = False

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.prefix, os.path.join(self.bin, tool), *args], check=True, capture_output=True,
                       timeout=60)

    def start(self) -> str:
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale", "C.UTF-8",
                  "--no-sync")
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.folder, "log"), "-o", self.options, "-w", "start")
        self.running = True
        engine = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
                                  isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE cqe"))
        engine.dispose()
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/cqe"

    def restart(self) -> int:
        """``pg_ctl restart -m fast``, back when it returns: what an operator's restart or a failover does."""
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.folder, "log"), "-o", self.options, "-m", "fast",
                  "-w", "restart")
        return 1

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
            self.running = False
        shutil.rmtree(self.folder, ignore_errors=True)


def test_a_real_restart_of_a_server_of_our_own_is_met_the_same_way():
    """The terminated backends above stand for a restart; here the server really restarts (a cluster of
    the test's own, ``pg_ctl restart -m fast``), between requests and in the middle of a grid save, and the
    app behaves the same. It needs no test database, so it runs once per `make test`, in the SQLite pass."""
    if DB_KIND != "sqlite":
        pytest.skip("runs once per `make test`, in the SQLite pass (it does not use the pass's database)")
    cluster = PrivateCluster()
    app = None
    try:
        app = _app(cluster.start())
        _seed(app)
        clock.pin(ENTRY)
        client = app.test_client()
        _login(client, "s1_clerk")
        assert client.get(f"{HONOUR}/").status_code == 200
        cluster.restart()
        assert client.get(f"{HONOUR}/").status_code == 200
        _grid_save_meets_a_restart(app, cluster.restart)
    finally:
        if app is not None:
            _dispose(app)
        cluster.stop()


# =============================================================================================
# 2. Redis down


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A Redis of the test's own on a free port: down until ``start``, and down again after ``stop``."""

    def __init__(self, folder):
        if not shutil.which("redis-server"):
            _missing("redis-server is not installed")
        self.port, self.folder = _free_port(), folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.pidfile = folder / "redis.pid"

    def start(self) -> None:
        import redis

        subprocess.run(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--daemonize", "yes", "--dir", str(self.folder),
                        "--pidfile", str(self.pidfile), "--logfile", str(self.folder / "redis.log")],
                       check=True, capture_output=True)
        conn = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.time() + 20
        while True:
            try:
                conn.ping()
                break
            except redis.ConnectionError:
                assert time.time() < deadline, "redis-server did not come up"
                time.sleep(0.05)
            finally:
                conn.close()

    def stop(self) -> None:
        if not self.pidfile.exists():
            return
        pid = int(self.pidfile.read_text().strip())
        try:
            os.kill(pid, signal.SIGKILL)  # nothing of it is kept anyway (no persistence)
        except ProcessLookupError:
            return
        deadline = time.time() + 20
        while not _gone(pid) and time.time() < deadline:
            time.sleep(0.05)


def _statuses(client, *paths) -> dict:
    return {p: client.get(p).status_code for p in paths}


def _pending_confirmations() -> dict[int, int]:
    """Clerk-entered records of the current term a student has not acted on: record id → version."""
    rows = db.session.execute(sa.select(Record.id, Record.version_id).where(
        Record.state == "entered", Record.origin.in_(deadlines.CLERK_ORIGINS),
        Record.term_id.in_(sa.select(Term.id).where(Term.is_current.is_(True))))).all()
    return dict(rows)


def test_with_redis_down_pages_work_and_missed_deadlines_are_caught_up_once(templates, tmp_path, monkeypatch):
    import redis
    import rq
    from rq.job import Job

    from jobs.deadlines import job_id

    server = RedisServer(tmp_path)  # not started: the app's Redis is down from the first request
    app = _app(templates.fresh(DB_KIND, "redis"), REDIS_URL=server.url, CQE_IMPORT_INLINE_ROWS=3)
    try:
        clock.pin(ENTRY)
        with app.app_context():
            deadlines.tick(trigger="rq")  # before the outage the worker kept up with the schedule
            runs_before = db.session.execute(sa.select(sa.func.count(DeadlineRun.id))).scalar_one()
            students = _students()[:2]
            rows = [(s.xjh, s.name, f"停机期间导入{i}", "校级", "第一中学", "2022-01-10") for s in students for i in (1, 2)]
            class_id = students[0].class_id
            db.session.remove()

        # --- Redis down: every page answers, work meant for RQ is done in the request -------------------
        client = app.test_client()
        health = client.get("/healthz")
        assert health.status_code == 200 and health.get_json() == {"database": "ok", "redis": "down"}
        page = client.get("/login")
        wrong = client.post("/login", data={"username": "s1_clerk", "password": "wrong-password",
                                            "csrf_token": csrf_from(page.get_data(as_text=True))})
        assert wrong.status_code == 200 and "用户名或密码错误" in wrong.get_data(as_text=True)  # counted in memory
        assert app.extensions["cqe_throttle"].uri == server.url  # the login throttle counts in that Redis too
        _login(client, "s1_clerk")
        pages = ["/admin/", f"{HONOUR}/", f"{HONOUR}/grid/?class_id={class_id}", "/inbox", "/reports/batch/"]
        assert _statuses(client, *pages) == dict.fromkeys(pages, 200)
        # A file above CQE_IMPORT_INLINE_ROWS would be checked and imported by RQ jobs: here, in the request.
        token, report = _upload(client, _xlsx(rows))
        assert "cqe-job-bar" not in report and "共 4 行：4 行可以导入，0 行有错误" in report
        resp = client.post(f"{HONOUR}/import/{token}/", data={"csrf_token": csrf_from(report), "mode": "all"})
        assert resp.status_code == 302 and "已导入 4 条记录" in client.get(resp.location).get_data(as_text=True)
        # A report batch would be an RQ job: built in the request, ready to download.
        batch = client.get("/reports/batch/").get_data(as_text=True)
        resp = client.post("/reports/batch/", data={"csrf_token": csrf_from(batch), "target": f"class:{class_id}",
                                                    "kind": "slips"})
        assert resp.status_code == 302
        ready = client.get("/reports/batch/").get_data(as_text=True)
        zip_url = re.search(r'href="(/reports/batch/[0-9a-f]+\.zip)"', ready).group(1)
        with client.get(zip_url) as download:
            assert download.status_code == 200 and download.data[:2] == b"PK"
        student = app.test_client()
        _login(student, "s1g9c1n01")
        assert _statuses(student, "/me/records", "/inbox") == {"/me/records": 200, "/inbox": 200}
        admin = app.test_client()
        _login(admin, "admin")
        deadlines_page = admin.get("/admin/deadlines/")
        assert deadlines_page.status_code == 200
        assert "Redis 无法连接" in deadlines_page.get_data(as_text=True)

        # --- Time passes with Redis still down: confirmation ends (逾期默认通过 is due at 16:00) -----------
        clock.pin("2022-03-28 16:30")
        assert _statuses(student, "/me/records", "/inbox") == {"/me/records": 200, "/inbox": 200}
        assert client.get("/healthz").get_json()["redis"] == "down"
        with app.app_context():
            pending = _pending_confirmations()
            due = {(e.effect.code, e.cohort.id) for e in deadlines.pending(clock.now())}
            assert pending and "auto_confirm" in {code for code, _ in due}
            assert db.session.execute(sa.select(sa.func.count(DeadlineRun.id))).scalar_one() == runs_before
            db.session.remove()

        # --- Redis is back: the worker's start catches up everything due, once ---------------------------
        server.start()
        assert client.get("/healthz").get_json() == {"database": "ok", "redis": "ok"}
        monkeypatch.setattr(rq, "Worker", rq.SimpleWorker)  # `flask cqe worker` in this process (no fork)
        runner = app.test_cli_runner()
        started = runner.invoke(args=["cqe", "worker", "--burst"])
        assert started.exit_code == 0, started.output
        assert started.output.startswith("Scheduled ")
        # Both of the worker's ways tried every missed effect — its scheduled job (due long ago: run at once)
        # and the catch-up tick queued at start — and each effect was applied by exactly one of them.
        conn = redis.Redis.from_url(server.url)
        try:
            tick = Job.fetch("cqe-tick-start", connection=conn).return_value()
            scheduled = {key: Job.fetch(job_id(*key), connection=conn) for key in due}
            failed = {key: [line for line in job.latest_result().exc_string.splitlines() if "Error" in line][-1]
                      for key, job in scheduled.items() if job.get_status() != "finished"}
            outcome = {key: job.return_value()["status"] for key, job in scheduled.items() if key not in failed}
        finally:
            conn.close()
        assert tick["errors"] == [] and failed == {}, (tick["errors"], failed)
        by_tick = {(code, cid) for code, cid, _ in tick["applied"]}
        by_job = {key for key, status in outcome.items() if status == "done"}
        assert set(outcome.values()) <= {"done", "already_done"}
        assert by_tick | by_job == due and not by_tick & by_job, (by_tick, outcome)
        again = runner.invoke(args=["cqe", "tick"])  # an operator's manual catch-up afterwards
        assert again.exit_code == 0 and again.output.strip() == "Nothing due.", again.output
        assert runner.invoke(args=["cqe", "worker", "--burst"]).exit_code == 0  # another worker starting
        with app.app_context():
            runs = db.session.execute(sa.select(DeadlineRun)).scalars().all()
            assert {(r.effect, r.cohort_id) for r in runs} >= due and {r.status for r in runs} == {"done"}
            assert len(runs) == runs_before + len(due)
            assert not deadlines.pending(clock.now())
            for run in runs:  # one history event per effect run
                assert len(_events("DeadlineRun", run.id)) == 1, (run.effect, run.cohort_id)
            confirm_runs = {r.cohort_id: r for r in runs if r.effect == "auto_confirm"}
            assert sum(r.counts["records"] for r in confirm_runs.values()) == len(pending)
            for record in db.session.execute(sa.select(Record).where(Record.id.in_(pending))).scalars():
                assert record.state == "confirmed" and record.version_id == pending[record.id] + 1
                assert record.deadline_run_id in {r.id for r in confirm_runs.values()}
            db.session.remove()
        assert "已确认" in student.get("/me/records").get_data(as_text=True)
    finally:
        server.stop()
        _dispose(app)


# =============================================================================================
# 3. A worker killed in the middle of an import job

# `flask cqe worker --burst --no-tick` with the file read 4 rows at a time and, when FAULT_PAUSE_AT is set,
# the work horse stopped for good once it has checked that many rows (the rows before them are written,
# not committed): it announces itself in FAULT_MARK and waits to be killed.
WORKER = r"""
import os, sys, time
sys.path.insert(0, os.getcwd())
from forms import imports
import jobs.imports

imports.CHUNK = 4
pause_at, real = int(os.environ.get("FAULT_PAUSE_AT") or 0), jobs.imports.progress


def progress(done, total, label=""):
    real(done, total, label)
    if pause_at and label.startswith("已检查并写入") and done >= pause_at:
        with open(os.environ["FAULT_MARK"], "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(600)


jobs.imports.progress = progress
from flask.cli import main

sys.argv = ["flask", "cqe", "worker", "--burst", "--no-tick"]
main()
"""


def _worker(url: str, redis_url: str, log, **env) -> subprocess.Popen:
    """The worker in a process (and session) of its own, its output in the file ``log``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CQE_", "FAULT_"))}
    environ.update(DATABASE_URL=url, REDIS_URL=redis_url, FLASK_APP="app", SECRET_KEY="test-secret",
                   CQE_NOW="2022-03-01T09:00:00+08:00", **env)
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env=environ, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie holds nothing
    except OSError:
        return True


def _writing(url: str) -> bool:
    """Whether another process holds an uncommitted write to the records (PostgreSQL: a transaction holding
    a row-exclusive lock on them; SQLite: the database's one write lock)."""
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            return "locked" in str(exc)
        finally:
            conn.close()
        return False
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.relation = 'records'::regclass AND l.mode = 'RowExclusiveLock' "
                "AND a.pid <> pg_backend_pid() AND a.state = 'idle in transaction'")).scalar_one() > 0
    finally:
        engine.dispose()


@pytest.fixture
def rq_app(templates):
    import redis

    redis_url = _redis_url()
    conn = redis.Redis.from_url(redis_url)
    try:
        conn.ping()
    except redis.ConnectionError as exc:
        _missing(f"Redis unreachable at {redis_url}: {exc}")
    conn.flushdb()
    app = _app(templates.fresh(DB_KIND, "worker"), REDIS_URL=redis_url, CQE_IMPORT_INLINE_ROWS=3)
    clock.pin(ENTRY)
    yield app, conn
    conn.flushdb()
    conn.close()
    _dispose(app)


def test_a_worker_killed_mid_import_keeps_nothing_and_the_reruns_import_once(rq_app, tmp_path):
    from rq import Queue, SimpleWorker
    from rq.job import Job
    from rq.registry import FailedJobRegistry, StartedJobRegistry

    app, conn = rq_app
    url, redis_url = app.config["SQLALCHEMY_DATABASE_URI"], app.config["REDIS_URL"]
    queue = Queue("default", connection=conn)
    with app.app_context():
        students = _students()
        rows = [(s.xjh, s.name, f"中断导入{i}", "校级", "第一中学", "2022-01-10") for i in range(12)
                for s in [students[i % len(students)]]]
        expected = sorted((students[i % len(students)].id, f"中断导入{i}") for i in range(12))
        db.session.remove()
    client = app.test_client()
    _login(client, "s1_clerk")
    token, page = _upload(client, _xlsx(rows))
    assert 'id="cqe-job-bar"' in page  # 12 rows > CQE_IMPORT_INLINE_ROWS: the check is a job
    with app.app_context():
        SimpleWorker([queue], connection=conn).work(burst=True)  # the check (no fault here)
        db.session.remove()
    page = client.get(f"{HONOUR}/import/{token}/").get_data(as_text=True)
    assert "共 12 行：12 行可以导入，0 行有错误。尚未写入任何数据。" in page
    with app.app_context():
        before = _counts()
        db.session.remove()
    resp = client.post(f"{HONOUR}/import/{token}/", data={"csrf_token": csrf_from(page), "mode": "all"})
    assert resp.status_code == 302
    job_id = re.search(r'data-url="/jobs/([^"]+)"', client.get(resp.location).get_data(as_text=True)).group(1)

    # A real worker runs the import; its work horse stops after 8 rows (4 of them written), and then the
    # worker and the horse are killed as a crash or the OOM killer would: SIGKILL, no clean-up.
    mark = tmp_path / "paused"
    log = tmp_path / "worker.log"
    proc = _worker(url, redis_url, log, FAULT_PAUSE_AT="8", FAULT_MARK=str(mark))
    deadline = time.time() + 120
    while not mark.exists() or not mark.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.time() < deadline, "the worker never reached the middle of the import"
        time.sleep(0.05)
    horse = int(mark.read_text())
    job = Job.fetch(job_id, connection=conn)
    assert job.get_status() == "started" and job.meta["progress"]["done"] == 8 and job.meta["progress"]["total"] == 12
    assert _writing(url), "the first rows are written, not committed"
    os.kill(horse, signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.time() + 30
    while not _gone(horse):
        assert time.time() < deadline, f"work horse {horse} survived SIGKILL"
        time.sleep(0.05)
    with app.app_context():
        assert _counts() == before, "nothing of the killed import was kept"
        db.session.remove()
    # RQ does not know yet: the job is "started", the page shows its progress bar.
    page = client.get(f"{HONOUR}/import/{token}/").get_data(as_text=True)
    assert 'id="cqe-job-bar"' in page
    # Once the job's heartbeat has lapsed (RQ 3.0: the last heartbeat + job_monitoring_interval + 60 s), RQ
    # treats it as abandoned. Time passes: the entry of the job in the started registry expires now.
    registry = StartedJobRegistry(queue=queue)
    entries = conn.zrange(registry.key, 0, -1)
    assert [e.decode().split(":")[0] for e in entries] == [job_id]
    conn.zadd(registry.key, {entries[0]: time.time() - 1}, xx=True)
    page = client.get(f"{HONOUR}/import/{token}/", follow_redirects=True).get_data(as_text=True)
    assert "导入任务失败，未写入任何数据。请稍后重试。" in page and "导入全部 12 行" in page
    assert job_id in FailedJobRegistry(queue=queue).get_job_ids()
    assert "AbandonedJobError" in (Job.fetch(job_id, connection=conn).latest_result().exc_string or "")

    # Both reruns happen: the clerk imports again from the page, and an operator requeues the dead job
    # (`rq requeue`). A worker runs both, in that order.
    resp = client.post(f"{HONOUR}/import/{token}/", data={"csrf_token": csrf_from(page), "mode": "all"})
    assert resp.status_code == 302
    retry_id = re.search(r'data-url="/jobs/([^"]+)"', client.get(resp.location).get_data(as_text=True)).group(1)
    assert retry_id != job_id
    FailedJobRegistry(queue=queue).requeue(job_id)
    assert queue.get_job_ids() == [retry_id, job_id]
    with app.app_context():  # killing a process is not the point any more: a worker in this process
        SimpleWorker([queue], connection=conn).work(burst=True)
        db.session.remove()
    assert Job.fetch(retry_id, connection=conn).return_value()["imported"] == 12
    assert Job.fetch(job_id, connection=conn).return_value() == {
        "ok": False, "imported": 0, "skipped": 0, "message": "该文件已导入 12 条记录，未重复导入。"}
    resp = client.get(f"{HONOUR}/import/{token}/")
    assert resp.status_code == 302 and "已导入 12 条记录" in client.get(resp.location).get_data(as_text=True)
    with app.app_context():
        after = _counts()
        assert after["records"][0] == before["records"][0] + 12
        assert after["audit_events"][0] == before["audit_events"][0] + 12
        imported = _titled("中断导入")
        assert sorted((r.student_id, r.data["title"]) for r in imported) == expected
        for record in imported:
            assert [e.action for e in _events("Record", record.id)] == ["create"]
        db.session.remove()


# =============================================================================================
# 4. Two clerks (two auditors) saving the same thing at the same moment


@pytest.fixture(scope="module")
def live_app(templates):
    """The app on a real threaded HTTP server, on a database of this module's (of this pass's kind); each
    test works on a record of its own."""
    app = _app(templates.fresh(DB_KIND, "clerks"))
    with serving(app) as base:
        yield app, base
    _dispose(app)


@pytest.fixture
def live(live_app):
    clock.pin(ENTRY)
    return live_app


class Browser:
    """One person's logged-in session against the live server."""

    def __init__(self, base: str, username: str):
        import requests

        self.base, self.http = base, requests.Session()
        page = self.http.get(f"{base}/login")
        resp = self.http.post(f"{base}/login", data={"username": username, "password": PASSWORD,
                                                     "csrf_token": csrf_from(page.text)}, allow_redirects=False)
        assert resp.status_code == 302, f"login of {username}: {resp.status_code}"

    def get(self, path: str) -> str:
        resp = self.http.get(self.base + path)
        assert resp.status_code == 200, (path, resp.status_code)
        return resp.text

    def post(self, path: str, **kwargs):
        return self.http.post(self.base + path, allow_redirects=False, **kwargs)

    def close(self) -> None:
        self.http.close()


# What the one who lost is told: PostgreSQL finds the other's version (the row lock makes the second
# UPDATE wait, then match no row); SQLite refuses the second writer at once (one writer at a time).
STALE_FORM = {"postgresql": "该记录刚被他人修改，您的修改未保存。请刷新后重试。",
              "sqlite": "有其他人正在同时保存，您的修改未保存。请刷新后重试。"}
STALE_GRID = {"postgresql": "有记录刚被他人修改，本次保存未写入任何数据。请刷新后重试。",
              "sqlite": "有其他人正在同时保存，本次保存未写入任何数据。请刷新后重试。"}


class Together:
    """Holds each request that is about to write ``model`` #``ident`` (or to insert records) at its first
    flush until ``parties`` requests are there: they then write at the same moment, each having read and
    checked the same version. The database, not the order of arrival, decides who wins."""

    def __init__(self, model, ident: int, parties: int = 2):
        self.model, self.ident = model, ident
        self.barrier = threading.Barrier(parties, timeout=30)
        self.arrived = 0

    def _before_flush(self, session, flush_context, instances):
        if session.info.get("cqe_together"):
            return
        touched = any(isinstance(o, self.model) and o.id == self.ident for o in session.dirty) or any(
            isinstance(o, Record) for o in session.new)
        if touched:
            session.info["cqe_together"] = True
            self.arrived += 1
            self.barrier.wait()

    def __enter__(self):
        sa.event.listen(sa.orm.Session, "before_flush", self._before_flush)
        return self

    def __exit__(self, *exc):
        sa.event.remove(sa.orm.Session, "before_flush", self._before_flush)


def _at_once(*calls):
    """Run the calls in threads of their own, at once; their results in order."""
    results = [None] * len(calls)
    errors = []

    def run(i, call):
        try:
            results[i] = call()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


def _class_record(app, position: int = 0) -> tuple[int, int]:
    """(id, version) of a saved 先进个人荣誉称号 of 九年级(1)班 of school bs01."""
    with app.app_context():
        records = db.session.execute(sa.select(Record).join(Student, Record.student_id == Student.id).where(
            Student.class_id == _g9c1(), Record.category_id == _category_id("honour_title"))
            .order_by(Record.id)).scalars().all()
        out = records[position].id, records[position].version_id
        db.session.remove()
        return out


def test_two_clerks_saving_one_record_at_once_one_wins_and_the_other_is_told(live):
    app, base = live
    rid, version = _class_record(app)
    a, b = Browser(base, "s1_clerk"), Browser(base, "s1_clerk2")
    try:
        forms = []
        for who, title in ((a, "甲的修改"), (b, "乙的修改")):
            page = who.get(f"{HONOUR}/edit/?id={rid}")
            assert f'value="{version}"' in page
            forms.append({"csrf_token": csrf_from(page), "version": str(version), **_honour(title)})
        with Together(Record, rid) as together:
            ra, rb = _at_once(lambda: a.post(f"{HONOUR}/edit/?id={rid}", data=forms[0]),
                              lambda: b.post(f"{HONOUR}/edit/?id={rid}", data=forms[1]))
        assert together.arrived == 2, "both saves passed the version check before either wrote"
    finally:
        a.close()
        b.close()
    statuses = sorted([ra.status_code, rb.status_code])
    assert statuses == [200, 302], (ra.status_code, rb.status_code, ra.text[:300], rb.text[:300])
    winner, loser = (0, rb) if ra.status_code == 302 else (1, ra)
    assert STALE_FORM[DB_KIND] in loser.text
    with app.app_context():
        record = db.session.get(Record, rid)
        assert record.data == _honour(("甲的修改", "乙的修改")[winner]) and record.version_id == version + 1
        [event] = _events("Record", rid, "edit")
        assert event.after["data"]["title"] == ("甲的修改", "乙的修改")[winner]
        db.session.remove()


def test_two_clerks_saving_one_grid_row_at_once_one_save_is_refused_whole(live):
    app, base = live
    rid, version = _class_record(app, 1)
    with app.app_context():
        klass_id = db.session.get(Record, rid).student.class_id
        db.session.remove()
    a, b = Browser(base, "s1_clerk"), Browser(base, "s1_clerk2")
    try:
        with app.app_context():
            before = _counts()
            db.session.remove()
        configs = [json.loads(re.search(r'id="cqe-grid-config">(.*?)</script>', who.get(
            f"{HONOUR}/grid/?class_id={klass_id}"), re.S).group(1)) for who in (a, b)]
        row = next(r for r in configs[0]["rows"] if r["record_id"] == rid)
        assert row["version"] == version
        blank = next(r for r in configs[1]["rows"] if r["record_id"] is None)
        # Clerk A edits the row; clerk B edits the same row and adds a new one in the same save.
        payload_a = [{**row, "values": _honour("甲改的称号")}]
        payload_b = [{**row, "values": _honour("乙改的称号")}, {**blank, "values": _honour("乙新增的称号")}]
        with Together(Record, rid) as together:
            ra, rb = _at_once(
                lambda: a.post(f"{HONOUR}/grid/save/", json={"class_id": klass_id, "rows": payload_a},
                               headers={"X-CSRFToken": configs[0]["csrf"]}),
                lambda: b.post(f"{HONOUR}/grid/save/", json={"class_id": klass_id, "rows": payload_b},
                               headers={"X-CSRFToken": configs[1]["csrf"]}))
        assert together.arrived == 2
    finally:
        a.close()
        b.close()
    assert sorted([ra.status_code, rb.status_code]) == [200, 409], (ra.status_code, rb.text[:300], ra.text[:300])
    won_a = ra.status_code == 200
    loser = rb if won_a else ra
    assert loser.json() == {"error": STALE_GRID[DB_KIND]}
    with app.app_context():
        record = db.session.get(Record, rid)
        assert record.data["title"] == ("甲改的称号" if won_a else "乙改的称号") and record.version_id == version + 1
        assert len(_events("Record", rid, "edit")) == 1
        after = _counts()
        added = 0 if won_a else 1  # B's new row is kept only if B's save won; a refused save keeps nothing
        assert after["records"][0] == before["records"][0] + added
        assert after["audit_events"][0] == before["audit_events"][0] + 1 + added
        assert len(_titled("乙新增的称号")) == added
        db.session.remove()


def test_two_auditors_handling_one_case_at_once_one_decision_stands(live):
    from models import workflow
    from models.audit import Actor, current_actor, set_actor

    app, base = live
    rid, _version = _class_record(app, 2)
    with app.app_context():
        record = db.session.get(Record, rid)
        student = record.student
        account = db.session.execute(sa.select(RoleGrant).where(RoleGrant.role == "student",
                                                                RoleGrant.student_id == student.id)).scalar_one().user
        db.session.execute(sa.update(Record).where(Record.id == rid).values(state="confirmed"))  # published data
        db.session.commit()
        previous = current_actor()
        set_actor(Actor(user_id=account.id, name=account.display_name, ip="127.0.0.1"))
        try:
            clock.pin("2022-03-31 09:00")
            case = workflow.file_appeal(account, student, kind="error", description="荣誉称号名称有误", record=record)
            cid, cversion = case.id, case.version_id
        finally:
            set_actor(previous)
        db.session.remove()
    a, b = Browser(base, "s1_auditor"), Browser(base, "s1_auditor2")
    try:
        pages = [who.get(f"/cases/{cid}") for who in (a, b)]
        assert all(f'name="version" value="{cversion}"' in p for p in pages)
        with Together(Case, cid) as together:
            ra, rb = _at_once(
                lambda: a.post(f"/cases/{cid}/accept", data={"csrf_token": csrf_from(pages[0]), "version": cversion}),
                lambda: b.post(f"/cases/{cid}/dismiss", data={"csrf_token": csrf_from(pages[1]), "version": cversion,
                                                             "reason": "经核实无误"}))
        assert together.arrived == 2
        assert ra.status_code == rb.status_code == 302
        shown = [who.get(f"/cases/{cid}") for who in (a, b)]
    finally:
        a.close()
        b.close()
    with app.app_context():
        case = db.session.get(Case, cid)
        assert case.state in ("accepted", "dismissed") and case.version_id == cversion + 1
        won_a = case.state == "accepted"
        events = [e.action for e in _events("Case", cid)]
        assert events == ["file", "accept" if won_a else "dismiss"]
        db.session.remove()
    winner, loser = (shown[0], shown[1]) if won_a else (shown[1], shown[0])
    assert ("已受理，等待录入方修改。" if won_a else "已驳回。") in winner
    assert STALE_FORM[DB_KIND] in loser
