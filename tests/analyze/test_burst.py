"""analyze.burst: found at the known time in synthetic streams, silent on normal days with a daily rhythm."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from analyze.burst import BurstDetector, poisson_sf

START = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)


def diurnal_rate(hour: float, base: float) -> float:
    """Posts per hour: quiet at night, busy around noon (peak/trough ratio 9)."""
    return base * (1 + 0.8 * math.sin((hour - 8) / 24 * 2 * math.pi))


def run_stream(
    seed: int, *, days: int, base: float = 6.0, burst_at: datetime | None = None, burst_per_hour: float = 0.0,
    burst_hours: float = 2.0, detector: BurstDetector | None = None,
) -> list[datetime]:
    """Feed a Poisson stream in 5-minute steps, checking after each; return the times flagged as bursts."""
    rng = np.random.default_rng(seed)
    det = detector if detector is not None else BurstDetector(warmup_buckets=48)
    flagged = []
    t = START
    end = START + timedelta(days=days)
    while t < end:
        hour = (t - START).total_seconds() / 3600 % 24
        lam = diurnal_rate(hour, base) / 12
        if burst_at is not None and burst_at <= t < burst_at + timedelta(hours=burst_hours):
            lam += burst_per_hour / 12
        for offset in np.sort(rng.uniform(0, 300, size=rng.poisson(lam))):
            det.add("topic:城建", t + timedelta(seconds=float(offset)))
        t += STEP
        if det.check("topic:城建", t).burst:
            flagged.append(t)
    return flagged


def test_poisson_tail_matches_direct_sums():
    for mu in (0.3, 2.0, 9.5, 40.0):
        for k in (0, 1, 3, 10, 25, 80):
            direct = 1.0 - sum(math.exp(-mu) * mu**i / math.factorial(i) for i in range(k))
            assert poisson_sf(k, mu) == pytest.approx(max(direct, 0.0), rel=1e-6, abs=1e-12)
    assert 0 < poisson_sf(200, 3.0) < 1e-100  # far tail stays positive and tiny, not 0 or negative


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_normal_days_with_a_daily_rhythm_raise_no_burst(seed):
    assert run_stream(seed, days=10) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_burst_is_found_soon_after_it_starts(seed):
    burst_at = START + timedelta(days=8, hours=14, minutes=20)
    flagged = run_stream(seed, days=9, burst_at=burst_at, burst_per_hour=60)
    assert flagged, "the burst was not detected"
    assert burst_at <= flagged[0] <= burst_at + timedelta(minutes=30)
    # Nothing before the burst, nothing long after it ended.
    assert all(burst_at <= t <= burst_at + timedelta(hours=3) for t in flagged)


def test_night_time_rise_is_a_burst_that_would_be_normal_at_noon():
    det = BurstDetector(warmup_buckets=48)
    run_stream(7, days=8, detector=det)
    night = START + timedelta(days=8, hours=2)  # trough: about 1.2 posts/hour expected
    for i in range(12):
        det.add("topic:城建", night + timedelta(minutes=2 * i))
    verdict = det.check("topic:城建", night + timedelta(minutes=25))
    assert verdict.burst and verdict.observed == 12 and verdict.p_value < 1e-4

    same = BurstDetector(warmup_buckets=48)
    run_stream(7, days=8, detector=same)
    noon = START + timedelta(days=8, hours=12)  # busy hours: about 10 posts/hour expected
    for i in range(12):
        same.add("topic:城建", noon + timedelta(minutes=2 * i))
    at_noon = same.check("topic:城建", noon + timedelta(minutes=25))
    assert at_noon.expected > 3 * verdict.expected and not at_noon.burst


def test_new_key_with_few_posts_is_no_burst_but_a_flood_is():
    det = BurstDetector()  # no warm-up: an event's first hour is judged against the prior rate
    t = START + timedelta(hours=10)
    for i in range(3):
        det.add("ev-1", t + timedelta(minutes=i))
    assert not det.check("ev-1", t + timedelta(minutes=10)).burst  # below min_count
    for i in range(30):
        det.add("ev-2", t + timedelta(seconds=20 * i))
    verdict = det.check("ev-2", t + timedelta(minutes=10))
    assert verdict.burst and verdict.observed == 30
    assert det.check("unknown", t).observed == 0 and not det.check("unknown", t).burst


def test_garbage_collect_drops_idle_keys_only():
    det = BurstDetector(idle_days=2)
    det.add("old", START)
    det.add("fresh", START + timedelta(days=3))
    assert det.garbage_collect(START + timedelta(days=3, hours=1)) == 1
    assert det.key_count() == len(det) == 1
    assert BurstDetector()  # an empty detector is still truthy
    assert det.check("old", START + timedelta(days=3)).observed == 0


def test_bucket_minutes_must_divide_a_day():
    with pytest.raises(ValueError):
        BurstDetector(bucket_minutes=7)
