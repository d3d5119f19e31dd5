"""E-mail over SMTP: ticket notifications and the weekly/daily reports.

One connection per message (reports are rare, notifications few); every step has the timeout.
A refused login or a 5xx answer is permanent (retrying will not fix a wrong password or a bad
address); connection trouble and 4xx answers are retryable. The password never appears in errors.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import Literal

from pydantic import SecretStr

from alerts.messages import render_email
from alerts.notifiers.base import Notification, Notifier
from core.errors import PermanentSendError, RetryableSendError

log = logging.getLogger(__name__)

Security = Literal["none", "starttls", "ssl"]


class SmtpNotifier(Notifier):
    """Sends e-mail through one SMTP server."""

    channel = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: Security,
        username: str | None,
        password: SecretStr | None,
        sender: str,
        timeout_s: float,
        recipients: dict[str, Sequence[str]] | None = None,
        dashboard_url: str = "http://127.0.0.1:8000",
        tz: str = "Asia/Shanghai",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in ("none", "starttls", "ssl"):
            raise ValueError(f"SMTP security must be none, starttls or ssl, not {security!r}")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self._password = password
        self.sender = sender
        self.timeout_s = timeout_s
        self.recipients = {k: list(v) for k, v in (recipients or {}).items()}
        self.dashboard_url = dashboard_url
        self.tz = tz
        self._ssl = ssl_context or ssl.create_default_context()

    def addresses(self, target: str) -> list[str]:
        """Where mail for ``target`` goes: an address itself, or the configured list for a unit/office."""
        if "@" in target:
            return [target]
        found = self.recipients.get(target)
        if not found:
            raise PermanentSendError(f"no e-mail address configured for {target!r}")
        return found

    def send(self, notification: Notification) -> None:
        """Mail one ticket notification to its target's addresses."""
        subject, text, html_body = render_email(notification, dashboard_url=self.dashboard_url, tz=self.tz)
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["To"] = ", ".join(self.addresses(notification.target))
        # A stable Message-ID lets mail clients fold a re-sent copy after a crash into the first one.
        digest = hashlib.sha256(notification.id.encode("utf-8")).hexdigest()[:32]
        msg["Message-ID"] = f"<{digest}@yuqing>"
        msg.set_content(text)
        msg.add_alternative(html_body, subtype="html")
        self.send_message(msg)

    def send_message(self, msg: EmailMessage) -> None:
        """Send a ready message (From and Date filled in when missing)."""
        if msg["From"] is None:
            msg["From"] = self.sender
        if msg["Date"] is None:
            msg["Date"] = formatdate(localtime=False)
        if not msg["To"]:
            raise PermanentSendError("e-mail has no recipient")
        where = f"SMTP server {self.host}:{self.port}"
        try:
            client: smtplib.SMTP
            if self.security == "ssl":
                client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=self._ssl)
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            with client:
                if self.security == "starttls":
                    client.starttls(context=self._ssl)
                if self.username:
                    password = self._password.get_secret_value() if self._password else ""
                    client.login(self.username, password)
                client.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentSendError(f"{where} refused the login of user {self.username!r} ({exc.smtp_code})") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentSendError(f"{where} does not support what the settings ask: {exc}") from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _msg in exc.recipients.values()})
            if all(c >= 500 for c in codes):
                raise PermanentSendError(f"{where} refused every recipient ({codes})") from None
            raise RetryableSendError(f"{where} refused recipients for now ({codes})") from None
        except smtplib.SMTPResponseException as exc:  # sender refused, data error, ...
            error = PermanentSendError if exc.smtp_code >= 500 else RetryableSendError
            raise error(f"{where} answered {exc.smtp_code}") from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentSendError(f"{where}: TLS certificate not trusted ({exc.verify_message})") from None
        except (smtplib.SMTPException, OSError) as exc:  # connect errors, timeouts, disconnects, TLS trouble
            raise RetryableSendError(f"{where}: {type(exc).__name__}") from None
        log.info("mailed %r to %d recipient(s)", msg["Subject"], len(str(msg["To"]).split(",")))
