"""Rule engine and routing throughput on real citizen messages (../shared mailbox), default rules and units.

Each message becomes an analyzed post (normalised text, negative, its districts from the text) in one
of 200 events whose counts grow as posts arrive; the messages keep their order but are spread evenly
over three days (a live stream of about 60 an hour, not the year the archive spans); the engine
evaluates every post with the shipped rules (heat, sensitive terms, watch-lists, spikes) and every
returned match is routed. The baseline in
the same run is normalising the same texts (which the analyze stage does anyway), so the ratio says how
much the alert stage adds per post relative to one pass over its text.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

MESSAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "mailbox" / "messages.jsonl"
N_EVENTS = 200


def run(report: Callable[[str, float | int | str], None]) -> None:
    """Report posts/s through RuleEngine.evaluate, routes/s, and the ratio to plain normalisation."""
    from alerts.engine import RuleEngine
    from alerts.routing import Router
    from alerts.rules.loader import load_rules
    from analyze.normalize import normalize
    from core.records import AnalyzedPost, Entities, Event, Sentiment, SentimentLabel, Source, Topic

    if not MESSAGES.exists():
        report("rules.skipped", f"../shared data not found: {MESSAGES}")
        return
    rows = [json.loads(line) for line in MESSAGES.read_text(encoding="utf-8").splitlines() if line.strip()]
    districts = [f"A{i}{'区' if i <= 6 else ('县' if i <= 8 else '市')}" for i in range(1, 10)]
    rows.sort(key=lambda r: r["time"])
    start = datetime(2026, 5, 4, tzinfo=UTC)
    step = timedelta(hours=72) / max(len(rows), 1)
    posts: list[AnalyzedPost] = []
    for n, row in enumerate(rows):
        text = f"{row['subject']}\n{row['body']}"
        posts.append(
            AnalyzedPost(
                id=str(row["id"]), source=Source.mailbox, external_id=str(row["id"]), title=row["subject"],
                text=row["body"], author_hash=row["user"], published_at=start + n * step,
                text_norm=normalize(text), sentiment=Sentiment(label=SentimentLabel.negative, score=0.8),
                topic=Topic(l1="城乡建设"), entities=Entities(districts=[d for d in districts if d in text]),
                event_id=f"e{n % N_EVENTS}",
            )
        )
    events: dict[str, Event] = {}
    engine = RuleEngine(load_rules())
    router = Router.load()

    started = time.perf_counter()
    matches = []
    for post in posts:
        eid = post.event_id or ""
        ev = events.get(eid)
        if ev is None:
            ev = events[eid] = Event(id=eid, title=post.title, first_seen=post.published_at,
                                     last_seen=post.published_at, districts=post.entities.districts)
        ev.size += 1
        ev.negative_count += 1
        ev.last_seen = max(ev.last_seen, post.published_at)
        ev.heat = min(99.0, 8.0 + 3.0 * ev.size)
        match = engine.evaluate(post, ev)
        if match is not None:
            matches.append((ev, match))
    engine.garbage_collect(posts[-1].published_at + timedelta(days=1))
    engine_s = time.perf_counter() - started

    started = time.perf_counter()
    for ev, match in matches:
        router.route(ev, match)
    route_s = time.perf_counter() - started

    started = time.perf_counter()
    for post in posts:
        normalize(f"{post.title}\n{post.text}")
    norm_s = time.perf_counter() - started

    report("rules.posts", len(posts))
    report("rules.matches", len(matches))
    report("rules.engine_posts_per_s", len(posts) / engine_s)
    report("rules.routes_per_s", len(matches) / route_s if route_s else 0.0)
    report("rules.engine_vs_normalize_ratio", engine_s / norm_s if norm_s else 0.0)
