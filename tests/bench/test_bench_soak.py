"""The soak's paced feed: real-time release, incident bookkeeping, the waiting hook."""

from __future__ import annotations

import time
from itertools import pairwise

from bench.bench_soak import PacedFeed


def test_paced_feed_releases_posts_at_their_offsets_and_tracks_incidents() -> None:
    waits: list[float] = []
    feed = PacedFeed(rate_per_s=20.0, seconds=8.0, salt="s", max_text_chars=20_000,
                     while_waiting=lambda: waits.append(time.perf_counter()))
    released: list[tuple[str, float]] = []
    for post in feed:
        released.append((post.id, time.perf_counter() - feed.started))
    elapsed = time.perf_counter() - feed.started
    ids = {pid for pid, _ in released}
    assert 40 <= len(released) <= 400
    # Real time: the last post is released near the end of the window, not all at once.
    assert released[-1][1] > 5.0 and elapsed < 10.0
    assert released[len(released) // 2][1] > 1.5
    # The first incident (a7) starts 5 s in: its posts are tagged, and every tagged post was released.
    assert feed.incident_posts.get("a7-chemical-plant")
    assert set().union(*feed.incident_posts.values()) <= ids
    # The waiting hook runs while the feed sleeps, at most every 0.5 s.
    assert len(waits) >= 3
    assert all(b - a >= 0.45 for a, b in pairwise(waits))
    assert {i.name for i in feed.incidents} >= set(feed.incident_posts)


def test_incident_reports_count_tickets_and_show_where_the_posts_went(tmp_path) -> None:
    from bench.bench_soak import _incident_events, _tickets_by_incident
    from core.db.models import EventMemberRow, EventRow, TicketRow
    from core.records import utcnow
    from core.wiring import Container
    from tests.support import embedded_settings

    container = Container(embedded_settings(tmp_path))
    now = utcnow()
    try:
        with container.db.transaction() as s:
            for event_id in ("e-incident", "e-everyday", "e-quiet"):
                s.add(EventRow(id=event_id, first_seen=now, last_seen=now, title=f"title of {event_id}"))
            s.flush()
            members = {"e-incident": [f"i{k}" for k in range(5)] + ["b0"],
                       "e-everyday": ["i5", "i6"] + [f"b{k}" for k in range(1, 9)], "e-quiet": ["i7"]}
            for event_id, posts in members.items():
                for post_id in posts:
                    s.add(EventMemberRow(post_id=post_id, event_id=event_id, published_at=now))
            s.add(TicketRow(id="t-incident", event_id="e-incident", level=2, state="new", lead_unit="u"))
            s.add(TicketRow(id="t-everyday", event_id="e-everyday", level=1, state="new", lead_unit="u"))
        incident = {"a1": {f"i{k}" for k in range(8)}, "a2": {"never-counted"}}
        with container.db.session() as s:
            # Stray posts in an everyday event with its own ticket count against the incident.
            assert _tickets_by_incident(s, incident) == {"a1": {"t-incident", "t-everyday"}, "a2": set()}
            assert _incident_events(s, incident) == "a1=5/6[T] 2/10[T 'title of e-everyday'] 1/1, a2="
    finally:
        container.close()
