"""The shared stage loop: poison messages are dead-lettered, outages retried, commits follow effects."""

from __future__ import annotations

import threading
import time

from core.bus.base import Message
from core.bus.memory import MemoryBus
from core.errors import BackendUnavailable
from core.worker import StageWorker


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_poison_message_is_dead_lettered_and_the_rest_is_handled() -> None:
    bus = MemoryBus(partitions=1)
    for value in (b"1", b"two", b"3"):
        bus.publish("t", value, key="k")
    handled: list[int] = []
    dead: list[tuple[bytes, str]] = []
    worker = StageWorker(
        name="w", bus=bus, topics=["t"], group="g", decode=lambda m: int(m.value), handle=handled.extend,
        dead_letter=lambda m, reason: dead.append((m.value, reason)), poll_timeout_s=0.05,
    )
    worker.start()
    try:
        assert _wait(lambda: len(handled) == 2 and len(dead) == 1)
    finally:
        worker.stop()
    assert handled == [1, 3]
    assert dead[0][0] == b"two"
    assert "ValueError" in dead[0][1]
    assert bus.backlog("t") == 0  # committed: nothing will come back


def test_backend_outage_retries_the_same_batch_without_losing_it() -> None:
    bus = MemoryBus(partitions=1)
    for i in range(5):
        bus.publish("t", str(i).encode(), key="k")
    failures = {"left": 3}
    handled: list[int] = []

    def handle(items: list[int]) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise BackendUnavailable("store down")
        handled.extend(items)

    worker = StageWorker(name="w", bus=bus, topics=["t"], group="g", decode=lambda m: int(m.value), handle=handle,
                         dead_letter=lambda m, r: None, poll_timeout_s=0.05, max_backoff_s=0.1)
    worker.start()
    try:
        assert _wait(lambda: handled == [0, 1, 2, 3, 4])
    finally:
        worker.stop()
    assert worker.stats.retries == 3
    assert bus.backlog("t") == 0


def test_uncommitted_batch_is_redelivered_to_the_next_worker() -> None:
    bus = MemoryBus(partitions=1)
    for i in range(3):
        bus.publish("t", str(i).encode(), key="k")
    started = threading.Event()
    release = threading.Event()

    def slow(items: list[int]) -> None:
        started.set()
        release.wait(5)
        raise BackendUnavailable("never reached the store")

    first = StageWorker(name="w1", bus=bus, topics=["t"], group="g", decode=lambda m: int(m.value), handle=slow,
                        dead_letter=lambda m, r: None, poll_timeout_s=0.05, max_backoff_s=0.05)
    first.start()
    assert started.wait(5)
    first.stop(timeout_s=0.5)  # stops while the store is "down": nothing committed
    release.set()
    first.stop()
    seen: list[int] = []
    second = StageWorker(name="w2", bus=bus, topics=["t"], group="g", decode=lambda m: int(m.value),
                         handle=seen.extend, dead_letter=lambda m, r: None, poll_timeout_s=0.05)
    second.start()
    try:
        assert _wait(lambda: seen == [0, 1, 2])
    finally:
        second.stop()


def test_process_batch_is_usable_synchronously() -> None:
    bus = MemoryBus(partitions=1)
    got: list[str] = []
    worker = StageWorker(name="w", bus=bus, topics=["t"], group="g", decode=lambda m: m.value.decode(),
                         handle=got.extend, dead_letter=lambda m, r: None)
    worker.process_batch([Message(topic="t", key=None, value=b"a"), Message(topic="t", key=None, value=b"b")])
    assert got == ["a", "b"]
    assert worker.stats.messages == 2
