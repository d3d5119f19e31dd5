"""Users, passwords, session revocation, API tokens and signed session values against a migrated SQLite database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.auth import passwords, tokens
from core.auth.service import (
    AuthenticationFailed,
    authenticate,
    create_token,
    create_user,
    ensure_bootstrap_admin,
    list_tokens,
    revoke_all,
    revoke_token,
    session_version,
    set_active,
    user_for_session,
    user_for_token,
)
from core.db.models import ApiTokenRow, UnitRow, UserRow
from core.db.session import Database

NOW = datetime(2025, 9, 30, 2, tzinfo=UTC)


@pytest.fixture(autouse=True)
def cheap_hashing():
    """argon2's production cost makes each hash ~0.3 s on a busy 2-core box; the behaviour is the same."""
    passwords.configure(time_cost=1, memory_cost_kib=8192, parallelism=1)
    yield
    passwords.configure()


@pytest.fixture()
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    database.migrate()
    with database.transaction() as s:
        s.add(UnitRow(id="a3-env", name="生态环境局"))
    yield database
    database.close()


def test_password_hash_is_argon2_and_verifies() -> None:
    h = passwords.hash_password("correct horse")
    assert h.startswith("$argon2id$") and "correct horse" not in h
    assert passwords.verify_password(h, "correct horse")
    assert not passwords.verify_password(h, "wrong horse!")
    assert not passwords.verify_password("not-a-hash", "correct horse")
    with pytest.raises(ValueError, match="at least 8"):
        passwords.hash_password("short")


def test_create_user_rules(db) -> None:
    with db.transaction() as s:
        u = create_user(s, username="zhang", password="secret-pass", role="handler", unit_id="a3-env", now=NOW)
        assert u.role == "handler" and u.unit_id == "a3-env" and not u.reads_all
    with db.transaction() as s, pytest.raises(ValueError, match="taken"):
        create_user(s, username="zhang", password="secret-pass", role="analyst", now=NOW)
    with db.transaction() as s, pytest.raises(ValueError, match="unit_id"):
        create_user(s, username="li", password="secret-pass", role="handler", now=NOW)
    with db.transaction() as s, pytest.raises(ValueError, match="unknown role"):
        create_user(s, username="li", password="secret-pass", role="god", now=NOW)
    with db.transaction() as s:
        row = s.query(UserRow).filter_by(username="zhang").one()
        assert row.password_hash.startswith("$argon2")


def test_wrong_passwords_never_lock_the_account(db) -> None:
    with db.transaction() as s:
        create_user(s, username="wang", password="right-password", role="analyst", now=NOW)
    with db.transaction() as s:
        assert authenticate(s, username="wang", password="right-password", now=NOW).username == "wang"
    for i in range(20):
        with db.transaction() as s, pytest.raises(AuthenticationFailed, match="wrong username or password"):
            authenticate(s, username="wang", password=f"bad-{i}", now=NOW)
    # A stranger's wrong passwords do not stop the owner (throttling is per address: core.auth.throttle).
    with db.transaction() as s:
        assert authenticate(s, username="wang", password="right-password", now=NOW).username == "wang"
    with db.transaction() as s, pytest.raises(AuthenticationFailed, match="wrong username or password"):
        authenticate(s, username="nobody", password="whatever-pw", now=NOW)


def test_session_versions_move_on_revocation(db) -> None:
    with db.transaction() as s:
        u = create_user(s, username="zhao", password="right-password", role="analyst", now=NOW)
        create_token(s, user_id=u.id, name="a", now=NOW)
        plain = create_token(s, user_id=u.id, name="b", now=NOW)
    with db.transaction() as s:
        v0 = session_version(s, user_id=u.id)
        assert user_for_session(s, user_id=u.id, version=v0).username == "zhao"
        assert user_for_session(s, user_id=u.id, version=None) is None
        assert revoke_all(s, user_id=u.id) == 2
    with db.transaction() as s:
        assert user_for_session(s, user_id=u.id, version=v0) is None
        assert user_for_token(s, token=plain) is None
        v1 = session_version(s, user_id=u.id)
        set_active(s, user_id=u.id, active=False)
    with db.transaction() as s:
        assert session_version(s, user_id=u.id) is None and user_for_session(s, user_id=u.id, version=v1) is None
        with pytest.raises(AuthenticationFailed):
            authenticate(s, username="zhao", password="right-password", now=NOW)


def test_api_tokens_store_only_hash(db) -> None:
    with db.transaction() as s:
        u = create_user(s, username="bot", password="bot-password", role="analyst", now=NOW)
        plain = create_token(s, user_id=u.id, name="ci", now=NOW)
    with db.transaction() as s:
        stored = s.query(ApiTokenRow).one()
        assert stored.token_hash == tokens.hash_token(plain) and plain not in stored.token_hash
        assert user_for_token(s, token=plain).username == "bot"
        assert user_for_token(s, token=plain + "x") is None
        assert revoke_token(s, user_id=u.id, token_hash_prefix=stored.token_hash[:12])
    with db.transaction() as s:
        assert user_for_token(s, token=plain) is None
        assert list_tokens(s, user_id=u.id) == []


def test_bootstrap_admin_only_once(db) -> None:
    with db.transaction() as s:
        assert ensure_bootstrap_admin(s, password="admin-password", now=NOW)
    with db.transaction() as s:
        assert not ensure_bootstrap_admin(s, password="other-password", now=NOW)
        assert authenticate(s, username="admin", password="admin-password", now=NOW).role == "admin"


def test_signed_values_reject_tampering_and_expiry() -> None:
    exp = int((NOW + timedelta(hours=1)).timestamp())
    value = tokens.sign({"uid": 7, "exp": exp}, "k1")
    assert tokens.unsign(value, "k1", now=NOW) == {"uid": 7, "exp": exp}
    assert tokens.unsign(value, "k2", now=NOW) is None
    _body, mac = value.split(".")
    forged = tokens.sign({"uid": 1, "exp": exp}, "k1").split(".")[0] + "." + mac
    assert tokens.unsign(forged, "k1", now=NOW) is None
    assert tokens.unsign(value, "k1", now=NOW + timedelta(hours=2)) is None
    assert tokens.unsign("garbage", "k1", now=NOW) is None


def test_cost_can_be_configured_and_old_hashes_need_rehash() -> None:
    cheap = passwords.hash_password("password-one")
    assert "m=8192,t=1" in cheap and passwords.verify_password(cheap, "password-one")
    passwords.configure()  # the production profile
    assert passwords.needs_rehash(cheap)
    assert passwords.verify_password(cheap, "password-one")  # old hashes keep working until rehashed at login
    strong = passwords.hash_password("password-one")
    assert "m=65536,t=3" in strong and not passwords.needs_rehash(strong)
