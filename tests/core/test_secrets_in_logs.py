"""Secrets never reach logs, API answers or stored errors: planted keys and passwords, failing sends and logins.

The app runs with a planted WeChat Work robot key and SMTP password in its settings. Sends fail for real
(a local robot emulator answering 93000 / 45009, a real SMTP server refusing the login), logins fail, and
then everything that was captured (log records with tracebacks, stderr in JSON lines, HTTP answers, the
``outbox.last_error`` and ``target_status.reason`` columns shown to admins) is searched for the values.
"""

from __future__ import annotations

import logging
import string
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from alerts.notifiers.base import Notification
from alerts.outbox import enqueue
from alerts.sender import OutboxSender
from api.app import create_app
from api.observability import install
from core.db.models import OutboxRow, TargetStatusRow
from core.logging import scrub, setup_logging
from core.records import utcnow
from tests.alerts.notifiers.smtp_server import SmtpServer
from tests.alerts.notifiers.wecom_emulator import WecomEmulator
from tests.support import embedded

OFFICE_KEY = "5f1c9a7e-2b4d-4e8f-9a31-7c6d0e2b8a44"  # unknown to the robot API: 93000
UNIT_KEY = "e8a2c4b6-1d3f-4a5b-8c7d-9e0f1a2b3c4d"  # known, but rate-limited: 45009
SMTP_PASSWORD = "Sm7p-P4ss-planted-9f8e7d"
SESSION_SECRET = "sess-planted-0c9b8a7d6e5f"
PLANTED = (OFFICE_KEY, UNIT_KEY, SMTP_PASSWORD, SESSION_SECRET)


