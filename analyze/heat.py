"""Event heat (热度): one number, roughly 0-100, so rule thresholds read naturally ("heat >= 60").

    raw  = 20·log10(1 + volume) + 10·log10(1 + engagement) + 15·log10(1 + velocity_per_hour)
    raw ×= 0.75 + 0.5·negative_share
    heat = 100·(1 − e^(−raw / 70))

``volume`` blends posts and distinct authors, (size + 2·unique_authors) / 3, so one account posting forty
times weighs less than forty citizens. Logs make each tenfold increase add a fixed amount (volume: +20,
engagement: +10, velocity: +15), the negative-share factor ranges 0.75 (all positive) to 1.25 (all
negative), and the exponential cap keeps the result below 100 while staying increasing (rounded to
0.01). Reference points: one post, nothing else ≈ 8; 20 citizens, 200 interactions, 3/h, 80 % negative
≈ 62; 300 posts, 20 000 interactions, 60/h, 90 % negative ≈ 87.
"""

from __future__ import annotations

import math

VOLUME_WEIGHT = 20.0
ENGAGEMENT_WEIGHT = 10.0
VELOCITY_WEIGHT = 15.0
SCALE = 70.0


def heat(
    *, size: int, unique_authors: int, engagement: int, velocity_per_hour: float, negative_share: float
) -> float:
    """Heat of an event (0 ≤ heat < 100), non-decreasing in every argument; see the module docstring."""
    if size < 0 or unique_authors < 0 or engagement < 0 or velocity_per_hour < 0:
        raise ValueError("heat inputs must be non-negative")
    if size == 0:
        return 0.0
    volume = (size + 2 * min(unique_authors, size)) / 3
    share = min(max(negative_share, 0.0), 1.0)
    raw = (
        VOLUME_WEIGHT * math.log10(1 + volume)
        + ENGAGEMENT_WEIGHT * math.log10(1 + engagement)
        + VELOCITY_WEIGHT * math.log10(1 + velocity_per_hour)
    ) * (0.75 + 0.5 * share)
    return round(100.0 * (1.0 - math.exp(-raw / SCALE)), 2)
