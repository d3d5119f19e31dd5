"""Keep secrets in URLs out of logs: httpx logs every request URL at INFO level.

Robot keys travel in the query string (``?key=...``) and webhook URLs may carry tokens in the path,
so every URL in an httpx/httpcore log line is cut down to its scheme and host.
"""

from __future__ import annotations

import logging
import re

_URL = re.compile(r"(https?://[^/\s\"'?#]+)[^\s\"']*")


def redact_urls(text: str) -> str:
    """``text`` with every URL reduced to ``scheme://host/…``."""
    return _URL.sub(r"\1/…", text)


class RedactUrls(logging.Filter):
    """A logging filter that rewrites the message with URLs redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            record.msg = redact_urls(message)
            record.args = ()
        return True


def install() -> None:
    """Attach the filter to the HTTP client loggers once (idempotent)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactUrls) for f in logger.filters):
            logger.addFilter(RedactUrls())
