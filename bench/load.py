"""`make load`: the publication rush (公示) on gunicorn + PostgreSQL, driven by locust from a second process.

    python bench/load.py                          # 500 users; see --help (every option also as LOAD_… env)
    LOAD_USERS=200 LOAD_SECONDS=60 make load

What it does, in order (everything it started is stopped on the way out, failure or Ctrl+C included):

1. A database of its own (LOAD_DATABASE_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/cqe_load;
   never `test`) dropped and created again, migrated, seeded with the demo district at
   --students-per-class (default 44: 3 schools × 8 classes × 44 = 1,056 students, 1,044 participating),
   then `flask cqe tick` at the pinned instant (CQE_NOW=2022-04-01T10:00:00+08:00, inside publication), so
   the deadline effects before it (逾期默认通过, 开放同班公示 …) are applied and the clerks' records are
   published before the first request, as they would be on the day.
2. gunicorn on a free port of 127.0.0.1, app clock pinned at the same instant, no REDIS_URL unless
   --redis-url is given (without it each worker runs the embedded deadline ticker: nothing is due, the
   tick above applied it all). Default: 2 gthread workers × 4 threads (--workers, --worker-class,
   --threads). Why: the work is CPU-bound Python (a page 10–20 ms of CPU, a login ~20 ms of Argon2id) with
   ~15 database round trips a page: one process a core for the GIL-bound work, threads to overlap the
   round trips and the password hash (argon2-cffi releases the GIL), and keep-alive (the sync worker closes every
   connection: its /livez ceiling measured a third of gthread's, the mix the same within the noise;
   3 workers × 4 threads spent more CPU a request than 2 × 4).
3. Three locust runs (headless, FastHttpUser, bench/locustfile.py):
   - rush: --users (500) students with a student's think times (bench/locustfile.py THINK: 3–8 s to type
     the password, 10–30 s to read the own report, 5–15 s a classmate's, 20–60 s to write an appeal …;
     about 7 s a request on average, × --think-scale), arriving at --spawn-rate (10 a second: the login
     burst of publication opening, included in the figures), for --seconds: the latency (p50/p95/p99)
     and error figures;
   - saturation: the same visit with no think time, --saturation-users (50) users, for
     --saturation-seconds: the throughput (rps);
   - ceiling: GET /livez (a route that touches nothing: no database, no Redis, no session) with no think
     time, the same --saturation-users, same seconds: the ceiling (ceiling_rps) of this server stack here.
   The two throughput runs use the same users, spawn at 100 a second and reset their stats once every user
   is spawned (--reset-stats): their rps is the steady state. Not the rush's 500: 50 users already keep all
   8 worker threads busy (measured with the older scrypt logins: 20 users 40 rps, 50 users 52, 100 users
   55: flat from 50 on, within this shared machine's noise; /livez 1,900, 1,930, 1,750), and with no think time
   500 users spend the first minute logging in (500 Argon2id hashes and their pages) — the mix would
   not be the visit's mix (1 login in ~10 requests) until a full cycle (~4 minutes) had passed.
   Between two runs the script waits until gunicorn is idle (the previous run's queued requests).
   Errors are counted over every whole run (the locustfile's own counter, ramp-up included).
4. The summary table, and bench/results.json key "publication_load" (merged: other keys are kept).

Definitions written to results.json: users = the rush's users; rps = requests/s of the saturation run (the
publication visit, no think time); ceiling_rps = requests/s of the ceiling run; throughput_ratio =
rps / ceiling_rps; p50/p95/p99_ms and errors = the rush run: errors = requests locust failed (a wrong
status, a missing marker, a connection error; every non-2xx/3xx is one) + non-2xx/3xx responses that no
check failed (none expected). CPU seconds of locust, gunicorn (master + workers) and the load database's
PostgreSQL backends are measured over each run, with the whole machine's (other people's work included).
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(os.path.abspath(sys.executable))
DATA = os.path.join(HERE, "data", "load")
LOCUSTFILE = os.path.join(HERE, "locustfile.py")
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/cqe_load"
NOW = "2022-04-01T10:00:00+08:00"
SATURATION_SPAWN_RATE = 100.0


def env(name: str, default):
    value = os.environ.get(name)
    return type(default)(value) if value not in (None, "") else default


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=env("LOAD_USERS", 500))
    p.add_argument("--seconds", type=int, default=env("LOAD_SECONDS", 120), help="the rush run's length")
    p.add_argument("--saturation-seconds", type=int, default=env("LOAD_SATURATION_SECONDS", 0),
                   help="each throughput run's length (default: half of --seconds, at least 30)")
    p.add_argument("--saturation-users", type=int, default=env("LOAD_SATURATION_USERS", 50),
                   help="users of the two throughput runs (no think time): enough to keep every worker thread "
                        "busy; the same number for the mix and for /livez")
    p.add_argument("--spawn-rate", type=float, default=env("LOAD_SPAWN_RATE", 10.0),
                   help="users started per second (the rush run's arrival: 500 students in 50 s)")
    p.add_argument("--workers", type=int, default=env("LOAD_WORKERS", 2))
    p.add_argument("--worker-class", default=env("LOAD_WORKER_CLASS", "gthread"), choices=["gthread", "sync"])
    p.add_argument("--threads", type=int, default=env("LOAD_THREADS", 4), help="threads per gthread worker")
    p.add_argument("--think-scale", type=float, default=env("LOAD_THINK_SCALE", 1.0),
                   help="the rush run's think times (bench/locustfile.py THINK) times this")
    p.add_argument("--runs", default=env("LOAD_RUNS", "rush,saturation,ceiling"),
                   help="which runs, comma-separated (rush, saturation, ceiling)")
    p.add_argument("--locust-processes", type=int, default=env("LOAD_LOCUST_PROCESSES", 1))
    p.add_argument("--database-url", default=env("LOAD_DATABASE_URL", DEFAULT_URL))
    p.add_argument("--students-per-class", type=int, default=env("LOAD_STUDENTS_PER_CLASS", 44))
    p.add_argument("--reuse-database", action="store_true", default=bool(env("LOAD_REUSE_DATABASE", 0)),
                   help="skip dropping and seeding (the database must have been seeded by this script)")
    p.add_argument("--redis-url", default=env("LOAD_REDIS_URL", ""), help="e.g. redis://127.0.0.1:6379/14")
    p.add_argument("--now", default=env("LOAD_NOW", NOW))
    p.add_argument("--out", default=os.path.join(HERE, "results.json"))
    p.add_argument("--no-write", action="store_true", help="print only; leave results.json alone")
    args = p.parse_args()
    if not args.saturation_seconds:
        args.saturation_seconds = max(30, args.seconds // 2)
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    return args


# ---------------------------------------------------------------------------------------------
# The database


def database(url: str):
    import sqlalchemy as sa

    sys.path.insert(0, ROOT)
    from settings import database_url

    parsed = sa.engine.make_url(database_url(url))
    if not parsed.drivername.startswith("postgresql"):
        raise SystemExit(f"LOAD_DATABASE_URL must be PostgreSQL: {url}")
    if parsed.database in (None, "", "test", "postgres", "template0", "template1"):
        raise SystemExit(f"refusing database {parsed.database!r}: the load test needs a database of its own")
    return parsed


def recreate(parsed) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
    admin.dispose()


def app_env(args, url: str) -> dict:
    e = dict(os.environ)
    for name in ("REDIS_URL", "CQE_TICKER", "FLASK_RUN_PORT"):
        e.pop(name, None)
    e.update({"FLASK_APP": "app", "DATABASE_URL": url, "CQE_NOW": args.now, "CQE_ENV": "development",
              "SECRET_KEY": "load-test-only-not-secret", "PYTHONUNBUFFERED": "1"})
    if args.redis_url:
        e["REDIS_URL"] = args.redis_url
    return e


def flask(args, url: str, *cmd: str) -> str:
    out = subprocess.run([os.path.join(BIN, "flask"), *cmd], cwd=ROOT, env=app_env(args, url), check=True,
                         capture_output=True, text=True)
    return (out.stdout + out.stderr).strip()


def seed(args, url: str) -> None:
    started = time.perf_counter()
    flask(args, url, "db", "upgrade")
    print(" ", flask(args, url, "cqe", "seed-demo", "--students-per-class", str(args.students_per_class)))
    ticked = flask(args, url, "cqe", "tick", "--now", args.now).splitlines()
    print(f"  flask cqe tick --now {args.now}: {len(ticked)} deadline effects applied "
          f"({time.perf_counter() - started:.1f}s in all)")


def accounts(parsed) -> list[dict]:
    """Every participating student's account (username, student id), in class order."""
    import sqlalchemy as sa

    engine = sa.create_engine(parsed)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT u.username, s.id, s.class_id FROM users u JOIN role_grants g ON g.user_id = u.id "
            "JOIN students s ON s.id = g.student_id WHERE g.role = 'student' AND s.status = 'enrolled' "
            "ORDER BY s.class_id, s.id")).all()
        published = conn.execute(sa.text(
            "SELECT count(*) FROM records WHERE state IN ('confirmed', 'corrected', 'final')")).scalar_one()
    engine.dispose()
    if not published:
        raise SystemExit("no published record in the load database: did the tick run?")
    return [{"username": u, "student_id": s, "class_id": c} for u, s, c in rows]


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(args, url: str, port: int) -> subprocess.Popen:
    log = os.path.join(DATA, "gunicorn.log")
    if os.path.exists(log):
        os.remove(log)  # this run's errors only
    cmd = [os.path.join(BIN, "gunicorn"), "--workers", str(args.workers), "--worker-class", args.worker_class,
           "--bind", f"127.0.0.1:{port}", "--backlog", "2048", "--timeout", "120", "--graceful-timeout", "5",
           "--log-level", "warning", "--error-logfile", log]
    if args.worker_class == "gthread":
        cmd += ["--threads", str(args.threads)]
    cmd.append("app:create_app()")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=app_env(args, url), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}: see {DATA}/gunicorn.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    raise SystemExit("gunicorn did not answer /healthz within 60 s")


def stop(proc: subprocess.Popen | None) -> None:
    """TERM the process group (gunicorn's master and workers; locust's processes), KILL it after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    try:  # workers that outlived their master
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def cpu_seconds(pids) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def server_pids(master: subprocess.Popen) -> list[int]:
    import psutil

    try:
        proc = psutil.Process(master.pid)
        return [master.pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.Error:
        return []


def database_pids(name: str) -> list[int]:
    """The PostgreSQL backends serving the load database (only those: other people use the server too)."""
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if cmd.startswith("postgres:") and f" {name} " in cmd:
            out.append(p.pid)
    return out


def settle(server: subprocess.Popen, limit: float = 300.0) -> float:
    """Wait until gunicorn is idle: after a run without think time, up to --users requests are still queued
    in it (locust stopped waiting for them, the server still answers them). The next run must not pay for
    them. Idle = under 5% of a core over 2 s. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = cpu_seconds(server_pids(server))
        time.sleep(2)
        if cpu_seconds(server_pids(server)) - before < 0.1:
            break
    return time.monotonic() - started


def machine_busy() -> tuple[float, float]:
    import psutil

    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return sum(t) - idle, sum(t)


# ---------------------------------------------------------------------------------------------
# One locust run


def run_locust(args, name: str, port: int, server: subprocess.Popen, db_name: str, accounts_path: str) -> dict:
    mode = "trivial" if name == "ceiling" else "publication"
    think = args.think_scale if name == "rush" else 0.0
    seconds = args.seconds if name == "rush" else args.saturation_seconds
    prefix = os.path.join(DATA, name)
    codes_path = prefix + "-codes.json"
    for path in [prefix + s for s in ("_stats.csv", "_failures.csv", "_exceptions.csv", "_stats_history.csv")] + \
            glob.glob(codes_path + ".*"):
        if os.path.exists(path):
            os.remove(path)
    e = dict(os.environ)
    e.update({"LOAD_MODE": mode, "LOAD_THINK_SCALE": str(think),
              "LOAD_ACCOUNTS": accounts_path, "LOAD_CODES_OUT": codes_path, "LOAD_TRIVIAL_PATH": "/livez",
              "LOAD_LOCUST_PROCESSES": str(args.locust_processes), "PYTHONUNBUFFERED": "1"})
    # The throughput runs measure the steady state (stats reset once every user is spawned): spawn fast.
    spawn = args.spawn_rate if name == "rush" else max(args.spawn_rate, SATURATION_SPAWN_RATE)
    users = args.users if name == "rush" else args.saturation_users
    cmd = [os.path.join(BIN, "locust"), "-f", LOCUSTFILE, "--headless", "--users", str(users),
           "--spawn-rate", str(spawn), "--run-time", f"{seconds}s", "--csv", prefix,
           "--host", f"http://127.0.0.1:{port}", "--only-summary", "--stop-timeout", "15",
           "--loglevel", "WARNING", "--exit-code-on-error", "0"]
    if name != "rush":
        cmd.append("--reset-stats")  # throughput at the steady state; the rush run keeps its arrival
    if args.locust_processes > 1:
        cmd += ["--processes", str(args.locust_processes)]
    print(f"\n== {name}: {users} users, spawn rate {spawn:g}/s, {seconds} s, "
          f"think times × {think:g}, {'GET /livez' if mode == 'trivial' else 'publication mix'} ==",
          flush=True)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu0, db_pids0 = cpu_seconds(server_pids(server)), database_pids(db_name)
    db_cpu0 = {pid: cpu_seconds([pid]) for pid in db_pids0}
    busy0, total0 = machine_busy()
    started = time.perf_counter()
    locust = subprocess.Popen(cmd, cwd=ROOT, env=e, start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = locust.communicate(timeout=seconds + 120)
    except BaseException:
        stop(locust)
        raise
    wall = time.perf_counter() - started
    busy1, total1 = machine_busy()
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    locust_cpu = (after_children.ru_utime + after_children.ru_stime) - (before_children.ru_utime
                                                                          + before_children.ru_stime)
    server_cpu = cpu_seconds(server_pids(server)) - server_cpu0
    db_cpu = sum(cpu_seconds([pid]) - db_cpu0.get(pid, 0.0) for pid in database_pids(db_name))
    with open(prefix + "-locust.log", "w", encoding="utf-8") as fh:
        fh.write(output)
    if locust.returncode not in (0, None):
        print(output[-3000:])
        raise SystemExit(f"locust exited with {locust.returncode}")
    stats = read_stats(prefix + "_stats.csv")
    codes: dict[str, int] = {}
    for path in glob.glob(codes_path + ".*"):
        with open(path, encoding="utf-8") as fh:
            for code, n in json.load(fh).items():
                codes[code] = codes.get(code, 0) + n
    cores = os.cpu_count() or 1
    failures_all = codes.get("failures", 0)
    bad_status = sum(n for c, n in codes.items() if c.isdigit() and not 200 <= int(c) < 400)
    unchecked = codes.get("non_2xx_3xx_not_failed", 0)
    result = {"name": name, "users": users, "seconds": seconds, "think_scale": think, "mode": mode,
              "rps": stats["total"]["rps"], "p50_ms": stats["total"]["p50"], "p95_ms": stats["total"]["p95"],
              "p99_ms": stats["total"]["p99"], "max_ms": stats["total"]["max"],
              "requests": stats["total"]["requests"], "failures": stats["total"]["failures"],
              "requests_all": sum(n for c, n in codes.items() if c.isdigit()),
              "failures_all": failures_all, "non_2xx_3xx": bad_status, "status_codes": codes,
              "http_429": codes.get("429", 0),
              "cpu_s": {"locust": round(locust_cpu, 1), "gunicorn": round(server_cpu, 1),
                        "postgresql_load_db": round(db_cpu, 1),
                        "machine_busy": round(busy1 - busy0, 1), "machine_total": round(total1 - total0, 1)},
              "wall_s": round(wall, 1), "endpoints": stats["rows"]}
    # Everything else on the machine meanwhile: other people's work (and PostgreSQL for other databases).
    result["cpu_s"]["others"] = round(max(0.0, (busy1 - busy0) - locust_cpu - server_cpu - db_cpu), 1)
    result["cpu_share_of_2_cores" if cores == 2 else f"cpu_share_of_{cores}_cores"] = {
        k: round(v / (wall * cores), 3) for k, v in result["cpu_s"].items() if k != "machine_total"}
    # Errors as defined: locust failures (every non-2xx/3xx is one, by the locustfile's checks) plus any
    # non-2xx/3xx response that was not (none expected; counted so a gap in the checks cannot hide one).
    result["errors"] = failures_all + unchecked
    # CPU per request: what bounds throughput on a shared 2-core machine, and less noisy than rps.
    served = max(result["requests_all"], 1)
    result["cpu_ms_per_request"] = {"gunicorn": round(server_cpu * 1000 / served, 2),
                                    "postgresql": round(db_cpu * 1000 / served, 2),
                                    "locust": round(locust_cpu * 1000 / served, 2)}
    print_run(result)
    return result


def _num(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def read_stats(path: str) -> dict:
    rows, total = [], None
    with open(path, encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            item = {"name": row["Name"], "type": row["Type"], "requests": int(row["Request Count"]),
                    "failures": int(row["Failure Count"]), "rps": round(_num(row["Requests/s"]) or 0, 1),
                    "p50": _num(row["50%"]), "p95": _num(row["95%"]), "p99": _num(row["99%"]),
                    "max": _num(row["Max Response Time"]), "avg": round(_num(row["Average Response Time"]) or 0, 1)}
            if row["Name"] == "Aggregated":
                total = item
            else:
                rows.append(item)
    if total is None:
        raise SystemExit(f"{path}: no Aggregated row")
    return {"total": total, "rows": rows}


def print_run(r: dict) -> None:
    width = max([len(f"{e['type']} {e['name']}") for e in r["endpoints"]] + [10])
    print(f"{'request':<{width}} {'count':>7} {'fail':>5} {'rps':>7} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>7}")
    for e in r["endpoints"] + [{**{"type": "", "name": "ALL"}, **{k: r[k2] for k, k2 in (
            ("requests", "requests"), ("failures", "failures"), ("rps", "rps"), ("p50", "p50_ms"),
            ("p95", "p95_ms"), ("p99", "p99_ms"), ("max", "max_ms"))}}]:
        label = f"{e['type']} {e['name']}".strip()
        print(f"{label:<{width}} {e['requests']:>7} {e['failures']:>5} {e['rps']:>7.1f} {_ms(e['p50']):>6} "
              f"{_ms(e['p95']):>6} {_ms(e['p99']):>6} {_ms(e['max']):>7}")
    cpu = r["cpu_s"]
    print(f"whole run (ramp-up included): {r['requests_all']} requests, {r['failures_all']} failures, "
          f"status codes {dict(sorted(r['status_codes'].items()))}")
    print(f"CPU seconds over {r['wall_s']} s wall: locust {cpu['locust']}, gunicorn {cpu['gunicorn']}, "
          f"PostgreSQL (load db backends) {cpu['postgresql_load_db']}, others {cpu['others']}, whole machine "
          f"{cpu['machine_busy']} of {cpu['machine_total']}; per request: "
          f"gunicorn {r['cpu_ms_per_request']['gunicorn']} ms, "
          f"PostgreSQL {r['cpu_ms_per_request']['postgresql']} ms, locust {r['cpu_ms_per_request']['locust']} ms",
          flush=True)


def _ms(v) -> str:
    return "-" if v is None else f"{v:.0f}"


# ---------------------------------------------------------------------------------------------


def locust_think_table() -> dict:
    """THINK of bench/locustfile.py, read without importing locust (gevent patches the importer)."""
    import ast

    with open(LOCUSTFILE, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "THINK" for t in node.targets):
            return {k: list(v) for k, v in ast.literal_eval(node.value).items()}
    return {}


def write_results(path: str, entry: dict) -> None:
    """Merge: bench/run.py writes the other keys of the same file; only "publication_load" is ours."""
    results = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            results = json.load(fh)
    results["publication_load"] = entry
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(results, fh, ensure_ascii=False, indent=2)
    os.replace(tmp, path)


def main() -> None:
    args = parse_args()
    parsed = database(args.database_url)
    url = parsed.render_as_string(hide_password=False)
    os.makedirs(DATA, exist_ok=True)
    for tool in ("gunicorn", "locust", "flask"):
        if not shutil.which(os.path.join(BIN, tool)):
            raise SystemExit(f"{tool} is not installed in {BIN}: run `make load` (installs requirements-load.txt)")
    load0 = os.getloadavg()
    print(f"load test: {args.users} users, gunicorn {args.workers} × {args.worker_class}"
          f"{f' × {args.threads} threads' if args.worker_class == 'gthread' else ''}, database "
          f"{parsed.render_as_string(hide_password=True)}, clock {args.now}, "
          f"Redis {args.redis_url or 'none (embedded ticker)'}, load average {load0[0]:.2f} {load0[1]:.2f} "
          f"{load0[2]:.2f}, {os.cpu_count()} cores", flush=True)
    if not args.reuse_database:
        recreate(parsed)
        seed(args, url)
    people = accounts(parsed)
    if len(people) < args.users:
        print(f"  note: {len(people)} student accounts for {args.users} users: some accounts are shared")
    accounts_path = os.path.join(DATA, "accounts.json")
    with open(accounts_path, "w", encoding="utf-8") as fh:
        json.dump(people, fh)
    classes = len({p["class_id"] for p in people})
    print(f"  {len(people)} participating student accounts in {classes} classes")

    server = None
    runs = {}
    interrupted = None
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}

    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for s in previous:
        signal.signal(s, _raise)
    try:
        port = free_port()
        server = start_gunicorn(args, url, port)
        print(f"  gunicorn up on 127.0.0.1:{port} (pid {server.pid})")
        for name in args.runs:
            if name not in ("rush", "saturation", "ceiling"):
                raise SystemExit(f"unknown run {name!r}")
            waited = settle(server)
            if waited > 3:
                print(f"  (waited {waited:.0f} s for gunicorn to be idle: start-up, or the previous run's "
                      "queued requests)")
            runs[name] = run_locust(args, name, port, server, parsed.database, accounts_path)
    except KeyboardInterrupt as exc:
        interrupted = exc
    finally:
        stop(server)
        for s, h in previous.items():
            signal.signal(s, h)
    if interrupted is not None:
        raise SystemExit(f"interrupted ({interrupted}); gunicorn stopped")
    load1 = os.getloadavg()
    entry = summarise(args, runs, parsed, len(people), classes, load0, load1)
    if not args.no_write and {"rush", "saturation", "ceiling"} <= set(runs):
        write_results(args.out, entry)
        print(f"\nwrote {os.path.relpath(args.out, ROOT)} key publication_load")
    elif not args.no_write:
        print("\nnot all three runs: results.json left alone")


def summarise(args, runs: dict, parsed, people: int, classes: int, load0, load1) -> dict:
    rush, sat, ceil = runs.get("rush"), runs.get("saturation"), runs.get("ceiling")
    rps = sat["rps"] if sat else None
    ceiling = ceil["rps"] if ceil else None
    entry = {
        "users": args.users,
        "rps": rps,
        "p50_ms": rush and rush["p50_ms"], "p95_ms": rush and rush["p95_ms"], "p99_ms": rush and rush["p99_ms"],
        "errors": rush and rush["errors"],
        "ceiling_rps": ceiling,
        "throughput_ratio": round(rps / ceiling, 3) if rps and ceiling else None,
        "definitions": {
            "users": "the rush run's concurrent students",
            "rps": "requests/s of the publication visit with no think time (saturation run: saturation_users "
                   "users, steady state)",
            "ceiling_rps": "requests/s of GET /livez (touches nothing) with no think time, saturation_users users, "
                           "same server",
            "throughput_ratio": "rps / ceiling_rps",
            "p50_ms/p95_ms/p99_ms": "the rush run: the publication mix with think times, arrival included "
                                    "(locust's percentiles, 2 significant digits above 100 ms)",
            "errors": "the rush run, ramp-up included: locust failures (wrong status, missing page marker, "
                      "connection error) + non-2xx/3xx responses not already counted",
        },
        "saturation_users": args.saturation_users,
        "rush_rps": rush and rush["rps"],
        "errors_all_runs": sum(r["errors"] for r in runs.values()),
        "http_429": sum(r["http_429"] for r in runs.values()),
        "think": {"scale": args.think_scale, "seconds_by_step": locust_think_table(),
                  "note": "rush run only; the saturation and ceiling runs have none"},
        "seconds": {"rush": args.seconds, "saturation": args.saturation_seconds, "ceiling": args.saturation_seconds},
        "spawn_rate": {"rush": args.spawn_rate, "saturation": max(args.spawn_rate, SATURATION_SPAWN_RATE),
                       "ceiling": max(args.spawn_rate, SATURATION_SPAWN_RATE)},
        "gunicorn": {"workers": args.workers, "worker_class": args.worker_class,
                     "threads": args.threads if args.worker_class == "gthread" else 1},
        "database": f"PostgreSQL ({parsed.database}), demo district at {args.students_per_class} students a class: "
                    f"{people} participating student accounts in {classes} classes",
        "redis": args.redis_url or None,
        "clock": args.now,
        "machine": {"cores": os.cpu_count(), "load_average_before": [round(x, 2) for x in load0],
                    "load_average_after": [round(x, 2) for x in load1]},
        "locust": {"processes": args.locust_processes, "user_class": "FastHttpUser"},
        "runs": {name: {k: v for k, v in r.items() if k != "name"} for name, r in runs.items()},
    }
    print("\n== publication_load ==")
    print(f"{'run':<11} {'users':>5} {'think':>6} {'rps':>7} {'p50':>6} {'p95':>6} {'p99':>6} {'errors':>6} "
          f"{'429':>4} {'locust CPU':>10} {'server CPU':>10} {'pg CPU':>7} {'others':>7}")
    for name, r in runs.items():
        share = r.get("cpu_share_of_2_cores") or {}
        think = f"×{r['think_scale']:g}"
        print(f"{name:<11} {r['users']:>5} {think:>6} {r['rps']:>7.1f} {_ms(r['p50_ms']):>6} {_ms(r['p95_ms']):>6} "
              f"{_ms(r['p99_ms']):>6} {r['errors']:>6} {r['http_429']:>4} "
              f"{share.get('locust', 0) * 100:>9.0f}% {share.get('gunicorn', 0) * 100:>9.0f}% "
              f"{share.get('postgresql_load_db', 0) * 100:>6.0f}% {share.get('others', 0) * 100:>6.0f}%")
    if entry["throughput_ratio"] is not None:
        print(f"throughput_ratio = rps / ceiling_rps = {rps} / {ceiling} = {entry['throughput_ratio']}")
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f} (1 min); CPU shares are of all "
          f"{os.cpu_count()} cores over each run's wall time")
    return entry


if __name__ == "__main__":
    main()
