"""Kafka bus for scale mode (kafka-python; ``pip install yuqing[scale]``).

Deliberate choices:

* Topics are created on first use (or by ``ensure_topics`` at start-up) with ``partitions`` and
  ``replication_factor``; an existing topic is left as it is.
* Keys are hashed by the client's default partitioner (murmur2, the Java client's), so a key maps to
  the same partition from every process and language; unkeyed messages are spread by the client.
* The producer is idempotent when ``acks="all"`` (no duplicates from its own retries). Each thread's
  ``flush`` waits for the messages *that thread* published and raises ``BackendUnavailable`` if any was
  not acknowledged: threads share the producer, and a failure seen by another thread's flush would let
  the publishing thread commit a batch that never arrived.
* A producer that failed a delivery is closed and the next publish builds a fresh one. kafka-python moves
  an idempotent producer to a fatal state on a non-retriable error (or waits on an epoch bump a broker
  restarted mid-request may never grant); such a producer fails every later send, and a worker retrying
  its batch on it would stall for good.
* Consumers use ``enable_auto_commit=False`` and ``auto_offset_reset="earliest"``: a new group reads
  from the start of retention, and only an explicit ``commit`` after processing moves the group on.
  A commit refused because the group rebalanced is logged, not raised: the new owner gets the batch
  again, which the contract already allows (handlers are idempotent).
* Compression: ``none`` and ``gzip`` need nothing beyond kafka-python and work against noida-db and
  Kafka alike; ``gzip`` is the settings default. ``lz4``/``snappy``/``zstd`` need the ``lz4``,
  ``python-snappy`` or ``zstandard`` package on the client; a missing one fails at construction
  with a message saying which package to install.
* Each consumer must be polled from one thread; run one consumer per worker thread, which also lets
  the broker finish a rebalance while the other members keep polling.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from core.bus.base import ALL_TOPICS, Bus, Consumer, Message
from core.errors import BackendUnavailable

try:  # optional dependency: the [scale] extra
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("KafkaBus needs kafka-python: pip install 'yuqing[scale]'") from exc

log = logging.getLogger(__name__)

_CODEC_PACKAGES = {"lz4": "lz4", "snappy": "snappy", "zstd": "zstandard"}
# An idle member polls without waiting and sleeps this long between empty polls (see KafkaGroupConsumer.poll).
_IDLE_POLL_S = 0.05
# Sends a thread keeps for its next flush before the acknowledged ones are dropped.
_PRUNE_AT = 1000


class KafkaBus(Bus):
    """Bus on a Kafka cluster: prefixed topics, prefixed consumer groups, manual commits."""

    def __init__(self, *, bootstrap: str, topic_prefix: str, partitions: int, replication_factor: int,
                 acks: str, linger_ms: int, batch_size: int, compression: str, max_poll_records: int,
                 max_poll_interval_ms: int, session_timeout_ms: int, request_timeout_ms: int,
                 group_prefix: str, retention_ms: int | None = None) -> None:
        module = _CODEC_PACKAGES.get(compression)
        if module and importlib.util.find_spec(module) is None:
            raise ValueError(f"compression={compression!r} needs the {module!r} package on the client"
                             " (pip install it) or use 'gzip'")
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.acks = acks
        self.linger_ms = linger_ms
        self.batch_size = batch_size
        self.compression = None if compression == "none" else compression
        self.max_poll_records = max_poll_records
        self.max_poll_interval_ms = max_poll_interval_ms
        self.session_timeout_ms = session_timeout_ms
        self.request_timeout_ms = request_timeout_ms
        self.group_prefix = group_prefix
        self.retention_ms = retention_ms
        self._lock = threading.Lock()
        self._producer: Any = None
        self._known_topics: set[str] = set()
        self._pending: dict[int, list[Any]] = {}  # publishing thread -> its send futures since its last flush

    # -- helpers ----------------------------------------------------------------------------------

    def _name(self, topic: str) -> str:
        return self.topic_prefix + topic

    def _unavailable(self, what: str, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(f"kafka at {self.bootstrap}: {what} failed: {type(exc).__name__}: {exc}")

    def ensure_topics(self, topics: Sequence[str] = ALL_TOPICS) -> None:
        """Create the (unprefixed) topics that do not exist yet; call at start-up."""
        missing = [t for t in topics if t not in self._known_topics]
        if not missing:
            return
        admin = None
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="yuqing-admin",
                                     request_timeout_ms=self.request_timeout_ms,
                                     bootstrap_timeout_ms=self.request_timeout_ms)
            existing = set(admin.list_topics())
            configs = {} if self.retention_ms is None else {
                "retention.ms": str(self.retention_ms),
                # Retention drops whole segments: roll them often enough that it can (the default is 7 days).
                "segment.ms": str(max(60_000, self.retention_ms // 4)),
            }
            new = [NewTopic(self._name(t), self.partitions, self.replication_factor, topic_configs=configs)
                   for t in missing if self._name(t) not in existing]
            if new:
                try:
                    admin.create_topics(new, timeout_ms=self.request_timeout_ms)
                    log.info("created kafka topics %s", [t.name for t in new])
                except TopicAlreadyExistsError:
                    pass  # another process won the race
        except KafkaError as exc:
            raise self._unavailable("creating topics", exc) from exc
        finally:
            if admin is not None:
                admin.close()
        self._known_topics.update(missing)

    def _track(self, future: Any) -> None:
        """Remember a send of this thread for its next flush (acknowledged ones are pruned now and then)."""
        with self._lock:
            mine = self._pending.setdefault(threading.get_ident(), [])
            mine.append(future)
            # Every _PRUNE_AT sends (amortised, off the per-message path) drop the acknowledged ones; failed
            # ones stay for the thread's next flush to raise (a big ingest flushes once, at its end).
            if len(mine) % _PRUNE_AT == 0:
                mine[:] = [f for f in mine if not f.is_done or f.failed()]

    def _discard(self, producer: Any) -> None:
        """Close a producer that failed a delivery; the next publish builds a fresh one."""
        with self._lock:
            if self._producer is not producer:
                return  # another thread got there first
            self._producer = None
        log.warning("kafka: replacing the producer after a failed delivery")
        try:
            # Other threads' messages still in it end (delivered or failed) within the delivery timeout.
            producer.close(timeout=self.request_timeout_ms / 1000 + 2)
        except KafkaError as exc:
            log.warning("kafka: the failed producer did not close cleanly: %s", exc)

    def _get_producer(self) -> Any:
        with self._lock:
            if self._producer is None:
                try:
                    self._producer = KafkaProducer(
                        bootstrap_servers=self.bootstrap, client_id="yuqing-producer",
                        bootstrap_timeout_ms=self.request_timeout_ms,
                        acks="all" if self.acks == "all" else int(self.acks),
                        enable_idempotence=self.acks == "all",
                        linger_ms=self.linger_ms, batch_size=self.batch_size,
                        compression_type=self.compression, request_timeout_ms=self.request_timeout_ms,
                        # Bounded everywhere: a blocked send and a lost batch both surface in time.
                        max_block_ms=self.request_timeout_ms,
                        delivery_timeout_ms=self.request_timeout_ms + self.linger_ms + 1000)
                except KafkaError as exc:
                    raise self._unavailable("connecting the producer", exc) from exc
            return self._producer

    # -- Bus --------------------------------------------------------------------------------------

    def publish(self, topic: str, value: bytes, *, key: str | None = None,
                headers: dict[str, str] | None = None) -> None:
        """Queue one message; delivery errors surface at ``flush``."""
        self.ensure_topics([topic])
        producer = self._get_producer()
        kafka_headers = [(k, v.encode("utf-8")) for k, v in (headers or {}).items()]
        try:
            future = producer.send(self._name(topic), value=value,
                                   key=key.encode("utf-8") if key is not None else None,
                                   headers=kafka_headers or None)
        except KafkaError as exc:
            self._discard(producer)
            raise self._unavailable("send", exc) from exc
        self._track(future)

    def publish_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> None:
        """Queue several (key, value) messages."""
        for key, value in items:
            self.publish(topic, value, key=key)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until this thread's messages are acknowledged; raise if any was not delivered in time."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            producer = self._producer
            mine = self._pending.pop(threading.get_ident(), [])
        if producer is not None:
            try:
                producer.flush(timeout=timeout_s)
            except KafkaError as exc:  # the futures below say which of ours did not make it
                log.debug("kafka flush: %s", exc)
        errors: list[BaseException] = []
        for future in mine:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
            except KafkaError as exc:
                errors.append(exc)
        if errors:
            if producer is not None:
                self._discard(producer)
            raise BackendUnavailable(f"kafka at {self.bootstrap}: {len(errors)} message(s) not delivered;"
                                     f" first: {type(errors[0]).__name__}: {errors[0]}")

    def consumer(self, topics: Sequence[str], *, group: str) -> KafkaGroupConsumer:
        """A new member of ``group_prefix + group`` subscribed to the prefixed topics."""
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        self.ensure_topics(topics)
        try:
            raw = KafkaConsumer(
                *[self._name(t) for t in topics], bootstrap_servers=self.bootstrap,
                group_id=self.group_prefix + group, client_id=f"yuqing-{group}",
                bootstrap_timeout_ms=self.request_timeout_ms,
                enable_auto_commit=False, auto_offset_reset="earliest",
                max_poll_records=self.max_poll_records, max_poll_interval_ms=self.max_poll_interval_ms,
                session_timeout_ms=self.session_timeout_ms,
                heartbeat_interval_ms=max(100, self.session_timeout_ms // 3),
                request_timeout_ms=max(self.request_timeout_ms, self.session_timeout_ms + 1000))
        except KafkaError as exc:
            raise self._unavailable("connecting a consumer", exc) from exc
        return KafkaGroupConsumer(raw, prefix=self.topic_prefix, request_timeout_ms=self.request_timeout_ms,
                                  bootstrap=self.bootstrap)

    def close(self) -> None:
        """Flush what is queued and close the producer."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.flush(timeout=self.request_timeout_ms / 1000)
            except KafkaError as exc:
                log.warning("kafka: messages still queued at close: %s", exc)
            producer.close(timeout=self.request_timeout_ms / 1000)


