"""Scale-mode fault harness: throw-away databases, private noida-db servers, worker processes, outcome probes.

Everything here drives real parts: ``yuqing worker KIND`` subprocesses configured only through
``YUQING_*`` variables (as an operator would), a real Kafka-protocol and Elasticsearch-API server
(noida-db) and PostgreSQL. Each scenario gets its own topic prefix, consumer-group prefix, index
prefix and database, so runs never see each other's data.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
# Posts of the kill -9 replay: the brief's 20,000. The fault tests use the cheapest analysis (TF-IDF sentiment,
# no LAC: see Scale.env) because what they prove is delivery and idempotency, not model quality.
FAULT_POSTS = int(os.environ.get("YUQING_FAULT_POSTS", "20000"))
# Posts for the scenarios that start at the event stage (fed pre-analyzed posts) or stream a short while.
EVENT_POSTS = int(os.environ.get("YUQING_FAULT_EVENT_POSTS", "150"))
SHIPPED_TFIDF = REPO / "analyze" / "sentiment" / "model" / "tfidf" / "vocab.json"


def sentiment_model() -> str:
    """The cheapest shipped sentiment model: TF-IDF when its files exist, else SnowNLP (the default)."""
    return os.environ.get("YUQING_FAULT_SENTIMENT") or ("tfidf" if SHIPPED_TFIDF.exists() else "snownlp")


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(check: Callable[[], Any], *, timeout_s: float, every_s: float = 0.5, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; AssertionError with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # a server mid-restart: keep polling until the deadline
            last = exc
        else:
            if last:
                return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


# -- PostgreSQL -------------------------------------------------------------------------------------

@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str = "yq_fault") -> Iterator[str]:
    """CREATE DATABASE <prefix>_<random> on the server of ``server_url``; yield its URL; drop it after."""
    url = make_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_backends(db_url: str, *, busy_only: bool = False) -> int:
    """pg_terminate_backend the other connections to this database (``busy_only``: those inside a
    statement or transaction, i.e. a write in flight); returns how many were ended."""
    url = make_url(db_url)
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    busy = " AND state IN ('active', 'idle in transaction')" if busy_only else ""
    with psycopg.connect(plain, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'" + busy
        ).fetchone()
    return int(row[0]) if row else 0


# -- noida-db -------------------------------------------------------------------------------------

def noida_binary() -> str:
    """The noida-db launcher (the [test] extra)."""
    found = os.environ.get("NOIDA_DB") or shutil.which("noida-db") or str(REPO / ".venv" / "bin" / "noida-db")
    if not Path(found).exists():
        raise FileNotFoundError("noida-db not found: pip install noida-db (the [test] extra)")
    return found


class PrivateNoida:
    """A noida-db of our own (Kafka + Elasticsearch on free ports), so stopping a service disturbs no other test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.kafka_port = free_port()
        self.es_port = free_port()
        while self.es_port == self.kafka_port:
            self.es_port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap address."""
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def es_url(self) -> str:
        """Elasticsearch base URL."""
        return f"http://127.0.0.1:{self.es_port}"

    def start(self, timeout_s: float = 60.0) -> PrivateNoida:
        """Start the server and wait until both services answer."""
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "noida.log").open("ab")
        self._proc = subprocess.Popen(
            [noida_binary(), "start", "--only", "kafka,elasticsearch", "--data-dir", str(self.data_dir),
             "--kafka-port", str(self.kafka_port), "--elasticsearch-port", str(self.es_port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_for(lambda: self.kafka_up() and self.es_up(), timeout_s=timeout_s, every_s=0.3,
                 what=f"private noida-db on {self.kafka_port}/{self.es_port}")
        return self

    def kafka_up(self) -> bool:
        """Whether the Kafka port accepts connections."""
        return port_open(self.kafka_port)

    def es_up(self) -> bool:
        """Whether Elasticsearch answers HTTP."""
        try:
            return httpx.get(self.es_url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _control(self, action: str, service: str) -> None:
        subprocess.run([noida_binary(), action, service, "--data-dir", str(self.data_dir)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def stop_service(self, service: str) -> None:
        """``noida-db stop SERVICE`` (data is kept) and wait until it no longer answers."""
        self._control("stop", service)
        up = self.kafka_up if service == "kafka" else self.es_up
        wait_for(lambda: not up(), timeout_s=30, every_s=0.2, what=f"{service} to stop")

    def start_service(self, service: str) -> None:
        """``noida-db start SERVICE`` and wait until it answers again."""
        self._control("start", service)
        up = self.kafka_up if service == "kafka" else self.es_up
        wait_for(up, timeout_s=60, every_s=0.2, what=f"{service} to come back")

    def close(self) -> None:
        """End the server's process group (the launcher and the server binary)."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait(10)
        self._proc = None


