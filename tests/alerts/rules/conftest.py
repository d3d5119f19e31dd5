"""Builders for crafted posts and events used by the rule tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.records import AnalyzedPost, Entities, Event, Sentiment, SentimentLabel, Source, Topic

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)


def build_post(
    text: str,
    *,
    n: int = 0,
    author: str | None = None,
    at: datetime | None = None,
    negative: bool = True,
    topic: str = "城乡建设",
    districts: list[str] | None = None,
    title: str = "",
    event_id: str = "ev-1",
) -> AnalyzedPost:
    """An analyzed post as the analyze stage would hand it on."""
    label = SentimentLabel.negative if negative else SentimentLabel.neutral
    return AnalyzedPost(
        id=f"p{n}",
        source=Source.weibo,
        external_id=str(n),
        title=title,
        text=text,
        author_hash=author if author is not None else f"author-{n}",
        published_at=at or T0 + timedelta(minutes=n),
        sentiment=Sentiment(label=label, score=0.9 if negative else 0.5),
        topic=Topic(l1=topic),
        entities=Entities(districts=list(districts or [])),
        event_id=event_id,
    )


def build_event(
    *,
    id: str = "ev-1",
    size: int = 10,
    negative: int = 8,
    heat: float = 0.0,
    authors: int = 10,
    last_seen: datetime | None = None,
    **extra: Any,
) -> Event:
    """An event with the counts a rule looks at."""
    return Event(
        id=id,
        title=extra.pop("title", "A3区某小区燃气爆炸"),
        first_seen=T0,
        last_seen=last_seen or T0,
        size=size,
        unique_authors=authors,
        negative_count=negative,
        heat=heat,
        **extra,
    )


@pytest.fixture
def make_post() -> Callable[..., AnalyzedPost]:
    """Factory for posts (see build_post)."""
    return build_post


@pytest.fixture
def make_event() -> Callable[..., Event]:
    """Factory for events (see build_event)."""
    return build_event
