"""WeChat Work (企业微信) group robots: one robot per unit plus the office's, keyed by target.

API facts (reference/wecom-robot.md): ``POST {base}/cgi-bin/webhook/send?key=KEY`` with a UTF-8 JSON
body; the answer is always HTTP 200 with an ``errcode``. The key is the robot's secret, so the URL
is never logged and never put in an error: we say "robot for unit gov-a3" instead.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
from pydantic import SecretStr

from alerts.messages import render_wecom
from alerts.notifiers import redact
from alerts.notifiers.base import Notification, Notifier
from core.errors import PermanentSendError, RetryableSendError

log = logging.getLogger(__name__)

RETRYABLE_CODES = {-1: "system busy", 45009: "api freq out of limit", 45033: "too many concurrent calls"}
MESSAGE_CODES = {40008: "invalid message type", 44004: "empty content", 45002: "content too long"}
ROBOT_GONE = 93000
redact.install()


class RobotBroken(PermanentSendError):
    """The robot's key is invalid or the robot was removed (errcode 93000): stop using this target."""

    target_broken = True


class WecomRobotNotifier(Notifier):
    """Sends ticket notifications to WeChat Work group robots."""

    channel = "wecom"

    def __init__(
        self,
        *,
        base_url: str,
        keys: dict[str, SecretStr],
        timeout_s: float,
        client: httpx.Client | None = None,
        dashboard_url: str = "http://127.0.0.1:8000",
        tz: str = "Asia/Shanghai",
    ) -> None:
        self._base = base_url.rstrip("/")
        self._keys = dict(keys)
        self._timeout = timeout_s
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=timeout_s)
        self.dashboard_url = dashboard_url
        self.tz = tz

    def has_target(self, target: str) -> bool:
        """Whether a robot key is configured for ``target``."""
        return target in self._keys

    def send(self, notification: Notification) -> None:
        """Render and post one notification to the target's robot."""
        body = render_wecom(notification, dashboard_url=self.dashboard_url, tz=self.tz)
        self.post(notification.target, body, ref=notification.id)

    def post(self, target: str, body: dict[str, Any], *, ref: str = "") -> None:
        """Post a ready message body to the robot of ``target``; raise a typed error on failure."""
        who = f"robot for unit {target}"
        key = self._keys.get(target)
        if key is None:
            raise PermanentSendError(f"no WeChat robot key configured for {target!r}")
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            resp = self._client.post(
                f"{self._base}/cgi-bin/webhook/send",
                params={"key": key.get_secret_value()},
                content=data,
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=self._timeout,
            )
        except httpx.TimeoutException:
            raise RetryableSendError(f"{who}: timed out after {self._timeout:g}s") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            raise PermanentSendError(f"{who}: the robot API base URL is not a valid http(s) URL") from None
        except httpx.HTTPError as exc:
            # The exception text can contain the URL with the key: report only its type.
            raise RetryableSendError(f"{who}: connection failed ({type(exc).__name__})") from None
        if resp.status_code >= 500:
            raise RetryableSendError(f"{who}: HTTP {resp.status_code}")
        if resp.status_code != 200:
            raise PermanentSendError(f"{who}: HTTP {resp.status_code}")
        try:
            answer = resp.json()
            code = int(answer.get("errcode", -1))
        except (ValueError, AttributeError, TypeError):
            raise RetryableSendError(f"{who}: unreadable answer (HTTP 200, not JSON)") from None
        errmsg = str(answer.get("errmsg", ""))[:80]
        # errmsg echoes "hint"/"from ip" only, never the key; still cut it short and keep it on one line.
        errmsg = errmsg.split(",")[0].replace("\n", " ")
        if code == 0:
            log.info("sent %s to %s", ref or "message", who)
            return
        if code in RETRYABLE_CODES:
            log.warning("%s answered errcode %s (%s) for %s", who, code, RETRYABLE_CODES[code], ref)
            raise RetryableSendError(f"{who}: errcode {code} {RETRYABLE_CODES[code]}")
        if code == ROBOT_GONE:
            log.error("%s is invalid or removed (errcode 93000); marking it broken", who)
            raise RobotBroken(f"{who}: errcode 93000 invalid webhook url (robot removed or key wrong)")
        if code in MESSAGE_CODES:
            raise PermanentSendError(f"{who}: errcode {code} {MESSAGE_CODES[code]} ({errmsg})")
        raise PermanentSendError(f"{who}: errcode {code} ({errmsg})")

    def close(self) -> None:
        """Close the HTTP client if we made it."""
        if self._own_client:
            self._client.close()
