"""The bus contract (core/bus/base.py), asserted identically for every backend."""

from __future__ import annotations

import time
from collections import Counter, defaultdict

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


def test_two_members_split_the_partitions_and_see_each_message_once(bus: Bus) -> None:
    one = bus.consumer([TOPIC], group="pair")
    two = bus.consumer([TOPIC], group="pair")
    # Both members must be in the group before the data arrives (a real broker assigns in poll).
    settle = time.monotonic() + 30
    while time.monotonic() < settle and not (one.assignment() and two.assignment()):  # type: ignore[attr-defined]
        assert one.poll(timeout_s=0.2) == []
        assert two.poll(timeout_s=0.2) == []
    mine, theirs = one.assignment(), two.assignment()  # type: ignore[attr-defined]
    assert mine and theirs and not (mine & theirs), (mine, theirs)
    total = 600
    bus.publish_many(TOPIC, [(f"key-{i}", f"v{i}".encode()) for i in range(total)])
    bus.flush()
    got: dict[str, list[Message]] = {"one": [], "two": []}
    deadline = time.monotonic() + 30
    while sum(map(len, got.values())) < total and time.monotonic() < deadline:
        for name, member in (("one", one), ("two", two)):
            batch = member.poll(max_records=100, timeout_s=0.2)
            got[name].extend(batch)
            if batch:
                member.commit()
    counts = Counter(m.value for batch in got.values() for m in batch)
    assert len(counts) == total
    assert max(counts.values()) == 1, "a committed message was delivered twice"
    assert got["one"] and got["two"], "both members must get a share"
    assert {m.partition for m in got["one"]}.isdisjoint({m.partition for m in got["two"]})
    one.close()
    two.close()


def test_leaving_member_hands_its_partitions_over(bus: Bus) -> None:
    one = bus.consumer([TOPIC], group="handover")
    two = bus.consumer([TOPIC], group="handover")
    settle = time.monotonic() + 30
    while time.monotonic() < settle and not (one.assignment() and two.assignment()):  # type: ignore[attr-defined]
        one.poll(timeout_s=0.2)
        two.poll(timeout_s=0.2)
    two.close()
    bus.publish_many(TOPIC, [(f"key-{i}", f"h{i}".encode()) for i in range(100)])
    bus.flush()
    got = drain(one, 100, timeout_s=30, commit=True)
    assert sorted(m.value for m in got) == sorted(f"h{i}".encode() for i in range(100))
    one.close()
