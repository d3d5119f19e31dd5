"""Response shapes of the public API. Personal data is masked unless the caller is privileged."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from core.records import AnalyzedPost, Engagement, Entities, Event, Sentiment, Topic


class PostOut(BaseModel):
    """A post as the API shows it."""

    id: str
    source: str
    external_id: str
    title: str
    text: str
    url: str | None
    author: str | None
    published_at: datetime
    engagement: Engagement
    sentiment: Sentiment
    topic: Topic
    entities: Entities
    pii_found: list[str]
    event_id: str | None
    masked: bool

    @classmethod
    def from_post(cls, post: AnalyzedPost, *, privileged: bool) -> PostOut:
        """Masked text and link for everyone but privileged roles; authors only ever as a pseudonym."""
        from analyze.privacy import mask_url, pseudonym

        return cls(
            id=post.id,
            source=post.source.value,
            external_id=post.external_id,
            title=post.title if privileged else (post.title_masked or ""),
            text=post.text if privileged else (post.text_masked or ""),
            url=post.url if privileged else mask_url(post.url),
            # From the hash, not the stored display: rows stored before pseudonyms kept part of the name.
            author=pseudonym(post.author_hash) if post.author_hash else None,
            published_at=post.published_at,
            engagement=post.engagement,
            sentiment=post.sentiment,
            topic=post.topic,
            entities=post.entities,
            pii_found=post.pii_found,
            event_id=post.event_id,
            masked=not privileged,
        )


class PostPageOut(BaseModel):
    """A page of posts."""

    total: int
    limit: int
    offset: int
    items: list[PostOut]


class EventOut(Event):
    """An event with its representative posts."""

    negative_share_pct: float = 0.0
    representatives: list[PostOut] = Field(default_factory=list)
    ticket_id: str | None = None


class EventPageOut(BaseModel):
    """A page of events, hottest first."""

    total: int
    items: list[EventOut]


class IngestItemError(BaseModel):
    """Why one record of a batch was dead-lettered."""

    index: int
    reason: str


class IngestDuplicate(BaseModel):
    """A record of the batch that is the same post (source and external id) as an earlier one: not taken."""

    index: int
    duplicate_of: int


class IngestResult(BaseModel):
    """What an ingest batch did: posts taken, records dead-lettered (and why), in-batch duplicates."""

    accepted: int
    dead_lettered: int
    errors: list[IngestItemError]
    duplicates: list[IngestDuplicate] = Field(default_factory=list)


class DeadLetterOut(BaseModel):
    """A dead letter, raw bytes shown as text with undecodable bytes escaped."""

    id: int
    stage: str
    source: str
    origin: str
    reason: str
    raw_preview: str
    raw_size: int
    received_at: datetime
    replayed_at: datetime | None
    replay_result: str | None


class DeadLetterPageOut(BaseModel):
    """A page of dead letters."""

    total: int
    items: list[DeadLetterOut]
