"""``yuqing users``: create, list, token, set-password against a SQLite file chosen by YUQING_DATABASE_URL."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from core.auth import passwords
from core.auth.cli import app
from core.auth.service import authenticate, user_for_token
from core.db.models import UnitRow
from core.db.session import Database


@pytest.fixture()
def db_url(tmp_path, monkeypatch):
    passwords.configure(time_cost=1, memory_cost_kib=8192, parallelism=1)
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    monkeypatch.setenv("YUQING_DATABASE_URL", url)
    db = Database(url)
    db.migrate()
    with db.transaction() as s:
        s.add(UnitRow(id="env", name="生态环境局"))
    db.close()
    yield url
    passwords.configure()


def test_create_list_token_and_password(db_url) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["create", "zhang", "--role", "handler", "--unit", "env"],
                      input="first-password\nfirst-password\n")
    assert r.exit_code == 0, r.output
    assert "first-password" not in r.output.replace("Password", "")
    r = runner.invoke(app, ["create", "li", "--role", "handler"], input="another-pass\nanother-pass\n")
    assert r.exit_code != 0 and "unit_id" in r.output
    r = runner.invoke(app, ["list"])
    assert "zhang\thandler\tenv\tactive" in r.output
    r = runner.invoke(app, ["token", "zhang", "--name", "robot"])
    token = r.output.strip()
    assert r.exit_code == 0 and token.startswith("yq_")
    r = runner.invoke(app, ["set-password", "zhang"], input="second-password\nsecond-password\n")
    assert r.exit_code == 0, r.output
    db = Database(db_url)
    try:
        with db.transaction() as s:
            assert user_for_token(s, token=token).username == "zhang"
            assert authenticate(s, username="zhang", password="second-password").unit_id == "env"
    finally:
        db.close()
    assert runner.invoke(app, ["token", "nobody"]).exit_code != 0


def test_disable_enable_and_revoke(db_url) -> None:
    from core.auth.service import create_token, create_user, session_version

    db = Database(db_url)
    try:
        with db.transaction() as s:
            user = create_user(s, username="wu", password="wu-password", role="analyst")
            token = create_token(s, user_id=user.id, name="bot")
        runner = CliRunner()
        r = runner.invoke(app, ["disable", "wu"])
        assert r.exit_code == 0, r.output
        with db.transaction() as s:
            assert user_for_token(s, token=token) is None and session_version(s, user_id=user.id) is None
        assert "wu\tanalyst\t-\tdisabled" in runner.invoke(app, ["list"]).output
        assert runner.invoke(app, ["enable", "wu"]).exit_code == 0
        with db.transaction() as s:
            assert user_for_token(s, token=token).username == "wu"
            before = session_version(s, user_id=user.id)
        r = runner.invoke(app, ["revoke", "wu"])
        assert r.exit_code == 0 and "1 API token(s) revoked" in r.output
        with db.transaction() as s:
            assert user_for_token(s, token=token) is None
            assert session_version(s, user_id=user.id) == before + 1
        assert runner.invoke(app, ["disable", "nobody"]).exit_code != 0
    finally:
        db.close()
