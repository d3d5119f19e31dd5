"""Small helpers shared by the rule types: config checking with clear messages, and the event clock."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from core.records import AnalyzedPost, Event, WarningLevel

LEVEL_NAMES = ("blue", "yellow", "orange", "red")


class RuleConfigError(ValueError):
    """A rule's options are wrong; the message names the option (the loader adds file and entry)."""


def check_config(config: Any, allowed: Iterable[str]) -> dict[str, Any]:
    """The config as a dict; unknown keys are an error so that a typo does not silently do nothing."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise RuleConfigError(f"options must be a mapping, got {type(config).__name__}")
    allowed_set = set(allowed)
    unknown = sorted(str(k) for k in config if k not in allowed_set)
    if unknown:
        raise RuleConfigError(f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed_set))}")
    return dict(config)


def number(
    config: Mapping[str, Any], key: str, default: float, *, minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """A finite number option within bounds."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RuleConfigError(f"{key} must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise RuleConfigError(f"{key} must be at least {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise RuleConfigError(f"{key} must be at most {maximum}, got {value!r}")
    return float(value)


def level(value: Any, what: str) -> WarningLevel:
    """A warning level option (1-4, blue..red, 蓝..红, 一般..特别重大)."""
    if isinstance(value, WarningLevel):
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RuleConfigError(f"{what} must be a warning level (1-4, blue/yellow/orange/red), got {value!r}")
    try:
        return WarningLevel.parse(value)
    except ValueError as exc:
        raise RuleConfigError(f"{what}: {exc}") from None


def level_map(value: Any, what: str) -> dict[WarningLevel, float]:
    """A mapping level -> number (e.g. heat thresholds); must rise with the level."""
    if not isinstance(value, Mapping) or not value:
        raise RuleConfigError(f"{what} must be a non-empty mapping like {{blue: 20, red: 75}}, got {value!r}")
    out: dict[WarningLevel, float] = {}
    for key, raw in value.items():
        lvl = level(key, f"{what} key")
        if lvl in out:
            raise RuleConfigError(f"{what} names level {lvl.name} twice")
        out[lvl] = number({f"{what}.{key}": raw}, f"{what}.{key}", 0.0)
    ordered = sorted(out.items())
    for (low, low_v), (high, high_v) in pairwise(ordered):
        if high_v <= low_v:
            raise RuleConfigError(
                f"{what}: {high.name} ({high_v:g}) must be higher than {low.name} ({low_v:g})"
            )
    return dict(ordered)


def aware(moment: datetime) -> datetime:
    """Timezone-aware (naive datetimes are taken as UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def moment_of(post: AnalyzedPost, event: Event) -> datetime:
    """The rule clock for one post: the later of its publication and the event's last post.

    Taken from the data, never the wall clock, so a replay of the same input gives the same matches.
    """
    return max(aware(post.published_at), aware(event.last_seen))


def level_zh(lvl: WarningLevel) -> str:
    """E.g. 橙色."""
    return f"{lvl.colour_zh}色"
