"""SmtpNotifier against a real aiosmtpd server: plain, STARTTLS with a self-signed cert, AUTH failures."""

from __future__ import annotations

import logging
import shutil
import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from alerts.notifiers.base import Notification
from alerts.notifiers.smtp import SmtpNotifier
from core.errors import PermanentSendError, RetryableSendError
from tests.alerts.notifiers.smtp_server import SmtpServer, free_port, self_signed

PASSWORD = "s3cret-smtp-pass-do-not-log"


def note(target: str = "gov-a3") -> Notification:
    return Notification(id="ticket.created:T5:email", channel="email", target=target, kind="ticket.created",
                        subject="s", payload={"id": "T5", "title": "学校周边<script>alert(1)</script>", "level": 2,
                                              "lead_unit": "gov-a3", "samples": ["家长电话13812345678"]})


def mailer(port: int, **kw: object) -> SmtpNotifier:
    args: dict[str, object] = {"host": "127.0.0.1", "port": port, "security": "none", "username": None,
                               "password": None, "sender": "yuqing@gov.example", "timeout_s": 5,
                               "recipients": {"gov-a3": ["a3@gov.example"]}, "dashboard_url": "https://yq.example"}
    args.update(kw)
    return SmtpNotifier(**args)  # type: ignore[arg-type]


def test_notification_mail_is_escaped_and_masked() -> None:
    with SmtpServer() as srv:
        mailer(srv.port).send(note())
    (msg,) = srv.inbox.messages()
    assert srv.inbox.rcpt == [["a3@gov.example"]]
    assert msg["Subject"].startswith("【黄色预警·较大】新预警工单：")
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    assert "<script>" not in html and "13812345678" not in html and "13812345678" not in text
    assert "https://yq.example/#/tickets/T5" in html
    assert msg["Message-ID"].endswith("@yuqing>")


def test_unknown_target_is_permanent() -> None:
    with pytest.raises(PermanentSendError, match="gov-zz"):
        mailer(free_port()).send(note("gov-zz"))


def test_nobody_listening_is_retryable() -> None:
    with pytest.raises(RetryableSendError, match=r"SMTP server 127\.0\.0\.1"):
        mailer(free_port()).send(note())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not found (needed for a test cert)")
def test_starttls_with_auth(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cert, key = self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    with SmtpServer(user="yq", password=PASSWORD, tls=(cert, key)) as srv:
        mailer(srv.port, security="starttls", username="yq", password=SecretStr(PASSWORD),
               ssl_context=trust).send(note())
        assert len(srv.inbox.raw) == 1
        # the default trust store does not know the self-signed cert: a config problem, permanent
        with pytest.raises(PermanentSendError, match="certificate not trusted"):
            mailer(srv.port, security="starttls", username="yq", password=SecretStr(PASSWORD)).send(note())
        with pytest.raises(PermanentSendError) as info:
            mailer(srv.port, security="starttls", username="yq", password=SecretStr("wrong-" + PASSWORD),
                   ssl_context=trust).send(note())
    assert "refused the login of user 'yq'" in str(info.value)
    assert PASSWORD not in str(info.value) and PASSWORD not in caplog.text
    assert len(srv.inbox.raw) == 1


def test_auth_failure_without_tls_is_permanent_and_secret_free() -> None:
    with SmtpServer(user="yq", password=PASSWORD) as srv:
        with pytest.raises(PermanentSendError) as info:
            mailer(srv.port, username="yq", password=SecretStr("nope-" + PASSWORD)).send(note())
        assert PASSWORD not in str(info.value) and "nope" not in str(info.value)
        mailer(srv.port, username="yq", password=SecretStr(PASSWORD)).send(note())
    assert len(srv.inbox.raw) == 1
