"""The bus contract (core/bus/base.py), asserted identically for every backend."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable

from core.bus.base import Bus, Consumer, Message

TOPIC = "contract.events"


def drain(consumer: Consumer, want: int, *, timeout_s: float = 20.0, commit: bool = False) -> list[Message]:
    """Poll until ``want`` messages arrived or the time is up; commit after each batch if asked."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        batch = consumer.poll(max_records=500, timeout_s=0.5)
        got.extend(batch)
        if batch and commit:
            consumer.commit()
    return got


def quiet(consumer: Consumer, *, seconds: float = 1.5) -> list[Message]:
    """Whatever arrives within ``seconds`` (expected: nothing)."""
    got: list[Message] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got.extend(consumer.poll(max_records=500, timeout_s=0.3))
    return got


def test_publish_consume_round_trip(bus: Bus) -> None:
    consumer = bus.consumer([TOPIC], group="round-trip")
    bus.publish(TOPIC, "舆情 ①".encode(), key="post-1", headers={"trace": "abc"})
    bus.publish_many(TOPIC, [("post-2", b"two"), (None, b"three")])
    bus.flush()
    got = drain(consumer, 3)
    assert sorted(m.value for m in got) == sorted(["舆情 ①".encode(), b"two", b"three"])
    first = next(m for m in got if m.key == "post-1")
    assert first.topic == TOPIC
    assert first.headers == {"trace": "abc"}
    assert {m.key for m in got} == {"post-1", "post-2", None}
    consumer.commit()
    consumer.close()


def test_order_is_kept_per_key(bus: Bus) -> None:
    consumer = bus.consumer([TOPIC], group="order")
    keys = [f"event-{k}" for k in range(8)]
    bus.publish_many(TOPIC, [(keys[i % 8], f"{keys[i % 8]}:{i}".encode()) for i in range(400)])
    bus.flush()
    got = drain(consumer, 400)
    assert len(got) == 400
    seen: dict[str, list[int]] = defaultdict(list)
    for message in got:
        key, seq = message.value.decode().split(":")
        assert key == message.key
        seen[key].append(int(seq))
    assert set(seen) == set(keys)
    for key, seqs in seen.items():
        assert seqs == sorted(seqs), f"{key} out of order"
    partitions_of = {k: {m.partition for m in got if m.key == k} for k in keys}
    assert all(len(p) == 1 for p in partitions_of.values()), "one key must live in one partition"
    consumer.close()


def test_uncommitted_messages_are_redelivered_after_close(bus: Bus) -> None:
    bus.publish_many(TOPIC, [(f"k{i}", f"m{i}".encode()) for i in range(20)])
    bus.flush()
    first = bus.consumer([TOPIC], group="crashy")
    assert len(drain(first, 20)) == 20
    first.close()  # no commit: as if the worker died after polling
    second = bus.consumer([TOPIC], group="crashy")
    again = drain(second, 20)
    assert sorted(m.value for m in again) == sorted(f"m{i}".encode() for i in range(20))
    second.commit()
    second.close()


def test_committed_messages_are_not_redelivered(bus: Bus) -> None:
    bus.publish_many(TOPIC, [(f"k{i}", f"old{i}".encode()) for i in range(10)])
    bus.flush()
    first = bus.consumer([TOPIC], group="careful")
    assert len(drain(first, 10)) == 10
    first.commit()
    first.close()
    bus.publish(TOPIC, b"new", key="k-new")
    bus.flush()
    second = bus.consumer([TOPIC], group="careful")
    got = drain(second, 1) + quiet(second)
    assert [m.value for m in got] == [b"new"]
    second.close()


def test_each_group_reads_everything_independently(bus: Bus) -> None:
    a = bus.consumer([TOPIC], group="group-a")
    b = bus.consumer([TOPIC], group="group-b")
    bus.publish_many(TOPIC, [(f"k{i}", f"x{i}".encode()) for i in range(10)])
    bus.flush()
    assert sorted(m.value for m in drain(a, 10, commit=True)) == sorted(f"x{i}".encode() for i in range(10))
    a.close()
    assert sorted(m.value for m in drain(b, 10, commit=True)) == sorted(f"x{i}".encode() for i in range(10))
    b.close()


class Member(threading.Thread):
    """One group member polling in its own thread, as workers do (a broker rebalances while all poll)."""

    def __init__(self, bus: Bus, group: str) -> None:
        super().__init__(daemon=True)
        self.consumer = bus.consumer([TOPIC], group=group)
        self.got: list[Message] = []
        self.owned: set[tuple[str, int]] = set()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                batch = self.consumer.poll(max_records=100, timeout_s=0.2)
                self.got.extend(batch)
                if batch:
                    self.consumer.commit()
                self.owned = set(self.consumer.assignment())  # type: ignore[attr-defined]
        except BaseException as exc:  # reported by the test thread
            self.error = exc
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        assert self.error is None, self.error


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_two_members_split_the_partitions_and_see_each_message_once(bus: Bus) -> None:
    one, two = Member(bus, "pair"), Member(bus, "pair")
    one.start()
    two.start()
    assert wait_for(lambda: bool(one.owned) and bool(two.owned) and len(one.owned | two.owned) == 4)
    assert not (one.owned & two.owned), (one.owned, two.owned)
    total = 600
    bus.publish_many(TOPIC, [(f"key-{i}", f"v{i}".encode()) for i in range(total)])
    bus.flush()
    wait_for(lambda: len(one.got) + len(two.got) >= total)
    one.stop()
    two.stop()
    counts = Counter(m.value for m in one.got + two.got)
    assert len(counts) == total
    assert max(counts.values()) == 1, "a committed message was delivered twice"
    assert one.got and two.got, "both members must get a share"
    assert {m.partition for m in one.got}.isdisjoint({m.partition for m in two.got})


def test_leaving_member_hands_its_partitions_over(bus: Bus) -> None:
    one, two = Member(bus, "handover"), Member(bus, "handover")
    one.start()
    two.start()
    assert wait_for(lambda: bool(one.owned) and bool(two.owned))
    two.stop()
    # A clean leave triggers an immediate rebalance; on a loaded machine the survivor's rejoin may still
    # wait for its next heartbeat round, so allow up to two session timeouts.
    assert wait_for(lambda: len(one.owned) == 4, timeout_s=60.0), one.owned
    bus.publish_many(TOPIC, [(f"key-{i}", f"h{i}".encode()) for i in range(100)])
    bus.flush()
    wait_for(lambda: len(one.got) >= 100)
    one.stop()
    assert sorted(m.value for m in one.got) == sorted(f"h{i}".encode() for i in range(100))


def test_lag_counts_what_the_group_has_not_committed(bus: Bus) -> None:
    consumer = bus.consumer([TOPIC], group="lagging")
    bus.publish_many(TOPIC, [(f"k{i}", b"x") for i in range(12)])
    bus.flush()
    assert len(drain(consumer, 12)) == 12
    assert consumer.lag() == 12
    consumer.commit()
    assert consumer.lag() == 0
    consumer.close()