# -- one scale deployment ---------------------------------------------------------------------------

@dataclass
class Scale:
    """One isolated scale-mode deployment: its own topic/group/index prefixes and database."""

    bootstrap: str
    es_url: str
    db_url: str
    workdir: Path
    partitions: int = 3
    tag: str = field(default_factory=lambda: f"yqf{uuid.uuid4().hex[:8]}")
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)

    @property
    def topic_prefix(self) -> str:
        """Kafka topic prefix."""
        return f"{self.tag}."

    @property
    def group_prefix(self) -> str:
        """Kafka consumer-group prefix."""
        return f"{self.tag}-"

    @property
    def index_prefix(self) -> str:
        """Elasticsearch alias (index prefix)."""
        return f"{self.tag}-posts"

    def env(self, data_dir: Path) -> dict[str, str]:
        """Process environment for a yuqing command in this deployment (settings only, nothing else)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("YUQING_")}
        env.update({
            "YUQING_MODE": "scale",
            "YUQING_KAFKA_BOOTSTRAP": self.bootstrap,
            "YUQING_ES_URL": self.es_url,
            "YUQING_DATABASE_URL": self.db_url,
            "YUQING_DATA_DIR": str(data_dir),
            "YUQING_KAFKA__TOPIC_PREFIX": self.topic_prefix,
            "YUQING_KAFKA__GROUP_PREFIX": self.group_prefix,
            "YUQING_KAFKA__PARTITIONS": str(self.partitions),
            # Short enough that a killed member's partitions move on within seconds.
            "YUQING_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "YUQING_KAFKA__REQUEST_TIMEOUT_MS": "10000",
            "YUQING_ES__INDEX_PREFIX": self.index_prefix,
            "YUQING_ES__REQUEST_TIMEOUT_S": "10",
            "YUQING_ANALYZE__SENTIMENT_MODEL": sentiment_model(),
            "YUQING_ANALYZE__NER": "off",
            "YUQING_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def settings(self, **kafka: Any) -> Any:
        """The same configuration as a Settings object (``kafka`` overrides), for in-process parts and probes."""
        from core.settings import Settings

        return Settings(
            mode="scale", data_dir=self.workdir / "probe", database_url=self.db_url,
            kafka={"bootstrap": self.bootstrap, "topic_prefix": self.topic_prefix,
                   "group_prefix": self.group_prefix, "partitions": self.partitions,
                   "session_timeout_ms": 6000, "request_timeout_ms": 10000, "linger_ms": 5, **kafka},
            es={"url": self.es_url, "index_prefix": self.index_prefix, "request_timeout_s": 10},
            analyze={"sentiment_model": sentiment_model(), "ner": "off"},
        )

    def worker(self, kind: str, name: str | None = None) -> Worker:
        """Start ``yuqing worker KIND`` in its own data dir."""
        name = name or f"{kind}-{len(self.workers)}"
        data_dir = self.workdir / name
        data_dir.mkdir(parents=True, exist_ok=True)
        proc = Worker(kind, name, self.env(data_dir), self.workdir / f"{name}.log")
        self.workers.append(proc)
        return proc

    def replay(self, path: Path, *, speed: float = 0.0, timeout_s: float = 300.0) -> str:
        """``yuqing replay PATH --speed S`` into this deployment; returns its output."""
        data_dir = self.workdir / "replay"
        data_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "core.cli", "replay", str(path), "--speed", str(speed)],
            env=self.env(data_dir), cwd=REPO, capture_output=True, text=True, timeout=timeout_s,
        )
        if done.returncode != 0:
            raise AssertionError(f"replay failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
        return done.stdout

    def close(self) -> None:
        """Stop every worker still running."""
        for proc in self.workers:
            proc.stop()

    # -- probes ---------------------------------------------------------------------------------

    def group_lag(self, group: str, topic: str) -> int:
        """Messages of ``topic`` not yet committed by ``group`` (unprefixed names); -1 if unknown."""
        from kafka import KafkaAdminClient, TopicPartition

        name = self.topic_prefix + topic
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        consumer = _probe_consumer(self.bootstrap)
        try:
            if name not in consumer.topics():
                return 0
            parts = [TopicPartition(name, p) for p in range(self.partitions)]
            ends = consumer.end_offsets(parts)
            committed = admin.list_group_offsets(self.group_prefix + group).get(self.group_prefix + group, {})
            total = 0
            for tp in parts:
                meta = committed.get(tp)
                total += ends.get(tp, 0) - (meta.offset if meta is not None and meta.offset >= 0 else 0)
            return total
        finally:
            consumer.close()
            admin.close()

    def topic_size(self, topic: str) -> int:
        """Messages ever written to ``topic`` (sum of end offsets)."""
        from kafka import TopicPartition

        consumer = _probe_consumer(self.bootstrap)
        try:
            if self.topic_prefix + topic not in consumer.topics():
                return 0
            parts = [TopicPartition(self.topic_prefix + topic, p) for p in range(self.partitions)]
            return int(sum(consumer.end_offsets(parts).values()))
        finally:
            consumer.close()

    def group_members(self, group: str) -> dict[str, set[int]]:
        """client member id -> partitions assigned, as the group coordinator sees it."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            described = admin.describe_groups([self.group_prefix + group])[self.group_prefix + group]
        finally:
            admin.close()
        out: dict[str, set[int]] = {}
        for member in described.get("members") or []:
            parts: set[int] = set()
            for assigned in (member.get("member_assignment") or {}).get("assigned_partitions") or []:
                parts.update(assigned.get("partitions") or [])
            out[member["member_id"]] = parts
        return out

    def evict_members(self, group: str) -> int:
        """Make the coordinator forget every current member of ``group``; live members simply rejoin.

        Stands in for the broker's session-timeout eviction after a ``kill -9``: noida-db 0.2.3 never
        expires a dead member, so its partitions stay assigned to it and the next rebalance waits on it
        forever (a real Kafka broker drops it after ``session.timeout.ms``).
        """
        from kafka import KafkaAdminClient
        from kafka.admin import MemberToRemove

        members = list(self.group_members(group))
        if not members:
            return 0
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            admin.remove_group_members(self.group_prefix + group, [MemberToRemove(member_id=m) for m in members])
        finally:
            admin.close()
        return len(members)

    def es_count(self) -> int:
        """Documents behind the alias (after a refresh); 0 before the first index exists."""
        # 30 s as for es_ids: noida-db's refresh stalls for seconds under a loaded CI machine.
        with httpx.Client(base_url=self.es_url, timeout=30) as http:
            http.post(f"/{self.index_prefix}/_refresh")
            resp = http.get(f"/{self.index_prefix}/_count")
            if resp.status_code == 404:
                return 0
            resp.raise_for_status()
            return int(resp.json()["count"])

    def es_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of these post ids are stored in Elasticsearch."""
        found: set[str] = set()
        chunk: list[str] = []
        with httpx.Client(base_url=self.es_url, timeout=30) as http:
            http.post(f"/{self.index_prefix}/_refresh")

            def ask() -> None:
                resp = http.post(f"/{self.index_prefix}/_search",
                                 json={"query": {"ids": {"values": chunk}}, "_source": False, "size": len(chunk)})
                resp.raise_for_status()
                found.update(h["_id"] for h in resp.json()["hits"]["hits"])

            for post_id in ids:
                chunk.append(post_id)
                if len(chunk) == 1000:
                    ask()
                    chunk = []
            if chunk:
                ask()
        return found

    def outcome(self) -> Outcome:
        """What the relational store holds: members, events (by member set), tickets."""
        from core.db.models import EventMemberRow, EventRow, TicketRow

        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                members = conn.execute(select(EventMemberRow.post_id, EventMemberRow.event_id)).all()
                events = conn.execute(select(EventRow.id, EventRow.size, EventRow.heat)).all()
                tickets = conn.execute(select(TicketRow.id, TicketRow.event_id)).all()
        finally:
            engine.dispose()
        by_event: dict[str, set[str]] = {}
        for post_id, event_id in members:
            by_event.setdefault(event_id, set()).add(post_id)
        ticketed = {event_id for _, event_id in tickets}
        return Outcome(
            member_rows=len(members),
            member_posts={p for p, _ in members},
            size_total=sum(int(size or 0) for _, size, _ in events),
            events={frozenset(by_event.get(eid, set())): (int(size or 0), round(float(heat or 0.0), 6),
                                                          eid in ticketed)
                    for eid, size, heat in events},
            tickets=len(tickets),
            tickets_per_event_max=max((sum(1 for _, e in tickets if e == eid) for eid in ticketed), default=0),
        )

    def member_count(self) -> int:
        """Rows in event_members (posts counted into an event)."""
        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM event_members")).scalar_one())
        except Exception:  # schema not migrated yet by the worker
            return 0
        finally:
            engine.dispose()

    def ticket_count(self) -> int:
        """Rows in tickets."""
        from core.db.models import TicketRow

        engine = create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(TicketRow)).scalar_one())
        finally:
            engine.dispose()

    def wait_drained(self, expected_posts: int, *, timeout_s: float) -> None:
        """Until every post is in event_members and in Elasticsearch and both groups have committed all.

        On a timeout the AssertionError carries where the stream stood and the workers' last log lines.
        """
        try:
            wait_for(lambda: self.member_count() >= expected_posts, timeout_s=timeout_s, every_s=1.0,
                     what=f"{expected_posts} posts counted into events")
            wait_for(lambda: self.es_count() >= expected_posts, timeout_s=120, every_s=1.0,
                     what=f"{expected_posts} posts in Elasticsearch")
            wait_for(lambda: self.group_lag("analyze", "posts.raw") == 0
                     and self.group_lag("alerts", "posts.analyzed") == 0,
                     timeout_s=120, every_s=1.0, what="both consumer groups to commit everything")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnosis()}") from None

    def diagnosis(self, log_lines: int = 25) -> str:
        """Where the stream stands (counts, topic sizes, group lags) and each worker's last log lines."""
        probes: dict[str, Callable[[], Any]] = {
            "counted into events": self.member_count,
            "in Elasticsearch": self.es_count,
            "posts.raw size": lambda: self.topic_size("posts.raw"),
            "posts.analyzed size": lambda: self.topic_size("posts.analyzed"),
            "analyze lag": lambda: self.group_lag("analyze", "posts.raw"),
            "alerts lag": lambda: self.group_lag("alerts", "posts.analyzed"),
        }
        lines = []
        for label, probe in probes.items():
            try:
                lines.append(f"{label}: {probe()}")
            except Exception as exc:  # a diagnosis must not hide the failure it explains
                lines.append(f"{label}: unknown ({type(exc).__name__}: {exc})")
        for proc in self.workers:
            tail = proc.log().splitlines()[-log_lines:]
            state = "running" if proc.alive() else f"exited {proc.proc.returncode}"
            lines.append(f"--- {proc.name} ({state}), last {len(tail)} log lines:")
            lines.extend(tail)
        return "\n".join(lines)


