"""The soak in Kafka mode: the demo stream through worker processes on Kafka + Elasticsearch + PostgreSQL.

Called by ``bench_soak.run`` (see its docstring for the figures). Every part is a real process configured
by ``YUQING_*`` variables only, as an operator would run it: one ``yuqing worker`` per kind (analyze, alerts,
scheduler, sender) and the API (``yuqing run --workers ""``) polled over HTTP by a dashboard client.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.bench_soak import (
    PacedFeed,
    _Dashboard,
    _incident_events,
    _pct,
    _report_incidents,
    _tickets_by_incident,
)

Report = Any
T = TypeVar("T")

CALIBRATION_POSTS = int(os.environ.get("YUQING_SOAK_KAFKA_CALIBRATION_POSTS", "3000"))
KINDS = ("analyze", "alerts", "scheduler", "sender")
# Topics keep 10 minutes, far beyond the consumers' lag: noida-db re-serialises all it holds on every autosave
# (half its CPU 13 minutes into a soak), so an unbounded topic slows the emulator, not the service, down.
RETENTION_MS = int(os.environ.get("YUQING_SOAK_KAFKA_RETENTION_MS", "600000"))


def _rss_mb(pid: int) -> float:
    """VmRSS of a process in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _log_errors(path: Path, offset: int) -> tuple[int, list[str]]:
    """ERROR records and tracebacks a process logged after byte ``offset`` (count, first few)."""
    if not path.exists():
        return 0, []
    with path.open("rb") as fh:
        fh.seek(offset)
        lines = fh.read().decode("utf-8", "replace").splitlines()
    bad = [ln for ln in lines if " ERROR " in ln or '"level": "ERROR"' in ln or ln.startswith("Traceback")
           or " CRITICAL " in ln]
    return len(bad), [f"{path.stem}: {ln[:200]}" for ln in bad[:3]]


