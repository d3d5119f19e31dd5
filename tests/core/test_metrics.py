"""Metrics read from a real embedded container: the database, the memory bus, the pipeline's counters."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core import memory
from core.bus.base import TOPIC_RAW, Message
from core.db.models import DeadLetterRow, JobRunRow, OutboxRow, TargetStatusRow, TicketRow
from core.metrics import build_registry, instrument_pipeline, reason_kind, send_error_kind
from core.records import utcnow
from core.runtime import Pipeline
from core.wiring import Container
from core.worker import StageWorker
from ingest.base import RawRecord
from tests.faults.scale import fresh_database
from tests.support import embedded_settings, post_record


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[tuple[Container, Pipeline]]:
    container = Container(embedded_settings(tmp_path))
    pipeline = Pipeline(container)
    yield container, pipeline
    pipeline.stop()
    container.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Container, Pipeline]]:
    """The embedded stack on SQLite, and again with its tickets database on PostgreSQL (scale mode's)."""
    with contextlib.ExitStack() as stack:
        overrides = {}
        if request.param == "postgres":
            overrides["database_url"] = stack.enter_context(fresh_database(request.getfixturevalue("pg_url"),
                                                                           prefix="yq_metrics"))
        container = Container(embedded_settings(tmp_path, **overrides))
        pipeline = Pipeline(container)
        yield container, pipeline
        pipeline.stop()
        container.close()


def scrape(registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_database_figures_at_scrape_time(any_db_stack) -> None:
    container, _ = any_db_stack
    now = utcnow()
    with container.db.transaction() as s:
        from core.db.models import EventRow

        for i in range(4):
            s.add(EventRow(id=f"e{i}", first_seen=now, last_seen=now))
        s.flush()
        s.add(TicketRow(id="t0", event_id="e0", level=1, state="new", lead_unit="u"))
        s.add(TicketRow(id="t1", event_id="e1", level=2, state="handling", lead_unit="u", escalation=2))
        s.add(TicketRow(id="t2", event_id="e2", level=2, state="handling", lead_unit="u", escalation=1))
        s.add(TicketRow(id="t3", event_id="e3", level=2, state="closed", lead_unit="u", escalation=4))
        note = {"id": "x"}
        s.add(OutboxRow(id="o1", channel="wecom", target="office", kind="k", notification=note, state="sent"))
        s.add(OutboxRow(id="o2", channel="wecom", target="a", kind="k", notification=note, state="pending",
                        attempts=2, last_error="robot a: errcode 45009 api freq out of limit",
                        created_at=now - timedelta(minutes=5)))
        s.add(OutboxRow(id="o3", channel="wecom", target="b", kind="k", notification=note, state="dead",
                        last_error="robot b: errcode 93000 invalid webhook url"))
        s.add(OutboxRow(id="o4", channel="email", target="c", kind="k", notification=note, state="pending",
                        attempts=1, last_error="smtp 127.0.0.1:25: timed out", created_at=now - timedelta(minutes=1)))
        s.add(TargetStatusRow(channel="wecom", target="b", broken=True, reason="93000"))
        for reason in ("malformed JSON at line 1", "malformed JSON: Expecting value", "missing field 'text'"):
            s.add(DeadLetterRow(stage="ingest", source="weibo", reason=reason, raw=b"{"))
        s.add(DeadLetterRow(stage="analyze", source="bus", reason="ValidationError: 1 validation error", raw=b"x"))
        s.add(JobRunRow(job="ticket.escalation", slot="a", worker="w", at=now - timedelta(minutes=3)))
        s.add(JobRunRow(job="ticket.escalation", slot="b", worker="w", at=now))
    samples = scrape(build_registry(container, process=False))
    assert value(samples, "yuqing_tickets", state="handling", level="2") == 2
    assert value(samples, "yuqing_tickets", state="new", level="1") == 1
    assert value(samples, "yuqing_tickets_overdue") == 1  # the closed one does not count
    assert value(samples, "yuqing_outbox_rows", channel="wecom", state="sent") == 1
    assert value(samples, "yuqing_outbox_rows", channel="wecom", state="pending") == 1
    assert value(samples, "yuqing_outbox_failed_rows", channel="wecom", state="pending", errcode="45009") == 1
    assert value(samples, "yuqing_outbox_failed_rows", channel="wecom", state="dead", errcode="93000") == 1
    assert value(samples, "yuqing_outbox_failed_rows", channel="email", state="pending", errcode="timeout") == 1
    assert 290 <= value(samples, "yuqing_outbox_oldest_pending_age_seconds") < 400
    assert value(samples, "yuqing_notify_targets_broken", channel="wecom") == 1
    assert value(samples, "yuqing_dead_letters_stored", stage="ingest", kind="json") == 2
    assert value(samples, "yuqing_dead_letters_stored", stage="ingest", kind="missing_field") == 1
    assert value(samples, "yuqing_dead_letters_stored", stage="analyze", kind="ValidationError") == 1
    assert value(samples, "yuqing_scheduler_runs_total", job="ticket.escalation") == 2
    assert abs(value(samples, "yuqing_scheduler_last_run_timestamp_seconds", job="ticket.escalation")
               - now.timestamp()) < 2
    assert value(samples, "yuqing_posts_stored") == 0
    assert value(samples, "yuqing_scrape_errors", part="db") is None


def test_database_figures_are_cached_between_scrapes(stack) -> None:
    container, _ = stack
    cached = build_registry(container, process=False, cache_s=3600)
    fresh = build_registry(container, process=False, cache_s=0)
    assert value(scrape(cached), "yuqing_outbox_oldest_pending_age_seconds") == 0
    with container.db.transaction() as s:
        s.add(OutboxRow(id="o", channel="wecom", target="t", kind="k", notification={}, state="pending",
                        created_at=utcnow() - timedelta(hours=1)))
    assert value(scrape(cached), "yuqing_outbox_rows", channel="wecom", state="pending") is None
    assert value(scrape(fresh), "yuqing_outbox_rows", channel="wecom", state="pending") == 1


def test_ingest_dead_letters_bus_backlog_and_stage_batches(stack) -> None:
    container, pipeline = stack
    registry = build_registry(container, pipeline=pipeline, process=False)
    records = [post_record("a", "A1区公园很好", source="weibo"), post_record("b", "A2区图书馆不错", source="weibo"),
               post_record("c", "反映A3区停水", source="hotline")]
    raws = [RawRecord(data=json.dumps(r, ensure_ascii=False).encode(), origin=f"t{i}") for i, r in enumerate(records)]
    raws.append(RawRecord(data=b"{not json", origin="bad"))
    pipeline.ingest(raws)
    samples = scrape(registry)
    assert value(samples, "yuqing_ingested_posts_total", source="weibo") == 2
    assert value(samples, "yuqing_ingested_posts_total", source="hotline") == 1
    assert value(samples, "yuqing_dead_letters_total", stage="ingest", kind="json") == 1
    assert value(samples, "yuqing_bus_backlog", topic=TOPIC_RAW) == 3

    handled: list[int] = []
    worker: StageWorker[bytes] = StageWorker(
        name="probe", bus=container.bus, topics=[TOPIC_RAW], group="probe", decode=lambda m: m.value,
        handle=lambda items: handled.append(len(items)), dead_letter=lambda m, r: None)
    pipeline.workers.append(worker)
    instrument_pipeline(pipeline)
    instrument_pipeline(pipeline)  # idempotent: timed once
    messages = [Message(topic=TOPIC_RAW, key=None, value=b"x", offset=i) for i in range(5)]
    assert worker.process_batch(messages) and worker.process_batch(messages[:2])
    assert handled == [5, 2]
    samples = scrape(registry)
    assert value(samples, "yuqing_stage_batch_seconds_count", stage="probe") == 2
    assert value(samples, "yuqing_stage_batch_size_sum", stage="probe") == 7
    assert value(samples, "yuqing_stage_handled_posts_total", stage="probe") == 7
    assert value(samples, "yuqing_worker_messages_total", worker="probe") == 7
    assert value(samples, "yuqing_worker_batches_total", worker="probe") == 2
    assert value(samples, "yuqing_worker_up", worker="probe") == 0  # never started as a thread
    assert value(samples, "yuqing_sentiment_model_loaded") == 0
    if memory.sqlite_memory_bytes() is not None:  # the embedded stack holds SQLite connections open
        assert value(samples, "yuqing_sqlite_memory_bytes") > 0


def test_a_failing_part_is_reported_not_fatal(stack, tmp_path: Path) -> None:
    from core.db.session import Database

    container, _ = stack
    registry = build_registry(container, process=False, cache_s=0)
    container.db.close()
    container.__dict__["db"] = Database(f"sqlite:///{tmp_path / 'empty.sqlite'}")  # no tables: queries fail
    samples = scrape(registry)
    assert value(samples, "yuqing_scrape_errors", part="db") == 1
    assert value(samples, "yuqing_sentiment_model_loaded") == 0  # the rest still answers


def test_process_figures_are_exposed(stack) -> None:
    container, _ = stack
    samples = scrape(build_registry(container))
    assert value(samples, "process_resident_memory_bytes") > 10_000_000


def test_labels_stay_bounded() -> None:
    assert reason_kind("ingest", "malformed JSON at 3") == "json"
    assert reason_kind("analyze", "ValidationError: bad") == "ValidationError"
    assert reason_kind("alerts", "free text with 13812345678") == "other"
    assert send_error_kind("robot x: errcode 45009 too fast") == "45009"
    assert send_error_kind("Read timed out") == "timeout"
    assert send_error_kind("[Errno 111] Connection refused") == "connect"
    assert send_error_kind(None) == "none"
