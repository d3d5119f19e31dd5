"""The incident-purity bench: the soak's stream analysed and clustered, figures per incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from bench.bench_incidents import bus_order, incident_figures, replay


def test_replay_tags_incident_posts_and_the_first_incident_becomes_one_event(tmp_path: Path) -> None:
    analysed, incident_of, analysis_s = replay(rate_per_s=4.0, seconds=60.0, data_dir=tmp_path)
    assert analysis_s > 0 and len(analysed) > len(incident_of) > 20
    assert [p.published_at for p in analysed] == sorted(p.published_at for p in analysed)
    assert set(incident_of.values()) == {"a7-chemical-plant"}  # the only incident that starts in the first minute
    figures = incident_figures(analysed, incident_of)
    a7 = figures["a7-chemical-plant"]
    assert a7["posts"] == len(incident_of)
    # Reposts, copies and eyewitness posts told in other words: one event, and everyday posts stay out of it.
    assert a7["events"] == 1 and a7["in_main"] == a7["posts"]
    assert a7["main_size"] - a7["in_main"] <= 0.1 * a7["main_size"]
    # The same in the order a nearly busy event stage polls them from the bus.
    ordered = incident_figures(bus_order(analysed, per_post_s=0.9 * 60.0 / len(analysed)), incident_of)
    assert ordered["a7-chemical-plant"]["events"] == 1


def _posts(n: int, topics: tuple[str, ...]) -> list[SimpleNamespace]:
    start = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    return [SimpleNamespace(id=f"p{i}", published_at=start + timedelta(seconds=i * 0.1),
                            topic=SimpleNamespace(l1=topics[i % len(topics)])) for i in range(n)]


def test_bus_order_keeps_each_topic_in_order_and_lets_a_busy_stage_take_one_topic_ahead() -> None:
    posts = _posts(2000, ("城乡建设", "环境保护", "交通运输", "卫生计生", "教育文体"))
    # A stage that needs twice the inter-arrival time per post falls behind: polls of 256 from one partition.
    busy = bus_order(posts, per_post_s=0.2)
    assert sorted(p.id for p in busy) == sorted(p.id for p in posts)  # every post once
    for topic in {p.topic.l1 for p in posts}:
        assert [p.id for p in busy if p.topic.l1 == topic] == [p.id for p in posts if p.topic.l1 == topic]
    assert busy != posts
    # A stage with time to spare takes each post as it comes.
    assert bus_order(posts, per_post_s=0.001) == posts
    assert bus_order([], per_post_s=1.0) == []