class _Api:
    """``yuqing run --workers ""`` on a free port: the API process of the scale deployment."""

    def __init__(self, scale: Any, port: int) -> None:
        data_dir = scale.workdir / "api"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = scale.workdir / "api.log"
        self.base_url = f"http://127.0.0.1:{port}"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [sys.executable, "-m", "core.cli", "run", "--workers", "", "--port", str(port)],
                env=scale.env(data_dir), cwd=Path(__file__).resolve().parents[1], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Until /health answers 200."""
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API process exited ({self.proc.returncode}); see {self.log_path}")
            try:
                if httpx.get(self.base_url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the API did not answer within {timeout_s:.0f}s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class _ServerPing(threading.Thread):
    """Times a trivial request (``GET /`` on Elasticsearch) every few seconds: is the test server itself slow?

    noida-db serves Kafka and Elasticsearch from one process, so when this ping takes seconds the workers'
    fetches and bulk writes wait as long, whatever the service does.
    """

    def __init__(self, url: str, every_s: float = 5.0) -> None:
        super().__init__(name="soak-server-ping", daemon=True)
        self.url, self.every_s = url.rstrip("/") + "/", every_s
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (perf_counter at start, seconds; 30.0 = no answer)

    def run(self) -> None:
        import httpx

        with httpx.Client(timeout=30.0) as client:
            while not self.stop_event.wait(self.every_s):
                started = time.perf_counter()
                try:
                    client.get(self.url)
                    took = time.perf_counter() - started
                except httpx.HTTPError:
                    took = 30.0
                self.samples.append((started, took))


def per_window(items: Sequence[T], start: float, end: float, *, at: Callable[[T], float],
               window_s: float = 300.0) -> list[list[T]]:
    """``items`` grouped by ``window_s`` windows of their time ``at(item)`` from ``start``; those outside dropped."""
    windows: list[list[T]] = [[] for _ in range(max(1, math.ceil((end - start) / window_s)))]
    for item in items:
        t = at(item)
        if start <= t <= end:
            windows[min(len(windows) - 1, int((t - start) // window_s))].append(item)
    return windows


def _counted(conn: Any, ids: list[str]) -> set[str]:
    """Which of these posts are in event_members."""
    from sqlalchemy import select

    from core.db.models import EventMemberRow

    found: set[str] = set()
    for k in range(0, len(ids), 500):
        found.update(p for (p,) in conn.execute(
            select(EventMemberRow.post_id).where(EventMemberRow.post_id.in_(ids[k:k + 500]))))
    conn.commit()
    return found


def soak_kafka(report: Report, seconds: float, poll_s: float, tmp: Path) -> None:
    """Calibrate one analyze + one event-stage process on a burst, then soak at half that rate."""
    import logging

    from sqlalchemy import create_engine, func, select

    from bench.bench_scale import _database, _deployment
    from bench.bench_soak import OUTBOX_WAIT_S, SoakRobots, _analyst_token, _free_port, wait_for_outbox
    from core.db.models import DeadLetterRow, EventMemberRow, OutboxRow, TicketRow
    from core.settings import ElasticsearchSettings, KafkaSettings
    from core.wiring import Container, build_bus
    from tests.faults.scale import demo_posts, raw_items, wait_for
    from tests.faults.scale import publish as publish_chunks

    # kafka-python warns about its own event loop on a busy machine; the soak counts the workers' errors.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    prefix = "soak_kafka"
    robots = SoakRobots()
    with _database(tmp) as db_url, _deployment(tmp, partitions=3, db_url=db_url) as scale:
        # The product's defaults (shipped transformer sentiment, NER for citizen messages), not the fault
        # tests' cheapest model: this is the service as it runs.
        # The fault tests' short timeouts (to fail fast) are put back to the product's defaults too.
        kafka_defaults, es_defaults = KafkaSettings(), ElasticsearchSettings()
        scale.extra_env.update({
            "YUQING_ANALYZE__SENTIMENT_MODEL": "transformer", "YUQING_ANALYZE__NER": "citizen",
            "YUQING_LOG_LEVEL": "WARNING", "YUQING_KAFKA__RETENTION_MS": str(RETENTION_MS),
            "YUQING_KAFKA__SESSION_TIMEOUT_MS": str(kafka_defaults.session_timeout_ms),
            "YUQING_KAFKA__REQUEST_TIMEOUT_MS": str(kafka_defaults.request_timeout_ms),
            "YUQING_ES__REQUEST_TIMEOUT_S": str(es_defaults.request_timeout_s),
            **robots.env(),
        })
        workers = {kind: scale.worker(kind, kind) for kind in KINDS}
        api = _Api(scale, _free_port())
        engine = create_engine(db_url)
        bus = build_bus(scale.settings(retention_ms=RETENTION_MS))
        probe = Container(scale.settings())
        try:
            api.wait_ready()
            token = _analyst_token(probe)
            warm = demo_posts(8, seed=41)
            publish_chunks(scale, "posts.raw", raw_items(warm))

            def dead_workers() -> list[str]:
                return [kind for kind, w in workers.items() if not w.alive()]

            # Stop waiting at once when a worker has exited (naming its log) rather than time out.
            wait_for(lambda: dead_workers() or scale.member_count() >= len(warm), timeout_s=600, every_s=0.5,
                     what="warm-up")
            if dead_workers():
                raise RuntimeError(f"worker(s) {dead_workers()} exited at start-up; logs in {scale.workdir}")
            # Everyday posts only: the soak's incidents must be the first of their kind in this deployment
            # (the embedded soak calibrates in a store of its own), or each would join its calibration twin.
            burst = demo_posts(CALIBRATION_POSTS, seed=43, incidents=[])
            started = time.perf_counter()
            publish_chunks(scale, "posts.raw", raw_items(burst), chunk=200)
            wait_for(lambda: scale.member_count() >= len(warm) + len(burst), timeout_s=3600, every_s=0.5,
                     what="the calibration burst")
            max_rate = len(burst) / (time.perf_counter() - started)
            rate = max(1.0, max_rate / 2.0)
            report(f"{prefix}.calibration_posts", len(burst))
            report(f"{prefix}.calibration_max_posts_per_s", max_rate)

            pids = {kind: w.pid for kind, w in workers.items()} | {"api": api.proc.pid}
            rss_start = {kind: _rss_mb(pid) for kind, pid in pids.items()}
            log_offsets = {w.log_path: w.log_path.stat().st_size for w in workers.values()}
            log_offsets[api.log_path] = api.log_path.stat().st_size
            dashboard = _Dashboard(api.base_url, poll_s, token)
            dashboard.start()
            ping = _ServerPing(scale.es_url)
            ping.start()

            sent: dict[str, float] = {}
            seen: dict[str, float] = {}
            pending: list[str] = []
            rss_timeline: list[str] = []
            with engine.connect() as conn:
                def look() -> None:
                    nonlocal pending
                    if not pending:
                        return
                    now = time.perf_counter()
                    found = _counted(conn, pending)
                    for post_id in found:
                        seen[post_id] = now
                    pending = [p for p in pending if p not in found]

                def look_while_waiting() -> None:
                    bus.flush(timeout_s=10)
                    look()

                # The salt the workers use (Settings default), so post ids agree; rejected records are only
                # counted here (the ingest dead-letter path has its own tests).
                feed = PacedFeed(rate_per_s=rate, seconds=seconds, salt="yuqing-default-salt",
                                 max_text_chars=20_000, while_waiting=look_while_waiting)
                next_rss = time.perf_counter() + 300
                for post in feed:
                    sent[post.id] = time.perf_counter()
                    pending.append(post.id)
                    bus.publish("posts.raw", post.model_dump_json().encode(), key=post.id)
                    if time.perf_counter() >= next_rss:
                        rss_timeline.append(f"{(time.perf_counter() - feed.started) / 60:.0f}min="
                                            f"{sum(_rss_mb(p) for p in pids.values()):.0f}")
                        next_rss += 300
                bus.flush(timeout_s=10)
                t0 = feed.started
                fed_s = time.perf_counter() - t0
                deadline = time.perf_counter() + 900
                while pending and time.perf_counter() < deadline:
                    look()
                    time.sleep(0.5)
            drain_s = time.perf_counter() - t0 - fed_s
            dashboard.stop_event.set()
            ping.stop_event.set()
            dashboard.join(60)
            ping.join(60)
            rss_end = {kind: _rss_mb(pid) for kind, pid in pids.items()}
            alive = {kind: w.alive() for kind, w in workers.items()}
            errors_logged = 0
            samples: list[str] = []
            for path, offset in log_offsets.items():
                count, first = _log_errors(path, offset)
                errors_logged += count
                samples.extend(first)

            def outbox_rows() -> list[tuple[str, Any, Any]]:
                with probe.db.session() as session:
                    return [tuple(r) for r in session.query(OutboxRow.state, OutboxRow.created_at,
                                                            OutboxRow.sent_at).filter(OutboxRow.channel == "wecom")]

            outbox_left = wait_for_outbox(lambda: sum(1 for r in outbox_rows() if r[0] == "pending"), OUTBOX_WAIT_S)
            wecom_rows = outbox_rows()
            with probe.db.session() as session:
                dead = session.query(DeadLetterRow).count()
                tickets_by_incident = _tickets_by_incident(session, feed.incident_posts)
                incident_events = _incident_events(session, feed.incident_posts)
                total_tickets = session.query(TicketRow).count()
                members = int(session.execute(select(func.count()).select_from(EventMemberRow)).scalar_one())
        finally:
            bus.close()
            probe.close()
            engine.dispose()
            api.stop()
            robots.stop()

    latencies = [seen[k] - sent[k] for k in seen]
    lost = len(sent) - len(seen)
    report(f"{prefix}.minutes", seconds / 60.0)
    report(f"{prefix}.target_rate_posts_per_s", rate)
    report(f"{prefix}.fed_rate_posts_per_s", len(sent) / fed_s if fed_s else 0.0)
    report(f"{prefix}.posts_published", len(sent))
    report(f"{prefix}.posts_counted", len(seen))
    report(f"{prefix}.event_members_total", members)
    report(f"{prefix}.throughput_posts_per_s", len(seen) / fed_s if fed_s else 0.0)
    report(f"{prefix}.drain_after_feed_s", drain_s)
    # Posts counted per second in each 5-minute window of feed + drain: a falling line is a stack that slows.
    counted = per_window(list(seen.values()), t0, t0 + fed_s + drain_s, at=float)
    widths = [max(1.0, min(300.0, fed_s + drain_s - 300.0 * i)) for i in range(len(counted))]
    report(f"{prefix}.counted_per_s_timeline",
           ", ".join(f"{5 * i}-{5 * (i + 1)}min={len(w) / width:.1f}"
                     for i, (w, width) in enumerate(zip(counted, widths, strict=True))))
    report(f"{prefix}.e2e_latency_p50_ms", _pct(latencies, 0.50) * 1000)
    report(f"{prefix}.e2e_latency_p95_ms", _pct(latencies, 0.95) * 1000)
    report(f"{prefix}.e2e_latency_p99_ms", _pct(latencies, 0.99) * 1000)
    for kind in rss_start:
        report(f"{prefix}.rss_{kind}_start_mb", rss_start[kind])
        report(f"{prefix}.rss_{kind}_end_mb", rss_end[kind])
    report(f"{prefix}.rss_total_start_mb", sum(rss_start.values()))
    report(f"{prefix}.rss_total_end_mb", sum(rss_end.values()))
    report(f"{prefix}.rss_total_timeline_mb", ", ".join(rss_timeline) or "n/a")
    report(f"{prefix}.workers_alive_at_end", "yes" if all(alive.values()) else f"no ({alive})")
    report(f"{prefix}.dashboard_polls", dashboard.polls)
    report(f"{prefix}.dashboard_poll_p95_ms", _pct(dashboard.latencies, 0.95) * 1000)
    refused = robots.report(report, prefix, wecom_rows)
    report(f"{prefix}.wecom_pending_after_wait", outbox_left)
    report(f"{prefix}.errors", dashboard.errors + errors_logged + lost + refused)
    report(f"{prefix}.errors_polls", dashboard.errors)
    report(f"{prefix}.errors_logged", errors_logged)
    report(f"{prefix}.lost_posts", lost)
    if dashboard.error_samples or samples:
        report(f"{prefix}.error_samples", " | ".join(dashboard.error_samples + samples))
    pings = [took for _, took in ping.samples]
    report(f"{prefix}.server_ping_p50_ms", _pct(pings, 0.50) * 1000)
    report(f"{prefix}.server_ping_p95_ms", _pct(pings, 0.95) * 1000)
    report(f"{prefix}.server_ping_max_ms", max(pings, default=0.0) * 1000)
    by_window = per_window(ping.samples, t0, t0 + fed_s + drain_s, at=lambda sample: sample[0])
    report(f"{prefix}.server_ping_p95_timeline_ms", ", ".join(
        f"{5 * i}-{5 * (i + 1)}min={_pct([took for _, took in w], 0.95) * 1000:.0f}" for i, w in enumerate(by_window)))
    report(f"{prefix}.dead_letters", dead)
    report(f"{prefix}.rejected_records", feed.rejected)
    report(f"{prefix}.tickets", total_tickets)
    report(f"{prefix}.incident_events", incident_events)
    _report_incidents(report, prefix, feed.incidents, tickets_by_incident, fed_s)
