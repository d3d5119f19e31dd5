"""MemoryBus specifics beyond the shared contract: bounded backlog, trimming, stable partitioning."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from core.bus.memory import MemoryBus, partition_for
from core.errors import BackendUnavailable


def test_publish_gives_up_with_backend_unavailable_when_backlog_stays_full() -> None:
    bus = MemoryBus(partitions=2, max_backlog=5, publish_timeout_s=0.2)
    bus.consumer(["t"], group="slow")
    bus.publish_many("t", [(None, b"x")] * 5)
    with pytest.raises(BackendUnavailable, match="backlog is full"):
        bus.publish("t", b"one too many")


def test_blocked_publisher_resumes_once_the_group_commits() -> None:
    bus = MemoryBus(partitions=2, max_backlog=5, publish_timeout_s=10)
    consumer = bus.consumer(["t"], group="g")
    bus.publish_many("t", [(f"k{i}", b"x") for i in range(5)])
    done = threading.Event()
    worker = threading.Thread(target=lambda: (bus.publish("t", b"late"), done.set()))
    worker.start()
    assert not done.wait(0.3), "publish should wait while the backlog is full"
    assert len(consumer.poll(max_records=10, timeout_s=1)) == 5
    consumer.commit()
    assert done.wait(5)
    worker.join()
    assert [m.value for m in consumer.poll(timeout_s=1)] == [b"late"]


def test_log_is_trimmed_once_every_group_committed() -> None:
    bus = MemoryBus(partitions=1, max_backlog=100)
    a = bus.consumer(["t"], group="a")
    b = bus.consumer(["t"], group="b")
    bus.publish_many("t", [(None, b"x")] * 10)
    a.poll(max_records=100, timeout_s=1)
    a.commit()
    assert bus.backlog("t") == 10, "group b still needs every message"
    b.poll(max_records=100, timeout_s=1)
    b.commit()
    assert bus.backlog("t") == 0
    assert bus._topics["t"].partitions[0].log == []
    assert a.lag() == 0 and b.lag() == 0


def test_poll_wakes_up_when_a_message_arrives() -> None:
    bus = MemoryBus()
    consumer = bus.consumer(["t"], group="g")
    timer = threading.Timer(0.2, lambda: bus.publish("t", b"hello", key="k"))
    timer.start()
    started = time.monotonic()
    got = consumer.poll(timeout_s=10)
    assert [m.value for m in got] == [b"hello"]
    assert time.monotonic() - started < 5


def test_close_wakes_waiting_poll_with_backend_unavailable() -> None:
    bus = MemoryBus()
    consumer = bus.consumer(["t"], group="g")
    threading.Timer(0.2, bus.close).start()
    with pytest.raises(BackendUnavailable):
        consumer.poll(timeout_s=10)


def test_partition_of_a_key_does_not_depend_on_the_process() -> None:
    keys = [f"post-{i}" for i in range(50)] + ["舆情事件"]
    here = [partition_for(k, 6, 0) for k in keys]
    code = ("from core.bus.memory import partition_for;"
            f"print([partition_for(k, 6, 0) for k in {keys!r}])")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                           check=True, timeout=60).stdout.strip()
    assert there == repr(here)
    assert len(set(here)) > 1


def test_retention_topic_keeps_its_newest_messages_and_never_blocks_the_publisher() -> None:
    # An announcement stream nobody subscribes to (tickets.changed in embedded mode) must not pin memory
    # or, once max_backlog messages piled up, block the event stage that publishes to it.
    bus = MemoryBus(partitions=2, max_backlog=5, publish_timeout_s=0.2, retention={"news": 100})
    for i in range(5000):
        bus.publish("news", f"{i}".encode(), key=f"k{i % 7}")
    kept = sum(len(p.log) for p in bus._topics["news"].partitions)
    assert 100 <= kept <= 100 + 2 * 50
    # A late subscriber reads from what is left: the newest messages, in order within a partition.
    late = bus.consumer(["news"], group="late")
    got = late.poll(max_records=10_000, timeout_s=1)
    values = [int(m.value) for m in got]
    assert len(values) == kept and max(values) == 4999 and min(values) >= 5000 - kept - 100
    for part in {m.partition for m in got}:
        offsets = [m.offset for m in got if m.partition == part]
        assert offsets == sorted(offsets)
    # Other topics keep the back-pressure contract.
    bus.consumer(["t"], group="slow")
    bus.publish_many("t", [(None, b"x")] * 5)
    with pytest.raises(BackendUnavailable, match="backlog is full"):
        bus.publish("t", b"one too many")


def test_retention_must_keep_something() -> None:
    with pytest.raises(ValueError, match="retention"):
        MemoryBus(retention={"news": 0})
