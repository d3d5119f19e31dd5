"""Redelivery after a fault re-batches the analyzed stream; the event stage's effects must not depend on batching.

After a crash, a restart or a backend outage the event stage receives the same posts in the same order but
cut into different batches (a backlog arrives as one big poll). Events, heat and tickets must come out the
same as when the posts trickled in one by one.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.db.models import EventMemberRow, EventRow, TicketRow
from tests.support import embedded

pytestmark = [pytest.mark.slow]


def _run(tmp_path: Path, posts: list[Any], batch: int) -> tuple[dict[str, tuple[int, float]], dict[str, str]]:
    with embedded(tmp_path, start=False) as (container, _):
        stage = container.event_stage()
        copies = [p.model_copy(deep=True) for p in posts]
        for i in range(0, len(copies), batch):
            stage.handle(copies[i:i + batch])
        with container.db.transaction() as session:
            events = {e.id: (e.size, round(e.heat, 6)) for e in session.scalars(select(EventRow))}
            tickets = {t.event_id: t.level for t in session.scalars(select(TicketRow))}
    return events, tickets


def test_tickets_do_not_depend_on_how_redelivery_batches_the_posts(tmp_path: Path, analyzed_demo: list[Any]) -> None:
    one_by_one = _run(tmp_path / "one", analyzed_demo, 1)
    backlog = _run(tmp_path / "all", analyzed_demo, len(analyzed_demo))
    assert one_by_one[0] == backlog[0], "events differ"
    assert one_by_one[1], "the input should open tickets"
    assert backlog[1] == one_by_one[1], "the same posts opened different tickets when batched differently"


def test_events_do_not_depend_on_when_the_wall_clock_cleanup_fires(tmp_path: Path, analyzed_demo: list[Any]) -> None:
    """A backlog is behind the wall clock: the minute timer's cleanup must not drop state its posts still match."""
    # The stream as a replay a day late: the timer's wall-clock "now" is far past every post.
    wall_now = max(p.published_at for p in analyzed_demo) + timedelta(days=1)

    def run(name: str, collect_every: int) -> set[frozenset[str]]:
        with embedded(tmp_path / name, start=False) as (container, _):
            stage = container.event_stage()
            for i, post in enumerate(analyzed_demo):
                stage.handle([post.model_copy(deep=True)])
                if collect_every and i % collect_every == collect_every - 1:
                    stage.garbage_collect(wall_now)
            with container.db.transaction() as session:
                members: dict[str, set[str]] = {}
                for post_id, event_id in session.execute(select(EventMemberRow.post_id, EventMemberRow.event_id)):
                    members.setdefault(event_id, set()).add(post_id)
        return {frozenset(ids) for ids in members.values()}

    never = run("never", 0)
    often = run("often", 25)
    assert sum(len(ids) for ids in never) == len(analyzed_demo)
    assert often == never, "where posts landed depended on when the cleanup timer fired"
