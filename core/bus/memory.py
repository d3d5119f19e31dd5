"""In-process bus for embedded mode: partitioned topics, consumer groups, at-least-once delivery.

Behaves like a one-broker Kafka so the same pipeline code runs in both modes: a key always maps to
the same partition (crc32, stable across processes), one partition is read by one member of a group
at a time, each group keeps committed offsets, and what a member polled but did not commit is read
again by whoever owns the partition next. Memory is bounded: ``publish`` waits while a topic's
unconsumed backlog exceeds ``max_backlog`` and the log is trimmed once every group committed past it.

Announcement streams that nobody may read (``tickets.changed`` in embedded mode, where live dashboards
get ticket changes in-process) are named in ``retention``: such a topic keeps its newest N messages (and
fewer than 2N), like a Kafka topic's retention, and publishing to it never waits. Without this a topic no
group subscribes to would pin every message and, after ``max_backlog`` of them, block its publisher.

Nothing here survives the process: embedded mode runs ``core.bus.sqlite.SqliteBus``, this bus plus storage
through the ``_store_*`` hooks. ``MemoryBus`` alone is for tests, benchmarks and ``YUQING_BUS_BACKEND=memory``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.bus.base import Bus, Consumer, Message
from core.errors import BackendUnavailable

log = logging.getLogger(__name__)

# Trimming deletes a list prefix (O(n)); doing it in chunks keeps publish/commit amortised O(1).
_TRIM_CHUNK = 1024


def partition_for(key: str | None, partitions: int, fallback: int) -> int:
    """Partition of a key: crc32 so it is the same in every process (``hash()`` is salted)."""
    if key is None:
        return fallback % partitions
    return zlib.crc32(key.encode("utf-8")) % partitions


def _check_value(value: object) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"message value must be bytes, not {type(value).__name__}")


@dataclass
class _Partition:
    base: int = 0  # offset of log[0]
    log: list[Message] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.base + len(self.log)


@dataclass
class _Topic:
    name: str
    partitions: list[_Partition]
    groups: set[str] = field(default_factory=set)  # groups that ever subscribed: they pin the log
    round_robin: itertools.count = field(default_factory=itertools.count)


@dataclass
class _Group:
    name: str
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    members: list[MemoryConsumer] = field(default_factory=list)


class MemoryBus(Bus):
    """Thread-safe in-process bus; one lock and one condition variable for all state."""

    def __init__(self, *, partitions: int = 4, max_backlog: int = 100_000,
                 publish_timeout_s: float = 30.0, retention: Mapping[str, int] | None = None) -> None:
        if partitions < 1 or max_backlog < 1:
            raise ValueError("partitions and max_backlog must be >= 1")
        if any(n < 1 for n in (retention or {}).values()):
            raise ValueError("retention must keep at least 1 message per topic")
        self.partitions = partitions
        self.max_backlog = max_backlog
        self.retention = dict(retention or {})
        self.publish_timeout_s = publish_timeout_s
        self._cond = threading.Condition(threading.Lock())
        self._topics: dict[str, _Topic] = {}
        self._groups: dict[str, _Group] = {}
        self._closed = False

    # -- persistence hooks: no-ops here; the durable SqliteBus stores through them (lock held) ----

    def _store_messages(self, messages: Sequence[Message]) -> None:
        """Make ``messages`` durable before they become visible; raising leaves the log unchanged."""

    def _store_commit(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        """Make a group's new committed offsets durable before they count."""

    def _store_subscription(self, group: str, topic: str) -> None:
        """Remember that ``group`` reads ``topic`` (it pins the topic's log from now on)."""

    def _store_trim(self, topic: str, partition: int, base: int) -> None:
        """Everything of ``topic``/``partition`` below ``base`` is gone from the log."""

    # -- internals (call with the lock held) ---------------------------------------------------

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = _Topic(name, [_Partition() for _ in range(self.partitions)])
            self._topics[name] = topic
        return topic

    def _floor(self, topic: _Topic, p: int) -> int:
        """Lowest offset some group still needs; everything below it may go."""
        part = topic.partitions[p]
        if not topic.groups:
            return part.base  # nobody subscribed yet: keep everything for the first group
        return min(self._groups[g].committed.get((topic.name, p), part.base) for g in topic.groups)

    def _backlog(self, topic: _Topic) -> int:
        return sum(part.end - self._floor(topic, p) for p, part in enumerate(topic.partitions))

    def _trim(self, topic: _Topic) -> None:
        for p, part in enumerate(topic.partitions):
            drop = self._floor(topic, p) - part.base
            if drop >= _TRIM_CHUNK or (drop > 0 and drop == len(part.log)):
                del part.log[:drop]
                part.base += drop
                self._store_trim(topic.name, p, part.base)

    def _rebalance(self, group: _Group) -> None:
        """Spread the group's partitions round-robin over its members (range-free, deterministic)."""
        members = group.members
        wanted: dict[tuple[str, int], list[MemoryConsumer]] = {}
        for member in members:
            for t in member.topics:
                for p in range(self.partitions):
                    wanted.setdefault((t, p), []).append(member)
        new: dict[int, set[tuple[str, int]]] = {id(m): set() for m in members}
        for i, tp in enumerate(sorted(wanted)):
            candidates = wanted[tp]
            new[id(candidates[i % len(candidates)])].add(tp)
        for member in members:
            kept = {tp: pos for tp, pos in member.positions.items() if tp in new[id(member)]}
            for tp in new[id(member)] - kept.keys():
                # A partition that moved starts at the group's commit: the previous owner's
                # uncommitted messages are delivered again (at-least-once).
                kept[tp] = group.committed.get(tp, self._topics[tp[0]].partitions[tp[1]].base)
            member.positions = kept
            member.order = sorted(kept)
        self._cond.notify_all()

    def _join(self, member: MemoryConsumer) -> None:
        with self._cond:
            if self._closed:
                raise BackendUnavailable("bus is closed")
            group = self._groups.setdefault(member.group, _Group(member.group))
            for t in member.topics:
                topic = self._topic(t)
                if member.group not in topic.groups:
                    self._store_subscription(member.group, t)
                    topic.groups.add(member.group)
            group.members.append(member)
            self._rebalance(group)

    def _leave(self, member: MemoryConsumer) -> None:
        with self._cond:
            group = self._groups[member.group]
            if member in group.members:
                group.members.remove(member)
            member.positions = {}
            member.order = []
            self._rebalance(group)

    # -- Bus --------------------------------------------------------------------------------------

    def publish(self, topic: str, value: bytes, *, key: str | None = None,
                headers: dict[str, str] | None = None) -> None:
        """Append one message; waits (bounded) while the topic's backlog is full."""
        self._publish(topic, [(key, value)], headers)

    def publish_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> None:
        """Append several messages under one lock acquisition."""
        self._publish(topic, items, None)

    def _publish(self, topic_name: str, items: Sequence[tuple[str | None, bytes]],
                 headers: dict[str, str] | None) -> None:
        deadline = time.monotonic() + self.publish_timeout_s
        with self._cond:
            topic = self._topic(topic_name)
            keep = self.retention.get(topic_name)
            if keep is not None:
                self._append_retained(topic, items, headers, keep)
                return
            # Only commits shrink the backlog and they need this lock: count it once, then add.
            for _, value in items:
                _check_value(value)
            backlog = self._backlog(topic)
            done = 0
            try:
                while done < len(items):
                    while backlog >= self.max_backlog and not self._closed:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise BackendUnavailable(
                                f"topic {topic_name!r} backlog is full ({self.max_backlog} unconsumed"
                                f" messages) for {self.publish_timeout_s:g}s: consumers are not keeping up")
                        self._cond.notify_all()  # let consumers see what is already there
                        self._cond.wait(remaining)
                        backlog = self._backlog(topic)
                    if self._closed:
                        raise BackendUnavailable("bus is closed")
                    # As many as fit, stored in one go (one transaction for a durable bus), then visible.
                    chunk = items[done: done + self.max_backlog - backlog]
                    self._append_all(topic, self._prepare(topic, chunk, headers))
                    done += len(chunk)
                    backlog += len(chunk)
            finally:
                self._cond.notify_all()

    def _prepare(self, topic: _Topic, items: Sequence[tuple[str | None, bytes]],
                 headers: dict[str, str] | None) -> list[Message]:
        """The messages ``items`` become, with partitions and offsets, not yet appended (lock held)."""
        ends = [part.end for part in topic.partitions]
        out = []
        for key, value in items:
            p = partition_for(key, self.partitions, next(topic.round_robin))
            out.append(Message(topic=topic.name, key=key, value=bytes(value), partition=p, offset=ends[p],
                               headers=dict(headers or {})))
            ends[p] += 1
        return out

    def _append_all(self, topic: _Topic, messages: list[Message]) -> None:
        """Store, then append prepared messages to their partitions (lock held)."""
        self._store_messages(messages)
        for message in messages:
            topic.partitions[message.partition].log.append(message)

    def _append_retained(self, topic: _Topic, items: Sequence[tuple[str | None, bytes]],
                         headers: dict[str, str] | None, keep: int) -> None:
        """Append to a retention topic and drop its oldest messages beyond ``keep`` (never waits)."""
        if self._closed:
            raise BackendUnavailable("bus is closed")
        per_partition = max(1, -(-keep // self.partitions))
        for _, value in items:
            _check_value(value)
        messages = self._prepare(topic, items, headers)
        self._append_all(topic, messages)
        for p in sorted({m.partition for m in messages}):
            part = topic.partitions[p]
            # Drop in chunks (a list-prefix delete is O(n)); a reader behind the cut resumes at the base.
            drop = len(part.log) - per_partition
            if drop >= min(_TRIM_CHUNK, per_partition):
                del part.log[:drop]
                part.base += drop
                self._store_trim(topic.name, p, part.base)
        self._cond.notify_all()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Nothing to do: an appended message is already visible to consumers."""

    def consumer(self, topics: Sequence[str], *, group: str) -> MemoryConsumer:
        """A new member of ``group``; the group's partitions are rebalanced at once."""
        if not topics:
            raise ValueError("a consumer needs at least one topic")
        member = MemoryConsumer(self, tuple(dict.fromkeys(topics)), group)
        self._join(member)
        return member

    def close(self) -> None:
        """Wake every waiting poll/publish; later calls raise BackendUnavailable."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def backlog(self, topic: str) -> int:
        """Messages of ``topic`` some subscribed group has not committed (all of them if none)."""
        with self._cond:
            return self._backlog(self._topic(topic))


class MemoryConsumer(Consumer):
    """One member of a group of a ``MemoryBus``."""

    def __init__(self, bus: MemoryBus, topics: tuple[str, ...], group: str) -> None:
        self._bus = bus
        self.topics = topics
        self.group = group
        self.positions: dict[tuple[str, int], int] = {}  # owned partition -> next offset to read
        self.order: list[tuple[str, int]] = []
        self._next = 0  # where the next poll starts among owned partitions (fairness)
        self._closed = False

    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this member owns right now."""
        with self._bus._cond:
            return set(self.positions)

    def _take(self, max_records: int) -> list[Message]:
        bus = self._bus
        out: list[Message] = []
        n = len(self.order)
        for i in range(n):
            tp = self.order[(self._next + i) % n]
            part = bus._topics[tp[0]].partitions[tp[1]]
            pos = max(self.positions[tp], part.base)
            if pos < part.end:
                batch = part.log[pos - part.base: pos - part.base + max_records - len(out)]
                out.extend(batch)
                self.positions[tp] = pos + len(batch)
                if len(out) >= max_records:
                    break
        self._next = (self._next + 1) % n if n else 0
        return out

    def poll(self, *, max_records: int = 256, timeout_s: float = 1.0) -> list[Message]:
        """Up to ``max_records`` messages from owned partitions; waits on the bus's condition."""
        if self._closed:
            raise RuntimeError("consumer is closed")
        deadline = time.monotonic() + max(timeout_s, 0.0)
        cond = self._bus._cond
        with cond:
            while True:
                if self._bus._closed:
                    raise BackendUnavailable("bus is closed")
                out = self._take(max_records)
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    return out
                cond.wait(remaining)

    def commit(self) -> None:
        """Commit what was polled from partitions this member still owns."""
        if self._closed:
            raise RuntimeError("consumer is closed")
        bus = self._bus
        with bus._cond:
            group = bus._groups[self.group]
            new = {tp: pos for tp, pos in self.positions.items() if pos > group.committed.get(tp, -1)}
            if new:
                bus._store_commit(self.group, new)  # durable first: a failed store commits nothing
                group.committed.update(new)
            for t in self.topics:
                bus._trim(bus._topics[t])
            bus._cond.notify_all()  # publishers waiting for backlog room

    def close(self) -> None:
        """Leave without committing: uncommitted messages go to the remaining members."""
        if not self._closed:
            self._closed = True
            self._bus._leave(self)

    def lag(self) -> int:
        """Messages in the subscribed topics the group has not committed."""
        bus = self._bus
        with bus._cond:
            group = bus._groups[self.group]
            total = 0
            for t in self.topics:
                for p, part in enumerate(bus._topics[t].partitions):
                    total += part.end - max(group.committed.get((t, p), part.base), part.base)
            return total
