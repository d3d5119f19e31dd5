"""Posts built the way the event stage receives them, for the clusterer tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.records import AnalyzedPost, Entities, Sentiment, SentimentLabel, Source, Topic, post_id

DEV = Path(__file__).resolve().parents[4] / "shared" / "data" / "events" / "weibo-2012-10-11"
T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def make_post(ext: str, text: str, *, minutes: float = 0.0, repost_of: str | None = None,
              places: list[str] | None = None, districts: list[str] | None = None,
              source: Source = Source.weibo, title: str = "") -> AnalyzedPost:
    """An analyzed post with the given text, time offset, repost link and places."""
    return AnalyzedPost(
        id=post_id(source.value, ext), source=source, external_id=ext, title=title, text=text,
        published_at=T0 + timedelta(minutes=minutes), repost_of=repost_of, text_norm=text,
        sentiment=Sentiment(label=SentimentLabel.neutral, score=0.5), topic=Topic(l1="x"),
        entities=Entities(places=places or [], districts=districts or []),
    )
