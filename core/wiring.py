"""The one place that reads Settings and builds backends. Everything else takes what it is given.

Heavy parts (models, the clusterer index) are built on first use so the API process and the
CLI start fast; scale-mode backends import their client libraries only when chosen, and say which
pip extra to install when the library is missing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.bus.base import Bus
from core.db.session import Database
from core.settings import Settings
from core.store.base import PostStore

if TYPE_CHECKING:
    from alerts.deadlines import DeadlinePolicy
    from alerts.engine import RuleEngine
    from alerts.events.clusterer import EventClusterer
    from alerts.notifiers.base import Notifier
    from alerts.routing import Router
    from alerts.worker import EventStage
    from analyze.pipeline import Analyzer
    from analyze.sentiment.base import SentimentModel

log = logging.getLogger(__name__)


def _need(extra: str, module: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(
        f"the {module!r} package is needed for this backend: pip install 'yuqing[{extra}]'"
    )


def build_bus(settings: Settings) -> Bus:
    """The message bus chosen by settings."""
    if settings.bus_kind == "kafka":
        try:
            from core.bus.kafka import KafkaBus
        except ModuleNotFoundError as exc:
            raise _need("scale", "kafka-python") from exc
        k = settings.kafka
        bus = KafkaBus(
            bootstrap=k.bootstrap, topic_prefix=k.topic_prefix, partitions=k.partitions,
            replication_factor=k.replication_factor, acks=k.acks, linger_ms=k.linger_ms,
            batch_size=k.batch_size, compression=k.compression, max_poll_records=k.max_poll_records,
            max_poll_interval_ms=k.max_poll_interval_ms, session_timeout_ms=k.session_timeout_ms,
            request_timeout_ms=k.request_timeout_ms, group_prefix=k.group_prefix, retention_ms=k.retention_ms,
        )
        bus.ensure_topics()  # create every topic with the configured partitions up front
        return bus
    from core.bus.base import TOPIC_DEAD, TOPIC_TICKETS

    if settings.bus_kind == "memory":
        from core.bus.memory import MemoryBus

        # Embedded dashboards get ticket changes in-process, so nobody may consume this stream: keep a window.
        return MemoryBus(retention={TOPIC_TICKETS: 10_000})
    from core.bus.sqlite import SqliteBus

    # Nobody consumes the announcement and dead-letter copies in embedded mode (the relational dead letters are
    # the record): keep a window of each so the file cannot grow forever.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteBus(settings.bus_sqlite_path, retention={TOPIC_TICKETS: 10_000, TOPIC_DEAD: 10_000},
                     synchronous=settings.bus_synchronous)


def build_post_store(settings: Settings, *, tokenize: Callable[[str], list[str]]) -> PostStore:
    """The post store chosen by settings."""
    if settings.post_store_kind == "elasticsearch":
        try:
            from core.store.es_posts import ElasticsearchPostStore
        except ModuleNotFoundError as exc:
            raise _need("scale", "elasticsearch") from exc
        e = settings.es
        return ElasticsearchPostStore(
            url=e.url, username=e.username, password=e.password, index_prefix=e.index_prefix,
            index_period=e.index_period, bulk_batch=e.bulk_batch, request_timeout_s=e.request_timeout_s,
            max_retries=e.max_retries, use_ik=e.use_ik, tokenize=tokenize,
        )
    from core.store.sqlite_posts import SqlitePostStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqlitePostStore(settings.posts_sqlite_path, tokenize=tokenize)


def build_sentiment(settings: Settings) -> SentimentModel:
    """The sentiment model chosen by settings (``analyze.sentiment_model``)."""
    choice = settings.analyze.sentiment_model
    if choice == "ensemble":
        try:
            from analyze.sentiment.ngram import NgramSentiment
        except ModuleNotFoundError as exc:
            raise _need("ml", "scikit-learn/jieba") from exc
        ngram_dir = Path(settings.analyze.sentiment_model_dir) if settings.analyze.sentiment_model_dir else None
        return NgramSentiment(ngram_dir, threads=settings.analyze.sentiment_threads,
                              batch_size=settings.analyze.sentiment_batch)
    if choice == "transformer" or settings.analyze.sentiment_model_dir:
        # Offline by design: models ship with the project or come from a local directory, never a hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            from analyze.sentiment.transformer import TransformerSentiment
        except ModuleNotFoundError as exc:
            raise _need("ml", "torch/transformers") from exc
        model_dir = Path(settings.analyze.sentiment_model_dir) if settings.analyze.sentiment_model_dir else None
        return TransformerSentiment(
            model_dir, threads=settings.analyze.sentiment_threads, batch_size=settings.analyze.sentiment_batch
        )
    if choice == "tfidf":
        from analyze.sentiment.tfidf import TfidfSentiment

        return TfidfSentiment.load_default()
    from analyze.sentiment.snow import SnowNLPSentiment

    return SnowNLPSentiment()


class Container:
    """Everything one process needs, built lazily from one Settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        from alerts.notifiers import channels

        # Ticket notifications go to every enabled channel (the webhook too, not WeChat Work alone).
        channels.configure(wecom=settings.wecom.enabled,
                           webhook=bool(settings.webhook.enabled and settings.webhook.url and settings.webhook.secret))

    @cached_property
    def tokenize(self) -> Callable[[str], list[str]]:
        """The segmenter used for indexing and for queries (they must agree)."""
        from analyze.segment import tokenize_for_search

        return tokenize_for_search

    @cached_property
    def db(self) -> Database:
        """The relational store, migrated to head."""
        db = Database(self.settings.resolved_database_url)
        db.migrate()
        return db

    @cached_property
    def bus(self) -> Bus:
        """The message bus."""
        return build_bus(self.settings)

    @cached_property
    def post_store(self) -> PostStore:
        """The post store, schema ensured."""
        store = build_post_store(self.settings, tokenize=self.tokenize)
        store.ensure_schema()
        return store

    @cached_property
    def sentiment(self) -> SentimentModel:
        """The sentiment model."""
        return build_sentiment(self.settings)

    @cached_property
    def analyzer(self) -> Analyzer:
        """The analyze stage."""
        from analyze.entities import EntityExtractor
        from analyze.pipeline import Analyzer
        from analyze.topics import TopicClassifier
        from core.records import Source

        a = self.settings.analyze
        ner_sources = frozenset({"hotline", "mailbox"}) if a.ner == "citizen" else frozenset(s.value for s in Source)
        if a.processes >= 1:
            # The models load in the pool's children only; this process keeps the cache and the assembly.
            from analyze.process import AnalyzePool

            pool = AnalyzePool(self.settings, a.processes, ner_sources=ner_sources)
            pool.start()
            return Analyzer(neutral_band=a.neutral_band, num_perm=a.minhash_perms, ner_sources=ner_sources, pool=pool)
        gazetteer = Path(a.gazetteer_file) if a.gazetteer_file else None
        ner = EntityExtractor.load(gazetteer, use_lac=True) if a.ner != "off" else None
        if ner is not None and ner.backend == "gazetteer":
            log.info("NER model not installed (pip install 'yuqing[ner]'): entities from gazetteer and patterns")
            ner = None
        return Analyzer(
            sentiment=self.sentiment,
            topics=TopicClassifier.load(Path(a.taxonomy_file) if a.taxonomy_file else None),
            entities=EntityExtractor.load(gazetteer, use_lac=False),
            neutral_band=a.neutral_band,
            num_perm=a.minhash_perms,
            ner=ner,
            ner_sources=ner_sources,
        )

    @cached_property
    def clusterer(self) -> EventClusterer:
        """The event clusterer, its index rebuilt from the posts of the recent window."""
        from alerts.events.clusterer import EventClusterer
        from alerts.events.config import ClustererConfig
        from core.records import utcnow

        a = self.settings.analyze
        clusterer = EventClusterer(
            ClustererConfig(
                num_perm=a.minhash_perms, bands=a.minhash_bands, near_dup_threshold=a.near_dup_threshold,
                window_hours=a.event_window_hours, revive_window_days=a.event_revive_window_days,
                max_posts=a.event_index_max_posts,
            )
        )
        since = utcnow() - timedelta(days=max(a.event_revive_window_days, a.event_window_hours / 24.0))
        clusterer.rebuild(self.post_store.recent_signatures(since))
        return clusterer

    @cached_property
    def rule_engine(self) -> RuleEngine:
        """Rules from the rules file."""
        from alerts.engine import RuleEngine
        from alerts.rules.loader import load_rules

        path = self.settings.alerts.rules_file
        return RuleEngine(load_rules(Path(path) if path else None))

    @cached_property
    def router(self) -> Router:
        """Routing from the units file."""
        from alerts.routing import Router

        path = self.settings.alerts.units_file
        return Router.load(Path(path) if path else None)

    @cached_property
    def deadline_policy(self) -> DeadlinePolicy:
        """Stage time limits per level, on the working calendar."""
        from alerts.deadlines import DeadlinePolicy

        path = self.settings.alerts.deadlines_file
        return DeadlinePolicy.load(Path(path) if path else None)

    def event_stage(self, **kwargs: Any) -> EventStage:
        """A new event stage over this container's stores."""
        from alerts.worker import EventStage

        return EventStage(
            db=self.db, post_store=self.post_store, clusterer=self.clusterer,
            engine=self.rule_engine, router=self.router, bus=self.bus, policy=self.deadline_policy, **kwargs,
        )

    @cached_property
    def notifiers(self) -> dict[str, Notifier]:
        """Enabled outbound channels by name."""
        out: dict[str, Notifier] = {}
        s = self.settings
        if s.wecom.enabled:
            from alerts.notifiers.wecom import WecomRobotNotifier

            keys = dict(s.wecom.robots)
            if s.wecom.office_key is not None:
                keys["office"] = s.wecom.office_key
            out["wecom"] = WecomRobotNotifier(base_url=s.wecom.base_url, keys=keys, timeout_s=s.wecom.timeout_s,
                                              dashboard_url=s.alerts.dashboard_url, tz=s.alerts.timezone)
        if s.smtp.enabled:
            from alerts.notifiers.smtp import SmtpNotifier

            recipients: dict[str, Sequence[str]] = {
                u.id: list(u.targets.email) for u in self.router.units if u.targets.email
            }
            out["email"] = SmtpNotifier(
                host=s.smtp.host, port=s.smtp.port, security=s.smtp.security, username=s.smtp.username,
                password=s.smtp.password, sender=s.smtp.sender, timeout_s=s.smtp.timeout_s,
                recipients=recipients, dashboard_url=s.alerts.dashboard_url, tz=s.alerts.timezone,
            )
        if s.webhook.enabled and s.webhook.url and s.webhook.secret is not None:
            from alerts.notifiers.webhook import SignedWebhookNotifier

            out["webhook"] = SignedWebhookNotifier(
                url=s.webhook.url, secret=s.webhook.secret, timeout_s=s.webhook.timeout_s
            )
        return out

    def sync_units(self) -> int:
        """Copy the units file into the ``units`` table (users and tickets refer to them); returns how many."""
        from alerts.routing import unit_rows
        from core.db.models import UnitRow

        rows = list(unit_rows(self.router))
        with self.db.transaction() as session:
            for row in rows:
                existing = session.get(UnitRow, row["id"])
                if existing is None:
                    session.add(UnitRow(**row))
                else:
                    existing.name, existing.supervisor, existing.config = row["name"], row["supervisor"], row["config"]
        return len(rows)

    def close(self) -> None:
        """Close whatever was built."""
        for name in ("analyzer", "bus", "post_store", "db"):
            obj = self.__dict__.get(name)
            if obj is not None:
                try:
                    obj.close()
                except Exception:
                    log.exception("error closing %s", name)
