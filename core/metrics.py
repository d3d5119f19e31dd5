"""Prometheus metrics: a few push-style instruments plus a collector that reads state at scrape time.

Most figures are read when ``/metrics`` is scraped, so nothing on the hot path pays for them:
worker counters come from ``StageWorker.stats``, bus backlog from ``MemoryBus.backlog``, and
tickets, outbox, dead letters and scheduler runs from small GROUP BY queries on the relational
store (cached for ``cache_s`` so a scrape storm cannot hammer the database).

Three things can only be counted as they happen: posts ingested per source, stage batch latency
and dead letters by reason kind. ``instrument_pipeline`` wraps the pipeline's ``publish_post`` and
``dead_letter`` and each worker's ``handle`` (instance attributes, looked up at call time), so no
other module needs to know about metrics.

Metric names (all prefixed ``yuqing_``): see ``PipelineInstruments`` and ``YuqingCollector.collect``.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, literal_column, select

from core.memory import sqlite_memory_bytes
from core.records import utcnow

if TYPE_CHECKING:
    from core.runtime import Pipeline
    from core.wiring import Container

log = logging.getLogger(__name__)

# Stage batches take milliseconds (alerts) to tens of seconds (a transformer on a big batch).
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 200, 500, 1000)
_ERRCODE = re.compile(r"errcode\s*[=:]?\s*(-?\d+)", re.IGNORECASE)
_EXC_NAME = re.compile(r"^([A-Z][A-Za-z0-9_]*(?:Error|Exception|Unavailable|Invalid))\b")
_OPEN_STATES = ("new", "acknowledged", "assessing", "handling", "responded")
_OVERDUE_STEP = 2  # alerts.scheduler.OVERDUE: the 超时 escalation step


def reason_kind(stage: str, reason: str) -> str:
    """A small, bounded label for a dead letter's reason (ingest kinds, else the exception class name)."""
    if stage == "ingest":
        from ingest.validate import reason_kind as ingest_kind

        return ingest_kind(reason)
    match = _EXC_NAME.match(reason)
    return match.group(1) if match else "other"


def send_error_kind(error: str | None) -> str:
    """``errcode`` of a WeChat Work answer, ``timeout``, or ``other`` for a stored send error."""
    if not error:
        return "none"
    match = _ERRCODE.search(error)
    if match:
        return match.group(1)
    lowered = error.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return "timeout"
    if "refused" in lowered or "unreachable" in lowered:
        return "connect"
    return "other"


class PipelineInstruments:
    """The metrics that must be counted as they happen (one set per process, shared by every registry)."""

    def __init__(self) -> None:
        self.ingested = Counter("yuqing_ingested_posts", "Posts accepted onto the raw topic, by source",
                                ["source"], registry=None)
        self.batch_seconds = Histogram("yuqing_stage_batch_seconds", "Time to handle one stage batch",
                                       ["stage"], buckets=BATCH_BUCKETS, registry=None)
        self.batch_size = Histogram("yuqing_stage_batch_size", "Messages per handled stage batch",
                                    ["stage"], buckets=SIZE_BUCKETS, registry=None)
        self.handled = Counter("yuqing_stage_handled_posts", "Posts handled by a stage (throughput)",
                               ["stage"], registry=None)
        self.dead_letters = Counter("yuqing_dead_letters", "Dead letters written by this process",
                                    ["stage", "kind"], registry=None)

    def collectors(self) -> list[Collector]:
        """Every instrument, for registering into a registry."""
        return [self.ingested, self.batch_seconds, self.batch_size, self.handled, self.dead_letters]


_INSTRUMENTS_ATTR = "_yuqing_instruments"
_lock = threading.Lock()


