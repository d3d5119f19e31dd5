"""Administration views: units and the health of notification targets (broken robots)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select

from api.deps import DbSession
from api.security import require_roles
from core.db.models import TargetStatusRow, UnitRow

router = APIRouter(prefix="/api/v1/admin", tags=["admin"],
                   dependencies=[Depends(require_roles("admin", "analyst", "leader"))])


class UnitOut(BaseModel):
    """A responsible unit."""

    id: str
    name: str
    supervisor: str | None


class TargetOut(BaseModel):
    """A notification target's health (never its key)."""

    channel: str
    target: str
    broken: bool
    reason: str
    since: datetime


class UnitsOut(BaseModel):
    """Units."""

    items: list[UnitOut]


class TargetsOut(BaseModel):
    """Targets."""

    items: list[TargetOut]


@router.get("/units", response_model=UnitsOut)
def units(session: DbSession) -> UnitsOut:
    """Every unit."""
    rows = session.scalars(select(UnitRow).order_by(UnitRow.id)).all()
    return UnitsOut(items=[UnitOut(id=r.id, name=r.name, supervisor=r.supervisor) for r in rows])


@router.get("/targets", response_model=TargetsOut)
def targets(session: DbSession) -> TargetsOut:
    """Notification targets, broken ones first."""
    rows = session.scalars(select(TargetStatusRow).order_by(TargetStatusRow.broken.desc())).all()
    return TargetsOut(items=[TargetOut(channel=r.channel, target=r.target, broken=r.broken, reason=r.reason,
                                             since=r.since) for r in rows])
