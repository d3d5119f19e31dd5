"""Who is calling: a signed session cookie (with a CSRF double-submit token) or a Bearer API token.

Cookie sessions: ``yuqing_session`` holds ``{uid, exp, csrf}`` signed with HMAC-SHA256 under
``settings.api.session_secret`` (HttpOnly); ``yuqing_csrf`` repeats the CSRF token for the page's
JavaScript, which must echo it in ``X-CSRF-Token`` on every unsafe request (POST, PUT, PATCH,
DELETE). The header must equal the token inside the signed session, so a cross-site form, which
can send the cookie but cannot read it, is refused. Bearer tokens (machines) need no CSRF token.

The session secret: ``YUQING_API__SESSION_SECRET`` when set (the old public placeholder
``change-me-in-production`` is refused: anyone could forge an admin cookie with it); otherwise a random one
generated once into ``<data dir>/session-secret`` (mode 0600) and reused, so ``make run`` works on a fresh
machine and restarts keep sessions. Several API processes on different machines need the variable set.

Sessions are revocable: the cookie carries the user's ``session_version`` and every request compares it
with the users row; logout, a password change, disabling the account and ``yuqing users revoke`` bump it.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response
from sqlalchemy.orm import Session

from core.auth import service as auth
from core.auth.service import User
from core.auth.tokens import sign, unsign
from core.records import utcnow

log = logging.getLogger(__name__)

SESSION_COOKIE = "yuqing_session"
CSRF_COOKIE = "yuqing_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TTL = timedelta(hours=12)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_DEFAULT_SECRET = "change-me-in-production"  # noqa: S105 - the old published placeholder, refused
# Templates ship these (deploy/k8s/config.yaml says CHANGE-ME): deploying one unchanged is the same mistake.
PLACEHOLDERS = frozenset({"change-me", "changeme", "change-me-in-production", "secret", "replace-me"})
SECRET_FILE = "session-secret"  # noqa: S105 - a file name, not a secret
_secret_lock = threading.Lock()
_secrets: dict[tuple[str, str], str] = {}


class InsecureSessionSecret(RuntimeError):
    """The configured session secret is the public placeholder: refuse to serve."""


def resolve_session_secret(settings: Any) -> str:
    """The HMAC key for session cookies: the configured one, else one generated into the data dir (0600)."""
    configured = settings.api.session_secret
    if configured is not None:
        value: str = configured.get_secret_value()
        if value == PUBLIC_DEFAULT_SECRET or value.strip().casefold() in PLACEHOLDERS or not value.strip():
            raise InsecureSessionSecret(
                "YUQING_API__SESSION_SECRET is the public placeholder (or empty): anyone could forge an admin "
                "session with it. Set a long random value, or unset it to have one generated into the data dir")
        return value
    path = Path(settings.data_dir).resolve() / SECRET_FILE
    key = ("file", str(path))
    with _secret_lock:
        if key in _secrets:
            return _secrets[key]
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = path.read_text(encoding="ascii").strip()
            if len(secret) < 32:
                raise InsecureSessionSecret(
                    f"{path} holds no usable secret: delete it to have one generated") from None
        else:
            secret = secrets.token_urlsafe(48)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(secret + "\n")
            log.info("generated a session secret into %s (mode 0600)", path)
        _secrets[key] = secret
        return secret


def get_db(request: Request) -> Iterator[Session]:
    """One session per request from ``app.state.db``; routes commit what they change."""
    session: Session = request.app.state.db.session()
    try:
        yield session
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_db)]


def session_secret(request: Request) -> str:
    """The HMAC key for session cookies of the settings in ``app.state.settings``."""
    return resolve_session_secret(request.app.state.settings)


def client_address(request: Request) -> str:
    """The caller's address: the socket peer, or the first X-Forwarded-For entry behind a trusted proxy."""
    settings = getattr(request.app.state, "settings", None)
    if settings is not None and settings.api.trust_forwarded:
        first = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if first:
            return first[:64]
    return request.client.host if request.client else "unknown"


def start_session(request: Request, response: Response, user: User, *, now: datetime | None = None) -> str:
    """Set the session and CSRF cookies for ``user``; returns the CSRF token."""
    now = now or utcnow()
    csrf = secrets.token_urlsafe(24)
    exp = int((now + SESSION_TTL).timestamp())
    with request.app.state.db.session() as s:
        version = auth.session_version(s, user_id=user.id) or 0
    value = sign({"uid": user.id, "sv": version, "exp": exp, "csrf": csrf}, session_secret(request))
    secure = request.url.scheme == "https"
    max_age = int(SESSION_TTL.total_seconds())
    response.set_cookie(SESSION_COOKIE, value, max_age=max_age, httponly=True, samesite="strict", secure=secure,
                        path="/")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="strict", secure=secure,
                        path="/")
    return csrf


def end_session(response: Response) -> None:
    """Clear the session cookies."""
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")


def _unauthorized(message: str = "请先登录 / not authenticated") -> HTTPException:
    return HTTPException(status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"})


def session_payload(request: Request) -> dict[str, Any] | None:
    """The verified payload of the session cookie, or None."""
    raw = request.cookies.get(SESSION_COOKIE)
    return unsign(raw, session_secret(request), now=utcnow()) if raw else None


def current_user(request: Request) -> User:
    """The authenticated caller (Bearer token or session cookie); 401 otherwise, 403 on a missing CSRF token."""
    cached = getattr(request.state, "user", None)
    if isinstance(cached, User):
        return cached
    header = request.headers.get("authorization", "")
    db = request.app.state.db
    if header.lower().startswith("bearer "):
        with db.session() as s:
            user = auth.user_for_token(s, token=header[7:].strip())
        if user is None:
            raise _unauthorized("API token 无效 / invalid API token")
    else:
        payload = session_payload(request)
        if payload is None or not isinstance(payload.get("uid"), int):
            raise _unauthorized()
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not hmac.compare_digest(sent, str(payload.get("csrf", ""))):
                raise HTTPException(status_code=403, detail="CSRF 校验失败 / missing or wrong X-CSRF-Token header")
        with db.session() as s:
            user = auth.user_for_session(s, user_id=payload["uid"], version=payload.get("sv"))
        if user is None:
            raise _unauthorized("会话已结束，请重新登录 / session ended (logged out, password changed or revoked)")
    request.state.user = user
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require_roles(*roles: str) -> Callable[[Request], User]:
    """A dependency admitting only these roles (403 for others, 401 when anonymous)."""
    allowed = frozenset(roles)

    def dependency(request: Request) -> User:
        user = current_user(request)
        if user.role not in allowed:
            raise HTTPException(status_code=403, detail=f"需要角色 {sorted(allowed)} / requires one of roles "
                                                       f"{sorted(allowed)}")
        return user

    return dependency
