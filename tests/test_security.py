"""Accounts and responses hardened (issue 8, part 2): lock-out after repeated wrong passwords and its
unlock by the homeroom teacher / school admin, throttled guessing per address and per account, session
versions (a new password ends other sessions), idle expiry, cookies, security headers and the CSP, and
personal data minimised where classmates look (only during publication, never their 学籍号)."""
from __future__ import annotations

import base64
import hashlib
import re

import pytest
import sqlalchemy as sa
from conftest import IN_CI, REDIS_URL, csrf_from, student_of, table_fingerprint, user

from models import AuditEvent, Student, db

PASSWORD = "cqe2022"


def _post_login(client, username, password, remember=False):
    page = client.get("/login")
    data = {"username": username, "password": password, "csrf_token": csrf_from(page.get_data(as_text=True))}
    if remember:
        data["remember"] = "y"
    return client.post("/login", data=data)


def _fail(client, username, times):
    for _ in range(times):
        resp = _post_login(client, username, "wrong-password-1")
        assert resp.status_code == 200
    return resp


# --- lock-out ------------------------------------------------------------------------------------

def test_five_wrong_passwords_lock_the_account_until_the_time_it_names(client, at):
    at("2022-03-01 09:00")
    resp = _fail(client, "s1g9c1n01", 4)
    assert "用户名或密码错误" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert user("s1g9c1n01").failed_logins == 4 and user("s1g9c1n01").locked_until is None

    resp = _fail(client, "s1g9c1n01", 1)
    body = resp.get_data(as_text=True)
    assert "已锁定至 03-01 09:15" in body and "班主任" in body
    # The right password does not open a locked account (and says why, not "wrong password").
    resp = _post_login(client, "s1g9c1n01", PASSWORD)
    assert resp.status_code == 200 and "已锁定至 03-01 09:15" in resp.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302

    failures = db.session.execute(sa.select(sa.func.count(AuditEvent.id)).where(
        AuditEvent.action == "login_failed", AuditEvent.object_id == str(user("s1g9c1n01").id))).scalar()
    assert failures == 5

    at("2022-03-01 09:14")
    assert "已锁定" in _post_login(client, "s1g9c1n01", PASSWORD).get_data(as_text=True)
    at("2022-03-01 09:15")
    assert _post_login(client, "s1g9c1n01", PASSWORD).status_code == 302
    db.session.expire_all()
    assert user("s1g9c1n01").locked_until is None and user("s1g9c1n01").failed_logins == 0


def test_a_success_resets_the_count_and_unknown_names_lock_nothing(client, at):
    at("2022-03-01 09:00")
    _fail(client, "s1g9c1n02", 4)
    assert _post_login(client, "s1g9c1n02", PASSWORD).status_code == 302
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/admin/").get_data(as_text=True))})
    _fail(client, "s1g9c1n02", 4)  # four more: still not locked, the count started again
    db.session.expire_all()
    assert user("s1g9c1n02").locked_until is None
    before = table_fingerprint()
    resp = _fail(client, "no-such-user", 6)
    assert "用户名或密码错误" in resp.get_data(as_text=True) and "锁定" not in resp.get_data(as_text=True)
    db.session.expire_all()
    assert table_fingerprint() == before


def _lock(client, username):
    _fail(client, username, 5)
    db.session.expire_all()
    assert user(username).locked_until is not None


def test_homeroom_teacher_unlocks_own_class_students_and_parents_only(app, client, at, login_as):
    at("2022-03-01 09:00")
    for name in ("s1g9c1n01", "p_s1g9c1n01", "s1g9c2n01", "s2g9c1n01", "s1_clerk"):
        _lock(client, name)
    login_as("s1_g9c1_teacher")
    page = client.get("/admin/unlock/")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    for name in ("s1g9c1n01", "p_s1g9c1n01"):
        assert name in body
    for name in ("s1g9c2n01", "s2g9c1n01", "s1_clerk"):
        assert name not in body, f"{name} is not the teacher's to unlock"
    token = csrf_from(body)

    before = table_fingerprint()
    for name in ("s1g9c2n01", "s2g9c1n01", "s1_clerk"):
        resp = client.post("/admin/unlock/", data={"csrf_token": token, "user_id": [user("s1g9c1n01").id,
                                                                                    user(name).id]})
        assert resp.status_code == 404, name
    assert client.post("/admin/unlock/", data={"user_id": user("s1g9c1n01").id}).status_code == 400
    db.session.expire_all()
    assert table_fingerprint() == before, "a refused unlock changed nothing, not even the allowed half"

    resp = client.post("/admin/unlock/", data={"csrf_token": token,
                                               "user_id": [user("s1g9c1n01").id, user("p_s1g9c1n01").id]})
    assert resp.status_code == 302
    assert "已解锁 2 个账号" in client.get("/admin/unlock/").get_data(as_text=True)
    db.session.expire_all()
    assert user("s1g9c1n01").locked_until is None and user("p_s1g9c1n01").locked_until is None
    assert user("s1g9c2n01").locked_until is not None
    event = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "unlock", AuditEvent.object_id == str(user("s1g9c1n01").id))).scalar_one()
    assert event.actor_name.startswith(user("s1_g9c1_teacher").display_name) or event.actor_id == \
        user("s1_g9c1_teacher").id

    other = app.test_client()
    assert _post_login(other, "s1g9c1n01", PASSWORD).status_code == 302


