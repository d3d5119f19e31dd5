"""Replay pacing: emit recorded posts with their original spacing in time, sped up ``speed`` times.

Input is assumed sorted by ``published_at`` (a recorded stream or ``sort`` of a file). A record earlier
than the one before it is emitted at once rather than making the clock go backwards. ``speed`` 0 or
infinity means as fast as possible. ``max_gap_s`` optionally caps one wall-clock wait, so that a replay of
months of mailbox data does not sit idle through every night.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")


class Pacer:
    """Sleeps until the wall-clock moment of a record time; usable inside a publish callback too."""

    def __init__(self, *, speed: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, max_gap_s: float | None = None) -> None:
        if math.isnan(speed) or speed < 0:
            raise ValueError(f"speed must be >= 0 (0 or inf = as fast as possible), got {speed}")
        if max_gap_s is not None and max_gap_s < 0:
            raise ValueError(f"max_gap_s must be >= 0, got {max_gap_s}")
        self.speed = speed
        self.clock = clock
        self.sleep = sleep
        self.max_gap_s = max_gap_s
        self._origin: tuple[datetime, float] | None = None  # (record time, wall time) that line up
        self._last: datetime | None = None

    @property
    def unpaced(self) -> bool:
        """Whether no waiting happens at all."""
        return self.speed == 0 or math.isinf(self.speed)

    def wait(self, when: datetime) -> None:
        """Sleep until ``when`` is due on the accelerated timeline (the first call sets the timeline)."""
        if self.unpaced:
            return
        now = self.clock()
        if self._origin is None or self._last is None:
            self._origin, self._last = (when, now), when
            return
        if when <= self._last:
            return  # out of order or simultaneous: due already
        self._last = when
        base_time, base_wall = self._origin
        delay = base_wall + (when - base_time).total_seconds() / self.speed - now
        if self.max_gap_s is not None and delay > self.max_gap_s:
            # Shift the timeline so the skipped idle time is not owed later.
            self._origin = (base_time, base_wall - (delay - self.max_gap_s))
            delay = self.max_gap_s
        if delay > 0:
            self.sleep(delay)


def paced(records: Iterable[T], *, speed: float, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep, max_gap_s: float | None = None,
          key: Callable[[T], datetime] | None = None) -> Iterator[T]:
    """Yield records (sorted Posts, or any type with ``key``) spaced as recorded, ``speed`` times faster."""
    pacer = Pacer(speed=speed, clock=clock, sleep=sleep, max_gap_s=max_gap_s)
    when_of = key or _published_at
    for item in records:
        pacer.wait(when_of(item))
        yield item


def _published_at(item: object) -> datetime:
    when = getattr(item, "published_at", None)
    if not isinstance(when, datetime):
        raise TypeError(f"paced() needs key= for {type(item).__name__} (no published_at datetime)")
    return when