def _probe_consumer(bootstrap: str) -> Any:
    """A group-less consumer for offsets; it must never auto-create a topic (with the broker's default
    partition count) before the workers create it with theirs."""
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=6000, allow_auto_create_topics=False)


@dataclass
class Outcome:
    """The effects of a run that must not depend on faults."""

    member_rows: int
    member_posts: set[str]
    size_total: int
    events: dict[frozenset[str], tuple[int, float, bool]]
    tickets: int
    tickets_per_event_max: int


class Worker:
    """One ``yuqing worker KIND`` process with its own data dir and log file."""

    def __init__(self, kind: str, name: str, env: dict[str, str], log_path: Path) -> None:
        self.kind = kind
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "core.cli", "worker", kind], env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """Process id."""
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no chance to finish or commit anything."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 40.0) -> None:
        """SIGTERM (finish the batch, commit, leave the group); SIGKILL if it does not end in time."""
        if not self.alive():
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


class CountingBus:
    """Passes everything to a real bus; counts the messages its consumers hand out (what sits in memory)."""

    def __init__(self, bus: Any) -> None:
        self._bus = bus
        self.polled = 0

    def consumer(self, topics: Any, *, group: str) -> Any:
        """A real consumer whose polls are counted."""
        inner = self._bus.consumer(topics, group=group)
        counter = self

        class _Counted:
            def poll(self, **kwargs: Any) -> Any:
                messages = inner.poll(**kwargs)
                counter.polled += len(messages)
                return messages

            def commit(self) -> None:
                inner.commit()

            def close(self) -> None:
                inner.close()

        return _Counted()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)


