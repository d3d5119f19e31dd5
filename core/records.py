"""Records that cross stage boundaries. The bus carries their JSON (``model_dump_json``).

These are contracts: add optional fields freely, never rename or retype one without a migration note.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel, Field


def utcnow() -> datetime:
    """Timezone-aware now in UTC."""
    return datetime.now(UTC)


class Source(StrEnum):
    """Where a post came from."""

    weibo = "weibo"
    wechat = "wechat"
    douyin = "douyin"
    news = "news"
    forum = "forum"
    hotline = "hotline"  # 12345 work orders
    mailbox = "mailbox"  # 市长信箱 / 网民留言


class SentimentLabel(StrEnum):
    """Three product classes."""

    negative = "负面"
    neutral = "中性"
    positive = "正面"


class WarningLevel(IntEnum):
    """Four warning levels; higher is more severe. 蓝/黄/橙/红 = 一般/较大/重大/特别重大 = Ⅳ/Ⅲ/Ⅱ/Ⅰ."""

    blue = 1
    yellow = 2
    orange = 3
    red = 4

    @property
    def colour_zh(self) -> str:
        """蓝/黄/橙/红."""
        return {1: "蓝", 2: "黄", 3: "橙", 4: "红"}[int(self)]

    @property
    def severity_zh(self) -> str:
        """一般/较大/重大/特别重大."""
        return {1: "一般", 2: "较大", 3: "重大", 4: "特别重大"}[int(self)]

    @classmethod
    def parse(cls, value: str | int) -> WarningLevel:
        """Accept 1-4, blue..red, 蓝..红 or 一般..特别重大."""
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return cls(int(value))
        text = str(value).strip().lower()
        for level in cls:
            if text in (level.name, level.colour_zh, level.severity_zh, level.colour_zh + "色"):
                return level
        raise ValueError(f"unknown warning level {value!r}: use 1-4, blue/yellow/orange/red or 蓝/黄/橙/红")


def post_id(source: str, external_id: str) -> str:
    """Stable id of a post: the same (source, external_id) always gives the same id."""
    return hashlib.blake2b(f"{source}\x1f{external_id}".encode(), digest_size=12).hexdigest()


class Engagement(BaseModel):
    """Interaction counts as the platform reported them."""

    reposts: int = Field(default=0, ge=0)
    comments: int = Field(default=0, ge=0)
    likes: int = Field(default=0, ge=0)
    dislikes: int = Field(default=0, ge=0)

    @property
    def total(self) -> int:
        """All interactions added up."""
        return self.reposts + self.comments + self.likes + self.dislikes


class Post(BaseModel):
    """One normalized incoming item (social post, article, hotline order or mailbox message)."""

    id: str
    source: Source
    external_id: str
    title: str = ""
    text: str
    url: str | None = None
    author_hash: str | None = None
    author_display: str | None = None  # masked, safe to show
    published_at: datetime
    received_at: datetime = Field(default_factory=utcnow)
    engagement: Engagement = Field(default_factory=Engagement)
    repost_of: str | None = None  # external id of the original post on the same source
    place_hints: list[str] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict)

    @property
    def full_text(self) -> str:
        """Title and body as one text for analysis."""
        if self.title and not self.text.startswith(self.title):
            return f"{self.title}\n{self.text}"
        return self.text


class Sentiment(BaseModel):
    """A sentiment verdict: label plus the calibrated probability that the text is negative."""

    label: SentimentLabel
    score: float = Field(ge=0.0, le=1.0, description="P(negative), calibrated")


class Topic(BaseModel):
    """Where the post sits in the taxonomy (level 1 always; 2 and 3 when known)."""

    l1: str
    l2: str | None = None
    l3: str | None = None
    score: float = Field(default=0.0, ge=0.0, le=1.0)


class Entities(BaseModel):
    """Named things found in the text. People are stored masked."""

    places: list[str] = Field(default_factory=list)
    orgs: list[str] = Field(default_factory=list)
    people: list[str] = Field(default_factory=list)
    districts: list[str] = Field(default_factory=list)  # gazetteer district ids (属地)


class AnalyzedPost(Post):
    """A post with everything analysis found. ``text_masked`` is what leaves the core."""

    text_norm: str = ""
    text_masked: str = ""
    title_masked: str = ""
    tokens: list[str] = Field(default_factory=list)
    sentiment: Sentiment
    topic: Topic
    entities: Entities = Field(default_factory=Entities)
    pii_found: list[str] = Field(default_factory=list)  # kinds, e.g. ["phone", "id_card"]
    signature: list[int] = Field(default_factory=list)  # MinHash signature for near-dup clustering
    event_id: str | None = None
    near_dup_of: str | None = None


class Event(BaseModel):
    """A cluster of posts about one matter."""

    id: str
    title: str
    first_seen: datetime
    last_seen: datetime
    size: int = 0
    unique_authors: int = 0
    engagement: int = 0
    negative_count: int = 0
    heat: float = 0.0
    heat_series: dict[str, int] = Field(default_factory=dict)  # hour bucket ISO -> posts
    topic: str | None = None
    places: list[str] = Field(default_factory=list)
    districts: list[str] = Field(default_factory=list)
    sources: dict[str, int] = Field(default_factory=dict)
    representative_ids: list[str] = Field(default_factory=list)
    burst: bool = False
    level: WarningLevel | None = None

    @property
    def negative_share(self) -> float:
        """Share of negative posts."""
        return self.negative_count / self.size if self.size else 0.0


class DeadLetter(BaseModel):
    """A record that could not be processed, kept with its reason and raw bytes for replay."""

    id: str | None = None
    stage: str  # ingest | analyze | alerts
    source: str
    reason: str
    raw: bytes
    received_at: datetime = Field(default_factory=utcnow)
    replayed_at: datetime | None = None