def instrument_pipeline(pipeline: Pipeline) -> PipelineInstruments:
    """Attach instruments to ``pipeline`` (idempotent; call again after new workers start)."""
    with _lock:
        inst: PipelineInstruments | None = getattr(pipeline, _INSTRUMENTS_ATTR, None)
        if inst is None:
            inst = PipelineInstruments()
            setattr(pipeline, _INSTRUMENTS_ATTR, inst)
            _wrap_publish(pipeline, inst)
            _wrap_dead_letter(pipeline, inst)
        for worker in list(pipeline.workers):
            if not getattr(worker.handle, "_yuqing_timed", False):
                worker.handle = _timed(worker.name, worker.handle, inst)
        return inst


def _wrap_publish(pipeline: Pipeline, inst: PipelineInstruments) -> None:
    original = pipeline.publish_post

    @functools.wraps(original)
    def publish_post(post: Any) -> None:
        original(post)
        source = getattr(post.source, "value", post.source)
        inst.ingested.labels(source=str(source)).inc()

    pipeline.publish_post = publish_post  # type: ignore[method-assign]
    original_many = pipeline.publish_posts

    @functools.wraps(original_many)
    def publish_posts(posts: list[Any]) -> None:
        original_many(posts)  # counted once the batch is durable on the bus, as a single post is
        for post in posts:
            source = getattr(post.source, "value", post.source)
            inst.ingested.labels(source=str(source)).inc()

    pipeline.publish_posts = publish_posts  # type: ignore[method-assign]


def _wrap_dead_letter(pipeline: Pipeline, inst: PipelineInstruments) -> None:
    original = pipeline.dead_letter

    @functools.wraps(original)
    def dead_letter(*, stage: str, source: str, origin: str, reason: str, raw: bytes) -> None:
        original(stage=stage, source=source, origin=origin, reason=reason, raw=raw)
        inst.dead_letters.labels(stage=stage, kind=reason_kind(stage, reason)).inc()

    pipeline.dead_letter = dead_letter  # type: ignore[method-assign]


def _timed(stage: str, handle: Callable[[list[Any]], None], inst: PipelineInstruments) -> Callable[[list[Any]], None]:
    def timed(items: list[Any]) -> None:
        started = time.perf_counter()
        handle(items)  # only successful batches are observed: a retried batch is timed when it lands
        inst.batch_seconds.labels(stage=stage).observe(time.perf_counter() - started)
        inst.batch_size.labels(stage=stage).observe(len(items))
        inst.handled.labels(stage=stage).inc(len(items))

    timed._yuqing_timed = True  # type: ignore[attr-defined]
    return timed


def _prefix(column: Any, chars: int) -> Any:
    """``substr(column, 1, chars)`` with the numbers inlined: PostgreSQL matches a GROUP BY expression to the
    select list only when both are the same text, and bound parameters ($1, $2 vs $3, $4) are not."""
    return func.substr(column, literal_column("1"), literal_column(str(int(chars))))


