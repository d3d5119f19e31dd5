"""Logging set-up: plain or JSON lines, with a filter that scrubs anything that looks like a secret."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

# Webhook keys travel as ?key=...; passwords may appear in URLs as user:pass@host.
_SECRET_PATTERNS = [
    (re.compile(r"(key=)[^&\s\"']+", re.IGNORECASE), r"\1***"),
    (re.compile(r"(://[^:/\s@]+:)[^@\s]+@"), r"\1***@"),
    (re.compile(r"((?:password|secret|token|api_key|apikey)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&]+", re.IGNORECASE),
     r"\1***"),
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1***"),
]


def scrub(text: str) -> str:
    """Replace secret-looking parts of a string with ***."""
    for pattern, repl in _SECRET_PATTERNS:
        text = pattern.sub(repl, text)
    return text


class SecretScrubber(logging.Filter):
    """Rewrites every record's message so secrets never reach a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg = scrub(message)
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with any ``extra`` ids (request_id, ticket_id) kept."""

    _EXTRA = ("request_id", "ticket_id", "event_id", "post_id", "worker")

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in self._EXTRA:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


def setup_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Configure the root logger once for a process."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(SecretScrubber())
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if json_lines else plain)
    root.addHandler(handler)
    for noisy in ("kafka", "elastic_transport", "urllib3", "httpx", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
