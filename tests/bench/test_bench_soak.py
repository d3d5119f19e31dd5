"""The soak's paced feed: real-time release, incident bookkeeping, the waiting hook."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest

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


def test_soak_robots_answer_for_every_unit_and_count_what_they_refused(tmp_path, monkeypatch) -> None:
    from datetime import timedelta

    from bench.bench_soak import SoakRobots
    from core.errors import SendError
    from core.records import utcnow
    from core.settings import Settings
    from core.wiring import Container
    from tests.support import embedded_settings

    robots = SoakRobots()
    container = Container(embedded_settings(tmp_path, wecom=robots.settings()))
    try:
        notifier = container.notifiers["wecom"]
        assert {u.id for u in container.router.units if u.targets.wecom} <= set(robots.keys)
        body = {"msgtype": "text", "text": {"content": "测试"}}
        notifier.post("gov-a3", body)
        notifier.post("office", body)
        robots.emulator.inject("soak-gov-a1", -1)
        with pytest.raises(SendError):
            notifier.post("gov-a1", body)
        figures: dict[str, object] = {}
        t0 = utcnow()
        rows = [("sent", t0, t0 + timedelta(seconds=5)), ("sent", t0, t0 + timedelta(seconds=1)), ("pending", t0, None)]
        refused = robots.report(figures.__setitem__, "soak", rows)
        assert refused == 1
        assert figures["soak.wecom_messages_accepted"] == 2
        assert figures["soak.wecom_calls_refused"] == "errcode -1=1"
        assert figures["soak.wecom_outbox"] == "pending=1 sent=2"
        assert figures["soak.wecom_delivery_max_s"] == 5.0
        # The worker processes of the Kafka soak get the same robots through the environment.
        for name, value in robots.env().items():
            monkeypatch.setenv(name, value)
        from_env = Settings(mode="embedded", data_dir=tmp_path, database_url="").wecom
        assert from_env.enabled and from_env.base_url == robots.emulator.base_url
        assert {k: v.get_secret_value() for k, v in from_env.robots.items()} == robots.keys
    finally:
        container.close()
        robots.stop()