class YuqingCollector(Collector):
    """Reads workers, bus and database when scraped; database figures are cached ``cache_s`` seconds."""

    def __init__(self, container: Container, *, pipeline: Pipeline | None = None, cache_s: float = 10.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.container = container
        self.pipeline = pipeline
        self.cache_s = cache_s
        self.clock = clock
        self._cache: tuple[float, list[Metric]] | None = None
        self._cache_lock = threading.Lock()

    def describe(self) -> list[Metric]:
        """Nothing up front: the registry must not scrape the database when the collector is registered."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Every scrape-time figure."""
        errors = GaugeMetricFamily("yuqing_scrape_errors", "Parts that failed during this scrape", labels=["part"])
        for part, produce in (("workers", self._workers), ("bus", self._bus), ("db", self._db_cached)):
            try:
                yield from produce()
            except Exception as exc:  # one broken part must not blank the whole page
                log.warning("metrics: %s unavailable: %s", part, type(exc).__name__)
                errors.add_metric([part], 1.0)
        yield errors

    # -- workers ------------------------------------------------------------------------------------
    def _workers(self) -> Iterator[Metric]:
        loaded = GaugeMetricFamily("yuqing_sentiment_model_loaded", "1 when the sentiment model is in memory")
        loaded.add_metric([], 1.0 if "sentiment" in self.container.__dict__ else 0.0)
        yield loaded
        held = sqlite_memory_bytes()
        if held is not None:  # page caches are most of it: attributes this process's RSS
            sqlite = GaugeMetricFamily("yuqing_sqlite_memory_bytes", "Memory SQLite holds in this process")
            sqlite.add_metric([], float(held))
            yield sqlite
        pipeline = self.pipeline
        if pipeline is None:
            return
        instrument_pipeline(pipeline)  # workers started after install() get timed too
        up = GaugeMetricFamily("yuqing_worker_up", "1 while the worker thread runs", labels=["worker"])
        counters = {
            "batches": CounterMetricFamily("yuqing_worker_batches", "Batches handled", labels=["worker"]),
            "messages": CounterMetricFamily("yuqing_worker_messages", "Messages handled", labels=["worker"]),
            "poison": CounterMetricFamily("yuqing_worker_poison", "Undecodable messages", labels=["worker"]),
            "retries": CounterMetricFamily("yuqing_worker_retries", "Batch retries on outages", labels=["worker"]),
            "busy_s": CounterMetricFamily("yuqing_worker_busy_seconds", "Time spent in batches", labels=["worker"]),
        }
        last = GaugeMetricFamily("yuqing_worker_last_batch_timestamp_seconds", "When the last batch finished",
                                 labels=["worker"])
        for worker in list(pipeline.workers):
            up.add_metric([worker.name], 1.0 if worker.alive else 0.0)
            stats = worker.stats
            for field, family in counters.items():
                family.add_metric([worker.name], float(getattr(stats, field)))
            last.add_metric([worker.name], stats.last_batch_at)
        yield up
        yield from counters.values()
        yield last

    # -- bus ----------------------------------------------------------------------------------------
    def _bus(self) -> Iterator[Metric]:
        bus = self.container.__dict__.get("bus")
        backlog = getattr(bus, "backlog", None)
        if not callable(backlog):
            return  # Kafka: use the broker's own lag exporter; a consumer is not safe to query from here
        from core.bus.base import TOPIC_ANALYZED, TOPIC_RAW

        family = GaugeMetricFamily("yuqing_bus_backlog", "Messages not yet committed by a consumer group",
                                   labels=["topic"])
        for topic in (TOPIC_RAW, TOPIC_ANALYZED):
            family.add_metric([topic], float(backlog(topic)))
        yield family

    # -- database -----------------------------------------------------------------------------------
    def _db_cached(self) -> Iterator[Metric]:
        with self._cache_lock:
            now = time.monotonic()
            if self._cache is None or now - self._cache[0] >= self.cache_s:
                self._cache = (now, list(self._db()))
            metrics = self._cache[1]
        yield from metrics

    def _db(self) -> Iterator[Metric]:
        from core.db.models import DeadLetterRow, JobRunRow, OutboxRow, TargetStatusRow, TicketRow

        now = self.clock()
        with self.container.db.session() as s:
            tickets = GaugeMetricFamily("yuqing_tickets", "Tickets by state and warning level",
                                        labels=["state", "level"])
            for state, level, n in s.execute(
                select(TicketRow.state, TicketRow.level, func.count()).group_by(TicketRow.state, TicketRow.level)
            ):
                tickets.add_metric([state, str(level)], float(n))
            yield tickets
            overdue = GaugeMetricFamily("yuqing_tickets_overdue", "Open tickets past a deadline (超时 or later)")
            overdue.add_metric([], float(s.scalar(
                select(func.count()).select_from(TicketRow)
                .where(TicketRow.state.in_(_OPEN_STATES), TicketRow.escalation >= _OVERDUE_STEP)
            ) or 0))
            yield overdue

            rows = GaugeMetricFamily("yuqing_outbox_rows", "Outbox rows by channel and state (sent = delivered)",
                                     labels=["channel", "state"])
            for channel, state, n in s.execute(
                select(OutboxRow.channel, OutboxRow.state, func.count()).group_by(OutboxRow.channel, OutboxRow.state)
            ):
                rows.add_metric([channel, state], float(n))
            yield rows
            failed = GaugeMetricFamily(
                "yuqing_outbox_failed_rows", "Undelivered rows that failed at least once, by error code",
                labels=["channel", "state", "errcode"])
            counts: dict[tuple[str, str, str], int] = {}
            for channel, state, error, n in s.execute(
                select(OutboxRow.channel, OutboxRow.state, _prefix(OutboxRow.last_error, 160), func.count())
                .where(OutboxRow.state != "sent", OutboxRow.last_error.is_not(None))
                .group_by(OutboxRow.channel, OutboxRow.state, _prefix(OutboxRow.last_error, 160))
            ):
                key = (channel, state, send_error_kind(error))
                counts[key] = counts.get(key, 0) + int(n)
            for key, n in counts.items():
                failed.add_metric(list(key), float(n))
            yield failed
            oldest = s.scalar(select(func.min(OutboxRow.created_at)).where(OutboxRow.state == "pending"))
            age = GaugeMetricFamily("yuqing_outbox_oldest_pending_age_seconds", "Age of the oldest pending row")
            age.add_metric([], max(0.0, (now - _aware(oldest)).total_seconds()) if oldest else 0.0)
            yield age
            broken = GaugeMetricFamily("yuqing_notify_targets_broken", "Notification targets marked broken",
                                       labels=["channel"])
            for channel, n in s.execute(
                select(TargetStatusRow.channel, func.count()).where(TargetStatusRow.broken.is_(True))
                .group_by(TargetStatusRow.channel)
            ):
                broken.add_metric([channel], float(n))
            yield broken

            # Reasons are grouped by a short prefix: enough to classify, bounded in cardinality.
            dead = GaugeMetricFamily("yuqing_dead_letters_stored", "Dead letters kept, by stage and reason kind",
                                     labels=["stage", "kind"])
            dead_counts: dict[tuple[str, str], int] = {}
            prefix = _prefix(DeadLetterRow.reason, 24)
            for stage, reason, n in s.execute(
                select(DeadLetterRow.stage, prefix, func.count()).group_by(DeadLetterRow.stage, prefix)
            ):
                dead_key = (stage, reason_kind(stage, reason or ""))
                dead_counts[dead_key] = dead_counts.get(dead_key, 0) + int(n)
            for dead_key, total in dead_counts.items():
                dead.add_metric(list(dead_key), float(total))
            yield dead

            runs = CounterMetricFamily("yuqing_scheduler_runs", "Scheduled job slots run (all workers)",
                                       labels=["job"])
            last = GaugeMetricFamily("yuqing_scheduler_last_run_timestamp_seconds", "When a job last ran",
                                     labels=["job"])
            for job, n, at in s.execute(
                select(JobRunRow.job, func.count(), func.max(JobRunRow.at)).group_by(JobRunRow.job)
            ):
                runs.add_metric([job], float(n))
                last.add_metric([job], _aware(at).timestamp() if at else 0.0)
            yield runs
            yield last
        posts = GaugeMetricFamily("yuqing_posts_stored", "Posts in the post store")
        posts.add_metric([], float(self.container.post_store.count()))
        yield posts


def _aware(value: Any) -> datetime:
    """Aggregates (MIN/MAX) bypass the column type on SQLite and may come back naive or as text."""
    from datetime import UTC

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    result: datetime = value.astimezone(UTC)
    return result


def build_registry(container: Container, *, pipeline: Pipeline | None = None, cache_s: float = 10.0,
                   process: bool = True) -> CollectorRegistry:
    """A registry with the scrape-time collector, the pipeline's instruments and process figures (RSS, CPU)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(YuqingCollector(container, pipeline=pipeline, cache_s=cache_s))
    if pipeline is not None:
        for collector in instrument_pipeline(pipeline).collectors():
            registry.register(collector)
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry
