"""SpikeRule: posts in the latest time bucket far above the key's own baseline (声量突增).

Each post is counted under several keys — its event, its level-1 topic and each district it names —
in an ``analyze.burst.BurstDetector``; after counting, every key is checked and a significant burst
fires for the post's event. Options (all optional)::

    bucket_minutes: 60          # the detector's bucket (must divide a day)
    max_p_value: 0.001          # a burst must be at least this unlikely under the baseline
    min_count: 5                # and have at least this many posts in the window that looks most unusual
                                # (the detector checks the last quarter, half and whole bucket)
    min_negative_share: 0.3     # spikes only warn through an event at least this negative
    keys: {event: yellow, topic: blue, district: blue}   # which keys, and each one's base level
    escalate: {orange: 8, red: 20}   # observed / expected ratio that raises the level to at least this
    ratio_floor: 3                   # expected counts below this are taken as this for escalation
    detector: {}                # further keyword arguments for BurstDetector

A spike warns only through an event negative enough to matter, so a festival or a wave of praise
does not open a ticket (an alarming neutral news wave is the sensitive-terms rule's to catch).
For escalation the expected count is floored at ``ratio_floor``: against a near-empty baseline any
handful of posts is a huge ratio, and five posts on a new event are a warning, not a 重大 one.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from alerts.rules._config import (
    RuleConfigError,
    aware,
    check_config,
    level,
    level_map,
    level_zh,
    moment_of,
    number,
)
from alerts.rules.base import Match, Rule
from analyze.burst import BurstDetector
from core.records import AnalyzedPost, Event, WarningLevel

log = logging.getLogger(__name__)

KEY_KINDS = ("event", "topic", "district")
_KIND_ZH = {"event": "事件", "topic": "领域", "district": "属地"}
DEFAULT_KEYS = {"event": "yellow", "topic": "blue", "district": "blue"}
DEFAULT_ESCALATE = {"orange": 8, "red": 20}


class SpikeRule(Rule):
    """Volume in the last bucket vs the key's baseline, keyed by event, topic and district."""

    OPTIONS = (
        "bucket_minutes", "max_p_value", "min_count", "min_negative_share", "keys", "escalate", "ratio_floor",
        "detector",
    )

    def __init__(self, name: str, config: dict[str, Any] | None = None) -> None:
        cfg = check_config(config, self.OPTIONS)
        super().__init__(name, cfg)
        self.bucket_minutes = int(number(cfg, "bucket_minutes", 60, minimum=1, maximum=24 * 60))
        self.max_p_value = number(cfg, "max_p_value", 0.001, minimum=0.0, maximum=1.0)
        self.min_count = int(number(cfg, "min_count", 5, minimum=1))
        self.min_negative_share = number(cfg, "min_negative_share", 0.3, minimum=0.0, maximum=1.0)
        keys = cfg.get("keys", DEFAULT_KEYS)
        if not isinstance(keys, dict) or not keys:
            raise RuleConfigError(f"keys must be a mapping like {DEFAULT_KEYS}, got {keys!r}")
        self.keys: dict[str, WarningLevel] = {}
        for kind, lvl in keys.items():
            if kind not in KEY_KINDS:
                raise RuleConfigError(f"keys: unknown key kind {kind!r}; use {', '.join(KEY_KINDS)}")
            self.keys[kind] = level(lvl, f"keys.{kind}")
        self.escalate = level_map(cfg.get("escalate", DEFAULT_ESCALATE), "escalate")
        self.ratio_floor = number(cfg, "ratio_floor", 3.0, minimum=0.01)
        extra = cfg.get("detector", {}) or {}
        if not isinstance(extra, dict):
            raise RuleConfigError(f"detector must be a mapping of BurstDetector options, got {extra!r}")
        options = {"min_count": self.min_count, "p_threshold": self.max_p_value, **extra}
        try:
            self.detector = BurstDetector(bucket_minutes=int(self.bucket_minutes), **options)
        except (TypeError, ValueError) as exc:
            raise RuleConfigError(f"detector: {exc}") from None

    def _keys_of(self, post: AnalyzedPost, event: Event) -> list[tuple[str, str, str]]:
        """(kind, detector key, label) for this post, in a fixed order."""
        out: list[tuple[str, str, str]] = []
        if "event" in self.keys:
            out.append(("event", f"event:{event.id}", event.title or event.id))
        if "topic" in self.keys and post.topic.l1:
            out.append(("topic", f"topic:{post.topic.l1}", post.topic.l1))
        if "district" in self.keys:
            for district in dict.fromkeys(post.entities.districts):
                if district:
                    out.append(("district", f"district:{district}", district))
        return out

    def add_data(self, post: AnalyzedPost, event: Event) -> list[Match]:
        """Count the post under its keys, then report the keys that burst."""
        at = moment_of(post, event)
        keys = self._keys_of(post, event)
        for _, key, _ in keys:
            self.detector.add(key, at)
        matches: list[Match] = []
        for kind, key, label in keys:
            if event.negative_share < self.min_negative_share:
                continue
            verdict = self.detector.check(key, at)
            if not verdict.burst or verdict.observed < self.min_count or verdict.p_value > self.max_p_value:
                continue
            expected = float(verdict.expected)
            ratio = verdict.observed / max(expected, 1e-9)
            level_ratio = verdict.observed / max(expected, self.ratio_floor)
            lvl = self.keys[kind]
            for esc_level, esc_ratio in self.escalate.items():
                if level_ratio >= esc_ratio and esc_level > lvl:
                    lvl = esc_level
            reason = (
                f"{_KIND_ZH[kind]}「{label}」近 {self.bucket_minutes} 分钟声量 {verdict.observed} 条，"
                f"为基线 {expected:.1f} 条的 {ratio:.1f} 倍（p={float(verdict.p_value):.2g}），"
                f"{level_zh(lvl)}预警"
            )
            matches.append(
                Match(
                    rule=self.name,
                    event_id=event.id,
                    level=lvl,
                    reason=reason,
                    at=at,
                    details={
                        "key_kind": kind,
                        "key": key,
                        "observed": int(verdict.observed),
                        "expected": round(expected, 4),
                        "ratio": round(ratio, 3),
                        "ratio_for_level": round(level_ratio, 3),
                        "p_value": float(verdict.p_value),
                        "bucket_minutes": self.bucket_minutes,
                    },
                )
            )
        return matches

    def garbage_collect(self, now: datetime) -> None:
        """Let the detector drop buckets and keys older than its window."""
        self.detector.garbage_collect(aware(now))
