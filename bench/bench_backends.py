"""Backends bench: SQLite post store upserts (batched vs one per call) and search latency, MemoryBus
throughput; with YUQING_KAFKA_BOOTSTRAP / YUQING_ES_URL set, Kafka produce/consume and ES bulk rates.

``YUQING_BENCH_BACKENDS_POSTS`` sets the SQLite corpus size (default 20,000; the store is meant to
stay fast at 1,000,000). Texts come from a pool of generated sentences so jieba segmentation is
cached and the figures measure the store, not the segmenter.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import jieba

from core.bus.memory import MemoryBus
from core.records import AnalyzedPost, Engagement, Entities, Sentiment, SentimentLabel, Source, Topic, post_id
from core.store.base import PostQuery, PostStore
from core.store.sqlite_posts import SqlitePostStore

Report = Callable[[str, Any], None]
START = datetime(2026, 1, 1, tzinfo=UTC)
SUBJECTS = ["小区", "学校", "医院", "地铁站", "菜市场", "公园", "高速路口", "物业公司", "自来水厂", "垃圾站"]
PROBLEMS = ["噪音扰民", "道路积水", "停车难", "乱收费", "水质发黄", "施工扬尘", "电梯故障", "排队时间长",
            "拖欠工资", "油烟污染"]
MOODS = ["居民非常不满", "希望尽快解决", "已经反映多次", "感谢相关部门", "情况有所好转", "网友纷纷转发"]
TOPICS = ["城乡建设", "城市管理", "卫生健康", "交通运输", "生态环境", "劳动保障"]
SOURCES = list(Source)
LABELS = list(SentimentLabel)


@lru_cache(maxsize=100_000)
def _segment(part: str) -> tuple[str, ...]:
    return tuple(jieba.lcut_for_search(part))


def tokenize(text: str) -> list[str]:
    """jieba, cached per line (titles and bodies repeat in the generated corpus)."""
    return [t for part in text.split("\n") for t in _segment(part)]


@lru_cache(maxsize=1)
def _pool() -> tuple[str, ...]:
    rnd = random.Random(0)
    return tuple(f"{rnd.choice(SUBJECTS)}{rnd.choice(PROBLEMS)}，{rnd.choice(MOODS)}。{rnd.choice(SUBJECTS)}附近"
                 f"{rnd.choice(PROBLEMS)}" for _ in range(3000))


def generate(n: int, *, seed: int = 7) -> Iterator[AnalyzedPost]:
    """``n`` synthetic analyzed posts over 60 days."""
    pool = _pool()
    rnd = random.Random(seed)
    for i in range(n):
        source = SOURCES[i % len(SOURCES)]
        label = LABELS[rnd.randrange(3)]
        yield AnalyzedPost(
            id=post_id(source.value, str(i)), source=source, external_id=str(i), text=rnd.choice(pool),
            published_at=START + timedelta(seconds=rnd.randrange(60 * 86400)), received_at=START,
            engagement=Engagement(likes=rnd.randrange(100)),
            sentiment=Sentiment(label=label, score=0.8 if label == SentimentLabel.negative else 0.2),
            topic=Topic(l1=rnd.choice(TOPICS)), entities=Entities(districts=[f"d{rnd.randrange(12)}"]),
            event_id=f"ev{rnd.randrange(n // 20 + 1)}", signature=[rnd.getrandbits(32) for _ in range(64)])


def _batches(posts: Iterator[AnalyzedPost], size: int) -> Iterator[list[AnalyzedPost]]:
    batch: list[AnalyzedPost] = []
    for post in posts:
        batch.append(post)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _bench_sqlite(report: Report, workdir: Path) -> None:
    n = int(os.environ.get("YUQING_BENCH_BACKENDS_POSTS", "20000"))
    singles = min(2000, n)
    for text in _pool():  # warm jieba and the segment cache outside the timings
        tokenize(text)
    store = SqlitePostStore(workdir / "posts.sqlite", tokenize=tokenize)
    store.ensure_schema()
    stored, elapsed = 0, 0.0
    for batch in _batches(generate(n), 500):
        started = time.perf_counter()
        store.upsert(batch)
        elapsed += time.perf_counter() - started
        stored += len(batch)
    batched = stored / elapsed
    report("sqlite.upsert_batched_posts_per_s", batched)

    single_store = SqlitePostStore(workdir / "single.sqlite", tokenize=tokenize)
    single_store.ensure_schema()
    posts = list(generate(singles, seed=3))
    started = time.perf_counter()
    for post in posts:
        single_store.upsert([post])
    one_by_one = singles / (time.perf_counter() - started)
    single_store.close()
    report("sqlite.upsert_single_posts_per_s", one_by_one)
    report("sqlite.batch_speedup_x", batched / one_by_one)

    again = list(generate(min(n, 5000)))
    started = time.perf_counter()
    store.upsert(again)  # pure redelivery: nothing new, nothing rewritten
    report("sqlite.redelivery_noop_posts_per_s", len(again) / (time.perf_counter() - started))

    report("sqlite.posts", store.count())
    _search_latency(report, "sqlite", store)
    store.close()


def _search_latency(report: Report, name: str, store: PostStore) -> None:
    rnd = random.Random(11)
    queries = []
    for i in range(200):
        since = START + timedelta(days=rnd.randrange(50))
        kind = i % 4
        if kind == 0:
            queries.append(PostQuery(q=rnd.choice(PROBLEMS)))
        elif kind == 1:
            queries.append(PostQuery(q=rnd.choice(SUBJECTS), sentiment="负面", since=since))
        elif kind == 2:
            queries.append(PostQuery(source=rnd.choice(SOURCES).value, since=since, until=since + timedelta(days=3)))
        else:
            queries.append(PostQuery(topic=rnd.choice(TOPICS), offset=40, limit=20))
    timings = []
    for query in queries:
        started = time.perf_counter()
        store.search(query)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    report(f"{name}.search_p50_ms", statistics.median(timings))
    report(f"{name}.search_p95_ms", timings[int(len(timings) * 0.95) - 1])
    started = time.perf_counter()
    store.overview(PostQuery(since=START + timedelta(days=53)), interval="hour")
    report(f"{name}.overview_7d_ms", (time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    store.overview(PostQuery(), interval="day")
    report(f"{name}.overview_all_daily_ms", (time.perf_counter() - started) * 1000)


def _bench_memory_bus(report: Report) -> None:
    n = 200_000
    bus = MemoryBus(partitions=4, max_backlog=50_000)
    consumer = bus.consumer(["bench"], group="bench")
    payload = b"x" * 300
    received = 0

    def consume() -> None:
        nonlocal received
        while received < n:
            batch = consumer.poll(max_records=1000, timeout_s=1)
            received += len(batch)
            consumer.commit()

    worker = threading.Thread(target=consume)
    started = time.perf_counter()
    worker.start()
    for i in range(0, n, 500):
        bus.publish_many("bench", [(f"k{j % 997}", payload) for j in range(i, i + 500)])
    worker.join()
    report("memory_bus.msgs_per_s", n / (time.perf_counter() - started))
    bus.close()


def _bus_rate(bus: Any, *, n: int, batch: int, payload: bytes) -> float:
    """Messages per second through ``bus``: one publisher (``batch`` per publish call), one committing consumer."""
    consumer = bus.consumer(["bench"], group="bench")
    received = 0

    def consume() -> None:
        nonlocal received
        while received < n:
            got = consumer.poll(max_records=256, timeout_s=1)  # the event stage's batch size
            if got:
                received += len(got)
                consumer.commit()

    worker = threading.Thread(target=consume)
    started = time.perf_counter()
    worker.start()
    for i in range(0, n, batch):
        bus.publish_many("bench", [(f"k{j % 997}", payload) for j in range(i, min(n, i + batch))])
    worker.join()
    rate = n / (time.perf_counter() - started)
    consumer.close()
    bus.close()
    return rate


def _bench_durable_bus(report: Report) -> None:
    """The embedded default (SqliteBus, fsync per publish) against MemoryBus on the same post-sized workload."""
    from core.bus.sqlite import SqliteBus

    n = int(os.environ.get("YUQING_BENCH_BUS_MESSAGES", "40000"))
    payload = ("{" + '"text": "' + "市民反映小区停水三天" * 60 + '"}').encode()  # ~1.8 KB, a post's JSON
    memory = _bus_rate(MemoryBus(partitions=4), n=n, batch=500, payload=payload)
    report("durable_bus.memory_baseline_msgs_per_s", memory)
    with tempfile.TemporaryDirectory(prefix="yuqing-bench-bus-") as tmp:
        full = _bus_rate(SqliteBus(Path(tmp) / "full.sqlite", synchronous="full"), n=n, batch=500, payload=payload)
        normal = _bus_rate(SqliteBus(Path(tmp) / "normal.sqlite", synchronous="normal"), n=n, batch=500,
                           payload=payload)
        single = _bus_rate(SqliteBus(Path(tmp) / "single.sqlite", synchronous="full"), n=n // 20, batch=1,
                           payload=payload)
        size_kib = (Path(tmp) / "full.sqlite").stat().st_size / 1024
    report("durable_bus.full_msgs_per_s", full)
    report("durable_bus.normal_msgs_per_s", normal)
    report("durable_bus.full_one_per_publish_msgs_per_s", single)
    report("durable_bus.full_vs_memory_x", full / memory)
    report("durable_bus.file_kib_after_all_consumed", size_kib)


def _pipeline_rate(bus_backend: str, records: list[Any], data_dir: Path) -> float:
    """Posts per second through the embedded pipeline (analyze + event stage) on the chosen bus."""
    from core.runtime import Pipeline
    from core.settings import Settings
    from core.wiring import Container

    container = Container(Settings(mode="embedded", data_dir=data_dir, database_url="", bus_backend=bus_backend,
                                   analyze={"sentiment_model": "tfidf", "ner": "off"}))
    pipeline = Pipeline(container)
    _ = container.analyzer, container.clusterer, container.post_store  # models load before the clock starts
    pipeline.start(kinds=["analyze", "alerts"])
    started = time.perf_counter()
    pipeline.ingest(records)
    pipeline.wait_idle(timeout_s=3600, settle_s=0.5)
    elapsed = time.perf_counter() - started
    stored = container.post_store.count()
    pipeline.stop()
    container.close()
    return stored / elapsed


def _bench_durable_pipeline(report: Report) -> None:
    """The whole embedded pipeline on the durable bus vs MemoryBus (the cheap TF-IDF model, so the bus shows)."""
    import json

    from ingest.base import RawRecord
    from ingest.demo import DemoStream

    n = int(os.environ.get("YUQING_BENCH_BUS_PIPELINE_POSTS", "3000"))
    records = []
    for i, record in enumerate(DemoStream(seed=11, rate_per_min=600.0)):
        if i >= n:
            break
        records.append(RawRecord(data=json.dumps(record, ensure_ascii=False).encode(), origin=f"bench:{i}"))
    with tempfile.TemporaryDirectory(prefix="yuqing-bench-busp-") as tmp:
        memory = _pipeline_rate("memory", records, Path(tmp) / "memory")
        durable = _pipeline_rate("sqlite", records, Path(tmp) / "sqlite")
    report("durable_bus.pipeline_memory_posts_per_s", memory)
    report("durable_bus.pipeline_durable_posts_per_s", durable)
    report("durable_bus.pipeline_durable_vs_memory_x", durable / memory)


def _bench_kafka(report: Report, bootstrap: str) -> None:
    from core.bus.kafka import KafkaBus

    n = 20_000
    bus = KafkaBus(bootstrap=bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:8]}.", partitions=4,
                   replication_factor=1, acks="all", linger_ms=20, batch_size=256 * 1024, compression="gzip",
                   max_poll_records=1000, max_poll_interval_ms=60_000, session_timeout_ms=6_000,
                   request_timeout_ms=30_000, group_prefix="bench-")
    bus.ensure_topics(["bench"])
    payload = b'{"text": "' + "舆情".encode() * 100 + b'"}'
    started = time.perf_counter()
    for i in range(0, n, 1000):
        bus.publish_many("bench", [(f"k{j % 997}", payload) for j in range(i, i + 1000)])
    bus.flush()
    report("kafka.produce_msgs_per_s", n / (time.perf_counter() - started))
    consumer = bus.consumer(["bench"], group="bench")
    got = 0
    started = time.perf_counter()
    deadline = started + 120
    while got < n and time.perf_counter() < deadline:
        got += len(consumer.poll(max_records=1000, timeout_s=1))
        consumer.commit()
    report("kafka.consume_msgs_per_s", got / (time.perf_counter() - started))
    consumer.close()
    bus.close()


def _bench_es(report: Report, url: str) -> None:
    from core.store.es_posts import ElasticsearchPostStore

    store = ElasticsearchPostStore(url=url, username=None, password=None,
                                   index_prefix=f"bench-{uuid.uuid4().hex[:8]}", index_period="month",
                                   bulk_batch=500, request_timeout_s=30, max_retries=3, use_ik=False,
                                   tokenize=tokenize)
    store.ensure_schema()
    try:
        n = 5_000
        batches = list(_batches(generate(n, seed=5), 500))
        started = time.perf_counter()
        for batch in batches:
            store.upsert(batch)
        store.refresh()
        report("es.bulk_docs_per_s", n / (time.perf_counter() - started))
        _search_latency(report, "es", store)
    finally:
        store.drop_all()
        store.close()


def run(report: Report) -> None:
    """Measure the embedded backends, and the scale ones when their servers are configured."""
    jieba.setLogLevel(60)
    with tempfile.TemporaryDirectory(prefix="yuqing-bench-") as tmp:
        _bench_sqlite(report, Path(tmp))
    _bench_memory_bus(report)
    _bench_durable_bus(report)
    _bench_durable_pipeline(report)
    if bootstrap := os.environ.get("YUQING_KAFKA_BOOTSTRAP"):
        _bench_kafka(report, bootstrap)
    else:
        report("kafka.skipped", "YUQING_KAFKA_BOOTSTRAP not set")
    if url := os.environ.get("YUQING_ES_URL"):
        _bench_es(report, url)
    else:
        report("es.skipped", "YUQING_ES_URL not set")
