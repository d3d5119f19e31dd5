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
