"""End-to-end embedded pipeline bench: throughput, incident latency, peak RSS, against a naive baseline.

1. Throughput: N demo posts (default 100,000; ``YUQING_BENCH_POSTS``) are validated, published and driven
   through analyze → event stage (stored, clustered, alert-evaluated) as fast as possible.
2. Latency: a fresh pipeline is fed at half the measured throughput, in real time; for each injected
   incident, the time from ingesting the post that crossed a rule to the ticket's creation.
3. Baseline, same run: one snownlp call and one committed SQLite insert per post, on a sample.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.records import Post
from core.runtime import Pipeline
from core.settings import Settings
from core.wiring import Container
from ingest.base import RawRecord
from ingest.demo import DemoStream

Report = Callable[[str, Any], None]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _records(n: int, *, seed: int, rate_per_min: float) -> list[RawRecord]:
    out = []
    for i, record in enumerate(DemoStream(seed=seed, rate_per_min=rate_per_min)):
        if i >= n:
            break
        out.append(RawRecord(data=json.dumps(record, ensure_ascii=False).encode(), origin=f"bench:{i}"))
    return out


def _pipeline(data_dir: Path, **overrides: Any) -> tuple[Container, Pipeline]:
    settings = Settings(mode="embedded", data_dir=data_dir, database_url="", **overrides)
    container = Container(settings)
    return container, Pipeline(container)


def _throughput(report: Report, n: int, tmp: Path) -> float:
    records = _records(n, seed=11, rate_per_min=600.0)
    container, pipeline = _pipeline(tmp / "throughput")
    _ = container.analyzer, container.clusterer, container.post_store  # load models before the clock starts
    pipeline.start(kinds=["analyze", "alerts"])
    started = time.perf_counter()
    stats = pipeline.ingest(records)
    pipeline.wait_idle(timeout_s=7200, settle_s=0.5)
    elapsed = time.perf_counter() - started
    stored = container.post_store.count()
    stage = getattr(pipeline, "event_stage", None)
    pipeline.stop()
    container.close()
    rate = stored / elapsed if elapsed else 0.0
    report("pipeline.posts", n)
    report("pipeline.accepted", stats.accepted)
    report("pipeline.stored", stored)
    report("pipeline.tickets_opened", getattr(stage, "tickets_opened", 0))
    report("pipeline.throughput_posts_per_s", rate)
    report("pipeline.peak_rss_mb", _peak_rss_mb())
    return rate


def _latency(report: Report, rate_per_s: float, tmp: Path) -> None:
    """Feed in real time at ``rate_per_s``; measure ingest→ticket latency for injected incidents."""
    seconds = float(os.environ.get("YUQING_BENCH_LATENCY_S", "90"))
    n = max(200, int(rate_per_s * seconds))
    stream = DemoStream(seed=23, rate_per_min=rate_per_s * 60.0)
    raw: list[dict[str, Any]] = []
    for i, record in enumerate(stream):
        if i >= n:
            break
        raw.append(record)
    container, pipeline = _pipeline(tmp / "latency")
    _ = container.analyzer, container.clusterer, container.post_store
    ingested_at: dict[str, float] = {}
    latencies: list[float] = []

    def on_ticket(change: dict[str, Any]) -> None:
        if change.get("created") and change.get("post_id") in ingested_at:
            latencies.append(time.perf_counter() - ingested_at[change["post_id"]])

    pipeline.ticket_listeners.append(on_ticket)
    pipeline.start(kinds=["analyze", "alerts"])
    from ingest.validate import parse_record

    salt = container.settings.author_salt.get_secret_value()
    t0 = time.perf_counter()
    first_at = None
    for record in raw:
        post: Post = parse_record(json.dumps(record, ensure_ascii=False).encode(), source_hint=None, salt=salt,
                                  max_text_chars=container.settings.max_text_chars)
        at = post.published_at.timestamp()
        first_at = first_at if first_at is not None else at
        delay = (at - first_at) - (time.perf_counter() - t0)
        if delay > 0:
            time.sleep(delay)
        ingested_at[post.id] = time.perf_counter()
        pipeline.publish_post(post)
    pipeline.wait_idle(timeout_s=600)
    pipeline.stop()
    container.close()
    report("latency.feed_rate_posts_per_s", rate_per_s)
    report("latency.tickets_measured", len(latencies))
    if latencies:
        latencies.sort()

        def pct(p: float) -> float:
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000.0

        report("latency.ingest_to_ticket_p50_ms", pct(0.50))
        report("latency.ingest_to_ticket_p95_ms", pct(0.95))
        report("latency.ingest_to_ticket_p99_ms", pct(0.99))


def _naive(report: Report, tmp: Path, n: int = 2000) -> float:
    """One snownlp call and one committed SQLite insert per post."""
    from snownlp import SnowNLP

    records = [json.loads(r.data) for r in _records(n, seed=5, rate_per_min=600.0)]
    conn = sqlite3.connect(tmp / "naive.sqlite")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE posts (id TEXT PRIMARY KEY, text TEXT, score REAL)")
    started = time.perf_counter()
    for i, record in enumerate(records):
        score = SnowNLP(record["text"][:2000]).sentiments
        conn.execute("INSERT OR IGNORE INTO posts VALUES (?, ?, ?)", (str(i), record["text"], score))
        conn.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    rate = n / elapsed
    report("baseline.naive_posts_per_s", rate)
    return rate


def run(report: Report) -> None:
    """Run the three parts and the ratio."""
    n = int(os.environ.get("YUQING_BENCH_POSTS", "100000"))
    with tempfile.TemporaryDirectory(prefix="yuqing-bench-") as tmp_name:
        tmp = Path(tmp_name)
        naive = _naive(report, tmp)
        rate = _throughput(report, n, tmp)
        report("pipeline.speedup_vs_naive", rate / naive if naive else 0.0)
        _latency(report, max(1.0, rate / 2.0), tmp)
