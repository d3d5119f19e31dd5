"""The dashboard: one static page and its assets, served locally (government intranets have no CDN).

Also the two read-only lists only the dashboard's admin page needs: users (never their hashes) and the
alert rules in force (never a value whose key looks like a secret).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel
from sqlalchemy import select

from api.deps import DbSession
from api.security import require_roles
from core.db.models import UnitRow, UserRow
from core.records import utcnow

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_SECRET_KEY = re.compile(r"key|secret|token|password|webhook|url", re.I)

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The single-page dashboard."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-cache"})


class UserListItem(BaseModel):
    """A user as the admin page lists it."""

    username: str
    display_name: str
    role: str
    unit_id: str | None
    unit_name: str | None
    active: bool
    locked: bool
    created_at: datetime


class UsersOut(BaseModel):
    """Users."""

    items: list[UserListItem]


class RuleOut(BaseModel):
    """One alert rule in force."""

    name: str
    type: str
    config: dict[str, Any]


class RulesOut(BaseModel):
    """Rules in file order (the earlier wins a tie)."""

    items: list[RuleOut]


@router.get("/api/v1/dashboard/users", response_model=UsersOut,
            dependencies=[Depends(require_roles("admin", "analyst"))])
def users(session: DbSession) -> UsersOut:
    """Every user with role, unit and whether the account is usable (no hashes, no phone numbers)."""
    names = {u.id: u.name for u in session.scalars(select(UnitRow))}
    now = utcnow()
    items = []
    for u in session.scalars(select(UserRow).order_by(UserRow.role, UserRow.username)):
        locked_until = u.locked_until
        if locked_until is not None and locked_until.tzinfo is None:
            locked_until = locked_until.replace(tzinfo=now.tzinfo)
        items.append(UserListItem(
            username=u.username, display_name=u.display_name or u.username, role=u.role, unit_id=u.unit_id,
            unit_name=names.get(u.unit_id or ""), active=bool(u.active),
            locked=locked_until is not None and locked_until > now, created_at=u.created_at,
        ))
    return UsersOut(items=items)


def _public(value: Any) -> Any:
    """Config without secret-looking keys (nested dicts too)."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


@router.get("/api/v1/dashboard/rules", response_model=RulesOut,
            dependencies=[Depends(require_roles("admin", "analyst", "leader"))])
def rules(request: Request) -> RulesOut:
    """The rules of the rules file as the engine loaded them."""
    engine = request.app.state.container.rule_engine
    return RulesOut(items=[RuleOut(name=r.name, type=type(r).__name__, config=_public(dict(r.config or {})))
                           for r in engine.rules])
