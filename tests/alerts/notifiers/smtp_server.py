"""A real SMTP server for tests (aiosmtpd on a free port), optionally with STARTTLS and AUTH."""

from __future__ import annotations

import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """(cert, key) for 127.0.0.1/localhost, made with the openssl command line."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


@dataclass
class Inbox:
    """Messages the server accepted, parsed."""

    raw: list[bytes] = field(default_factory=list)
    rcpt: list[list[str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.raw.append(envelope.original_content or envelope.content)
        self.rcpt.append(list(envelope.rcpt_tos))
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        """Each accepted message parsed with the modern policy."""
        return [BytesParser(policy=policy.default).parsebytes(r) for r in self.raw]  # type: ignore[misc]


class SmtpServer:
    """aiosmtpd Controller wrapper: ``with SmtpServer(...) as srv: srv.port, srv.inbox``."""

    def __init__(self, *, user: str | None = None, password: str | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if user is not None:
            def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
                ok = isinstance(data, LoginPassword) and data.login.decode() == user \
                    and data.password.decode() == password
                return AuthResult(success=ok, handled=False)

            kwargs.update(authenticator=authenticator, auth_require_tls=tls is not None)
        if tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            kwargs.update(tls_context=ctx, require_starttls=True)
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
