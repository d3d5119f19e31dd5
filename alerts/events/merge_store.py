"""The store follows an event merge (``Assignment.absorbed``): the absorbed event's members, counts and (when
the survivor has none open) its ticket move to the survivor, which keeps its id, title and matter votes; the
absorbed row goes unless a ticket still names it. Kept apart from ``service.apply_posts``, which counts posts
into one event at a time."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from analyze.heat import heat
from core.db.models import OPEN_TICKET_STATES, EventMemberRow, EventRow, TicketRow
from core.records import utcnow

log = logging.getLogger(__name__)
_COPIED = ("title", "first_seen", "last_seen", "size", "unique_authors", "engagement", "negative_count", "heat",
           "heat_series", "topic", "places", "districts", "sources", "representative_ids", "burst", "level")
VELOCITY_HOURS = 3


def record_merge(session: Session, *, survivor: str, absorbed: Sequence[str]) -> None:
    """Move each absorbed event into ``survivor`` (idempotent: an absorbed event already gone is skipped)."""
    for other in absorbed:
        gone = session.get(EventRow, other)
        if gone is None or other == survivor:
            continue
        row = session.get(EventRow, survivor)
        if row is None:  # the survivor's posts are all still in this batch: it starts as the absorbed one
            row = EventRow(id=survivor, **{k: getattr(gone, k) for k in _COPIED}, updated_at=utcnow())
            session.add(row)
            session.flush()
        else:
            _fold(row, gone)
        session.execute(update(EventMemberRow).where(EventMemberRow.event_id == other).values(event_id=survivor))
        members = EventMemberRow.event_id == survivor
        authors = select(func.count(func.distinct(EventMemberRow.author_hash))).where(members)
        nameless = EventMemberRow.author_hash.is_(None)
        anonymous = select(func.count()).select_from(EventMemberRow).where(members, nameless)
        row.unique_authors = (session.scalar(authors) or 0) + (session.scalar(anonymous) or 0)
        _reheat(row)
        has_open = session.scalar(
            select(func.count()).select_from(TicketRow).where(TicketRow.event_id == survivor,
                                                              TicketRow.state.in_(OPEN_TICKET_STATES))
        )
        if not has_open:
            session.execute(update(TicketRow).where(TicketRow.event_id == other).values(event_id=survivor))
        if not session.scalar(select(func.count()).select_from(TicketRow).where(TicketRow.event_id == other)):
            session.execute(delete(EventRow).where(EventRow.id == other))
        else:  # a ticket still names it: it stays, empty, out of the lists' way
            gone.size, gone.heat = 0, 0.0
        session.flush()
        log.info("event %s merged into %s", other, survivor)


def _fold(row: EventRow, other: EventRow) -> None:
    """Add ``other``'s counts to ``row``; the survivor's title, matters and representatives stand."""
    row.size = (row.size or 0) + (other.size or 0)
    row.engagement = (row.engagement or 0) + (other.engagement or 0)
    row.negative_count = (row.negative_count or 0) + (other.negative_count or 0)
    row.first_seen = min(row.first_seen, other.first_seen)
    row.last_seen = max(row.last_seen, other.last_seen)
    series = dict(row.heat_series or {})
    for hour, n in (other.heat_series or {}).items():
        series[hour] = series.get(hour, 0) + n
    row.heat_series = dict(sorted(series.items()))
    sources = dict(row.sources or {})
    for key, n in (other.sources or {}).items():
        if isinstance(n, int):
            sources[key] = sources.get(key, 0) + n
    row.sources = sources
    row.places = list(dict.fromkeys([*(row.places or []), *(other.places or [])]))[:10]
    row.districts = list(dict.fromkeys([*(row.districts or []), *(other.districts or [])]))[:10]
    if other.level is not None and (row.level or 0) < other.level:
        row.level = other.level


def _reheat(row: EventRow) -> None:
    series = row.heat_series or {}
    recent = (row.last_seen - timedelta(hours=VELOCITY_HOURS - 1)).strftime("%Y-%m-%dT%H")
    velocity = sum(v for k, v in series.items() if k >= recent) / VELOCITY_HOURS
    row.heat = heat(size=row.size, unique_authors=row.unique_authors or 0, engagement=row.engagement,
                    velocity_per_hour=velocity, negative_share=(row.negative_count or 0) / max(1, row.size))
    row.updated_at = utcnow()
