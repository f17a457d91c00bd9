"""The benchmark: a district (or city) at scale, our pages measured beside stock Flask-Admin and raw SQL.

    python bench/run.py --students 50000            # SQLite; also PostgreSQL when TEST_DATABASE_URL is set
    python bench/run.py --students 2000 --quick     # the CI smoke run: the harness must not rot
    python bench/run.py --students 600000 --only postgresql

Writes bench/results.json: {"dataset": …, "metrics": {NAME: {"ours_ms", "baseline_ms", "baseline",
"ratio", "runs"}}} for SQLite and, under "results_postgresql", the same for PostgreSQL. Every timing
is the median of at least 5 runs after a warm-up, both sides measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import sqlalchemy as sa  # noqa: E402

RUNS = 7
HERE = os.path.dirname(os.path.abspath(__file__))


def median_ms(fn, runs: int = RUNS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def metric(ours: float, baseline: float | None, what: str, runs: int = RUNS) -> dict:
    return {"ours_ms": round(ours, 3), "baseline_ms": None if baseline is None else round(baseline, 3),
            "baseline": what, "ratio": None if not baseline else round(ours / baseline, 3), "runs": runs}


def build_app(url: str):
    from flask_admin import Admin
    from flask_admin.contrib.sqla import ModelView

    from app import create_app
    from models import Case, Record, clock, db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "WTF_CSRF_ENABLED": False, "CQE_NOW": None})
    clock.pin("2022-03-01 09:00")
    # The baseline: a stock ModelView over the same table, unscoped, default pager, same page size.
    stock = Admin(app, name="stock", url="/stock", endpoint="stock")
    stock.add_view(ModelView(Record, db, endpoint="stock_records", url="/stock/records"))

    class StockCases(ModelView):
        page_size = 50  # the appeal queue's page size

    stock.add_view(StockCases(Case, db, endpoint="stock_cases", url="/stock/cases"))
    return app


def fresh_schema(app) -> None:
    from flask_migrate import upgrade

    from models import db

    with app.app_context():
        db.drop_all()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        upgrade(directory=os.path.join(ROOT, "migrations"))


def seed(app, students: int) -> dict:
    """Seed in a child process: the pages are then measured in a process that, like a server's, never
    held millions of rows (a seeding process's heap slows every later request through its GC)."""
    import subprocess

    url = app.config["SQLALCHEMY_DATABASE_URI"]
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--seed-only", url, "--students", str(students)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def seed_here(url: str, students: int) -> dict:
    from models import db
    from seed.scale import seed_scale

    app = build_app(url)
    with app.app_context():
        fresh_schema(app)
        counts = seed_scale(students)
        db.session.commit()
        db.engine.dispose()
    return counts


def login(client, username: str) -> None:
    resp = client.post("/login", data={"username": username, "password": "cqe2022"})
    assert resp.status_code == 302, f"login {username}: {resp.status_code}"


def get(client, url: str):
    resp = client.get(url)
    assert resp.status_code == 200, f"{url}: {resp.status_code}"
    return resp


LIST_URL = "/admin/records/sports/"


def measure_pages(app) -> dict:
    from models import db

    out = {}
    clerk = app.test_client()
    login(clerk, "sc00001_clerk")
    stock = app.test_client()
    login(stock, "sc00001_clerk")
    ours = median_ms(lambda: get(clerk, LIST_URL))
    base = median_ms(lambda: get(stock, "/stock/records/"))
    out["list_page"] = metric(ours, base, "stock Flask-Admin ModelView(Record), unscoped, default pager, page size 20")

    # Database time inside one list request, against the page's own SELECT alone through the driver.
    with app.app_context():
        engine = db.engine
    spent, captured = [], []

    def before(conn, cursor, statement, params, context, executemany):
        conn.info["cqe_t0"] = time.perf_counter()

    def after(conn, cursor, statement, params, context, executemany):
        spent.append(time.perf_counter() - conn.info.pop("cqe_t0"))
        if statement.lstrip().upper().startswith("SELECT") and "FROM records" in statement and "LIMIT" in statement:
            captured.append((statement, params))

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    in_request = []
    try:
        get(clerk, LIST_URL)
        for _ in range(RUNS):
            spent.clear()
            get(clerk, LIST_URL)
            in_request.append(sum(spent) * 1000)
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "after_cursor_execute", after)
    statement, params = captured[-1]

    def page_select():
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(statement, params)
            cur.fetchall()
            cur.close()
        finally:
            raw.close()

    out["list_page_sql"] = metric(statistics.median(in_request), median_ms(page_select),
                                  "the page's own SELECT run alone through the driver")

    # The school auditor's open appeals of one class (filters: class, state), at ~10,000 cases a district.
    from models import Case, SchoolClass

    with app.app_context():
        class_id = db.session.execute(
            sa.select(Case.class_id).join(SchoolClass, SchoolClass.id == Case.class_id)
            .where(SchoolClass.school_id == sa.select(Case.school_id).order_by(Case.id).limit(1).scalar_subquery(),
                   Case.state == "open").group_by(Case.class_id).order_by(sa.func.count().desc()).limit(1)
        ).scalar_one()
        cases = db.session.execute(sa.select(sa.func.count(Case.id))).scalar_one()
    auditor = app.test_client()
    login(auditor, "sc00001_auditor")
    queue_url = f"/admin/cases/?flt0_1={class_id}&flt1_4=open"
    assert "办理" in get(auditor, queue_url).get_data(as_text=True)
    stock_cases = app.test_client()
    login(stock_cases, "sc00001_auditor")
    out["appeal_queue"] = metric(median_ms(lambda: get(auditor, queue_url)),
                                 median_ms(lambda: get(stock_cases, "/stock/cases/")),
                                 f"stock Flask-Admin ModelView(Case), unscoped, unfiltered, page size 50 "
                                 f"({cases:,} cases in the database)")

    student = app.test_client()
    login(student, "sc00001_student")
    out["student_home"] = metric(median_ms(lambda: get(student, "/admin/")),
                                 median_ms(lambda: get(student, "/healthz")),
                                 "GET /healthz of the same app (one SELECT 1): the request floor")
    return out


