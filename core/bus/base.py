"""The bus contract: topics of keyed messages, consumer groups, at-least-once delivery.

Lifecycle: ``publish`` any time; ``flush`` before relying on delivery; a ``Consumer`` from
``consumer(topics, group)`` polls batches and ``commit``s after the effects of a batch are stored.
Anything polled but not committed is delivered again to the group (after a crash or a rebalance),
so every handler must be idempotent. Messages with the same key keep their order within a topic.

Failure: ``publish``/``flush``/``poll``/``commit`` raise ``core.errors.BackendUnavailable`` when the
server cannot be reached within the configured timeout; callers retry with backoff.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

# Topic names (a Kafka backend prefixes them with settings.kafka.topic_prefix).
TOPIC_RAW = "posts.raw"
TOPIC_ANALYZED = "posts.analyzed"
TOPIC_TICKETS = "tickets.changed"
TOPIC_DEAD = "dead.letters"
ALL_TOPICS = (TOPIC_RAW, TOPIC_ANALYZED, TOPIC_TICKETS, TOPIC_DEAD)


@dataclass(frozen=True)
class Message:
    """One delivered message."""

    topic: str
    key: str | None
    value: bytes
    partition: int = 0
    offset: int = 0
    headers: dict[str, str] = field(default_factory=dict)


class Consumer(ABC):
    """A member of a consumer group."""

    @abstractmethod
    def poll(self, *, max_records: int = 256, timeout_s: float = 1.0) -> list[Message]:
        """Return up to ``max_records`` messages, waiting at most ``timeout_s`` for the first."""

    @abstractmethod
    def commit(self) -> None:
        """Mark everything returned by ``poll`` so far as processed for this group."""

    @abstractmethod
    def close(self) -> None:
        """Leave the group; uncommitted messages go to the remaining members."""

    def lag(self) -> int:
        """Messages in the subscribed topics not yet committed by this group (best effort)."""
        return 0


class Bus(ABC):
    """Publish keyed messages to topics; hand out group consumers."""

    @abstractmethod
    def publish(self, topic: str, value: bytes, *, key: str | None = None,
                headers: dict[str, str] | None = None) -> None:
        """Queue one message; same-key messages keep their order."""

    def publish_many(self, topic: str, items: Sequence[tuple[str | None, bytes]]) -> None:
        """Queue several (key, value) messages."""
        for key, value in items:
            self.publish(topic, value, key=key)

    @abstractmethod
    def flush(self, timeout_s: float = 30.0) -> None:
        """Block until every queued message is durably accepted."""

    @abstractmethod
    def consumer(self, topics: Sequence[str], *, group: str) -> Consumer:
        """A new member of ``group`` reading ``topics``."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release resources."""