@contextlib.contextmanager
def event_worker(scale: Scale, *, batch_size: int | None = None,
                 **kafka: Any) -> Iterator[tuple[Any, CountingBus, list[BaseException]]]:
    """The event stage's StageWorker (exactly what ``yuqing worker alerts`` runs) as a thread of this process.

    ``batch_size`` overrides the stage's batch (messages per poll). Yields (worker, counting bus, errors
    that ended the worker thread).
    """

    from core.runtime import Pipeline
    from core.wiring import Container

    container = Container(scale.settings(**kafka))
    worker = Pipeline(container).event_worker()
    if batch_size is not None:
        worker.batch_size = batch_size
    counting = CountingBus(worker.bus)
    worker.bus = counting  # type: ignore[assignment]
    errors: list[BaseException] = []
    run = worker.run

    def guarded() -> None:
        try:
            run()
        except BaseException as exc:  # recorded so the test can name what ended the loop
            errors.append(exc)
            raise

    worker.run = guarded  # type: ignore[method-assign]
    worker.start()
    try:
        yield worker, counting, errors
    finally:
        worker.stop(30)
        container.close()


def publish(scale: Scale, topic: str, items: list[tuple[str | None, bytes]], *, chunk: int = 50,
            pause_s: float = 0.0, deadline_s: float = 180.0, on_chunk: Callable[[int], None] | None = None) -> int:
    """Publish keyed messages as an at-least-once source does: a chunk whose flush fails is sent again.

    Returns how many chunks had to be re-sent. ``on_chunk(sent_so_far)`` runs after each good chunk.
    """
    from core.errors import BackendUnavailable
    from core.wiring import build_bus

    bus = build_bus(scale.settings())
    resent = 0
    stop_at = time.monotonic() + deadline_s
    try:
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            while True:
                try:
                    bus.publish_many(topic, part)
                    bus.flush(timeout_s=10)
                    break
                except BackendUnavailable:
                    if time.monotonic() > stop_at:
                        raise
                    resent += 1
                    time.sleep(1.0)
            if on_chunk is not None:
                on_chunk(start + len(part))
            if pause_s:
                time.sleep(pause_s)
    finally:
        with contextlib.suppress(Exception):
            bus.close()
    return resent


