"""Burst detection (突发): is the current time bucket far above what this key usually sees at this hour?

Per key (an event id, a topic, a place — anything hashable) the detector keeps:

* an hour-of-day profile: for each bucket slot of the day (e.g. 14:00-15:00), an EWMA over days
  (``profile_alpha``) of that slot's count, so a city's quiet night and busy noon are both "normal";
* a level ``rate``: EWMA (``alpha`` per bucket) of all bucket counts, the stand-in for slots not seen yet
  (a new event key has no daily history: it starts from ``prior_rate``).

The expectation for a bucket is its slot's rate, smoothed with the neighbouring slots (never below
``floor_rate``), pro-rated
by how much of the bucket has elapsed; ``p_value`` is the Poisson upper tail P(X ≥ observed). A burst is
``observed ≥ min_count`` and ``p_value < p_threshold``. Counts that feed the baseline are clipped near the
expectation, so a burst does not teach the detector that bursts are normal. Keys with no data for
``idle_days`` are dropped by ``garbage_collect``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime

SUBS = 12  # sub-buckets per bucket (5 minutes of an hour): the resolution of the sliding windows
WINDOWS = (SUBS // 4, SUBS // 2, SUBS)  # trailing quarter, half and whole bucket, in sub-buckets


@dataclass(frozen=True)
class BurstVerdict:
    """The outcome of one check: is it a burst, what was seen, what was expected, how unlikely."""

    burst: bool
    observed: int
    expected: float
    p_value: float


def poisson_sf(k: int, mu: float) -> float:
    """P(X ≥ k) for X ~ Poisson(mu), accurate in the far tail (where 1 − CDF would round to 0)."""
    if k <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    log_pmf_k = -mu + k * math.log(mu) - math.lgamma(k + 1)
    if k > mu:
        # Sum the tail upward: terms shrink geometrically once i > mu.
        total, term, i = 1.0, 1.0, k
        while True:
            i += 1
            term *= mu / i
            total += term
            if term < 1e-16 * total:
                break
        return min(1.0, math.exp(log_pmf_k) * total)
    # k ≤ mu: the tail is large; 1 − P(X ≤ k−1) summed downward from k−1 is accurate enough.
    cdf, term, i = 0.0, math.exp(log_pmf_k) * k / mu, k - 1  # pmf(k-1)
    while i >= 0 and term > 0:
        cdf += term
        if i == 0:
            break
        term *= i / mu
        i -= 1
        if term < 1e-18:
            break
    return max(0.0, min(1.0, 1.0 - cdf))


@dataclass
class _KeyState:
    bucket: int  # index of the current (open) bucket
    count: int = 0
    subs: dict[int, int] = field(default_factory=dict)  # sub-bucket index -> count, last two buckets
    rate: float = 0.0
    slot_rate: list[float] = field(default_factory=list)
    slot_days: list[int] = field(default_factory=list)
    seen_buckets: int = 0
    last_add: float = 0.0


class BurstDetector:
    """Per-key baseline (hour-of-day profile, EWMA level) and a Poisson tail test on trailing windows."""

    def __init__(
        self,
        *,
        bucket_minutes: int = 60,
        alpha: float = 0.05,
        profile_alpha: float = 0.2,
        min_count: int = 5,
        p_threshold: float = 1e-4,
        floor_rate: float = 0.5,
        prior_rate: float = 1.0,
        warmup_buckets: int = 0,
        idle_days: float = 7.0,
    ) -> None:
        if bucket_minutes <= 0 or 1440 % bucket_minutes:
            raise ValueError("bucket_minutes must divide a day (1440 minutes)")
        self.bucket_seconds = bucket_minutes * 60
        self.sub_seconds = self.bucket_seconds / SUBS
        self.slots = 1440 // bucket_minutes
        self.alpha = alpha
        self.profile_alpha = profile_alpha
        self.min_count = min_count
        self.p_threshold = p_threshold
        self.floor_rate = floor_rate
        self.prior_rate = prior_rate
        self.warmup_buckets = warmup_buckets
        self.idle_seconds = idle_days * 86400
        self._keys: dict[Hashable, _KeyState] = {}

    def add(self, key: Hashable, at: datetime, n: int = 1) -> None:
        """Count ``n`` items for ``key`` at ``at`` (items older than the open bucket count in it)."""
        t = _ts(at)
        bucket = int(t // self.bucket_seconds)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState(
                bucket=bucket, rate=self.prior_rate, slot_rate=[0.0] * self.slots, slot_days=[0] * self.slots
            )
        self._advance(state, bucket)
        state.count += n
        sub = min(int(t // self.sub_seconds), (state.bucket + 1) * SUBS - 1)  # late items: open bucket
        sub = max(sub, state.bucket * SUBS)
        state.subs[sub] = state.subs.get(sub, 0) + n
        state.last_add = max(state.last_add, t)

    def check(self, key: Hashable, now: datetime) -> BurstVerdict:
        """Compare the trailing quarter, half and whole bucket up to ``now`` with the key's baseline.

        The shorter windows catch a sharp rise within minutes; the p-value is the smallest of the
        three, multiplied by three (Bonferroni) so looking thrice does not triple the false alarms.
        """
        state = self._keys.get(key)
        if state is None:
            return BurstVerdict(burst=False, observed=0, expected=0.0, p_value=1.0)
        t = _ts(now)
        self._advance(state, int(t // self.bucket_seconds))
        now_sub = t / self.sub_seconds
        best: tuple[float, int, float] | None = None
        for width in WINDOWS:
            start = now_sub - width
            observed = sum(n for sub, n in state.subs.items() if start < sub + 1 and sub <= now_sub)
            expected = 0.0
            first = math.floor(start)
            for sub in range(first, int(now_sub) + 1):
                # Overlap of sub-bucket [sub, sub+1) with the window (start, now_sub].
                overlap = min(sub + 1, now_sub) - max(sub, start)
                if overlap > 0:
                    expected += self._expected(state, sub // SUBS) / SUBS * overlap
            expected = max(expected, self.floor_rate * width / SUBS)
            p = poisson_sf(observed, expected)
            if best is None or p < best[0]:
                best = (p, observed, expected)
        assert best is not None
        p_value = min(1.0, best[0] * len(WINDOWS))
        burst = (
            best[1] >= self.min_count
            and p_value < self.p_threshold
            and state.seen_buckets >= self.warmup_buckets
        )
        return BurstVerdict(burst=burst, observed=best[1], expected=round(best[2], 4), p_value=p_value)

    def garbage_collect(self, now: datetime) -> int:
        """Drop keys with nothing added for ``idle_days``; return how many went."""
        cutoff = _ts(now) - self.idle_seconds
        stale = [k for k, s in self._keys.items() if s.last_add < cutoff]
        for key in stale:
            del self._keys[key]
        return len(stale)

    def key_count(self) -> int:
        """How many keys are tracked."""
        return len(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        # With __len__ alone an empty detector would be falsy, and ``detector or BurstDetector()`` would
        # silently replace a configured one.
        return True

    # ---- internals --------------------------------------------------------------------------------

    def _expected(self, state: _KeyState, bucket: int) -> float:
        slot = bucket % self.slots
        total = weight = 0.0
        for offset, w in ((-1, 0.25), (0, 0.5), (1, 0.25)):
            s = (slot + offset) % self.slots
            total += w * (state.slot_rate[s] if state.slot_days[s] else state.rate)
            weight += w
        return max(self.floor_rate, total / weight)

    def _advance(self, state: _KeyState, bucket: int) -> None:
        """Close buckets up to ``bucket`` (empty ones count as zeros), folding them into the baseline."""
        if bucket <= state.bucket:
            return
        gap = bucket - state.bucket
        if gap > 7 * self.slots:
            # Idle for over a week: fold the last bucket, then decay the level in one step.
            self._fold(state, state.bucket, state.count)
            state.rate *= (1 - self.alpha) ** (gap - 1)
        else:
            self._fold(state, state.bucket, state.count)
            for b in range(state.bucket + 1, bucket):
                self._fold(state, b, 0)
        state.bucket = bucket
        state.count = 0
        keep_from = (bucket - 1) * SUBS
        state.subs = {sub: n for sub, n in state.subs.items() if sub >= keep_from}

    def _fold(self, state: _KeyState, bucket: int, count: int) -> None:
        clipped = float(count)
        if state.seen_buckets >= self.slots:
            # Clip so one burst moves the baseline only a little (about 3 sigma above expectation);
            # not during the first day, when the baseline is still being learnt.
            expected = self._expected(state, bucket)
            clipped = min(clipped, expected + 3.0 * math.sqrt(expected) + 1.0)
        # Running means at first (fast start from the prior), EWMAs once enough was seen.
        alpha = max(self.alpha, 1.0 / (state.seen_buckets + 2))
        state.rate = max(state.rate + alpha * (clipped - state.rate), 0.0)
        slot = bucket % self.slots
        days = state.slot_days[slot]
        state.slot_rate[slot] += max(self.profile_alpha, 1.0 / (days + 1)) * (clipped - state.slot_rate[slot])
        state.slot_days[slot] = days + 1
        state.seen_buckets += 1


def _ts(at: datetime) -> float:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()
