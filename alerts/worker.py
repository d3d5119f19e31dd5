"""The event stage: assign analyzed posts to events, store them, evaluate rules, open/update tickets.

Per batch, in this order (each step idempotent, so redelivery after a crash changes nothing):
1. posts already recorded in ``event_members`` keep their event (redelivered: no double counting);
2. new posts get an event from the clusterer;
3. one database transaction applies the new posts to their events, evaluates the rules for each new
   post and opens or updates tickets (with their audit rows and outbox notifications);
4. the post store upserts every post of the batch (idempotent by id);
5. ticket changes are announced on the ``tickets.changed`` topic for live dashboards.
The bus offset is committed by the caller (``core.worker.StageWorker``) only after all of this.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from alerts.deadlines import DeadlinePolicy
from alerts.engine import RuleEngine
from alerts.events import service as event_service
from alerts.events.clusterer import EventClusterer
from alerts.events.merge_store import record_merge
from alerts.routing import Router
from alerts.tickets import service as ticket_service
from core.bus.base import TOPIC_TICKETS, Bus
from core.db.models import OPEN_TICKET_STATES, EventMemberRow, TicketRow
from core.db.session import Database
from core.records import AnalyzedPost, utcnow
from core.store.base import PostStore

log = logging.getLogger(__name__)


class EventStage:
    """Stateful event stage; one per worker process (owns the clusterer's in-memory index)."""

    def __init__(
        self,
        *,
        db: Database,
        post_store: PostStore,
        clusterer: EventClusterer,
        engine: RuleEngine,
        router: Router,
        bus: Bus | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_ticket: Callable[[dict[str, Any]], None] | None = None,
        policy: DeadlinePolicy | None = None,
    ) -> None:
        self.db = db
        self.post_store = post_store
        self.clusterer = clusterer
        self.engine = engine
        self.router = router
        self.bus = bus
        self.clock = clock
        self.on_ticket = on_ticket
        self.policy = policy
        self._lock = threading.Lock()
        self.tickets_opened = 0
        self.tickets_updated = 0

    def handle(self, posts: Sequence[AnalyzedPost]) -> None:
        """Process one batch (see module docstring)."""
        if not posts:
            return
        with self._lock:
            self._handle(list(posts))

    def _handle(self, posts: list[AnalyzedPost]) -> None:
        # De-duplicate within the batch: the same post twice in one batch is one post.
        unique: dict[str, AnalyzedPost] = {}
        for post in posts:
            unique.setdefault(post.id, post)
        # Publication order, not arrival order: partitions interleave differently on every run, and the
        # clusterer's answer depends on the order it sees posts in. A stable sort on the time alone: posts of
        # the same second keep their arrival order, so one partition gives the same order however the stream
        # is cut into batches (a re-run after a crash cuts it differently; an id tie-break would reorder ties
        # differently in each cut).
        posts = sorted(unique.values(), key=lambda p: p.published_at)
        ids = [p.id for p in posts]
        with self.db.transaction() as session:
            known = dict(
                session.execute(
                    select(EventMemberRow.post_id, EventMemberRow.event_id).where(EventMemberRow.post_id.in_(ids))
                ).all()
            )
            fresh: list[AnalyzedPost] = []
            merges: list[tuple[str, tuple[str, ...]]] = []
            for post in posts:
                if post.id in known:
                    post.event_id = known[post.id]
                    continue
                assignment = self.clusterer.assign(post)
                post.event_id = assignment.event_id
                post.near_dup_of = assignment.near_dup_of
                fresh.append(post)
                if assignment.absorbed:
                    merges.append((assignment.event_id, assignment.absorbed))
            for post in fresh:  # a later post of the batch may have merged an earlier one's event away
                post.event_id = self.clusterer.resolve(post.event_id or "")
            for survivor, absorbed in merges:
                record_merge(session, survivor=self.clusterer.resolve(survivor), absorbed=absorbed)
            changes: list[dict[str, Any]] = []
            now = self.clock()
            # The batch's event writes are prepared together (rows created and locked, members inserted) and
            # written at the end; the aggregates are folded in memory one post at a time: each post is judged
            # against its event as it stood when the post arrived, so tickets do not depend on how a backlog
            # happens to be batched (after a fault, say).
            batch = event_service.EventBatch(session, fresh)
            for post in fresh:
                event = batch.apply([post])
                if event is None:
                    continue
                match = self.engine.evaluate(post, event)
                if match is None:
                    continue
                open_ticket = (TicketRow.event_id == event.id) & TicketRow.state.in_(OPEN_TICKET_STATES)
                before = session.execute(select(TicketRow.level).where(open_ticket)).scalar()
                decision = self.router.route(event, match)
                ticket, created = ticket_service.open_or_update(
                    session,
                    event=event,
                    match=match,
                    lead_unit=decision.lead_unit,
                    cooperating_units=list(decision.cooperating_units),
                    routing=decision.explanation,
                    now=now,
                    policy=self.policy,
                )
                if created:
                    self.tickets_opened += 1
                else:
                    self.tickets_updated += 1
                batch.raise_level(event.id, ticket.level)  # the event page and lists show the warning level
                changes.append(
                    {"ticket_id": ticket.id, "event_id": event.id, "post_id": post.id, "level": ticket.level,
                     "level_before": before, "level_changed": before is not None and ticket.level != before,
                     "state": ticket.state, "created": created, "title": ticket.title, "lead_unit": ticket.lead_unit,
                     "cooperating_units": list(ticket.cooperating_units or []), "at": now.isoformat()}
                )
            batch.finish()
        # Announce before the post-store write: if that write fails and the batch is redelivered, the posts
        # are no longer new and the announcement would otherwise be lost.
        for change in changes:
            if self.on_ticket is not None:
                self.on_ticket(change)
            if self.bus is not None:
                self.bus.publish(TOPIC_TICKETS, json.dumps(change).encode(), key=change["event_id"])
        self.post_store.upsert(posts)

    def reload_watchlists(self) -> int:
        """Load the analysts' watch-lists from the database into every watch-list rule; returns how many."""
        from alerts.rules.watchlist import load_watchlist_rows

        with self.db.transaction() as session:
            rows = load_watchlist_rows(session)
        with self._lock:
            for problem in self.engine.set_watchlists(rows, strict=False):
                log.warning("watch-list skipped: %s", problem)
        return len(rows)

    def garbage_collect(self, now: datetime) -> None:
        """Bound the clusterer's and the rules' in-memory state as of the stream's time, never past ``now``."""
        with self._lock:
            # The stream's clock, not the wall's: a backlog (after an outage, a replay) is behind the wall, and
            # collecting at wall time would drop state its own posts still match - e.g. a place's 15-minute
            # orphan events - so where a post lands would depend on when this timer fired.
            seen = self.clusterer.latest_published
            at = now if seen is None else min(now, seen)
            self.clusterer.garbage_collect(at)
            self.engine.garbage_collect(at)
