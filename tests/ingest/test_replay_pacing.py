"""paced(): original spacing divided by speed, against a fake clock (no real sleeping)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from core.records import Post
from ingest.replay import Pacer, paced

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


class FakeClock:
    """A monotonic clock that only moves when slept on (or when told the consumer was slow)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def _posts(*offsets_s: float) -> list[Post]:
    return [Post(id=f"p{i}", source="weibo", external_id=str(i), text="t", published_at=T0 + timedelta(seconds=s))
            for i, s in enumerate(offsets_s)]


def test_spacing_is_divided_by_speed() -> None:
    clock = FakeClock()
    out = list(paced(_posts(0, 10, 30, 30, 60), speed=10, clock=clock, sleep=clock.sleep))
    assert [p.id for p in out] == ["p0", "p1", "p2", "p3", "p4"]
    assert clock.sleeps == [1.0, 2.0, 3.0]  # simultaneous posts do not wait
    assert clock.now == pytest.approx(106.0)


@pytest.mark.parametrize("speed", [0, math.inf])
def test_zero_or_infinite_speed_never_sleeps(speed: float) -> None:
    clock = FakeClock()
    assert len(list(paced(_posts(0, 100, 5000), speed=speed, clock=clock, sleep=clock.sleep))) == 3
    assert clock.sleeps == []


def test_out_of_order_records_are_due_at_once_and_do_not_rewind() -> None:
    clock = FakeClock()
    list(paced(_posts(0, 20, 10, 30), speed=1, clock=clock, sleep=clock.sleep))
    assert clock.sleeps == [20.0, 10.0]


def test_a_slow_consumer_is_not_made_to_wait_again() -> None:
    clock = FakeClock()
    for post in paced(_posts(0, 1, 2, 10), speed=1, clock=clock, sleep=clock.sleep):
        if post.id == "p0":
            clock.now += 5.0  # processing p0 took 5 s: p1 and p2 are overdue
    assert clock.sleeps == [5.0]  # only p3 (due at +10 s) waits


def test_max_gap_caps_idle_time_without_owing_it_later() -> None:
    clock = FakeClock()
    list(paced(_posts(0, 3600, 3610), speed=1, clock=clock, sleep=clock.sleep, max_gap_s=60.0))
    assert clock.sleeps == [60.0, 10.0]


def test_key_paces_anything() -> None:
    clock = FakeClock()
    items = [(T0, "a"), (T0 + timedelta(seconds=4), "b")]
    assert [x for _, x in paced(items, speed=2, clock=clock, sleep=clock.sleep, key=lambda i: i[0])] == ["a", "b"]
    assert clock.sleeps == [2.0]
    with pytest.raises(TypeError, match="needs key="):
        list(paced([{"published_at": "2024"}], speed=1, clock=clock, sleep=clock.sleep))


@pytest.mark.parametrize("speed", [-1.0, math.nan])
def test_bad_speed_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="speed must be >= 0"):
        Pacer(speed=speed)
