"""Login, logout, who am I, and personal API tokens."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from api.security import CSRF_COOKIE, CurrentUser, DbSession, end_session, session_payload, start_session
from core.auth import service as auth
from core.auth.service import AccountLocked, AuthenticationFailed, User
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


@router.post("/login", response_model=MeOut)
def login(body: LoginIn, request: Request, response: Response, session: DbSession) -> MeOut:
    """Check the password (accounts lock after repeated failures) and start a cookie session."""
    try:
        user = auth.authenticate(session, username=body.username, password=body.password, now=utcnow())
    except AccountLocked as exc:
        session.commit()
        retry = max(1, int((exc.until - utcnow()).total_seconds()))
        raise HTTPException(status_code=429, detail=str(exc), headers={"Retry-After": str(retry)}) from exc
    except AuthenticationFailed as exc:
        session.commit()  # keep the failure count
        raise HTTPException(status_code=401, detail=str(exc)) from exc
    session.commit()
    csrf = start_session(request, response, user)
    return MeOut(user=_user_out(user), csrf_token=csrf)


@router.post("/logout", status_code=204)
def logout(response: Response, _user: CurrentUser) -> Response:
    """End the cookie session."""
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
def revoke_token(token_id: str, user: CurrentUser, session: DbSession) -> Response:
    """Revoke one of the caller's tokens by its id."""
    try:
        found = auth.revoke_token(session, user_id=user.id, token_hash_prefix=token_id)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    if not found:
        raise HTTPException(status_code=404, detail=str(NotFound(f"token {token_id!r} not found")))
    session.commit()
    return Response(status_code=204)
