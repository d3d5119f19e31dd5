"""End to end, embedded: a JSONL file in, scored posts, one event for the incident, one ticket routed with deadlines."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from core.db.models import EventMemberRow, EventRow, TicketRow
from core.store.base import PostQuery
from ingest.jsonl import JsonlSource
from tests.support import embedded, incident_stream, write_jsonl


def _snapshot(container) -> dict:
    with container.db.transaction() as s:
        return {
            "posts": container.post_store.count(),
            "members": s.scalar(select(func.count()).select_from(EventMemberRow)),
            "events": {e.id: (e.size, e.engagement, round(e.heat, 6)) for e in s.scalars(select(EventRow))},
            "tickets": [(t.event_id, t.level, t.state) for t in s.scalars(select(TicketRow).order_by(TicketRow.id))],
        }


def test_file_to_ticket_and_idempotent_reingest(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "stream.jsonl", incident_stream(20))
    with embedded(tmp_path / "data") as (container, pipeline):
        stats = pipeline.ingest(JsonlSource(path))
        assert stats.accepted == 26 and stats.dead_lettered == 0
        assert pipeline.wait_idle(timeout_s=120)
        container.post_store.refresh()
        first = _snapshot(container)

        # Every post is stored and scored.
        assert first["posts"] == 26
        page = container.post_store.search(PostQuery(q="化工厂", limit=50))
        assert page.total == 20
        assert all(p.sentiment.label.value in ("负面", "中性", "正面") for p in page.items)

        # The incident's original, reposts and copy-paste variants are one event.
        incident_events = {p.event_id for p in page.items}
        assert len(incident_events) == 1
        (event_id,) = incident_events
        assert first["events"][event_id][0] == 20

        # That event has exactly one open ticket, routed to the district (属地) with deadlines.
        with container.db.transaction() as s:
            tickets = s.scalars(select(TicketRow).where(TicketRow.event_id == event_id)).all()
            assert len(tickets) == 1
            ticket = tickets[0]
            assert ticket.level >= 2
            assert ticket.lead_unit == "gov-a7"
            assert ticket.deadlines
            assert ticket.routing

        # Re-ingesting the same file changes nothing: no duplicate post, event count, heat or ticket.
        pipeline.ingest(JsonlSource(path))
        assert pipeline.wait_idle(timeout_s=120)
        container.post_store.refresh()
        assert _snapshot(container) == first
