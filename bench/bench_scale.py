"""Scale-mode bench: analyze throughput with one and two worker processes in one consumer group,
end-to-end latency at half of the measured maximum, and Elasticsearch bulk indexing rate.

Real processes on real servers: ``yuqing worker analyze|alerts`` subprocesses configured by ``YUQING_*``
variables against YUQING_KAFKA_BOOTSTRAP / YUQING_ES_URL (``make bench`` starts noida-db for them) and,
for the event stage, PostgreSQL at YUQING_TEST_DATABASE_URL / YUQING_DATABASE_URL (a SQLite file
otherwise). Every run uses its own topic, group and index prefixes.

Figures: ``scale.analyze_1w_posts_per_s``, ``scale.analyze_2w_posts_per_s``, ``scale.analyze_2w_speedup``,
``scale.e2e_max_posts_per_s`` (one analyze + one event-stage process draining a burst),
``scale.e2e_rate_posts_per_s`` (the feed rate: half of that maximum), ``scale.e2e_p50_ms`` /
``scale.e2e_p95_ms`` (publish to the post counted into its event, rules evaluated, tickets written),
``scale.es_bulk_docs_per_s``. ``YUQING_BENCH_SCALE_POSTS`` sets the throughput corpus (default 400).

On a 2-core machine two analyze processes cannot reach 2x: analysis is CPU-bound Python (SnowNLP's
tagger, LAC via onnxruntime, jieba), each process is single-threaded for it, the second process competes
with the first for the same two cores together with the broker, the event stage and this driver, and a
rebalance pauses both members when the second joins.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

Report = Callable[[str, Any], None]


def _posts(n: int, seed: int) -> list[Any]:
    from tests.faults.scale import demo_posts

    return demo_posts(n, seed=seed)


@contextlib.contextmanager
def _deployment(workdir: Path, *, partitions: int, db_url: str) -> Iterator[Any]:
    from tests.faults.scale import Scale

    scale = Scale(bootstrap=os.environ["YUQING_KAFKA_BOOTSTRAP"], es_url=os.environ["YUQING_ES_URL"], db_url=db_url,
                  workdir=workdir / uuid.uuid4().hex[:6], partitions=partitions,
                  extra_env={"YUQING_ANALYZE__BATCH_SIZE": "32", "YUQING_LOG_LEVEL": "WARNING"})
    scale.workdir.mkdir(parents=True)
    try:
        yield scale
    finally:
        scale.close()


@contextlib.contextmanager
def _database(workdir: Path) -> Iterator[str]:
    from tests.faults.scale import fresh_database

    server = os.environ.get("YUQING_TEST_DATABASE_URL") or os.environ.get("YUQING_DATABASE_URL")
    if server and server.startswith("postgresql"):
        with fresh_database(server, prefix="yq_bench") as url:
            yield url
    else:
        yield f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:6]}.sqlite'}"


def _throughput(workdir: Path, posts: list[Any], workers: int) -> float:
    """Posts/s through the analyze stage with ``workers`` processes in one group (after warm-up)."""
    from tests.faults.scale import publish, raw_items, wait_for

    warm = 8 * workers
    with _deployment(workdir, partitions=4, db_url=f"sqlite:///{workdir / 'unused.sqlite'}") as scale:
        for i in range(workers):
            scale.worker("analyze", f"analyze-{i}")
        publish(scale, "posts.raw", raw_items(posts[:warm]))

        def settled() -> bool:
            members = scale.group_members("analyze")
            return len(members) == workers and all(members.values()) \
                and scale.group_lag("analyze", "posts.raw") == 0

        wait_for(settled, timeout_s=300, every_s=0.5, what=f"{workers} warmed-up analyze workers")
        started = time.perf_counter()
        publish(scale, "posts.raw", raw_items(posts[warm:]), chunk=200)
        wait_for(lambda: scale.group_lag("analyze", "posts.raw") == 0, timeout_s=1800, every_s=0.2,
                 what="the analyze group to commit every post")
        return (len(posts) - warm) / (time.perf_counter() - started)


def _end_to_end(workdir: Path, burst: list[Any], feed: list[Any], *,
                seconds: float) -> tuple[float, float, list[float]]:
    """One analyze and one event-stage process: the pipeline's maximum rate (a burst drained from the bus),
    then per-post latency (publish -> counted into its event) feeding at half of that rate.

    Returns (max posts/s, feed rate, latencies in seconds).
    """
    from sqlalchemy import create_engine, text

    from core.wiring import build_bus
    from tests.faults.scale import publish, raw_items, wait_for

    with _database(workdir) as db_url, _deployment(workdir, partitions=4, db_url=db_url) as scale:
        scale.worker("analyze", "analyze-0")
        scale.worker("alerts", "alerts-0")
        warm = 8
        publish(scale, "posts.raw", raw_items(burst[:warm]))
        wait_for(lambda: scale.member_count() >= warm, timeout_s=300, every_s=0.5, what="warm-up")
        started = time.perf_counter()
        publish(scale, "posts.raw", raw_items(burst[warm:]), chunk=200)
        wait_for(lambda: scale.member_count() >= len(burst), timeout_s=1800, every_s=0.2, what="the burst")
        max_rate = (len(burst) - warm) / (time.perf_counter() - started)
        rate = max_rate / 2
        feed = feed[:max(20, int(rate * seconds))]
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}
        engine = create_engine(db_url)
        bus = build_bus(scale.settings())
        interval = 1.0 / rate
        start = time.perf_counter()
        try:
            with engine.connect() as conn:
                def look() -> None:
                    now = time.perf_counter()
                    for (post_id,) in conn.execute(text("SELECT post_id FROM event_members")):
                        if post_id in sent and post_id not in seen:
                            seen[post_id] = now
                    conn.commit()

                for i, post in enumerate(feed):
                    due = start + i * interval
                    while time.perf_counter() < due:
                        look()
                        time.sleep(min(0.05, max(0.0, due - time.perf_counter())))
                    sent[post.id] = time.perf_counter()
                    bus.publish("posts.raw", post.model_dump_json().encode(), key=post.id)
                    bus.flush()
                deadline = time.perf_counter() + 300
                while len(seen) < len(sent) and time.perf_counter() < deadline:
                    look()
                    time.sleep(0.05)
        finally:
            bus.close()
            engine.dispose()
        return max_rate, rate, [seen[k] - sent[k] for k in seen]


def _es_bulk(report: Report) -> None:
    from bench.bench_backends import _batches, generate, tokenize
    from core.store.es_posts import ElasticsearchPostStore

    n = 5000
    store = ElasticsearchPostStore(url=os.environ["YUQING_ES_URL"], username=None, password=None,
                                   index_prefix=f"yqbench{uuid.uuid4().hex[:6]}-posts", index_period="month",
                                   bulk_batch=500, request_timeout_s=30, max_retries=3, use_ik=False,
                                   tokenize=tokenize)
    try:
        store.ensure_schema()
        batches = list(_batches(generate(n, seed=11), 500))
        for batch in batches[:1]:
            store.upsert(batch)  # warm the segmenter cache and the index
        started = time.perf_counter()
        for batch in batches[1:]:
            store.upsert(batch)
        store.refresh()
        report("scale.es_bulk_docs_per_s", (n - 500) / (time.perf_counter() - started))
    finally:
        store.close()


def run(report: Report) -> None:
    """Measure the scale mode when its servers are configured (one `name: value` line per figure)."""
    missing = [v for v in ("YUQING_KAFKA_BOOTSTRAP", "YUQING_ES_URL") if not os.environ.get(v)]
    if missing:
        report("scale.skipped", f"{' and '.join(missing)} not set (make bench starts noida-db for them)")
        return
    n = int(os.environ.get("YUQING_BENCH_SCALE_POSTS", "400"))
    with tempfile.TemporaryDirectory(prefix="yuqing-bench-scale-") as tmp:
        workdir = Path(tmp)
        posts = _posts(n, seed=5)
        one = _throughput(workdir, posts, 1)
        report("scale.analyze_1w_posts_per_s", one)
        two = _throughput(workdir, _posts(n, seed=6), 2)
        report("scale.analyze_2w_posts_per_s", two)
        report("scale.analyze_2w_speedup", two / one if one else 0.0)
        max_rate, rate, latencies = _end_to_end(workdir, _posts(max(n // 2, 48), seed=7),
                                                _posts(2000, seed=8), seconds=30)
        latencies.sort()
        report("scale.e2e_max_posts_per_s", max_rate)
        report("scale.e2e_rate_posts_per_s", rate)
        if latencies:
            report("scale.e2e_posts_measured", len(latencies))
            report("scale.e2e_p50_ms", 1000 * statistics.median(latencies))
            report("scale.e2e_p95_ms", 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))])
        _es_bulk(report)
