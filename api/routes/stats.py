"""Dashboard aggregations."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api.deps import OverviewCacheDep, PostStoreDep, QueryTime, reader
from core.records import SentimentLabel, utcnow
from core.store.base import Overview, PostQuery, PostStore
from core.store.keywords import top_keywords

router = APIRouter(prefix="/api/v1/stats", tags=["stats"], dependencies=[Depends(reader)])


@router.get("/overview", response_model=Overview)
def overview(
    store: PostStoreDep,
    cache: OverviewCacheDep,
    from_: Annotated[QueryTime | None, Query(alias="from")] = None,
    to: QueryTime | None = None,
    source: str | None = None,
    topic: str | None = None,
    event_id: str | None = None,
    district: str | None = None,
    interval: Literal["hour", "day"] | None = None,
) -> Overview:
    """Counts by sentiment, topic, source and district, and a time series by sentiment.

    Without ``from`` and ``to`` this is the live last 24 hours, shared by all clients for
    ``api.overview_cache_s`` seconds (default 10).
    """
    if from_ is None and to is None:
        return cache.get_or_compute(("live", source, topic, event_id, district, interval), lambda: _overview_of(
            store, since=None, until=None, source=source, topic=topic, event_id=event_id, district=district,
            interval=interval))
    return _overview_of(store, since=from_, until=to, source=source, topic=topic, event_id=event_id,
                       district=district, interval=interval)


def _overview_of(store: PostStore, *, since: datetime | None, until: datetime | None, source: str | None,
                topic: str | None, event_id: str | None, district: str | None,
                interval: Literal["hour", "day"] | None) -> Overview:
    """The overview of one window (default: the 24 hours up to now), hourly up to 3 days, else daily."""
    until = until or utcnow()
    since = since or (until - timedelta(days=1))
    if since > until:
        until = since  # an empty window (the schema cannot say "from before to")
    step = interval or ("hour" if until - since <= timedelta(days=3) else "day")
    query = PostQuery(since=since, until=until, source=source, topic=topic, event_id=event_id, district=district)
    return store.overview(query, interval=step)


class KeywordOut(BaseModel):
    """One keyword and in how many posts it appears."""

    word: str
    count: int


class KeywordsOut(BaseModel):
    """Top keywords."""

    items: list[KeywordOut]


@router.get("/keywords", response_model=KeywordsOut)
def keywords(
    store: PostStoreDep,
    from_: Annotated[QueryTime | None, Query(alias="from")] = None,
    to: QueryTime | None = None,
    sentiment: SentimentLabel | None = None,
    top: Annotated[int, Query(ge=1, le=100)] = 20,
) -> KeywordsOut:
    """Most frequent words in recent posts (e.g. ``sentiment=负面`` for the negative ones)."""
    until = to or utcnow()
    since = from_ or (until - timedelta(days=1))
    query = PostQuery(since=since, until=until, sentiment=sentiment.value if sentiment else None)
    return KeywordsOut(items=[KeywordOut(word=w, count=c) for w, c in top_keywords(store, query, top=top)])