def measure_insert(app) -> dict:
    """Record rows through our bulk path (COPY on PostgreSQL) against the driver's plain executemany."""
    from models import db
    from seed.scale import RECORD_COLUMNS, _bulk

    with app.app_context():
        cols = ", ".join(RECORD_COLUMNS)
        rows = [tuple(r) for r in db.session.execute(sa.text(f"SELECT {cols} FROM records LIMIT 100000"))]
        rows = [tuple(json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v for v in r) for r in rows]
        table = sa.Table("records_bench", sa.MetaData(), *[sa.Column(c) for c in RECORD_COLUMNS])

        def reset(conn):
            conn.exec_driver_sql("DROP TABLE IF EXISTS records_bench")
            conn.exec_driver_sql(f"CREATE TABLE records_bench AS SELECT {cols} FROM records WHERE 1 = 0")

        def ours():
            with db.engine.begin() as conn:
                reset(conn)
            with db.engine.begin() as conn:
                _bulk(conn, table, RECORD_COLUMNS, rows)

        def plain():
            with db.engine.begin() as conn:
                reset(conn)
            with db.engine.begin() as conn:
                raw = conn.connection.driver_connection
                mark = "%s" if db.engine.dialect.name == "postgresql" else "?"
                cur = raw.cursor()
                cur.executemany(f"INSERT INTO records_bench ({cols}) VALUES ({', '.join([mark] * len(RECORD_COLUMNS))})",
                                rows)
                cur.close()

        result = metric(median_ms(ours, 5), median_ms(plain, 5),
                        f"the same {len(rows):,} record rows through the driver's plain executemany", runs=5)
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS records_bench")
        result["records"] = len(rows)
        return result


def run_database(kind: str, url_full: str, url_tenth: str, students: int) -> dict:
    app = build_app(url_full)
    counts = seed(app, students)
    pages = measure_pages(app)
    insert = measure_insert(app)
    small = build_app(url_tenth)
    seed(small, max(students // 10, 1))
    tenth = median_ms(lambda: get(_logged_in(small), LIST_URL))
    full = pages["list_page"]["ours_ms"]
    metrics = dict(pages)
    metrics["list_page_scaling"] = metric(full, tenth, f"list_page at {max(students // 10, 1):,} students "
                                                       "(ours_ms is the full scale; ratio = full / tenth)")
    metrics["seed_scale"] = insert
    for a in (app, small):
        with a.app_context():
            from models import db

            db.engine.dispose()
    return {"dataset": {"students": students, "records": counts["records"], "cases": counts["cases"],
                        "database": kind,
                        "records_per_second": round(counts["records_per_second"]),
                        "seed_seconds": round(counts["seconds"], 1)},
            "metrics": metrics}


_clients = {}


def _logged_in(app):
    if app not in _clients:
        _clients[app] = app.test_client()
        login(_clients[app], "sc00001_clerk")
    return _clients[app]


def postgres_url(base: str, name: str) -> str:
    """A database of its own next to TEST_DATABASE_URL's (created if missing)."""
    from settings import database_url

    url = sa.engine.make_url(database_url(base))
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=int(os.environ.get("BENCH_STUDENTS", 50_000)))
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--out", default=os.path.join(HERE, "results.json"))
    parser.add_argument("--seed-only", metavar="URL", help="(internal) seed this database and print the counts")
    args = parser.parse_args()
    if args.seed_only:
        print(json.dumps(seed_here(args.seed_only, args.students)))
        return
    os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
    results = {}
    if args.only in (None, "sqlite"):
        full = "sqlite:///" + os.path.join(HERE, "data", "bench.sqlite")
        tenth = "sqlite:///" + os.path.join(HERE, "data", "bench-tenth.sqlite")
        results.update(run_database("sqlite", full, tenth, args.students))
    pg = os.environ.get("TEST_DATABASE_URL")
    if pg and args.only in (None, "postgresql"):
        pg_results = run_database("postgresql", postgres_url(pg, "cqe_bench"), postgres_url(pg, "cqe_bench_tenth"),
                                  args.students)
        if results:
            results["results_postgresql"] = pg_results
        else:
            results = {**pg_results, "results_postgresql": pg_results}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False, indent=2)
    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
