"""Login, cookie sessions with CSRF, Bearer tokens, revocation and throttling through a real FastAPI app."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.routes import auth as auth_routes
from api.security import CSRF_COOKIE, SESSION_COOKIE
from core.auth import passwords
from core.auth.service import create_token, create_user
from core.db.models import UnitRow
from core.db.session import Database
from core.settings import ApiSettings, Settings


@pytest.fixture()
def app(tmp_path):
    passwords.configure(time_cost=1, memory_cost_kib=8192, parallelism=1)  # fast hashing for tests only
    db = Database(f"sqlite:///{tmp_path / 'api.sqlite'}")
    db.migrate()
    with db.transaction() as s:
        s.add(UnitRow(id="env", name="生态环境局"))
        s.flush()
        create_user(s, username="office", password="office-password", role="analyst")
        create_user(s, username="env", password="env-password", role="handler", unit_id="env")
    application = FastAPI()
    application.include_router(auth_routes.router)
    application.state.db = db
    application.state.settings = Settings(data_dir=tmp_path,
                                          api=ApiSettings(session_secret=SecretStr("test-session-secret")))
    yield application
    db.close()
    passwords.configure()


def _login(client: TestClient, username="office", password="office-password"):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password})


def test_login_sets_cookies_and_me_returns_user_and_csrf(app) -> None:
    client = TestClient(app)
    r = _login(client)
    assert r.status_code == 200
    body = r.json()
    assert body["user"]["role"] == "analyst" and body["csrf_token"]
    assert client.cookies.get(CSRF_COOKIE) == body["csrf_token"]
    set_cookie = " ".join(r.headers.get_list("set-cookie"))
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
    assert "office-password" not in set_cookie
    me = client.get("/api/v1/auth/me").json()
    assert me["user"]["username"] == "office" and me["csrf_token"] == body["csrf_token"]


def test_wrong_password_and_anonymous_are_401(app) -> None:
    client = TestClient(app)
    assert _login(client, password="nope-nope").status_code == 401
    assert _login(client, username="ghost").status_code == 401
    assert client.get("/api/v1/auth/me").status_code == 401


def test_unsafe_cookie_request_needs_matching_csrf_header(app) -> None:
    client = TestClient(app)
    csrf = _login(client).json()["csrf_token"]
    assert client.post("/api/v1/auth/tokens", json={"name": "x"}).status_code == 403
    assert client.post("/api/v1/auth/tokens", json={"name": "x"}, headers={"X-CSRF-Token": "forged"}).status_code == 403
    r = client.post("/api/v1/auth/tokens", json={"name": "ci"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201 and r.json()["token"].startswith("yq_")


def test_tampered_cookie_is_rejected(app) -> None:
    client = TestClient(app)
    _login(client)
    value = client.cookies.get(SESSION_COOKIE)
    body, mac = value.split(".")
    assert TestClient(app, cookies={SESSION_COOKIE: value}).get("/api/v1/auth/me").status_code == 200
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac
    assert TestClient(app, cookies={SESSION_COOKIE: tampered}).get("/api/v1/auth/me").status_code == 401
    assert TestClient(app, cookies={SESSION_COOKIE: "x.y"}).get("/api/v1/auth/me").status_code == 401


def test_bearer_token_works_without_csrf_and_can_be_revoked(app) -> None:
    with app.state.db.transaction() as s:
        token = create_token(s, user_id=2, name="robot")
    client = TestClient(app)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/auth/me", headers=headers).json()["user"]["username"] == "env"
    listed = client.get("/api/v1/auth/tokens", headers=headers).json()
    assert [t["name"] for t in listed] == ["robot"] and token not in str(listed)
    assert client.delete(f"/api/v1/auth/tokens/{listed[0]['id']}", headers=headers).status_code == 204
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
    assert client.get("/api/v1/auth/me", headers={"Authorization": "Bearer yq_guess"}).status_code == 401


def _login_from(client: TestClient, address: str, username="office", password="office-password"):
    return client.post("/api/v1/auth/login", json={"username": username, "password": password},
                       headers={"X-Forwarded-For": address})


@pytest.fixture()
def proxied(app):
    app.state.settings = Settings(data_dir=app.state.settings.data_dir, api=ApiSettings(
        session_secret=SecretStr("test-session-secret"), trust_forwarded=True))
    return app


def test_failures_from_one_address_never_lock_the_user_out_elsewhere(proxied) -> None:
    client = TestClient(proxied)
    for _ in range(5):
        assert _login_from(client, "203.0.113.66", password="bad-password").status_code == 401
    r = _login_from(client, "203.0.113.66")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0  # that address is slowed down...
    assert _login_from(client, "198.51.100.7").status_code == 200  # ...the real user elsewhere is not


def test_unknown_and_existing_names_get_the_same_answers(proxied) -> None:
    client = TestClient(proxied)
    answers = {}
    for name in ("office", "no-such-user"):
        seen = [_login_from(client, "203.0.113.9", username=name, password="bad-password") for _ in range(6)]
        answers[name] = [(r.status_code, r.json()["detail"]) for r in seen]
    assert answers["office"] == answers["no-such-user"]
    assert [code for code, _ in answers["office"]] == [401] * 5 + [429]


def test_a_guessing_crowd_cannot_keep_the_owner_out_of_a_trusted_address(proxied) -> None:
    client = TestClient(proxied)
    assert _login_from(client, "198.51.100.7").status_code == 200  # the owner's usual address
    proxied.state.login_throttle.account_failures = 10
    for i in range(12):
        _login_from(client, f"203.0.113.{i}", password="bad-password")
    assert _login_from(client, "203.0.113.200").status_code == 429  # a new address meets the account limit
    assert _login_from(client, "198.51.100.7").status_code == 200


def test_logout_ends_the_session_on_the_server(app) -> None:
    client = TestClient(app)
    csrf = _login(client).json()["csrf_token"]
    stolen = client.cookies.get(SESSION_COOKIE)
    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401
    assert TestClient(app, cookies={SESSION_COOKIE: stolen}).get("/api/v1/auth/me").status_code == 401


def test_password_change_disable_and_revoke_end_sessions(app) -> None:
    from core.auth.service import revoke_all, set_active, set_password

    for change in (lambda s: set_password(s, user_id=1, password="new-office-password"),
                   lambda s: set_active(s, user_id=1, active=False), lambda s: revoke_all(s, user_id=1)):
        with app.state.db.transaction() as s:
            set_active(s, user_id=1, active=True)
            set_password(s, user_id=1, password="office-password")
        client = TestClient(app)
        assert _login(client).status_code == 200
        assert client.get("/api/v1/auth/me").status_code == 200
        with app.state.db.transaction() as s:
            change(s)
        assert client.get("/api/v1/auth/me").status_code == 401


def test_a_cookie_signed_with_the_old_public_default_is_not_accepted(app) -> None:
    from datetime import timedelta

    from core.auth.tokens import sign
    from core.records import utcnow

    app.state.settings = Settings(data_dir=app.state.settings.data_dir)  # nothing configured
    exp = int((utcnow() + timedelta(hours=1)).timestamp())
    for version in (None, 0):
        forged = sign({"uid": 1, "sv": version, "exp": exp, "csrf": "x"}, "change-me-in-production")
        assert TestClient(app, cookies={SESSION_COOKIE: forged}).get("/api/v1/auth/me").status_code == 401


def test_logout_clears_session(app) -> None:
    client = TestClient(app)
    csrf = _login(client).json()["csrf_token"]
    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401
