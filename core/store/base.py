"""The post store contract: idempotent batch upsert of analyzed posts, search and aggregations.

Lifecycle: build once (``core.wiring``), ``ensure_schema`` at start-up, use from any thread,
``close`` at shutdown. ``upsert`` is idempotent by post id: writing the same post twice leaves
one copy and reports it as not new, which is what makes redelivery harmless.

Failure: ``BackendUnavailable`` when the server does not answer within its timeout (callers retry
with backoff and keep the batch); ``ValueError`` for a query that cannot be served.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from core.records import AnalyzedPost, Entities


def index_tokens(post: AnalyzedPost, tokenize: Callable[[str], list[str]]) -> list[str]:
    """The terms a store indexes for a post: ``tokenize(f"{title}\n{text}")``. With the default segmenter they
    come from the analyze stage's words where those are the words of that text (the same terms, without a
    second jieba pass: ``analyze.segment.search_tokens_of_post``)."""
    from analyze.segment import search_tokens_of_post, tokenize_for_search

    if tokenize is tokenize_for_search:
        return search_tokens_of_post(post.title, post.text, post.full_text, post.tokens)
    return tokenize(f"{post.title}\n{post.text}")


class PostQuery(BaseModel):
    """Filters for search and aggregation. All optional; ``q`` is full-text."""

    q: str | None = None
    source: str | None = None
    sentiment: str | None = None
    topic: str | None = None
    event_id: str | None = None
    district: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=20, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    # Callers who see masked text only: ``q`` must also match the masked title/text, so a search for an ID,
    # bank or phone number (or a masked name) is no oracle for whether some post contains it.
    masked_only: bool = False


class PostPage(BaseModel):
    """A page of search results, newest first."""

    total: int
    items: list[AnalyzedPost]


class Bucket(BaseModel):
    """Counts in one time bucket, split by a dimension."""

    start: datetime
    counts: dict[str, int]


class Overview(BaseModel):
    """What the dashboard's overview needs."""

    total: int
    by_sentiment: dict[str, int]
    by_topic: dict[str, int]
    by_source: dict[str, int]
    by_district: dict[str, int] = Field(default_factory=dict)
    series: list[Bucket] = Field(default_factory=list)  # per bucket, counts by sentiment
    interval: Literal["hour", "day"] = "hour"


class SignatureRow(BaseModel):
    """What the event clusterer needs to rebuild its index after a restart (text, anchors, signature)."""

    post_id: str
    event_id: str
    published_at: datetime
    signature: list[int]
    source: str = ""
    external_id: str = ""
    repost_of: str | None = None
    title: str = ""
    text_norm: str = ""  # the clusterer recomputes the post's TF-IDF vector from it
    tokens: list[str] = Field(default_factory=list)
    entities: Entities = Field(default_factory=Entities)
    topic: str = ""  # level-1 topic (the district/topic keys of the hot-window rule)
    sentiment: str = ""  # 负面/中性/正面 (a breaking matter's mood)


class PostStore(ABC):
    """Where analyzed posts live."""

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create tables/indices/templates if missing; safe to call at every start."""

    @abstractmethod
    def upsert(self, posts: Sequence[AnalyzedPost]) -> set[str]:
        """Store posts by id; return the ids that were not stored before."""

    @abstractmethod
    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these post ids are stored already."""

    @abstractmethod
    def get(self, post_id: str) -> AnalyzedPost | None:
        """One post by id."""

    @abstractmethod
    def get_many(self, post_ids: Sequence[str]) -> dict[str, AnalyzedPost]:
        """The stored posts among ``post_ids``, by id, in one round trip (missing ids are left out)."""

    @abstractmethod
    def search(self, query: PostQuery) -> PostPage:
        """Full-text and filtered search, newest first, paginated."""

    @abstractmethod
    def overview(self, query: PostQuery, *, interval: Literal["hour", "day"] = "hour") -> Overview:
        """Counts by sentiment/topic/source/district and a time series, under the query's filters."""

    def iter_recent(self, since: datetime, *, batch: int = 1000) -> Iterator[AnalyzedPost]:
        """Posts published since ``since``, newest first, in pages of ``batch``; stop iterating to stop reading.

        This default pages ``search`` by offset (a post arriving meanwhile may shift a page by one);
        stores that can should override it with keyset pagination.
        """
        batch = max(1, min(batch, 1000))  # PostQuery.limit's bounds
        offset = 0
        while True:
            page = self.search(PostQuery(since=since, limit=batch, offset=offset))
            yield from page.items
            offset += len(page.items)
            if len(page.items) < batch or offset >= page.total:
                return

    @abstractmethod
    def recent_signatures(self, since: datetime) -> Iterator[SignatureRow]:
        """Posts published since ``since`` with their event id and MinHash signature."""

    @abstractmethod
    def count(self) -> int:
        """How many posts are stored."""

    @abstractmethod
    def delete_older_than(self, cutoff: datetime) -> int:
        """Drop posts published before ``cutoff`` (retention); return how many went."""

    def refresh(self) -> None:  # noqa: B027 - optional hook
        """Make recent writes visible to search (no-op where writes are visible at once)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
