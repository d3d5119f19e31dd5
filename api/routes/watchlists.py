"""Keyword watch-lists (关键词方案): analysts edit them and preview what they would have matched."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, StrictBool
from sqlalchemy import select

from alerts.expr import ExpressionError, parse
from api.deps import DbSession, PostStoreDep, Reader, is_privileged, unprocessable
from api.schemas import PostOut
from api.security import require_roles
from core.db.models import WatchlistRow
from core.records import AnalyzedPost, utcnow

router = APIRouter(prefix="/api/v1/watchlists", tags=["watch-lists"])
PREVIEW_SCAN = 20_000  # newest posts scanned by a preview; enough for a week in most offices


class WatchlistIn(BaseModel):
    """A watch-list to create or replace (by name)."""

    name: str = Field(min_length=1, max_length=64)
    expression: str = Field(min_length=1, max_length=2000)
    level: int = Field(default=2, ge=1, le=4)
    enabled: StrictBool = True  # true/false only: 0 or "yes" is a 422, as the schema says


class WatchlistOut(WatchlistIn):
    """A stored watch-list."""

    id: int
    updated_by: str
    updated_at: datetime


class WatchlistsOut(BaseModel):
    """All watch-lists."""

    items: list[WatchlistOut]


class PreviewIn(BaseModel):
    """An expression to try."""

    expression: str = Field(min_length=1, max_length=2000)
    days: int = Field(default=7, ge=1, le=30)


class PreviewOut(BaseModel):
    """What the expression would have matched."""

    total: int
    scanned: int
    items: list[PostOut]


def _out(row: WatchlistRow) -> WatchlistOut:
    return WatchlistOut(id=row.id, name=row.name, expression=row.expression, level=row.level, enabled=row.enabled,
                        updated_by=row.updated_by, updated_at=row.updated_at)


@router.get("", response_model=WatchlistsOut, dependencies=[Depends(require_roles("admin", "analyst", "leader"))])
def list_watchlists(session: DbSession) -> WatchlistsOut:
    """Every watch-list."""
    rows = session.scalars(select(WatchlistRow).order_by(WatchlistRow.name)).all()
    return WatchlistsOut(items=[_out(r) for r in rows])


@router.post("", response_model=WatchlistOut)
def save_watchlist(body: WatchlistIn, session: DbSession,
                   user: Any = Depends(require_roles("admin", "analyst"))) -> WatchlistOut:
    """Create or replace a watch-list; the expression must parse."""
    try:
        parse(body.expression)
    except ExpressionError as exc:
        raise unprocessable(["body", "expression"], f"表达式有误 / bad expression: {exc}") from exc
    row = session.scalars(select(WatchlistRow).where(WatchlistRow.name == body.name)).first()
    if row is None:
        row = WatchlistRow(name=body.name, expression=body.expression)
        session.add(row)
    row.expression, row.level, row.enabled = body.expression, body.level, body.enabled
    row.updated_by, row.updated_at = user.username, utcnow()
    session.commit()
    return _out(row)


@router.post("/preview", response_model=PreviewOut, dependencies=[Depends(require_roles("admin", "analyst"))])
def preview(body: PreviewIn, store: PostStoreDep, user: Reader) -> PreviewOut:
    """Posts of the last ``days`` days (newest first, up to 20,000 scanned) the expression matches."""
    try:
        expression = parse(body.expression)
    except ExpressionError as exc:
        raise unprocessable(["body", "expression"], f"表达式有误 / bad expression: {exc}") from exc
    since = utcnow() - timedelta(days=body.days)
    matched: list[AnalyzedPost] = []
    scanned = 0
    for post in store.iter_recent(since, batch=500):
        scanned += 1
        if expression.matches(f"{post.title}\n{post.text}"):
            matched.append(post)
        if scanned >= PREVIEW_SCAN:
            break
    privileged = is_privileged(user)
    return PreviewOut(total=len(matched), scanned=scanned,
                      items=[PostOut.from_post(p, privileged=privileged) for p in matched[:20]])
