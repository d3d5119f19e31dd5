"""The loop every stage worker shares: poll a batch, handle it, commit, back off when a backend is down.

A handler gets the decoded batch and returns normally only when every effect is stored; the loop
then commits the bus offsets (at-least-once). A message that cannot be decoded is a poison message:
it is dead-lettered with the reason and skipped, so one bad record never blocks a partition.
When a backend is unavailable the batch is retried with capped exponential backoff, without
polling more (memory stays bounded) and without committing (nothing is lost).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from core.bus.base import Bus, Consumer, Message
from core.errors import BackendUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

DeadLetterFn = Callable[[Message, str], None]


@dataclass
class WorkerStats:
    """Running counters of one worker (read by /metrics and the bench)."""

    batches: int = 0
    messages: int = 0
    poison: int = 0
    retries: int = 0
    last_batch_at: float = 0.0
    busy_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


class StageWorker(Generic[T]):
    """Consumes ``topics`` in ``group``; ``decode`` each message, ``handle`` each batch."""

    def __init__(
        self,
        *,
        name: str,
        bus: Bus,
        topics: Sequence[str],
        group: str,
        decode: Callable[[Message], T],
        handle: Callable[[list[T]], None],
        dead_letter: DeadLetterFn,
        batch_size: int = 128,
        poll_timeout_s: float = 0.5,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.name = name
        self.bus = bus
        self.topics = list(topics)
        self.group = group
        self.decode = decode
        self.handle = handle
        self.dead_letter = dead_letter
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.max_backoff_s = max_backoff_s
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer = None

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the current batch, commit it, leave the group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """The loop; returns when stop() is called."""
        consumer = self.bus.consumer(self.topics, group=self.group)
        try:
            while not self._stop.is_set():
                try:
                    messages = consumer.poll(max_records=self.batch_size, timeout_s=self.poll_timeout_s)
                except BackendUnavailable as exc:
                    log.warning("%s: bus unavailable while polling (%s); retrying", self.name, exc)
                    self._stop.wait(2.0)
                    continue
                if not messages:
                    continue
                if not self._process(messages):
                    break  # stopped during an outage: leave uncommitted, the batch is redelivered
                self._commit(consumer)
        finally:
            try:
                consumer.close()
            except Exception:  # closing must not hide the reason the loop ended
                log.exception("%s: error while closing the consumer", self.name)

    def process_batch(self, messages: list[Message]) -> bool:
        """Decode and handle one batch synchronously; False if stopped before the batch was stored."""
        return self._process(messages)

    def _process(self, messages: list[Message]) -> bool:
        started = time.perf_counter()
        items: list[T] = []
        for message in messages:
            try:
                items.append(self.decode(message))
            except Exception as exc:  # poison: any decode failure is a reason, not a crash
                self.stats.poison += 1
                self.dead_letter(message, f"{type(exc).__name__}: {exc}"[:2000])
        backoff = 0.5
        while items:
            try:
                self.handle(items)
                break
            except BackendUnavailable as exc:
                # Keep the batch, poll nothing more, retry: bounded memory, nothing lost.
                self.stats.retries += 1
                log.warning("%s: backend unavailable (%s); retrying batch in %.1fs", self.name, exc, backoff)
                if self._stop.wait(backoff):
                    return False
                backoff = min(self.max_backoff_s, backoff * 2)
        self.stats.batches += 1
        self.stats.messages += len(messages)
        self.stats.last_batch_at = time.time()
        self.stats.busy_s += time.perf_counter() - started
        return True

    def _commit(self, consumer: Consumer) -> None:
        backoff = 0.5
        while True:
            try:
                consumer.commit()
                return
            except BackendUnavailable as exc:
                log.warning("%s: commit failed (%s); retrying", self.name, exc)
                if self._stop.wait(backoff):
                    return  # uncommitted work is redelivered: at-least-once
                backoff = min(self.max_backoff_s, backoff * 2)
