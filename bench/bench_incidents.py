"""Incident purity: do the injected incidents of the soak's stream each become one clean event?

The soak's own stream (``PacedFeed``'s seed and mix, incidents re-played every 15 minutes) for
``YUQING_BENCH_INCIDENT_MINUTES`` minutes (default 10) at ``YUQING_BENCH_INCIDENT_RATE`` posts/s (default 50)
is analysed once by the embedded analyzer (the shipped models), then assigned by a fresh ``EventClusterer``
as fast as it goes: minutes of the soak in about two minutes of CPU, so a change to the clustering rules can
be judged before a 30-minute soak. Figures per incident (all its rounds together): how many events its posts
landed in, how many of them are in its main event, and how many everyday posts that event absorbed; then
``incidents.one_clean_event``: incidents whose posts all share one event of at most 10 % everyday posts.

The live event stage does not see posts in publication order: it reads the analyzed topic's partitions (keyed
by level-1 topic) up to 256 posts a poll, so under load one topic's posts run ahead of another's. The same
figures are therefore also reported (``incidents.bus_order.*``) for the order a real ``MemoryBus`` hands the
posts over when the stage spends ``YUQING_BENCH_INCIDENT_STAGE_LOAD`` (default 0.9) of the stream's
inter-arrival time on each post, which lets backlogs of a few hundred posts form and drain as in a soak.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

Report = Callable[[str, float | int | str], None]
MAX_BACKGROUND_SHARE = 0.10


def replay(*, rate_per_s: float, seconds: float, data_dir: Path) -> tuple[list, dict[str, str], float]:
    """The soak's stream analysed: (analysed posts in time order, post id -> incident, analysis seconds)."""
    from bench.bench_soak import REPEAT_S, _incident_rate
    from core.errors import RecordError
    from core.settings import Settings
    from core.wiring import Container
    from ingest.demo import DemoStream, default_incidents
    from ingest.validate import parse_record

    container = Container(Settings(mode="embedded", data_dir=data_dir, database_url=""))
    try:
        background = max(0.2 * rate_per_s, rate_per_s - _incident_rate(default_incidents(), seconds))
        posts, incident_of = [], {}
        first: float | None = None
        for record in DemoStream(seed=31, rate_per_min=background * 60.0, repeat_every_s=REPEAT_S):
            raw = json.dumps(record, ensure_ascii=False).encode()
            try:
                post = parse_record(raw, source_hint=None, salt="bench",
                                    max_text_chars=container.settings.max_text_chars)
            except RecordError:
                continue  # the stream plants malformed records; validation has its own tests and figures
            at = post.published_at.timestamp()
            first = at if first is None else first
            if at - first >= seconds:
                break
            posts.append(post)
            if record.get("incident"):
                incident_of[post.id] = str(record["incident"]).split("#")[0]
        started = time.perf_counter()
        analysed = []
        for k in range(0, len(posts), 128):
            analysed.extend(container.analyzer.analyze(posts[k:k + 128]))
        return analysed, incident_of, time.perf_counter() - started
    finally:
        container.close()


def bus_order(analysed: list, *, per_post_s: float, max_records: int | None = None) -> list:
    """The posts in the order the embedded event stage polls them from a real ``MemoryBus``.

    Each post is published to the analyzed topic (keyed as the pipeline keys it) at its offset after the
    first post, on a simulated clock; each poll takes up to ``max_records`` and advances the clock by
    ``per_post_s`` per post taken, so the stage falls behind in bursts and catches up, as it does live.
    """
    from core.bus.base import TOPIC_ANALYZED
    from core.bus.memory import MemoryBus
    from core.runtime import EVENT_STAGE_BATCH, analyzed_key

    if not analysed:
        return []
    bus = MemoryBus(max_backlog=len(analysed) + 1)
    try:
        consumer = bus.consumer([TOPIC_ANALYZED], group="bench-events")
        t0 = analysed[0].published_at.timestamp()
        clock, published, out = 0.0, 0, []
        while len(out) < len(analysed):
            while published < len(analysed) and analysed[published].published_at.timestamp() - t0 <= clock:
                post = analysed[published]
                bus.publish(TOPIC_ANALYZED, str(published).encode(), key=analyzed_key(post))
                published += 1
            batch = consumer.poll(max_records=max_records or EVENT_STAGE_BATCH, timeout_s=0.0)
            if batch:
                out.extend(analysed[int(m.value)] for m in batch)
                clock += per_post_s * len(batch)
            elif published < len(analysed):  # idle until the next post arrives
                clock = analysed[published].published_at.timestamp() - t0
        return out
    finally:
        bus.close()


