"""SignedWebhookNotifier against a local HTTP receiver that checks the signature like a real one would."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from alerts.notifiers.base import Notification
from alerts.notifiers.webhook import SignedWebhookNotifier, sign, verify
from core.errors import PermanentSendError, RetryableSendError

SECRET = "whsec-0c1d2e3f-never-log"


class Receiver:
    """Verifies X-Yuqing-Signature; answers ``status`` (401 on a bad signature); records what it got."""

    def __init__(self) -> None:
        self.status = 200
        self.hang = False
        self.got: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.hang:
                    threading.Event().wait(0.6)
                ts = self.headers.get("X-Yuqing-Timestamp", "")
                good = verify(SECRET, ts, raw, self.headers.get("X-Yuqing-Signature", ""))
                receiver.got.append({"headers": dict(self.headers), "body": json.loads(raw), "valid": good})
                self.send_response(receiver.status if good else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/yuqing?token=t0ps3cret"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def note() -> Notification:
    return Notification(id="ticket.created:T9:webhook", channel="webhook", target="oa", kind="ticket.created",
                        subject="新预警工单", payload={"id": "T9", "level": 3, "samples": ["电话13812345678"]})


def notifier(url: str, secret: str = SECRET, timeout_s: float = 5) -> SignedWebhookNotifier:
    return SignedWebhookNotifier(url=url, secret=SecretStr(secret), timeout_s=timeout_s, clock=lambda: 1763800000.7)


def test_signed_body_and_headers(receiver: Receiver) -> None:
    notifier(receiver.url).send(note())
    (got,) = receiver.got
    assert got["valid"] is True
    assert got["headers"]["X-Yuqing-Timestamp"] == "1763800000"
    assert got["headers"]["Idempotency-Key"] == "ticket.created:T9:webhook"
    assert got["body"] == {"id": "ticket.created:T9:webhook", "kind": "ticket.created", "target": "oa",
                           "subject": "新预警工单",
                           "payload": {"id": "T9", "level": 3, "samples": ["电话138****5678"]}}


def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    assert sign("k", "1", b"{}") == "sha256=" + __import__("hmac").new(
        b"k", b"1.{}", "sha256").hexdigest()
    assert not verify("other", "1", b"{}", sign("k", "1", b"{}"))


def test_wrong_secret_is_refused_permanently(receiver: Receiver) -> None:
    with pytest.raises(PermanentSendError, match="HTTP 401"):
        notifier(receiver.url, secret="wrong").send(note())
    assert receiver.got[0]["valid"] is False


@pytest.mark.parametrize(("status", "error"), [(500, RetryableSendError), (503, RetryableSendError),
                                               (429, RetryableSendError), (400, PermanentSendError),
                                               (404, PermanentSendError)])
def test_status_mapping(receiver: Receiver, status: int, error: type[Exception],
                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.status = status
    with pytest.raises(error) as info:
        notifier(receiver.url).send(note())
    assert "t0ps3cret" not in str(info.value) and "t0ps3cret" not in caplog.text
    assert SECRET not in caplog.text


def test_timeout_is_retryable(receiver: Receiver) -> None:
    receiver.hang = True
    with pytest.raises(RetryableSendError, match="timed out"):
        notifier(receiver.url, timeout_s=0.3).send(note())


def test_channel_choice_follows_the_settings() -> None:
    from alerts.notifiers.channels import choose

    assert choose(wecom=False, webhook=True) == ("webhook",)
    assert choose(wecom=True, webhook=True) == ("wecom", "webhook")
    assert choose(wecom=True, webhook=False) == ("wecom",)
    assert choose(wecom=False, webhook=False) == ("wecom",)


def test_a_configured_webhook_receives_ticket_notifications(receiver: Receiver, tmp_path) -> None:
    from alerts.rules.base import Match
    from alerts.sender import OutboxSender
    from alerts.tickets import service as svc
    from core.db.models import OutboxRow
    from core.records import Event, WarningLevel, utcnow
    from tests.support import embedded

    webhook = {"enabled": True, "url": receiver.url, "secret": SECRET}
    with embedded(tmp_path, start=False, webhook=webhook) as (container, _pipeline):
        container.sync_units()
        now = utcnow()
        with container.db.transaction() as s:
            svc.open_or_update(
                s, event=Event(id="wh-e1", title="A3区停水", first_seen=now, last_seen=now),
                match=Match(rule="burst", event_id="wh-e1", level=WarningLevel.orange, reason="信息激增", at=now),
                lead_unit="gov-a3", cooperating_units=[], routing={}, now=now)
        with container.db.transaction() as s:
            channels = {row.channel for row in s.query(OutboxRow)}
        assert channels == {"webhook"}
        stats = OutboxSender(container.db, container.notifiers, backoff_base_s=0.0).run_once(utcnow())
        assert stats.sent >= 1, stats
    assert receiver.got and all(g["valid"] for g in receiver.got)
    assert receiver.got[0]["body"]["kind"] == "ticket.created"