def test_school_admin_unlocks_within_the_school_and_other_roles_cannot(app, client, at, login_as):
    at("2022-03-01 09:00")
    for name in ("s1g7c1n01", "s1_clerk", "s2_clerk"):
        _lock(client, name)
    login_as("s1_admin")
    body = client.get("/admin/unlock/").get_data(as_text=True)
    assert "s1g7c1n01" in body and "s1_clerk" in body and "s2_clerk" not in body
    token = csrf_from(body)
    assert client.post("/admin/unlock/", data={"csrf_token": token, "user_id": user("s2_clerk").id}).status_code == 404
    assert client.post("/admin/unlock/", data={"csrf_token": token,
                                               "user_id": [user("s1g7c1n01").id, user("s1_clerk").id]}).status_code == 302
    db.session.expire_all()
    assert user("s1_clerk").locked_until is None and user("s2_clerk").locked_until is not None

    for role_user in ("s1_clerk", "s1g9c1n01"):
        c = app.test_client()
        assert _post_login(c, role_user, PASSWORD).status_code == 302
        assert c.get("/admin/unlock/").status_code == 403


# --- throttling ----------------------------------------------------------------------------------

def test_failed_logins_from_one_address_are_throttled_successes_never(app, client, at):
    at("2022-03-01 09:00")
    app.config["CQE_LOGIN_RATE"] = "3 per 10 minutes"
    try:
        for _ in range(10):  # a computer room's successful logins are never counted
            other = app.test_client()
            assert _post_login(other, "s1g9c1n03", PASSWORD).status_code == 302
        for name in ("nobody1", "nobody2", "s1g9c1n04"):
            assert _post_login(client, name, "wrong-password-1").status_code == 200
        resp = _post_login(client, "s1g9c1n03", PASSWORD)
        assert resp.status_code == 429 and "登录失败次数过多" in resp.get_data(as_text=True)
        from_elsewhere = app.test_client()
        page = from_elsewhere.get("/login")
        resp = from_elsewhere.post("/login", environ_base={"REMOTE_ADDR": "10.1.2.3"}, data={
            "username": "s1g9c1n03", "password": PASSWORD, "csrf_token": csrf_from(page.get_data(as_text=True))})
        assert resp.status_code == 302, "another address is not throttled"
    finally:
        app.config["CQE_LOGIN_RATE"] = "100 per 10 minutes"


def test_guessing_the_current_password_on_the_password_page_is_throttled(client, login_as, at):
    at("2022-03-01 09:00")
    token = login_as("s1g9c1n03")
    for _ in range(10):
        resp = client.post("/password", data={"csrf_token": token, "old_password": "guess-1234",
                                              "new_password": "abcd12345", "confirm": "abcd12345"})
        assert "当前密码：不正确" in resp.get_data(as_text=True)
    resp = client.post("/password", data={"csrf_token": token, "old_password": PASSWORD,
                                          "new_password": "abcd12345", "confirm": "abcd12345"})
    assert "错误次数过多" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert user("s1g9c1n03").check_password(PASSWORD)


def _app_like(app, **changes):
    from app import create_app

    config = {k: v for k, v in app.config.items() if k != "CQE_THROTTLE_STORAGE"}
    return create_app({**config, **changes})


