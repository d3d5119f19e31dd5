"""Event stage: burst detection delay and false alarms on seeded synthetic days; clusterer throughput.

Burst streams: Poisson posts with a daily rhythm (quiet night, busy noon; mean 6/hour), checked every
5 minutes. Each seed runs 8 warm-up days, then one normal day (false alarms are counted there as alarm
episodes, i.e. switches from quiet to burst) and one day with a 2-hour burst of +40 posts/hour starting
at a seeded random time (delay = first alarm minus burst start). Throughput: the mailbox archive (or
synthetic text when ../shared is absent) with tokens, entities and signatures prepared beforehand, so
the figure is the clusterer's own cost per post; MinHash is timed separately on the same texts.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

MESSAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "mailbox" / "messages.jsonl"
SEEDS = range(6)
WARMUP_DAYS = 8
STEP = timedelta(minutes=5)
START = datetime(2024, 1, 1, tzinfo=UTC)


def _stream(seed: int, days: int, burst_at: datetime | None, burst_per_hour: float = 40.0,
            burst_hours: float = 2.0) -> list[tuple[datetime, bool]]:
    """(check time, burst?) every 5 minutes over ``days`` days of a synthetic stream."""
    from analyze.burst import BurstDetector

    rng = np.random.default_rng(seed)
    det = BurstDetector(warmup_buckets=48)
    out = []
    t, end = START, START + timedelta(days=days)
    while t < end:
        hour = (t - START).total_seconds() / 3600 % 24
        lam = 6.0 * (1 + 0.8 * math.sin((hour - 8) / 24 * 2 * math.pi)) / 12
        if burst_at is not None and burst_at <= t < burst_at + timedelta(hours=burst_hours):
            lam += burst_per_hour / 12
        for offset in np.sort(rng.uniform(0, 300, size=rng.poisson(lam))):
            det.add("k", t + timedelta(seconds=float(offset)))
        t += STEP
        out.append((t, det.check("k", t).burst))
    return out


def _episodes(checks: list[tuple[datetime, bool]], since: datetime) -> int:
    count, previous = 0, False
    for t, burst in checks:
        if t >= since and burst and not previous:
            count += 1
        previous = burst
    return count


def _burst_figures(report: Callable[[str, float | int | str], None]) -> None:
    delays: list[float] = []
    missed = 0
    false_alarms = 0
    for seed in SEEDS:
        rng = np.random.default_rng(1000 + seed)
        normal = _stream(seed, WARMUP_DAYS + 1, None)
        false_alarms += _episodes(normal, START + timedelta(days=WARMUP_DAYS))
        burst_at = START + timedelta(days=WARMUP_DAYS, minutes=int(rng.integers(0, 22 * 60)))
        bursty = _stream(seed, WARMUP_DAYS + 1, burst_at)
        hits = [t for t, b in bursty if b and burst_at <= t <= burst_at + timedelta(hours=2)]
        if hits:
            delays.append((hits[0] - burst_at).total_seconds() / 60)
        else:
            missed += 1
        false_alarms += _episodes([(t, b) for t, b in bursty if not burst_at <= t <= burst_at + timedelta(hours=3)],
                                  START + timedelta(days=WARMUP_DAYS))
    days = 2 * len(SEEDS)
    report("events.burst_delay_min_mean", float(np.mean(delays)) if delays else float("nan"))
    report("events.burst_delay_min_max", float(np.max(delays)) if delays else float("nan"))
    report("events.burst_missed", missed)
    report("events.false_alarms_per_day", false_alarms / days)


def _texts() -> list[tuple[str, str, str, datetime]]:
    """(id, title, body, time) in time order: the mailbox archive, or synthetic variants."""
    if MESSAGES.exists():
        rows = [json.loads(line) for line in MESSAGES.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows.sort(key=lambda r: (r["time"], r["id"]))
        return [(r["id"], r["subject"], r["body"], datetime.fromisoformat(r["time"])) for r in rows]
    rng = np.random.default_rng(0)
    chars = [chr(0x4E00 + i) for i in range(2000)]
    out = []
    for i in range(4000):
        body = "".join(rng.choice(chars, size=200))
        out.append((str(i), body[:20], body, START + timedelta(minutes=10 * i)))
    return out


def _clusterer_figures(report: Callable[[str, float | int | str], None]) -> None:
    from alerts.events.clusterer import EventClusterer
    from alerts.events.minhash import minhash_signature
    from analyze.entities import EntityExtractor
    from analyze.normalize import normalize, text_for_scoring
    from analyze.segment import tokenize
    from core.records import AnalyzedPost, Sentiment, SentimentLabel, Source, Topic, post_id

    extractor = EntityExtractor.load(use_lac=False)
    rows = _texts()
    scoring = [text_for_scoring(f"{title}\n{body}") for _, title, body, _ in rows]
    started = time.perf_counter()
    signatures = [minhash_signature(text) for text in scoring]
    report("events.minhash_per_s", len(rows) / (time.perf_counter() - started))
    posts = [
        AnalyzedPost(
            id=post_id("mailbox", rid), source=Source.mailbox, external_id=rid, title=title, text=body,
            published_at=at, text_norm=normalize(body), tokens=tokenize(text),
            sentiment=Sentiment(label=SentimentLabel.neutral, score=0.5), topic=Topic(l1="x"),
            entities=extractor.extract(f"{title}\n{body}"), signature=sig,
        )
        for (rid, title, body, at), text, sig in zip(rows, scoring, signatures, strict=True)
    ]
    clusterer = EventClusterer()
    started = time.perf_counter()
    events = {clusterer.assign(post).event_id for post in posts}
    report("events.clusterer_posts_per_s", len(posts) / (time.perf_counter() - started))
    report("events.clusterer_posts", len(posts))
    report("events.clusterer_events", len(events))


def run(report: Callable[[str, float | int | str], None]) -> None:
    """Burst delay / false alarms over seeded synthetic days, then clusterer and MinHash throughput."""
    _burst_figures(report)
    _clusterer_figures(report)
