"""Who is calling: a signed session cookie (with a CSRF double-submit token) or a Bearer API token.

Cookie sessions: ``yuqing_session`` holds ``{uid, exp, csrf}`` signed with HMAC-SHA256 under
``settings.api.session_secret`` (HttpOnly); ``yuqing_csrf`` repeats the CSRF token for the page's
JavaScript, which must echo it in ``X-CSRF-Token`` on every unsafe request (POST, PUT, PATCH,
DELETE). The header must equal the token inside the signed session, so a cross-site form, which
can send the cookie but cannot read it, is refused. Bearer tokens (machines) need no CSRF token.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
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
_DEFAULT_SECRET = "change-me-in-production"  # noqa: S105 - the known placeholder we warn about
_warned = False


def get_db(request: Request) -> Iterator[Session]:
    """One session per request from ``app.state.db``; routes commit what they change."""
    session: Session = request.app.state.db.session()
    try:
        yield session
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_db)]


def session_secret(request: Request) -> str:
    """The HMAC key for session cookies, from ``app.state.settings``."""
    global _warned
    secret: str = request.app.state.settings.api.session_secret.get_secret_value()
    if secret == _DEFAULT_SECRET and not _warned:
        _warned = True
        log.warning("YUQING_API__SESSION_SECRET is the default: set a random secret in production")
    return secret


def start_session(request: Request, response: Response, user: User, *, now: datetime | None = None) -> str:
    """Set the session and CSRF cookies for ``user``; returns the CSRF token."""
    now = now or utcnow()
    csrf = secrets.token_urlsafe(24)
    exp = int((now + SESSION_TTL).timestamp())
    value = sign({"uid": user.id, "exp": exp, "csrf": csrf}, session_secret(request))
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
            user = auth.get_user(s, user_id=payload["uid"])
        if user is None:
            raise _unauthorized("账号不存在或已停用 / account missing or disabled")
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