@pytest.fixture(scope="module")
def redis_apps(app):
    """Apps whose throttle counts in Redis: one with Redis answering, one whose Redis is down. (Built
    before any test's app context: Flask-Admin's menu names need none.)"""
    if not REDIS_URL:
        if IN_CI:
            pytest.fail("REDIS_URL must be set in CI")
        pytest.skip("REDIS_URL not set")
    return _app_like(app, REDIS_URL=REDIS_URL), _app_like(app, REDIS_URL="redis://127.0.0.1:1/0")


def test_throttle_counts_in_redis_and_survives_redis_down(redis_apps, redis_conn, session):
    """With REDIS_URL the counts live in Redis (all web processes together); Redis down, logins go on."""
    shared, down = redis_apps
    assert shared.extensions["cqe_throttle"].uri == REDIS_URL
    c = shared.test_client()
    _post_login(c, "nobody-at-all", "wrong-password-1")
    assert any(b"login" in k for k in redis_conn.keys("*")), redis_conn.keys("*")

    c = down.test_client()
    assert _post_login(c, "nobody-at-all", "wrong-password-1").status_code == 200
    assert _post_login(c, "s1g9c1n03", PASSWORD).status_code == 302


# --- password hashes -----------------------------------------------------------------------------

def test_passwords_are_stored_as_argon2id_and_malformed_hashes_match_nothing():
    from models.passwords import ARGON2_MEMORY_KIB, hash_password, needs_rehash, verify_password

    stored = hash_password("cqe2022")
    assert stored.startswith(f"$argon2id$v=19$m={ARGON2_MEMORY_KIB},t=2,p=1$") and "cqe2022" not in stored
    assert verify_password(stored, "cqe2022") and not verify_password(stored, "cqe2023")
    assert not needs_rehash(stored)
    weaker = stored.replace(f"m={ARGON2_MEMORY_KIB},t=2", "m=8192,t=1")
    assert needs_rehash(weaker)
    for broken in ("", None, "!", "$argon2id$garbage", "scrypt:1:2$salt", "pbkdf2:sha256$x", "plain-text"):
        assert not verify_password(broken, "cqe2022"), broken
    assert not needs_rehash("!") and not needs_rehash("$argon2id$garbage")  # unusable stays unusable


def test_an_older_werkzeug_hash_still_signs_in_and_is_upgraded_without_ending_sessions(app, client, at):
    from werkzeug.security import generate_password_hash

    at("2022-03-01 09:00")
    account = user("s1g9c2n02")
    account.password_hash = generate_password_hash(PASSWORD)  # Werkzeug's scrypt, as stored before
    version = account.session_version
    db.session.commit()
    phone = app.test_client()
    assert _post_login(phone, "s1g9c2n02", "wrong-password-1").status_code == 200
    db.session.expire_all()
    assert user("s1g9c2n02").password_hash.startswith("scrypt:"), "a wrong password upgrades nothing"
    assert _post_login(phone, "s1g9c2n02", PASSWORD).status_code == 302
    db.session.expire_all()
    account = user("s1g9c2n02")
    assert account.password_hash.startswith("$argon2id$") and account.session_version == version
    assert phone.get("/me/records").status_code == 200
    # The upgraded hash signs in again; the history masks it.
    assert _post_login(client, "s1g9c2n02", PASSWORD).status_code == 302
    event = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "login", AuditEvent.object_id == str(account.id)).order_by(AuditEvent.id)).scalars().first()
    assert event is not None and event.after.get("password_hash") == "***"


# --- sessions ------------------------------------------------------------------------------------

def test_a_new_password_ends_the_other_sessions_and_keeps_this_one(app, client, login_as, at):
    at("2022-03-01 09:00")
    phone = app.test_client()
    assert _post_login(phone, "s1g9c2n01", PASSWORD, remember=True).status_code == 302
    assert phone.get("/me/records").status_code == 200
    token = login_as("s1g9c2n01")
    resp = client.post("/password", data={"csrf_token": token, "old_password": PASSWORD,
                                          "new_password": "newpass2022", "confirm": "newpass2022"})
    assert resp.status_code == 302
    assert client.get("/me/records").status_code == 200, "the session that changed it goes on"
    resp = phone.get("/me/records")
    assert resp.status_code == 302 and "/login" in resp.location, "the other session (and its remember-me) ended"


