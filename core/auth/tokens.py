"""API tokens (random, only their SHA-256 stored) and HMAC-signed session values for cookies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Any

TOKEN_PREFIX = "yq_"  # noqa: S105 - a visible prefix so leaked tokens are recognisable, not a secret


def new_token() -> tuple[str, str]:
    """A fresh API token and its hash: show the token once, store only the hash."""
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return plain, hash_token(plain)


def hash_token(token: str) -> str:
    """The stored form of a token (hex SHA-256); tokens are random, so no salt or slow hash is needed."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(payload: dict[str, Any], secret: str) -> str:
    """``base64(json).base64(hmac)``: tamper-evident, not encrypted (never put secrets in it)."""
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    mac = hmac.new(secret.encode("utf-8"), body.encode("ascii"), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def unsign(value: str, secret: str, *, now: datetime) -> dict[str, Any] | None:
    """The payload of a value made by ``sign`` if the MAC matches and ``exp`` (epoch s) is in the future."""
    if not value or value.count(".") != 1 or len(value) > 4096:
        return None
    body, mac = value.split(".")
    raw_mac = hmac.new(secret.encode("utf-8"), body.encode("ascii", "replace"), hashlib.sha256).digest()
    expected = _b64(raw_mac)
    if not hmac.compare_digest(mac, expected):
        return None
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    exp = payload.get("exp")
    if not isinstance(exp, int | float) or exp <= now.timestamp():
        return None
    return payload
