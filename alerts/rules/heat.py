"""NegativeHeatRule: a mostly-negative event whose heat crosses a threshold; the level is the highest one crossed.

Options (all optional)::

    thresholds: {blue: 20, yellow: 35, orange: 55, red: 75}   # heat per level, rising
    min_negative_share: 0.5                                   # share of negative posts in the event
    min_size: 3                                               # posts in the event

Stateless: the event already carries its heat and counts, so there is nothing to forget.
"""

from __future__ import annotations

from typing import Any

from alerts.rules._config import check_config, level_map, level_zh, moment_of, number
from alerts.rules.base import Match, Rule
from core.records import AnalyzedPost, Event, WarningLevel

DEFAULT_THRESHOLDS = {"blue": 20, "yellow": 35, "orange": 55, "red": 75}


class NegativeHeatRule(Rule):
    """Negative share ≥ x and heat ≥ threshold → the level of the highest threshold crossed."""

    OPTIONS = ("thresholds", "min_negative_share", "min_size")

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        cfg = check_config(config, self.OPTIONS)
        super().__init__(name, cfg)
        self.thresholds: dict[WarningLevel, float] = level_map(
            cfg.get("thresholds", DEFAULT_THRESHOLDS), "thresholds"
        )
        self.min_negative_share = number(cfg, "min_negative_share", 0.5, minimum=0.0, maximum=1.0)
        self.min_size = int(number(cfg, "min_size", 3, minimum=1))

    def level_for(self, heat: float) -> WarningLevel | None:
        """The highest level whose threshold ``heat`` reaches, or None."""
        crossed = [lvl for lvl, threshold in self.thresholds.items() if heat >= threshold]
        return max(crossed) if crossed else None

    def add_data(self, post: AnalyzedPost, event: Event) -> list[Match]:
        """Fire when the event is negative enough, big enough and hot enough."""
        heat = event.heat
        if not isinstance(heat, int | float) or heat != heat:  # NaN never fires
            return []
        if event.size < self.min_size or event.negative_share < self.min_negative_share:
            return []
        lvl = self.level_for(heat)
        if lvl is None:
            return []
        threshold = self.thresholds[lvl]
        share = event.negative_share
        reason = (
            f"负面事件热度 {heat:.1f} 超过 {threshold:g}（{level_zh(lvl)}阈值），"
            f"负面占比 {share:.0%}，共 {event.size} 条"
        )
        return [
            Match(
                rule=self.name,
                event_id=event.id,
                level=lvl,
                reason=reason,
                at=moment_of(post, event),
                details={
                    "heat": round(float(heat), 3),
                    "threshold": threshold,
                    "negative_share": round(share, 4),
                    "size": event.size,
                },
            )
        ]
