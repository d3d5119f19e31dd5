"""Event aggregates in the relational store: apply assigned posts idempotently, read events back.

``event_members.post_id`` is the idempotency guard: a post is counted into its event only when its member
row is inserted by this call (``INSERT … ON CONFLICT DO NOTHING … RETURNING``), so redelivery, replays
and two workers racing on one post change nothing. The event row is locked (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite serialises writers anyway) while its aggregates are updated, and events are visited
in id order so two workers never lock in opposite orders.

Counters that need more than a number (topic votes, place counts, representative posts with their
engagement, which post the title came from) are kept in a private ``_agg`` entry of the ``sources`` JSON
column (``to_record`` hides it) because the schema has no free JSON column on events.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from analyze.heat import heat
from core.db.models import EventMemberRow, EventRow
from core.records import AnalyzedPost, Event, SentimentLabel, WarningLevel, utcnow

log = logging.getLogger(__name__)

AGG_KEY = "_agg"
REPRESENTATIVES = 5
MAX_PLACES = 10
MAX_SERIES_HOURS = 24 * 30  # hourly heat series kept for 30 days back from the last post
VELOCITY_HOURS = 3  # velocity = posts in the last 3 hour buckets / 3
TITLE_CHARS = 60
ORDERS = {
    "heat": EventRow.heat,
    "last_seen": EventRow.last_seen,
    "first_seen": EventRow.first_seen,
    "size": EventRow.size,
}


def _insert(session: Session, table: Any) -> Any:
    """A dialect insert that supports ON CONFLICT DO NOTHING (PostgreSQL and SQLite)."""
    return (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(table)


def _utc_hour(at: datetime) -> str:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0).isoformat()


def _title_of(post: AnalyzedPost) -> str:
    """A title from masked text only (the unmasked text never leaves the core)."""
    text = (post.title_masked or post.text_masked or "").strip()
    text = " ".join(text.split())
    if len(text) > TITLE_CHARS:
        text = text[: TITLE_CHARS - 1] + "…"
    return text or "（无标题）"


_SUBJECT = re.compile(r"[0-9A-Za-z\u3400-\u9fff]+")
SUBJECT_CHARS = 16
MAX_MATTERS = 200  # subject keys counted per event (the commonest are kept)


def _subject_key(post: AnalyzedPost) -> str:
    """What a post is about, as a key: the opening characters of its masked text (copies and light edits
    share it; titles are too varied to), or its title without text; a repost votes for its original."""
    if post.repost_of:
        return f"{post.source.value}:{post.repost_of}"
    text = "".join(_SUBJECT.findall(post.text_masked or post.title_masked or ""))
    return text[:SUBJECT_CHARS]


def _vote(matters: dict[str, list[Any]], post: AnalyzedPost) -> None:
    """Count the post for its matter; a non-repost also offers its title for its own matter and for its
    reposts' (matters: key -> [votes, title time, title post id, title])."""
    key = _subject_key(post)
    entry = matters.setdefault(key, [0, "", "", ""])
    entry[0] += 1
    if post.repost_of:
        return
    offer = [post.published_at.isoformat(), post.id, _title_of(post)]
    for k in (key, f"{post.source.value}:{post.external_id}"):
        e = matters.get(k) if k != key else entry
        if e is None:
            e = matters[k] = [0, "", "", ""]
        if not e[1] or _earlier(offer[:2], e[1:3]):
            e[1:4] = offer


def _representative(matters: dict[str, list[Any]]) -> list[Any] | None:
    """The titled matter with the most votes (ties: the earliest title, then post id)."""
    titled = [e for e in matters.values() if e[1]]
    if not titled:
        return None
    best = titled[0]
    for e in titled[1:]:
        if e[0] > best[0] or (e[0] == best[0] and _earlier(e[1:3], best[1:3])):
            best = e
    return best


