"""Dashboard aggregations."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query

from api.deps import PostStoreDep
from core.records import utcnow
from core.store.base import Overview, PostQuery

router = APIRouter(prefix="/api/v1/stats", tags=["stats"])


@router.get("/overview", response_model=Overview)
def overview(
    store: PostStoreDep,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    source: str | None = None,
    topic: str | None = None,
    interval: Literal["hour", "day"] | None = None,
) -> Overview:
    """Counts by sentiment, topic, source and district, and a time series by sentiment."""
    until = to or utcnow()
    since = from_ or (until - timedelta(days=1))
    if since > until:
        raise HTTPException(422, "'from' is after 'to'")
    step = interval or ("hour" if until - since <= timedelta(days=3) else "day")
    return store.overview(PostQuery(since=since, until=until, source=source, topic=topic), interval=step)
