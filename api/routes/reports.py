"""Accountability reports (问责统计) per unit: JSON, CSV or XLSX."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel

from alerts.tickets import accountability
from api.deps import QueryTime
from api.security import CurrentUser, DbSession
from core.records import utcnow

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])


class UnitReportOut(BaseModel):
    since: datetime
    until: datetime
    columns: dict[str, str]
    items: list[dict[str, object]]


def _aware(value: datetime | None, default: datetime) -> datetime:
    if value is None:
        return default
    if value.tzinfo is None:  # QueryTime already refuses these with 422; kept for direct callers
        raise HTTPException(status_code=400, detail="from/to 需带时区 / from and to need a timezone, e.g. +08:00")
    return value


@router.get("/units", response_model=None)
def units_report(
    user: CurrentUser,
    session: DbSession,
    from_: Annotated[QueryTime | None, Query(alias="from")] = None,
    to: QueryTime | None = None,
    fmt: Annotated[Literal["json", "csv", "xlsx"], Query(alias="format")] = "json",
) -> UnitReportOut | Response:
    """Per-unit figures for tickets created in [from, to) (default: the last 30 days); unit users see their own."""
    now = utcnow()
    until = _aware(to, now)
    since = _aware(from_, until - timedelta(days=30))
    if since >= until:
        until = since  # an empty window: every unit with zero tickets (the schema cannot say "from before to")
    if user.role == "handler":
        units: list[str] | None = [user.unit_id] if user.unit_id else []
    elif user.role in ("admin", "analyst", "leader"):
        units = None
    else:
        raise HTTPException(status_code=403, detail="无权查看 / not allowed")
    rows = accountability.unit_stats(session, since=since, until=until, now=now, units=units)
    stamp = f"{since:%Y%m%d}-{until:%Y%m%d}"
    if fmt == "csv":
        # A BOM so Excel opens the UTF-8 Chinese headers correctly.
        return Response("\ufeff" + accountability.to_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="units-{stamp}.csv"'})
    if fmt == "xlsx":
        try:
            data = accountability.to_xlsx(rows)
        except RuntimeError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        return Response(data, media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        headers={"Content-Disposition": f'attachment; filename="units-{stamp}.xlsx"'})
    return UnitReportOut(since=since, until=until, columns=dict(accountability.COLUMNS), items=rows)
