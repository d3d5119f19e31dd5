"""Per-robot send limiter: WeChat Work allows 20 messages per minute per robot, failed ones included.

A sliding window (not a fixed minute) because the API counts that way: 20 sends at 12:00:59 and 20
more at 12:01:01 would be refused. Every attempt is counted when it is acquired, before the send, so
failures count too. In-process only: two sender processes sharing a robot each keep their own window,
so the far side may still answer 45009, which the sender treats as retryable.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from datetime import datetime, timedelta

# The robot API counts a message when it arrives; the sender stamps its slot before the request leaves. A second
# more than the API's minute keeps request latency from landing a send inside the previous window (errcode 45009).
ROBOT_WINDOW_S = 61.0


class RateLimiter:
    """Sliding-window limiter keyed by target (one robot per target)."""

    def __init__(self, *, per_minute: int = 20, window_s: float = 60.0) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.per_minute = per_minute
        self.window = timedelta(seconds=window_s)
        self._sent: dict[str, deque[datetime]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _prune(self, target: str, now: datetime) -> deque[datetime]:
        q = self._sent[target]
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def available(self, target: str, now: datetime) -> int:
        """How many sends ``target`` may make at ``now`` without waiting."""
        with self._lock:
            return max(0, self.per_minute - len(self._prune(target, now)))

    def acquire(self, target: str, now: datetime) -> bool:
        """Take one slot for ``target`` at ``now``; False (and nothing taken) when the window is full."""
        with self._lock:
            q = self._prune(target, now)
            if len(q) >= self.per_minute:
                return False
            q.append(now)
            return True

    def next_free(self, target: str, now: datetime) -> datetime:
        """The earliest time a slot frees up for ``target`` (``now`` when one is free already)."""
        with self._lock:
            q = self._prune(target, now)
            if len(q) < self.per_minute:
                return now
            return q[len(q) - self.per_minute] + self.window
