"""Events, hottest first, with representative posts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import func, select

from alerts.events import service as event_service
from api.deps import DbSession, PostStoreDep, QueryTime, Reader, SettingsDep, is_privileged, unprocessable
from api.schemas import EventOut, EventPageOut, PostOut
from core.db.models import EventRow, TicketRow
from core.records import AnalyzedPost, Event
from core.store.base import PostStore

router = APIRouter(prefix="/api/v1/events", tags=["events"])


def _visible(query: Any, user: Any) -> Any:
    """Only tickets the caller may see: a handler is not told other units' ticket ids."""
    from alerts.tickets.service import visibility_clause

    clause = visibility_clause(user)
    return query if clause is None else query.where(clause)


def _representatives(events: list[Event], *, store: PostStore, samples: int) -> dict[str, AnalyzedPost]:
    """The sample posts of every event on the page, in one post-store read (not one per post)."""
    wanted = [pid for event in events for pid in event.representative_ids[:samples]]
    return store.get_many(wanted) if wanted else {}


def _event_out(event: Event, *, posts: dict[str, AnalyzedPost], ticket_id: str | None, privileged: bool,
               samples: int) -> EventOut:
    reps = [PostOut.from_post(posts[pid], privileged=privileged)
            for pid in event.representative_ids[:samples] if pid in posts]
    return EventOut(
        **event.model_dump(), negative_share_pct=round(100 * event.negative_share, 1),
        representatives=reps, ticket_id=ticket_id,
    )


@router.get("", response_model=EventPageOut)
def list_events(
    session: DbSession,
    store: PostStoreDep,
    settings: SettingsDep,
    user: Reader,
    limit: Annotated[int, Query(ge=1)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    since: QueryTime | None = None,
    samples: Annotated[int, Query(ge=0, le=10)] = 3,
) -> EventPageOut:
    """Events sorted by heat (hottest first), each with its size and representative texts."""
    if limit > settings.api.page_size_max:
        raise unprocessable(["query", "limit"], f"limit may be at most {settings.api.page_size_max}")
    events = event_service.list_events(session, limit=limit, offset=offset, since=since, order="heat")
    counted = select(func.count()).select_from(EventRow)
    if since is not None:
        counted = counted.where(EventRow.last_seen >= since)
    total = session.scalar(counted) or 0
    tickets = dict(
        session.execute(
            _visible(select(TicketRow.event_id, TicketRow.id).where(TicketRow.event_id.in_([e.id for e in events])),
                     user).order_by(TicketRow.created_at)
        ).all()
    )
    privileged = is_privileged(user)
    posts = _representatives(events, store=store, samples=samples)
    return EventPageOut(
        total=total,
        items=[_event_out(e, posts=posts, ticket_id=tickets.get(e.id), privileged=privileged, samples=samples)
               for e in events],
    )


@router.get("/{event_id}", response_model=EventOut)
def get_event(event_id: str, session: DbSession, store: PostStoreDep, user: Reader) -> EventOut:
    """One event with up to 10 representative posts."""
    event = event_service.get_event(session, event_id=event_id)
    if event is None:
        raise HTTPException(404, "event not found")
    ticket_id = session.execute(
        _visible(select(TicketRow.id).where(TicketRow.event_id == event_id), user)
        .order_by(TicketRow.created_at.desc())
    ).scalars().first()
    posts = _representatives([event], store=store, samples=10)
    return _event_out(event, posts=posts, ticket_id=ticket_id, privileged=is_privileged(user), samples=10)