def test_planted_secrets_never_leave_the_process(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    from core.auth import passwords

    passwords.configure(time_cost=1, memory_cost_kib=8192, parallelism=1)
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    with WecomEmulator(keys={UNIT_KEY}) as robots, SmtpServer(user="yuqing", password="the-real-one") as mail:
        robots.inject(UNIT_KEY, 45009, 45009)
        overrides = {
            "log_level": "DEBUG", "log_json": True,
            "wecom": {"enabled": True, "base_url": robots.base_url, "office_key": OFFICE_KEY,
                      "robots": {"gov-a3": UNIT_KEY}},
            "smtp": {"enabled": True, "host": "127.0.0.1", "port": mail.port, "username": "yuqing",
                     "password": SMTP_PASSWORD, "timeout_s": 5},
            "api": {"session_secret": SESSION_SECRET},
        }
        setup_logging("DEBUG", json_lines=True)  # what `yuqing run` does: JSON lines on stderr, scrubbed
        root.addHandler(caplog.handler)  # and keep every raw record for the search below
        caplog.set_level(logging.DEBUG)
        try:
            answers = _drive(tmp_path, overrides)
            with embedded(tmp_path, start=False, **overrides) as (container, _), container.db.session() as s:
                stored = [r.last_error or "" for r in s.scalars(select(OutboxRow))]
                stored += [r.reason for r in s.scalars(select(TargetStatusRow))]
        finally:
            root.handlers[:] = saved[1]
            root.setLevel(saved[0])
            passwords.configure()
    out, err = capfd.readouterr()

    # The failures really happened (so the search below means something).
    assert any("93000" in e for e in stored) and any("45009" in e for e in stored)
    assert any("refused the login" in e for e in stored)
    assert answers["login"] == 401 and answers["login_key_as_name"] == 401
    assert '"level": "ERROR"' in err or '"level": "WARNING"' in err  # the JSON handler wrote to stderr

    records = []
    for rec in caplog.records:
        records.append(rec.getMessage())
        if rec.exc_info:
            records.append(logging.Formatter().formatException(rec.exc_info))
        if rec.exc_text:
            records.append(rec.exc_text)
    haystacks = {"log records": "\n".join(records), "stderr": err, "stdout": out,
                 "http answers": "\n".join(answers["bodies"]), "stored errors": "\n".join(stored)}
    for where, text in haystacks.items():
        for secret in PLANTED:
            assert secret not in text, f"a planted secret appeared in {where}"


def _drive(tmp_path: Path, overrides: dict) -> dict:
    """Failing logins and failing sends through the real app and the real outbox sender."""
    from core.auth.service import create_token, create_user

    bodies: list[str] = []
    with embedded(tmp_path, start=False, **overrides) as (container, pipeline):
        container.sync_units()
        with container.db.transaction() as s:
            admin = create_user(s, username="admin", password="admin-password-1", role="admin")
            s.flush()
            token = create_token(s, user_id=admin.id, name="t")
            for target in ("office", "gov-a3"):
                enqueue(s, Notification(id=f"n-{target}", channel="wecom", target=target, kind="ticket.created",
                                        subject="测试", markdown="**测试**"))
            enqueue(s, Notification(id="n-mail", channel="email", target="ops@example.gov.cn",
                                    kind="ticket.created", subject="测试", text="测试"))
        app = create_app(container, pipeline=pipeline)
        install(app, container=container, pipeline=pipeline)
        with TestClient(app) as client:
            # A person pasting a secret into the login form: refused, and never logged.
            r1 = client.post("/api/v1/auth/login", json={"username": "admin", "password": SMTP_PASSWORD})
            r2 = client.post("/api/v1/auth/login", json={"username": OFFICE_KEY, "password": UNIT_KEY})
            bodies += [r1.text, r2.text]
            sender = OutboxSender(container.db, container.notifiers, worker_id="secrets-test", backoff_base_s=0.0)
            for _ in range(2):
                sender.run_once(utcnow())
            auth = {"Authorization": f"Bearer {token}"}
            for path in ("/api/v1/admin/targets", "/api/v1/admin/units", "/metrics", "/ready", "/health",
                         "/openapi.json"):
                bodies.append(client.get(path, headers=auth).text)
    return {"login": r1.status_code, "login_key_as_name": r2.status_code, "bodies": bodies}


# -- scrub: planted secret shapes never survive ------------------------------------------------------------
SECRET = st.text(alphabet=string.ascii_letters + string.digits + "-_.~+/", min_size=12, max_size=48)
NOISE = st.text(alphabet="政务舆情监测 与回应，。：；！？()[]<>" + "\n\t", max_size=40)
SHAPES = [
    "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={s}",
    "POST /cgi-bin/webhook/send?debug=1&key={s}&x=1",
    "smtp://yuqing:{s}@mail.example.gov.cn:465",
    "postgresql://postgres:{s}@127.0.0.1:5432/yuqing",
    "password={s}",
    "PASSWORD: {s}",
    '{{"password": "{s}"}}',
    "{{'secret': '{s}'}}",
    "token={s}",
    'webhook secret="{s}"',
]


@settings(max_examples=150, deadline=None)
@given(secret=SECRET, before=NOISE, after=NOISE, shape=st.sampled_from(SHAPES))
def test_scrub_never_leaks_a_planted_secret(secret: str, before: str, after: str, shape: str) -> None:
    line = before + shape.format(s=secret) + after
    cleaned = scrub(line)
    assert secret not in cleaned
    assert "***" in cleaned
    assert scrub(cleaned) == cleaned  # idempotent: scrubbing twice changes nothing more


def test_first_admin_password_goes_to_a_private_file_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    """A service manager or container runtime turns stderr into a log: the password must not be in it."""
    import os
    import stat
    import subprocess
    import sys

    env = {**os.environ, "YUQING_DATA_DIR": str(tmp_path), "YUQING_MODE": "embedded", "YUQING_DATABASE_URL": ""}
    env.pop("YUQING_API__BOOTSTRAP_ADMIN_PASSWORD", None)
    code = ("from core.cli import _bootstrap_users; from core.settings import Settings; from core.wiring import "
            "Container; s = Settings(); c = Container(s); _bootstrap_users(c, s); c.close()")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2], check=True)
    secret_file = tmp_path / "initial-admin-password"
    password = secret_file.read_text(encoding="utf-8").strip()
    assert len(password) >= 12
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert password not in out.stderr and password not in out.stdout
    assert str(secret_file) in out.stderr
    # The file holds the password that logs in.
    from core.auth.service import authenticate
    from core.settings import Settings
    from core.wiring import Container

    container = Container(Settings(mode="embedded", data_dir=tmp_path, database_url=""))
    try:
        with container.db.transaction() as session:
            assert authenticate(session, username="admin", password=password, now=utcnow()) is not None
    finally:
        container.close()
