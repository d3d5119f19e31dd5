"""Stage glue: how posts enter the bus, how each stage worker is assembled, and the embedded runner.

``Pipeline`` wires the stage workers over one Container. In embedded mode ``yuqing run`` starts
every worker as a thread of one process next to the API; in scale mode ``yuqing worker KIND``
starts one kind per process, and Kafka consumer groups share the partitions between them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from core.bus.base import TOPIC_ANALYZED, TOPIC_DEAD, TOPIC_RAW, Message
from core.records import AnalyzedPost, Post, Source, utcnow
from core.wiring import Container
from core.worker import StageWorker

log = logging.getLogger(__name__)
# Posts per event-stage poll: big enough to amortise a transaction, small enough that one topic's backlog
# never holds the other partitions back for long.
EVENT_STAGE_BATCH = 256
# Posts per bus transaction when ingesting: a durable bus commits (and fsyncs) once per publish call.
INGEST_PUBLISH_BATCH = 500


def analyzed_key(post: AnalyzedPost) -> str:
    """Partition key of the analyzed topic: the level-1 topic.

    The event stage is stateful (the clusterer's index), so posts that may join one event must reach
    one consumer. Near-duplicates have near-identical text and so the same level-1 topic; keying by it
    keeps an event's posts in order on one partition while spreading topics over workers.
    """
    return post.topic.l1 or "未分类"


@dataclass
class IngestCounts:
    """What one ingest call did."""

    read: int = 0
    accepted: int = 0
    dead_lettered: int = 0


class Pipeline:
    """Builds stage workers and the ingest entry point over one Container."""

    def __init__(self, container: Container) -> None:
        self.c = container
        self.settings = container.settings
        self.workers: list[StageWorker[Any]] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        # Set when the process is shutting down: ingest entry points refuse new posts (HTTP answers 503).
        self.draining = threading.Event()
        self.ticket_listeners: list[Callable[[dict[str, Any]], None]] = []
        from alerts.source_health import SourceHealth

        self.source_health = SourceHealth()

    # -- ingest -------------------------------------------------------------------------------
    def publish_post(self, post: Post) -> None:
        """Put one validated post on the raw topic, keyed by its id."""
        self.c.bus.publish(TOPIC_RAW, post.model_dump_json().encode(), key=post.id)

    def publish_posts(self, posts: list[Post]) -> None:
        """Put validated posts on the raw topic in one publish call (one transaction on a durable bus)."""
        self.c.bus.publish_many(TOPIC_RAW, [(post.id, post.model_dump_json().encode()) for post in posts])

    def dead_letter(self, *, stage: str, source: str, origin: str, reason: str, raw: bytes) -> None:
        """Keep a failed record with its reason and raw bytes (relational store; also the dead topic)."""
        from ingest import deadletters
        from ingest.validate import mask_reason

        reason = mask_reason(reason)  # reasons are logged and listed; a quoted field value may be personal data
        with self.c.db.transaction() as session:
            deadletters.record(session, stage=stage, source=source, origin=origin, reason=reason, raw=raw)
        log.info("dead letter (%s, %s): %s", stage, origin, reason)

    def ingest(self, records: Iterable[Any], *, progress: Callable[[Any], None] | None = None,
               on_dead: Callable[[Any, str], None] | None = None, publish_batch: int = INGEST_PUBLISH_BATCH) -> Any:
        """Validate raw records and publish them; invalid ones become dead letters (and ``on_dead`` hears of them).

        Valid posts are published ``publish_batch`` at a time and the bus is flushed before this returns, so
        every post counted as accepted is durable by then. A source that may wait for its next record (a
        followed file) should pass ``publish_batch=1`` so no post waits in the buffer.
        """
        from ingest.service import ingest_records
        from ingest.validate import guess_source

        def dead(record: Any, reason: str) -> None:
            self.dead_letter(stage="ingest", source=guess_source(record.data, record.source_hint), origin=record.origin,
                             reason=reason, raw=record.data)
            if on_dead is not None:
                on_dead(record, reason)

        pending: list[Post] = []

        def publish(post: Post) -> None:
            pending.append(post)
            if len(pending) >= publish_batch:
                self.publish_posts(pending)
                pending.clear()

        stats = ingest_records(
            records, publish=publish, dead_letter=dead,
            salt=self.settings.author_salt.get_secret_value(), max_text_chars=self.settings.max_text_chars,
            progress=progress,
        )
        if pending:
            self.publish_posts(pending)
        self.c.bus.flush()
        return stats

    # -- stage workers ------------------------------------------------------------------------
    def _message_dead_letter(self, stage: str) -> Callable[[Message, str], None]:
        from ingest.validate import mask_reason

        def dead(message: Message, reason: str) -> None:
            self.dead_letter(stage=stage, source="bus", origin=f"{message.topic}@{message.partition}:{message.offset}",
                             reason=reason, raw=message.value)
            try:
                self.c.bus.publish(TOPIC_DEAD, message.value, key=message.key,
                                   headers={"reason": mask_reason(reason)[:500], "stage": stage})
            except Exception:  # the relational copy is the one that matters
                log.exception("could not copy a dead letter to the dead-letter topic")

        return dead

    def analyze_handler(self, posts: list[Post]) -> None:
        """Analyze a batch and publish it to the analyzed topic."""
        analyzed = self.c.analyzer.analyze(posts)
        self.c.bus.publish_many(
            TOPIC_ANALYZED, [(analyzed_key(p), p.model_dump_json().encode()) for p in analyzed]
        )
        self.c.bus.flush()

    def analyze_worker(self) -> StageWorker[Post]:
        """A worker of the analyze stage; models load first so the first batch cannot outlast the group session.

        With ``analyze.processes`` >= 1 they load in the analyze pool's child processes (analyze/process.py).
        """
        self.c.analyzer.analyze([Post(id="warm-up", source=Source.news, external_id="warm-up", text="预热 warm-up",
                                      published_at=utcnow())])
        return self._analyze_stage_worker()

    def _analyze_stage_worker(self) -> StageWorker[Post]:
        return StageWorker(
            name="analyze", bus=self.c.bus, topics=[TOPIC_RAW], group="analyze",
            decode=lambda m: Post.model_validate_json(m.value), handle=self.analyze_handler,
            dead_letter=self._message_dead_letter("analyze"), batch_size=self.settings.analyze.batch_size,
        )

    def event_worker(self) -> StageWorker[AnalyzedPost]:
        """A worker of the event stage (events, rules, tickets)."""
        self.c.tokenize("预热")  # load the segmenter before joining the consumer group
        stage = self.c.event_stage(on_ticket=self._announce)
        stage.reload_watchlists()
        self.event_stage = stage
        return StageWorker(
            name="alerts", bus=self.c.bus, topics=[TOPIC_ANALYZED], group="alerts",
            decode=lambda m: AnalyzedPost.model_validate_json(m.value), handle=stage.handle,
            dead_letter=self._message_dead_letter("alerts"), batch_size=EVENT_STAGE_BATCH,
        )

    def _announce(self, change: dict[str, Any]) -> None:
        for listener in list(self.ticket_listeners):
            try:
                listener(change)
            except Exception:
                log.exception("ticket listener failed")

    # -- embedded runner ----------------------------------------------------------------------
    def start(self, *, kinds: Iterable[str] = ("analyze", "alerts", "scheduler", "sender")) -> None:
        """Start the chosen worker kinds as threads of this process."""
        from core.memory import tune_process

        tune_process(arenas=self.settings.malloc_arenas, trim_interval_s=self.settings.heap_trim_interval_s)
        kinds = set(kinds)
        if "analyze" in kinds:
            self.workers.append(self.analyze_worker())
        if "alerts" in kinds:
            self.workers.append(self.event_worker())
        for worker in self.workers:
            worker.start()
        if "scheduler" in kinds:
            self._spawn("scheduler", self._scheduler_loop)
        if "sender" in kinds:
            self._spawn("sender", self._sender_loop)
        if "alerts" in kinds:
            self._spawn("gc", self._gc_loop)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _scheduler_loop(self) -> None:
        from alerts.scheduler import run_due_jobs

        policy = self.c.deadline_policy
        worker_id = f"scheduler-{os.getpid()}"
        while not self._stop.wait(self.settings.alerts.scheduler_interval_s):
            now = utcnow()
            try:
                run_due_jobs(self.c.db.session, now=now, policy=policy, worker_id=worker_id)
            except Exception:
                log.exception("scheduler run failed; will retry")
            self._reports_due(now, worker_id)
            self._housekeeping(now, worker_id)

    def _housekeeping(self, now: Any, worker_id: str) -> None:
        """Source flatline alerts and the daily retention run (each once across workers)."""
        from alerts.source_health import run_source_health
        from core.lifecycle import retention_if_due

        try:
            run_source_health(health=self.source_health, post_store=self.c.post_store, db=self.c.db, now=now)
        except Exception:
            log.exception("source health check failed; will retry")
        try:
            retention_if_due(post_store=self.c.post_store, db=self.c.db,
                             posts_days=self.settings.retention_posts_days,
                             tickets_years=self.settings.retention_tickets_years, now=now, worker_id=worker_id)
        except Exception:
            log.exception("retention failed; will retry")

    def _reports_due(self, now: Any, worker_id: str) -> None:
        """Weekly (Monday 08:30) and daily briefs, once across workers, when e-mail is configured."""
        email = self.c.notifiers.get("email")
        if email is None:
            return
        from alerts.reports.weekly import scheduled_reports

        try:
            scheduled_reports(
                self.c.db.session, now=now, worker_id=worker_id, send=email.send_message,  # type: ignore[attr-defined]
                post_store=self.c.post_store, dashboard_url=self.settings.alerts.dashboard_url,
                tz=self.settings.alerts.timezone,
            )
        except Exception:
            log.exception("scheduled report failed; send it by hand with `yuqing report weekly --send`")

    def _sender_loop(self) -> None:
        notifiers = self.c.notifiers
        if not notifiers:
            log.info("no notification channel enabled: outbox rows stay pending until one is configured")
            return
        from alerts.ratelimit import ROBOT_WINDOW_S, RateLimiter
        from alerts.sender import OutboxSender

        limiter = RateLimiter(per_minute=self.settings.wecom.per_minute, window_s=ROBOT_WINDOW_S)
        sender = OutboxSender(self.c.db, notifiers, limiter=limiter, worker_id=f"sender-{os.getpid()}")
        while not self._stop.wait(2.0):
            try:
                sender.run_once(utcnow())
            except Exception:
                log.exception("outbox sender failed; will retry")

    def _gc_loop(self) -> None:
        """Every minute: bound in-memory state and pick up watch-lists edited by analysts."""
        while not self._stop.wait(60.0):
            stage = getattr(self, "event_stage", None)
            if stage is not None:
                stage.garbage_collect(utcnow())
                try:
                    stage.reload_watchlists()
                except Exception:
                    log.exception("could not reload watch-lists; keeping the current ones")

    def wait_idle(self, timeout_s: float = 60.0, settle_s: float = 0.3) -> bool:
        """Block until the workers have drained the bus (used by CLI ingest, tests and bench)."""
        deadline = time.monotonic() + timeout_s
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            backlog = self.backlog()
            if backlog == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle_s:
                    return True
            else:
                quiet_since = None
            time.sleep(0.05)
        return False

    def drain(self, timeout_s: float) -> bool:
        """Stop taking posts and wait (bounded) until the workers processed everything queued; True if they did."""
        self.draining.set()
        if not self.workers:
            return self.backlog() == 0
        return self.wait_idle(timeout_s=timeout_s, settle_s=0.3)

    def backlog(self) -> int:
        """Messages published but not yet committed by the stage groups (best effort)."""
        probe = getattr(self.c.bus, "backlog", None)
        if not callable(probe):
            return 0
        return int(probe(TOPIC_RAW)) + int(probe(TOPIC_ANALYZED))

    def stop(self) -> None:
        """Stop workers and threads; each finishes and commits its current batch."""
        self._stop.set()
        for worker in self.workers:
            worker.stop()
        for t in self._threads:
            t.join(10)
        analyzer = self.c.__dict__.get("analyzer")
        if analyzer is not None:
            analyzer.close()  # the analyze pool's child processes, if any