def test_an_idle_session_expires_unless_remembered(app, client, login_as, monkeypatch):
    from views import security

    base = 1_800_000_000.0
    monkeypatch.setattr(security, "wall_clock", lambda: base)
    login_as("s1_clerk")
    assert client.get("/admin/").status_code == 200
    monkeypatch.setattr(security, "wall_clock", lambda: base + 59 * 60)
    assert client.get("/admin/").status_code == 200  # activity moves the mark
    monkeypatch.setattr(security, "wall_clock", lambda: base + 59 * 60 + 61 * 60)
    resp = client.get("/admin/students/")
    assert resp.status_code == 302 and resp.location.startswith("/login?next=/admin/students/")
    assert "长时间未操作" in client.get(resp.location).get_data(as_text=True)
    assert client.get("/admin/").status_code == 302

    phone = app.test_client()
    monkeypatch.setattr(security, "wall_clock", lambda: base)
    assert _post_login(phone, "s1g9c1n03", PASSWORD, remember=True).status_code == 302
    monkeypatch.setattr(security, "wall_clock", lambda: base + 5 * 3600)
    assert phone.get("/me/records").status_code == 200, "记住我 keeps a phone signed in"


def _cookie_header(resp, name):
    return next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith(name + "="))


@pytest.fixture(scope="module")
def https_app(app):
    """Production settings behind one reverse proxy that terminates HTTPS."""
    return _app_like(app, SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True, CQE_HSTS=True, CQE_PROXY_FIX=1)


def test_cookies_http_only_same_site_and_secure_behind_https(https_app, client):
    resp = _post_login(client, "s1g9c1n03", PASSWORD, remember=True)
    session_cookie = _cookie_header(resp, "cqe_session")
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie and "Secure" not in session_cookie
    remember = _cookie_header(resp, "cqe_remember")
    assert "HttpOnly" in remember and "SameSite=Lax" in remember

    c = https_app.test_client()
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Host": "cqe.example.cn",
             "Referer": "https://cqe.example.cn/login"}  # over HTTPS the CSRF check wants a same-site Referer
    page = c.get("/login", headers=https)
    assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    resp = c.post("/login", headers=https, data={"username": "s1g9c1n03", "password": PASSWORD, "remember": "y",
                                                 "csrf_token": csrf_from(page.get_data(as_text=True))})
    assert resp.status_code == 302
    assert "Secure" in _cookie_header(resp, "cqe_session") and "Secure" in _cookie_header(resp, "cqe_remember")
    # The proxy's client address is the one recorded in the history.
    db.session.expire_all()
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "login").order_by(
        AuditEvent.id.desc()).limit(1)).scalar_one()
    assert event.ip == "203.0.113.9"
    assert "Strict-Transport-Security" not in client.get("/login").headers, "no HSTS over plain HTTP"


# --- headers and the CSP -------------------------------------------------------------------------

INLINE_HANDLER = re.compile(r"""<[^>]+\son[a-z]+\s*=\s*["']([^"']*)["']""", re.I)
SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.I)


def _assert_hardened(resp, url):
    csp = resp.headers.get("Content-Security-Policy", "")
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce and "script-src 'self' 'nonce-" in csp and "frame-ancestors 'none'" in csp, url
    script_src = csp.split("script-src")[1].split(";")[0]
    assert "unsafe-inline" not in script_src and "unsafe-eval" not in script_src, url
    allowed = base64.b64encode(hashlib.sha256(b"return false;").digest()).decode()
    assert f"'sha256-{allowed}'" in script_src
    assert resp.headers["X-Content-Type-Options"] == "nosniff" and resp.headers["X-Frame-Options"] == "DENY"
    body = resp.get_data(as_text=True)
    for handler in INLINE_HANDLER.findall(body):
        # the one handler the CSP admits by its hash (Flask-Admin's filter menu)
        assert handler == 'return false;', f"{url}: inline event handler {handler!r} would not run under the CSP"
    for attrs in SCRIPT_TAG.findall(body):
        if "src=" in attrs or "application/json" in attrs:
            continue
        assert f'nonce="{nonce.group(1)}"' in attrs, f"{url}: inline <script{attrs}> without this request's nonce"


@pytest.mark.parametrize("username,urls", [
    ("s1_clerk", ["/admin/", "/admin/records/sports/", "/admin/records/sports/grid/", "/admin/students/",
                  "/admin/records/sports/new/", "/admin/cases/", "/inbox", "/password"]),
    ("s1_principal", ["/admin/dashboard/", "/admin/archive/rate/", "/admin/archive/summary/", "/reports/batch/"]),
    ("s1_g9c1_teacher", ["/admin/archive/sign/", "/admin/account-slips/", "/admin/unlock/"]),
    ("admin", ["/admin/register/", "/admin/users/", "/admin/windows/", "/admin/deadlines/", "/admin/audit/"]),
    ("s1g9c1n01", ["/me/records", "/me/report", "/me/class", "/me/appeals"]),
])
def test_pages_carry_security_headers_and_no_inline_script_runs_without_the_nonce(client, login_as, at, username,
                                                                                   urls):
    at("2022-04-20 09:00" if username in ("s1_principal", "s1_g9c1_teacher") else "2022-03-01 09:00")
    anonymous = client.get("/login")
    _assert_hardened(anonymous, "/login")
    login_as(username)
    nonces = set()
    for url in urls:
        resp = client.get(url, follow_redirects=True)
        assert resp.status_code == 200, (url, resp.status_code)
        _assert_hardened(resp, url)
        assert resp.headers["Cache-Control"] == "private, no-store", url
        nonces.add(re.search(r"'nonce-([^']+)'", resp.headers["Content-Security-Policy"]).group(1))
    assert len(nonces) == len(urls), "a fresh nonce per response"
    static = client.get("/static/cqe/cqe.js")
    static.close()
    assert static.status_code == 200 and "no-store" not in static.headers.get("Cache-Control", "")


# --- what classmates see -------------------------------------------------------------------------

def test_classmates_reports_only_during_publication_and_without_register_data(client, login_as, at):
    me, mate = student_of("s1g9c1n01"), student_of("s1g9c1n02")
    at("2022-03-29 09:00")
    login_as("s1g9c1n01")
    resp = client.get(f"/me/report/{mate.id}")
    assert resp.status_code == 403 and "公示" in resp.get_data(as_text=True) and "尚未开始" in resp.get_data(as_text=True)
    assert client.get(f"/reports/student/{mate.id}/").status_code == 404
    assert client.get(f"/reports/student/{mate.id}/report.pdf").status_code == 404
    listing = client.get("/me/class").get_data(as_text=True)
    assert f"/me/report/{mate.id}" not in listing and "classmates-closed" in listing
    assert me.xjh in client.get(f"/reports/student/{me.id}/").get_data(as_text=True), "one's own report is whole"

    at("2022-04-01 09:00")
    assert f"/me/report/{mate.id}" in client.get("/me/class").get_data(as_text=True)
    for url in (f"/me/report/{mate.id}", f"/reports/student/{mate.id}/"):
        resp = client.get(url)
        body = resp.get_data(as_text=True)
        assert resp.status_code == 200 and mate.name in body, url
        assert mate.xjh not in body, f"{url} shows a classmate's 学籍号"
    pdf = client.get(f"/reports/student/{mate.id}/report.pdf")
    assert pdf.status_code == 200 and mate.xjh not in pdf.headers["Content-Disposition"]
    other_class = db.session.execute(sa.select(Student).where(Student.class_id != me.class_id,
                                                              Student.school_id == me.school_id)).scalars().first()
    assert client.get(f"/me/report/{other_class.id}").status_code == 404

    at("2022-04-07 16:00")
    resp = client.get(f"/me/report/{mate.id}")
    assert resp.status_code == 403 and "已结束" in resp.get_data(as_text=True)


def test_parents_see_their_child_whole_and_no_classmate(client, login_as, at):
    child, mate = student_of("p_s1g9c1n01"), student_of("s1g9c1n02")
    at("2022-04-01 09:00")
    login_as("p_s1g9c1n01")
    assert child.xjh in client.get(f"/reports/student/{child.id}/").get_data(as_text=True)
    assert client.get(f"/reports/student/{mate.id}/").status_code == 404
    assert client.get(f"/me/report/{mate.id}").status_code == 404


def test_a_refused_inline_edit_is_the_users_error_not_the_servers(client, login_as):
    from models import Contact

    token = login_as("admin")
    contact = db.session.execute(sa.select(Contact).limit(1)).scalar_one()
    before = table_fingerprint()
    resp = client.post("/admin/contacts/ajax/update/", data={"csrf_token": token, "list_form_pk": contact.id,
                                                             "mobile": "爬虫"})
    assert resp.status_code == 400 and "手机" in resp.get_data(as_text=True), resp.get_data(as_text=True)
    db.session.expire_all()
    assert table_fingerprint() == before