def _top(counts: dict[str, int], n: int) -> list[str]:
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def _chunks(items: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def apply_posts(session: Session, *, posts: Sequence[AnalyzedPost]) -> list[Event]:
    """Count posts (with ``event_id`` set) into their events once each; return the events that changed."""
    unique: dict[str, AnalyzedPost] = {}
    for post in posts:
        if post.event_id:
            unique.setdefault(post.id, post)
    if not unique:
        return []
    known: set[str] = set()
    for chunk in _chunks(list(unique)):
        known.update(session.scalars(select(EventMemberRow.post_id).where(EventMemberRow.post_id.in_(chunk))))
    by_event: dict[str, list[AnalyzedPost]] = {}
    for post in unique.values():
        if post.id not in known:
            by_event.setdefault(str(post.event_id), []).append(post)
    changed: list[Event] = []
    for event_id in sorted(by_event):
        event = _apply_to_event(session, event_id, by_event[event_id])
        if event is not None:
            changed.append(event)
    return changed


def _apply_to_event(session: Session, event_id: str, posts: list[AnalyzedPost]) -> Event | None:
    posts = sorted(posts, key=lambda p: (p.published_at, p.id))
    first = posts[0]
    session.execute(
        _insert(session, EventRow)
        .values(id=event_id, title=_title_of(first), first_seen=first.published_at,
                last_seen=first.published_at, size=0, unique_authors=0, engagement=0, negative_count=0,
                heat=0.0, heat_series={}, topic=None, places=[], districts=[], sources={},
                representative_ids=[], burst=False, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["id"])
    )
    row = session.execute(
        select(EventRow).where(EventRow.id == event_id).with_for_update().execution_options(populate_existing=True)
    ).scalar_one()
    inserted: set[str] = set()
    for chunk in _chunks([p.id for p in posts]):
        chunk_posts = [p for p in posts if p.id in set(chunk)]
        result = session.execute(
            _insert(session, EventMemberRow)
            .values([
                {"post_id": p.id, "event_id": event_id, "published_at": p.published_at,
                 "author_hash": p.author_hash, "negative": p.sentiment.label == SentimentLabel.negative}
                for p in chunk_posts
            ])
            .on_conflict_do_nothing(index_elements=["post_id"])
            .returning(EventMemberRow.post_id)
        )
        inserted.update(result.scalars())
    fresh = [p for p in posts if p.id in inserted]
    if not fresh:
        return None  # another worker counted them first
    authors = sorted({p.author_hash for p in fresh if p.author_hash})
    seen_authors: set[str] = set()
    for chunk in _chunks(authors):
        query: Select[Any] = select(EventMemberRow.author_hash).distinct().where(
            EventMemberRow.event_id == event_id,
            EventMemberRow.author_hash.in_(chunk),
            EventMemberRow.post_id.not_in(sorted(inserted)),
        )
        seen_authors.update(a for a in session.scalars(query) if a)
    _update_row(row, fresh, new_authors=len(set(authors) - seen_authors))
    session.flush()
    return to_record(row)


def _update_row(row: EventRow, fresh: list[AnalyzedPost], *, new_authors: int) -> None:
    """Fold freshly inserted members into the row's aggregates (every JSON value is replaced, not mutated)."""
    sources = {k: v for k, v in (row.sources or {}).items() if k != AGG_KEY}
    agg: dict[str, Any] = dict((row.sources or {}).get(AGG_KEY) or {})
    topics: dict[str, int] = dict(agg.get("topics") or {})
    places: dict[str, int] = dict(agg.get("places") or {})
    districts: dict[str, int] = dict(agg.get("districts") or {})
    reps: list[list[Any]] = [list(r) for r in agg.get("reps") or []]
    title_from: list[str] | None = agg.get("title_from")
    matters: dict[str, list[Any]] = {k: list(v) for k, v in (agg.get("matters") or {}).items()}
    series: dict[str, int] = dict(row.heat_series or {})
    size = row.size or 0
    if size == 0:
        title_from = None  # the row was created just now with a provisional title
    for post in fresh:
        size += 1
        row.engagement = (row.engagement or 0) + post.engagement.total
        if post.sentiment.label == SentimentLabel.negative:
            row.negative_count = (row.negative_count or 0) + 1
        sources[post.source.value] = sources.get(post.source.value, 0) + 1
        topics[post.topic.l1] = topics.get(post.topic.l1, 0) + 1
        for place in dict.fromkeys(post.entities.places):
            places[place] = places.get(place, 0) + 1
        for district in dict.fromkeys(post.entities.districts):
            districts[district] = districts.get(district, 0) + 1
        hour = _utc_hour(post.published_at)
        series[hour] = series.get(hour, 0) + 1
        reps.append([post.id, post.engagement.total, post.published_at.isoformat()])
        _vote(matters, post)
        # Without a titled matter (only reposts so far) the earliest post's title stands in.
        key = [post.published_at.isoformat(), post.id]
        if title_from is None or _earlier(key, title_from):
            title_from = key
            row.title = _title_of(post)
        if post.published_at < row.first_seen:
            row.first_seen = post.published_at
        if post.published_at > row.last_seen:
            row.last_seen = post.published_at
    row.size = size
    # The title is a representative post of the event's majority matter: an event that drifted (or a
    # story whose first post was an off-topic aside) is named by what most of its posts are about.
    if len(matters) > MAX_MATTERS:
        matters = dict(sorted(matters.items(), key=lambda kv: (-kv[1][0], kv[0]))[:MAX_MATTERS])
    best = _representative(matters)
    if best is not None:
        row.title = best[3]
    row.unique_authors = (row.unique_authors or 0) + new_authors + sum(1 for p in fresh if not p.author_hash)
    reps.sort(key=lambda r: (-int(r[1]), r[2], r[0]))
    reps = reps[:REPRESENTATIVES]
    cutoff = _utc_hour(row.last_seen - timedelta(hours=MAX_SERIES_HOURS))
    series = {k: v for k, v in sorted(series.items()) if k >= cutoff}
    recent = _utc_hour(row.last_seen - timedelta(hours=VELOCITY_HOURS - 1))
    velocity = sum(v for k, v in series.items() if k >= recent) / VELOCITY_HOURS
    row.heat_series = series
    row.topic = _top(topics, 1)[0] if topics else None
    row.places = _top(places, MAX_PLACES)
    row.districts = _top(districts, MAX_PLACES)
    row.representative_ids = [r[0] for r in reps]
    row.heat = heat(
        size=size, unique_authors=row.unique_authors, engagement=row.engagement,
        velocity_per_hour=velocity, negative_share=row.negative_count / size,
    )
    sources[AGG_KEY] = {"topics": topics, "places": places, "districts": districts, "reps": reps,
                        "title_from": title_from, "matters": matters}
    row.sources = sources
    row.updated_at = utcnow()


def _earlier(a: list[str], b: list[str]) -> bool:
    ta, tb = datetime.fromisoformat(a[0]), datetime.fromisoformat(b[0])
    return (ta, a[1]) < (tb, b[1])


def to_record(row: EventRow) -> Event:
    """The Event record of a row (private aggregate state left out)."""
    return Event(
        id=row.id,
        title=row.title or "",
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        size=row.size or 0,
        unique_authors=row.unique_authors or 0,
        engagement=row.engagement or 0,
        negative_count=row.negative_count or 0,
        heat=row.heat or 0.0,
        heat_series=dict(row.heat_series or {}),
        topic=row.topic,
        places=list(row.places or []),
        districts=list(row.districts or []),
        sources={k: int(v) for k, v in (row.sources or {}).items() if k != AGG_KEY},
        representative_ids=[str(r) for r in row.representative_ids or []],
        burst=bool(row.burst),
        level=WarningLevel(row.level) if row.level else None,
    )


def get_event(session: Session, *, event_id: str) -> Event | None:
    """One event by id, or None."""
    row = session.get(EventRow, event_id)
    return to_record(row) if row is not None else None


def list_events(
    session: Session, *, limit: int = 20, offset: int = 0, since: datetime | None = None, order: str = "heat"
) -> list[Event]:
    """Events (last seen at or after ``since``), hottest / newest / biggest first, paginated."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}: use one of {', '.join(ORDERS)}")
    if limit < 1 or offset < 0:
        raise ValueError("limit must be ≥ 1 and offset ≥ 0")
    query = select(EventRow)
    if since is not None:
        query = query.where(EventRow.last_seen >= since)
    query = query.order_by(ORDERS[order].desc(), EventRow.id).limit(limit).offset(offset)
    return [to_record(row) for row in session.scalars(query)]
