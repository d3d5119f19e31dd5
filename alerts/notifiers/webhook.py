"""A signed JSON webhook for other systems (an OA, a city operations centre).

The receiver checks ``X-Yuqing-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``
and should refuse timestamps far from its clock (replay); ``Idempotency-Key`` is the notification id,
the same on every retry, so a receiver can drop duplicates. The URL may carry a token of its own,
so errors and logs name "the webhook" and never the URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr

from alerts.messages import mask_text
from alerts.notifiers import redact
from alerts.notifiers.base import Notification, Notifier
from core.errors import PermanentSendError, RetryableSendError

log = logging.getLogger(__name__)

RETRY_STATUSES = {408, 425, 429}
redact.install()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Receiver side: whether ``signature`` is right (constant-time compare)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class SignedWebhookNotifier(Notifier):
    """POSTs each notification as signed JSON to one URL."""

    channel = "webhook"

    def __init__(
        self,
        *,
        url: str,
        secret: SecretStr,
        timeout_s: float,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout_s
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s)
        self._clock = clock

    @staticmethod
    def body(notification: Notification) -> dict[str, Any]:
        """The JSON document sent (samples masked again on the way out)."""
        payload = dict(notification.payload)
        if isinstance(payload.get("samples"), list):
            payload["samples"] = [mask_text(str(s)) for s in payload["samples"]]
        return {
            "id": notification.id,
            "kind": notification.kind,
            "target": notification.target,
            "subject": notification.subject,
            "payload": payload,
        }

    def send(self, notification: Notification) -> None:
        """Deliver one notification; 2xx is success."""
        data = json.dumps(self.body(notification), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Yuqing-Timestamp": timestamp,
            "X-Yuqing-Signature": sign(self._secret.get_secret_value(), timestamp, data),
            "Idempotency-Key": notification.id,
        }
        try:
            resp = self._client.post(self._url, content=data, headers=headers, timeout=self._timeout)
        except httpx.TimeoutException:
            raise RetryableSendError(f"webhook timed out after {self._timeout:g}s") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise PermanentSendError("webhook URL is not a valid http(s) URL") from None
        except httpx.HTTPError as exc:
            raise RetryableSendError(f"webhook connection failed ({type(exc).__name__})") from None
        status = resp.status_code
        if 200 <= status < 300:
            log.info("webhook accepted %s", notification.id)
            return
        if status >= 500 or status in RETRY_STATUSES:
            raise RetryableSendError(f"webhook answered HTTP {status}")
        raise PermanentSendError(f"webhook refused the notification: HTTP {status}")

    def close(self) -> None:
        """Close the HTTP client if we made it."""
        if self._own_client:
            self._client.close()
