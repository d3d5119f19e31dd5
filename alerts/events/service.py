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

from sqlalchemy import bindparam, select, update
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
    """Count posts (with ``event_id`` set) into their events once each; return the events that changed.

    Each event's new posts are folded in together, earliest first (``(published_at, id)``)."""
    unique: dict[str, AnalyzedPost] = {}
    for post in posts:
        if post.event_id:
            unique.setdefault(post.id, post)
    if not unique:
        return []
    for chunk in _chunks(list(unique)):
        for post_id in session.scalars(select(EventMemberRow.post_id).where(EventMemberRow.post_id.in_(chunk))):
            del unique[post_id]
    by_event: dict[str, list[AnalyzedPost]] = {}
    for post in sorted(unique.values(), key=lambda p: (p.published_at, p.id)):
        by_event.setdefault(str(post.event_id), []).append(post)
    batch = EventBatch(session, [p for event_id in sorted(by_event) for p in by_event[event_id]])
    changed = [event for event_id in sorted(by_event) if (event := batch.apply(by_event[event_id])) is not None]
    batch.finish()
    return changed


class EventBatch:
    """The event writes of one batch of posts, in a handful of statements instead of a round per post.

    ``EventBatch(session, posts)`` prepares every post that may be counted (``event_id`` set): it creates the
    missing event rows (one ``INSERT … ON CONFLICT DO NOTHING`` executemany), locks the batch's event rows in
    id order (one ``SELECT … FOR UPDATE … ORDER BY id``), reads which of the new posts' authors each event
    already counts, and inserts the member rows (``INSERT … ON CONFLICT DO NOTHING … RETURNING``: only the
    posts this call inserted are ever counted, so redelivery and racing workers change nothing). ``apply``
    then folds posts into their event's aggregates in memory and returns the event as it stands after them,
    in whatever order the caller needs (the event stage: one post at a time, each judged against its event
    as it stood when the post arrived); ``finish`` flushes the changed rows (one UPDATE executemany).

    The result equals one ``apply_posts`` call per ``apply`` call, run one after the other in the same
    transaction: the state between two ``apply`` calls is what a flush and reload would have given (UTC
    datetimes; JSON values are plain lists, dicts, strings and numbers, which round-trip as they are).
    """

    def __init__(self, session: Session, posts: Sequence[AnalyzedPost]) -> None:
        self.session = session
        self.rows: dict[str, EventRow] = {}  # detached: ``finish`` writes them
        self.inserted: set[str] = set()
        self._changed: set[str] = set()
        self._levels: set[str] = set()
        self._authors: dict[str, set[str]] = {}  # event id -> author hashes already counted
        first: dict[str, AnalyzedPost] = {}
        members: dict[str, AnalyzedPost] = {}
        for post in posts:
            if post.event_id:
                first.setdefault(str(post.event_id), post)
                members.setdefault(post.id, post)
        if not first:
            return
        event_ids = sorted(first)
        now = utcnow()
        session.execute(
            _insert(session, EventRow.__table__).on_conflict_do_nothing(index_elements=["id"]),
            [{"id": event_id, "title": _title_of(p), "first_seen": p.published_at, "last_seen": p.published_at,
              "size": 0, "unique_authors": 0, "engagement": 0, "negative_count": 0, "heat": 0.0, "heat_series": {},
              "topic": None, "places": [], "districts": [], "sources": {}, "representative_ids": [],
              "burst": False, "updated_at": now}
             for event_id in event_ids for p in (first[event_id],)],
        )
        for chunk in _chunks(event_ids):
            query = (select(EventRow).where(EventRow.id.in_(chunk)).order_by(EventRow.id).with_for_update()
                     .execution_options(populate_existing=True))
            self.rows.update((row.id, row) for row in session.scalars(query))
        for row in self.rows.values():
            # Folded in memory and written by ``finish`` in one executemany; the unit of work would write each
            # row at every autoflush (the ticket queries), one UPDATE per row.
            session.expunge(row)
        self._authors = {event_id: set() for event_id in event_ids}
        authors = sorted({p.author_hash for p in members.values() if p.author_hash})
        for event_chunk in _chunks(event_ids):
            for author_chunk in _chunks(authors):
                counted = select(EventMemberRow.event_id, EventMemberRow.author_hash).distinct().where(
                    EventMemberRow.event_id.in_(event_chunk), EventMemberRow.author_hash.in_(author_chunk))
                for event_id, author in session.execute(counted):
                    self._authors[event_id].add(author)
        table = EventMemberRow.__table__
        for chunk in _chunks(list(members)):
            result = session.execute(
                _insert(session, table).on_conflict_do_nothing(index_elements=["post_id"])
                .returning(table.c.post_id),
                [{"post_id": p.id, "event_id": str(p.event_id), "published_at": p.published_at,
                  "author_hash": p.author_hash, "negative": p.sentiment.label == SentimentLabel.negative}
                 for p in (members[post_id] for post_id in chunk)],
            )
            self.inserted.update(result.scalars())

    def apply(self, posts: Sequence[AnalyzedPost]) -> Event | None:
        """Fold ``posts`` (one event's, prepared by this batch) into their event, in the order given; the event
        as it stands after them, or None when none of them was inserted by this batch (counted already)."""
        fresh = [p for p in posts if p.id in self.inserted]
        if not fresh:
            return None
        event_id = str(fresh[0].event_id)
        row = self.rows[event_id]
        seen = self._authors[event_id]
        authors = {p.author_hash for p in fresh if p.author_hash}
        _update_row(row, fresh, new_authors=len(authors - seen))
        self._changed.add(event_id)
        seen |= authors
        self.inserted.difference_update(p.id for p in fresh)
        event = to_record(row)
        # What a flush and reload would give the next call: datetimes in UTC.
        for name in ("first_seen", "last_seen"):
            at = getattr(row, name)
            if at.tzinfo is not UTC:
                setattr(row, name, at.astimezone(UTC))
        return event

    def raise_level(self, event_id: str, level: int) -> None:
        """Show a ticket's warning level on its event (never lowered); written by ``finish``."""
        row = self.rows.get(event_id)
        if row is not None and (row.level or 0) < level:
            row.level = level
            self._levels.add(event_id)

    def finish(self) -> None:
        """Write the changed event rows (one UPDATE executemany)."""
        table = EventRow.__table__
        rows = [self.rows[event_id] for event_id in sorted(self._changed)]
        if rows:
            self.session.execute(
                update(table).where(table.c.id == bindparam("_id")).values({c: bindparam(c) for c in _AGGREGATES}),
                [{"_id": row.id, **{c: getattr(row, c) for c in _AGGREGATES}} for row in rows],
            )
        if self._levels:
            self.session.execute(
                update(table).where(table.c.id == bindparam("_id")).values(level=bindparam("level")),
                [{"_id": event_id, "level": self.rows[event_id].level} for event_id in sorted(self._levels)],
            )
        self._changed.clear()
        self._levels.clear()


# The columns ``_update_row`` sets.
_AGGREGATES = ("title", "first_seen", "last_seen", "size", "unique_authors", "engagement", "negative_count", "heat",
               "heat_series", "topic", "places", "districts", "sources", "representative_ids", "updated_at")


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