class KafkaGroupConsumer(Consumer):
    """One member of a Kafka consumer group; poll it from a single thread."""

    def __init__(self, raw: Any, *, prefix: str, request_timeout_ms: int, bootstrap: str) -> None:
        self._raw = raw
        self._prefix = prefix
        self._timeout_ms = request_timeout_ms
        self._bootstrap = bootstrap

    def _unavailable(self, what: str, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(f"kafka at {self._bootstrap}: {what} failed: {type(exc).__name__}: {exc}")

    def _topic(self, name: str) -> str:
        return name[len(self._prefix):] if name.startswith(self._prefix) else name

    def poll(self, *, max_records: int = 256, timeout_s: float = 1.0) -> list[Message]:
        """Up to ``max_records`` messages; joins or rejoins the group as needed.

        kafka-python's own wait re-sends a fetch as soon as the broker answers the last one. A broker that
        answers an empty fetch at once instead of after ``fetch.max.wait.ms`` (noida-db does) then makes an
        idle member spin a whole core: 14.8 s of CPU in 15 s. So once the member owns partitions it polls
        without waiting and sleeps ``_IDLE_POLL_S`` between empty polls (0.26 s of CPU in 10 s), adding at most
        that much to the pickup of the first message after a quiet spell.
        """
        deadline = time.monotonic() + timeout_s
        try:
            if not self._raw.assignment():  # joining the group: let kafka-python wait for it
                batches = self._raw.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
            else:
                while True:
                    batches = self._raw.poll(timeout_ms=0, max_records=max_records)
                    left = deadline - time.monotonic()
                    if batches or left <= 0:
                        break
                    time.sleep(min(_IDLE_POLL_S, left))
        except KafkaError as exc:
            raise self._unavailable("poll", exc) from exc
        out: list[Message] = []
        for tp, records in batches.items():
            topic = self._topic(tp.topic)
            for r in records:
                out.append(Message(
                    topic=topic, key=r.key.decode("utf-8", "replace") if r.key is not None else None,
                    value=r.value, partition=r.partition, offset=r.offset,
                    headers={k: (v or b"").decode("utf-8", "replace") for k, v in (r.headers or [])}))
        return out

    def commit(self) -> None:
        """Commit the positions reached by ``poll`` for the partitions this member owns."""
        try:
            self._raw.commit(timeout_ms=self._timeout_ms)
        except CommitFailedError as exc:
            log.warning("kafka commit refused after a rebalance; the batch will be redelivered: %s", exc)
        except KafkaError as exc:
            raise self._unavailable("commit", exc) from exc

    def close(self) -> None:
        """Leave the group without committing."""
        try:
            self._raw.close(autocommit=False, timeout_ms=self._timeout_ms)
        except KafkaError as exc:
            log.warning("kafka consumer close: %s", exc)

    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this member owns right now."""
        return {(self._topic(tp.topic), tp.partition) for tp in self._raw.assignment()}

    def lag(self) -> int:
        """Messages in the subscribed topics the group has not committed (0 when the broker cannot say)."""
        try:
            parts = [TopicPartition(topic, p) for topic in (self._raw.subscription() or ())
                     for p in (self._raw.partitions_for_topic(topic) or ())]
            if not parts:
                return 0
            ends = self._raw.end_offsets(parts, timeout_ms=self._timeout_ms)
            return sum(max(0, ends.get(tp, 0) - (self._raw.committed(tp) or 0)) for tp in parts)
        except KafkaError as exc:
            log.debug("kafka lag unavailable: %s", exc)
            return 0
