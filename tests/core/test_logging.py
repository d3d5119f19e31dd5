"""Secrets never reach a log handler."""

from __future__ import annotations

import io
import logging

from core.logging import JsonFormatter, SecretScrubber, scrub


def test_scrub_webhook_key_password_and_url_credentials() -> None:
    text = ("POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abcd-1234-efgh failed; "
            "dsn postgresql://yuqing:s3cret@db:5432/x password=hunter2 token: tok_999")
    out = scrub(text)
    for secret in ("abcd-1234-efgh", "s3cret", "hunter2", "tok_999"):
        assert secret not in out
    assert "key=***" in out
    assert "webhook/send" in out  # the useful part stays


def test_handler_filter_scrubs_formatted_args_and_json() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretScrubber())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.scrub")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("send to %s failed", "https://x/send?key=planted-key-777")
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert "planted-key-777" not in line
    assert '"level": "WARNING"' in line
