"""Redelivery after a fault re-batches the analyzed stream; the event stage's effects must not depend on batching.

After a crash, a restart or a backend outage the event stage receives the same posts in the same order but
cut into different batches (a backlog arrives as one big poll). Events, heat and tickets must come out the
same as when the posts trickled in one by one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.db.models import EventRow, TicketRow
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