def raw_items(posts: list[Any]) -> list[tuple[str | None, bytes]]:
    """Posts as the ingest side puts them on posts.raw (keyed by id)."""
    return [(p.id, p.model_dump_json().encode()) for p in posts]


def analyzed_items(posts: list[Any]) -> list[tuple[str | None, bytes]]:
    """Analyzed posts as the analyze stage puts them on posts.analyzed (keyed by level-1 topic)."""
    from core.runtime import analyzed_key

    return [(analyzed_key(p), p.model_dump_json().encode()) for p in posts]


# -- input ------------------------------------------------------------------------------------------

def demo_records(count: int, *, seed: int = 11, rate_per_min: float = 600.0,
                 incidents: list[Any] | None = None) -> list[dict[str, Any]]:
    """``count`` demo records (posts and hotline messages; the demo incidents unless ``incidents`` is given),
    ending about a minute ago."""
    from ingest.demo import DemoStream

    span = timedelta(minutes=count / rate_per_min + 1)
    stream = DemoStream(seed=seed, rate_per_min=rate_per_min, start=datetime.now(UTC) - span, incidents=incidents)
    out: list[dict[str, Any]] = []
    for record in stream:
        if len(out) >= count:
            break
        out.append(record)
    return out


def demo_posts(count: int, *, seed: int = 11, rate_per_min: float = 600.0,
               incidents: list[Any] | None = None) -> list[Any]:
    """Validated Posts of the demo stream (what ingest publishes); ``incidents=[]`` for everyday posts only."""
    return parse_all(demo_records(count, seed=seed, rate_per_min=rate_per_min, incidents=incidents))


def parse_all(records: list[dict[str, Any]]) -> list[Any]:
    """Validate records into Posts the way ingest does (default salt)."""
    from ingest.validate import parse_record

    return [parse_record(json.dumps(r, ensure_ascii=False).encode(), source_hint=None, salt="yuqing-default-salt",
                         max_text_chars=20_000) for r in records]


def demo_file(path: Path, count: int, *, seed: int = 11) -> list[str]:
    """Write ``count`` demo records as JSONL (for ``yuqing replay``); return the ids their posts get."""
    records = demo_records(count, seed=seed)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return [p.id for p in parse_all(records)]
