"""The dashboard's live overview (no ``from``/``to``), computed at most once per TTL for every client.

An overview is the most expensive read the dashboard sends: terms aggregations and a date histogram over a
day of posts. Wall screens and open browser tabs poll the live view every few seconds; with a short cache they
share one aggregation instead of each costing the post store (Elasticsearch in scale mode) one. Explicit
windows are not cached: they are rarer, and a window ending in the past must not be served stale.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class TtlCache(Generic[T]):
    """At most ``max_entries`` values, each served for ``ttl_s`` seconds after it was computed.

    ``ttl_s`` 0 turns caching off. Two clients that miss at once both compute (no lock is held while
    computing, so one slow query never blocks the others); the later result wins.
    """

    def __init__(self, ttl_s: float, *, max_entries: int = 64, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s < 0 or max_entries < 1:
            raise ValueError(f"need ttl_s >= 0 and max_entries >= 1, got {ttl_s} and {max_entries}")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, tuple[float, T]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The cached value for ``key`` while fresh, else ``compute()`` (stored for the next callers)."""
        if self.ttl_s == 0:
            return compute()
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.ttl_s:
                self.hits += 1
                return entry[1]
            self.misses += 1
        value = compute()
        with self._lock:
            self._entries[key] = (now, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)
