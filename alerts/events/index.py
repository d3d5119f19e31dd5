"""Candidate retrieval for the clusterer: an inverted index from strong features to recently active events,
and a MinHash LSH index of recent posts for near-duplicates.

Scoring a post against every event in the window is O(events); the inverted index narrows it to the
events that share one of the post's strongest features, ranked by the weight they share, so a post costs
O(query_features x postings_per_feature) whatever the window holds.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable

import numpy as np


class FeatureIndex:
    """feature -> the most recently active events whose members had it among their strongest features."""

    def __init__(self, postings_per_feature: int = 64) -> None:
        self.cap = postings_per_feature
        self._postings: dict[str, OrderedDict[str, float]] = {}

    def add(self, event_id: str, features: list[str], ts: float) -> None:
        """Point each feature at the event (most recent last; the oldest beyond the cap go)."""
        for f in features:
            postings = self._postings.get(f)
            if postings is None:
                postings = self._postings[f] = OrderedDict()
            prev = postings.pop(event_id, None)
            postings[event_id] = ts if prev is None else max(prev, ts)
            if len(postings) > self.cap:
                postings.popitem(last=False)

    def candidates(self, query: dict[str, float], features: list[str], limit: int) -> list[str]:
        """Events sharing the query's features, best shared weight first (ties by id), at most ``limit``."""
        score: dict[str, float] = {}
        for f in features:
            postings = self._postings.get(f)
            if postings:
                w = query[f]
                for event_id in postings:
                    score[event_id] = score.get(event_id, 0.0) + w
        if len(score) <= limit:
            return sorted(score)
        return sorted(heapq.nsmallest(limit, score, key=lambda e: (-score[e], e)))

    def drop(self, events: set[str]) -> None:
        """Forget events (expired)."""
        if not events:
            return
        for f in list(self._postings):
            postings = self._postings[f]
            for event_id in [e for e in postings if e in events]:
                del postings[event_id]
            if not postings:
                del self._postings[f]

    def __len__(self) -> int:
        return len(self._postings)


class NearDupIndex:
    """LSH buckets of MinHash bands over recent posts: post -> (signature, event, ts)."""

    def __init__(self, num_perm: int, bands: int, max_bucket: int = 64) -> None:
        self.rows = num_perm // bands
        self.bands = bands
        self.num_perm = num_perm
        self.max_bucket = max_bucket
        self._buckets: dict[int, list[str]] = {}
        self.sigs: dict[str, tuple[np.ndarray, str, float, tuple[str, ...]]] = {}  # post -> (sig, event, ts, anchors)
        self._heap: list[tuple[float, str]] = []

    def _keys(self, sig: np.ndarray) -> list[int]:
        return [hash((i, sig[i * self.rows : (i + 1) * self.rows].tobytes())) for i in range(self.bands)]

    def add(self, pid: str, sig: np.ndarray, event_id: str, ts: float, anchors: tuple[str, ...] = ()) -> None:
        """Index a post's signature under its event, with the specific places it names."""
        if sig.size != self.num_perm or pid in self.sigs:
            return
        self.sigs[pid] = (sig, event_id, ts, anchors)
        heapq.heappush(self._heap, (ts, pid))
        for key in self._keys(sig):
            bucket = self._buckets.setdefault(key, [])
            bucket.append(pid)
            if len(bucket) > self.max_bucket:  # a template everyone pastes: the newest copies suffice
                del bucket[0]

    def best(self, pid: str, sig: np.ndarray, ts: float, window: float, threshold: float,
             compatible: Callable[[tuple[str, ...]], bool] | None = None) -> tuple[str, float] | None:
        """The most similar indexed post within ``window`` seconds at or above ``threshold`` whose places are
        ``compatible``: (post, sim)."""
        if sig.size != self.num_perm:
            return None
        seen: set[str] = set()
        for key in self._keys(sig):
            seen.update(self._buckets.get(key, ()))
        seen.discard(pid)
        best: tuple[str, float] | None = None
        for cand in sorted(seen):
            entry = self.sigs.get(cand)
            if entry is None or abs(ts - entry[2]) > window or (compatible is not None and not compatible(entry[3])):
                continue
            sim = float(np.mean(entry[0] == sig))
            if sim >= threshold and (best is None or sim > best[1]):
                best = (cand, sim)
        return best

    def expire(self, cutoff: float, max_posts: int) -> int:
        """Drop posts older than ``cutoff`` and the oldest beyond ``max_posts``; return how many went."""
        dropped = 0
        while self._heap and (self._heap[0][0] < cutoff or len(self.sigs) > max_posts):
            _, pid = heapq.heappop(self._heap)
            entry = self.sigs.pop(pid, None)
            if entry is None:
                continue
            dropped += 1
            for key in self._keys(entry[0]):
                bucket = self._buckets.get(key)
                if bucket and pid in bucket:
                    bucket.remove(pid)
                    if not bucket:
                        del self._buckets[key]
        return dropped

    def __len__(self) -> int:
        return len(self.sigs)