def incident_figures(analysed: list, incident_of: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per incident: ``events`` its posts are in, ``posts``, ``in_main`` and ``main_size`` of its main event;
    the posts are assigned in the order given."""
    from alerts.events.clusterer import EventClusterer

    clusterer = EventClusterer()
    event_of = {post.id: clusterer.assign(post).event_id for post in analysed}
    event_of = {k: clusterer.resolve(e) for k, e in event_of.items()}  # merged events: where they ended
    sizes = Counter(event_of.values())
    by_incident: dict[str, Counter[str]] = defaultdict(Counter)
    for post_id, name in incident_of.items():
        by_incident[name][event_of[post_id]] += 1
    out = {}
    for name, events in sorted(by_incident.items()):
        main, in_main = events.most_common(1)[0]
        out[name] = {"events": len(events), "posts": sum(events.values()), "in_main": in_main,
                     "main_size": sizes[main]}
    return out


def run(report: Report) -> None:
    """Replay the soak's stream through the analyzer and the clusterer; report each incident's events."""
    rate = float(os.environ.get("YUQING_BENCH_INCIDENT_RATE", "50"))
    minutes = float(os.environ.get("YUQING_BENCH_INCIDENT_MINUTES", "10"))
    with tempfile.TemporaryDirectory(prefix="yuqing-bench-incidents-") as tmp:
        analysed, incident_of, analysis_s = replay(rate_per_s=rate, seconds=minutes * 60.0, data_dir=Path(tmp))
    load = float(os.environ.get("YUQING_BENCH_INCIDENT_STAGE_LOAD", "0.9"))
    report("incidents.posts", len(analysed))
    report("incidents.analysis_posts_per_s", len(analysed) / analysis_s if analysis_s else 0.0)
    started = time.perf_counter()
    figures = incident_figures(analysed, incident_of)
    report("incidents.clusterer_posts_per_s", len(analysed) / (time.perf_counter() - started))
    _report_figures(report, "incidents", figures)
    span = (analysed[-1].published_at - analysed[0].published_at).total_seconds() if analysed else 0.0
    per_post_s = load * span / max(1, len(analysed))
    ordered = bus_order(analysed, per_post_s=per_post_s)
    moved = sum(a is not b for a, b in zip(ordered, analysed, strict=True))
    report("incidents.bus_order.stage_ms_per_post", per_post_s * 1000)
    report("incidents.bus_order.posts_out_of_publication_order", moved)
    _report_figures(report, "incidents.bus_order", incident_figures(ordered, incident_of))


def _report_figures(report: Report, prefix: str, figures: dict[str, dict[str, int]]) -> None:
    """One line per incident, then how many became one clean event."""
    clean = 0
    for name, f in figures.items():
        background = f["main_size"] - f["in_main"]
        report(f"{prefix}.{name}", f"{f['posts']} posts in {f['events']} event(s); main event {f['in_main']} of "
                                   f"them + {background} everyday posts")
        clean += f["events"] == 1 and background <= MAX_BACKGROUND_SHARE * f["main_size"]
    report(f"{prefix}.one_clean_event", f"{clean} of {len(figures)}")
