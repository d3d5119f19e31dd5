"""Login, logout, who am I, and personal API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field

from api.security import (
    CSRF_COOKIE,
    CurrentUser,
    DbSession,
    client_address,
    end_session,
    session_payload,
    start_session,
)
from core.auth import service as auth
from core.auth.service import AuthenticationFailed, User
from core.auth.throttle import LoginThrottle
from core.errors import NotFound
from core.records import utcnow

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    unit_id: str | None
    display_name: str


class MeOut(BaseModel):
    user: UserOut
    csrf_token: str | None = None


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class TokenOut(BaseModel):
    id: str  # the first 12 hex digits of the stored hash: enough to revoke, useless to authenticate
    name: str
    created_at: datetime


class NewTokenOut(TokenOut):
    token: str  # shown once


def _user_out(u: User) -> UserOut:
    return UserOut(id=u.id, username=u.username, role=u.role, unit_id=u.unit_id, display_name=u.display_name)


def login_throttle(request: Request) -> LoginThrottle:
    """The app's login throttle (one per API process)."""
    throttle: LoginThrottle | None = getattr(request.app.state, "login_throttle", None)
    if throttle is None:
        throttle = request.app.state.login_throttle = LoginThrottle()
    return throttle


TOO_MANY = "登录尝试过于频繁，请稍后再试 / too many login attempts, try again later"


@router.post("/login", response_model=MeOut, responses={
    401: {"description": "wrong user name or password (the same answer for unknown names)"},
    429: {"description": "too many failed attempts from this address (for any name, known or not)"}})
def login(body: LoginIn, request: Request, response: Response, session: DbSession) -> MeOut:
    """Check the password and start a cookie session; repeated failures from one address are slowed."""
    throttle = login_throttle(request)
    address = client_address(request)
    wait = throttle.wait(address=address, username=body.username)
    if wait > 0:
        raise HTTPException(status_code=429, detail=TOO_MANY, headers={"Retry-After": str(int(wait) + 1)})
    try:
        user = auth.authenticate(session, username=body.username, password=body.password, now=utcnow())
    except AuthenticationFailed as exc:
        session.commit()  # keep the failure count shown to admins
        throttle.failed(address=address, username=body.username)
        raise HTTPException(status_code=401, detail=str(exc)) from exc
    session.commit()
    throttle.succeeded(address=address, username=body.username)
    csrf = start_session(request, response, user)
    return MeOut(user=_user_out(user), csrf_token=csrf)


@router.post("/logout", status_code=204)
def logout(user: CurrentUser, session: DbSession) -> Response:
    """End the caller's cookie sessions (all of them: a stolen copy of the cookie dies too)."""
    auth.end_sessions(session, user_id=user.id)
    session.commit()
    out = Response(status_code=204)
    end_session(out)
    return out


@router.get("/me", response_model=MeOut)
def me(user: CurrentUser, request: Request) -> MeOut:
    """The caller and, for cookie sessions, the CSRF token to echo in ``X-CSRF-Token``."""
    payload = session_payload(request)
    csrf = payload.get("csrf") if payload else request.cookies.get(CSRF_COOKIE)
    return MeOut(user=_user_out(user), csrf_token=csrf if payload else None)


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(user: CurrentUser, session: DbSession) -> list[TokenOut]:
    """The caller's API tokens (never the tokens themselves)."""
    return [TokenOut(id=t.token_hash[:12], name=t.name, created_at=t.created_at)
            for t in auth.list_tokens(session, user_id=user.id)]


@router.post("/tokens", response_model=NewTokenOut, status_code=201)
def create_token(body: TokenIn, user: CurrentUser, session: DbSession) -> NewTokenOut:
    """A new API token for the caller; the token is shown in this answer only."""
    now = utcnow()
    plain = auth.create_token(session, user_id=user.id, name=body.name, now=now)
    session.commit()
    from core.auth.tokens import hash_token

    return NewTokenOut(id=hash_token(plain)[:12], name=body.name, created_at=now, token=plain)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: Annotated[str, Path(min_length=8, max_length=64, pattern="^[0-9a-f]+$")],
                 user: CurrentUser, session: DbSession) -> Response:
    """Revoke one of the caller's tokens by its id."""
    try:
        found = auth.revoke_token(session, user_id=user.id, token_hash_prefix=token_id)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    if not found:
        raise HTTPException(status_code=404, detail=str(NotFound(f"token {token_id!r} not found")))
    session.commit()
    return Response(status_code=204)
