"""Ticket deadlines per warning level and stage, in clock hours or working days on the Chinese calendar.

Working days follow the installed ``chinesecalendar`` package (statutory holidays and the adjusted
working weekends, 调休). The package only knows the years the State Council has published; for a
year it does not know it raises, and we fall back to Monday-Friday with a warning. To bring in a new
year's calendar either upgrade the package (``pip install -U chinesecalendar``, normally released a
few days after the State Council's notice each November/December) or list the dates in the YAML:
``extra_holidays`` (days off) and ``extra_workdays`` (working weekends); these lists win over the
package, so they also carry local adjustments.

Defaults (``alerts/data/deadlines.yaml``) follow 国办发〔2016〕61号 and 80号: red/orange → authoritative
information within 5 h and a press conference within 24 h; others → a response within 48 h.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from core.records import WarningLevel

log = logging.getLogger(__name__)

DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "deadlines.yaml"
STAGES = ("sign", "first_response", "authoritative_info", "press_conference", "close")
STAGE_ZH = {
    "sign": "签收",
    "first_response": "首次回应",
    "authoritative_info": "发布权威信息",
    "press_conference": "召开新闻发布会",
    "close": "办结",
}

_warned_years: set[int] = set()


@dataclass(frozen=True)
class WorkCalendar:
    """Which dates are working days: overrides first, then chinesecalendar, then Monday-Friday."""

    extra_holidays: frozenset[date] = frozenset()
    extra_workdays: frozenset[date] = frozenset()

    def is_workday(self, day: date) -> bool:
        """Whether ``day`` is a working day in mainland China."""
        if day in self.extra_workdays:
            return True
        if day in self.extra_holidays:
            return False
        return _package_is_workday(day)


@lru_cache(maxsize=8192)
def _package_is_workday(day: date) -> bool:
    # Cached: chinesecalendar scans its whole table to validate each date (~0.3 ms a call).
    import chinese_calendar

    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        if day.year not in _warned_years:
            _warned_years.add(day.year)
            log.warning(
                "chinesecalendar has no data for %d: counting Monday-Friday as working days; "
                "upgrade chinesecalendar or list extra_holidays/extra_workdays in deadlines.yaml",
                day.year,
            )
        return day.weekday() < 5


def add_working_days(
    start: datetime, days: int, tz: str = "Asia/Shanghai", calendar: WorkCalendar | None = None
) -> datetime:
    """``start`` plus ``days`` working days, same local clock (a day-off start counts from 00:00 next)."""
    if start.tzinfo is None:
        raise ValueError("add_working_days needs a timezone-aware start")
    if days < 0:
        raise ValueError(f"working days must be >= 0, got {days}")
    cal = calendar or WorkCalendar()
    zone = ZoneInfo(tz)
    local = start.astimezone(zone)
    day, clock = local.date(), local.timetz().replace(tzinfo=None)
    if not cal.is_workday(day):
        # Received on a day off: the clock starts at 00:00 of the next working day.
        day = _next_workday(day, cal)
        clock = time(0, 0)
    for _ in range(days):
        day = _next_workday(day, cal)
    return datetime.combine(day, clock, tzinfo=zone)


def _next_workday(day: date, cal: WorkCalendar) -> date:
    nxt = day + timedelta(days=1)
    for _ in range(400):  # no year has 400 consecutive days off; guards a broken override list
        if cal.is_workday(nxt):
            return nxt
        nxt += timedelta(days=1)
    raise ValueError(f"no working day within 400 days after {day}")


@dataclass(frozen=True)
class Limit:
    """A time limit: clock hours or working days."""

    hours: float | None = None
    working_days: int | None = None

    @classmethod
    def parse(cls, value: Any, where: str) -> Limit:
        """Read ``{hours: N}`` or ``{working_days: N}``."""
        if not isinstance(value, dict) or len(value) != 1:
            raise ValueError(f"{where}: a limit is {{hours: N}} or {{working_days: N}}, got {value!r}")
        (key, num), = value.items()
        if key == "hours" and isinstance(num, int | float) and not isinstance(num, bool) and num > 0:
            return cls(hours=float(num))
        if key == "working_days" and isinstance(num, int) and not isinstance(num, bool) and num >= 0:
            return cls(working_days=num)
        raise ValueError(f"{where}: {key}={num!r} is not a positive number of hours or working days")

    def after(self, start: datetime, tz: str, calendar: WorkCalendar) -> datetime:
        """The moment this limit runs out when counted from ``start``."""
        if self.hours is not None:
            return start + timedelta(hours=self.hours)
        return add_working_days(start, self.working_days or 0, tz, calendar)

    def before(self, deadline: datetime) -> datetime:
        """``deadline`` minus this limit (clock hours; a working day counts as 24 h here)."""
        hours = self.hours if self.hours is not None else 24.0 * (self.working_days or 0)
        return deadline - timedelta(hours=hours)


@dataclass(frozen=True)
class DeadlinePolicy:
    """Per-level stage limits plus the escalation ladder and the reopen window."""

    limits: dict[int, dict[str, Limit]]
    tz: str = "Asia/Shanghai"
    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    remind_before: Limit = Limit(hours=2)
    notice_after: Limit = Limit(working_days=1)
    supervise_after: Limit = Limit(working_days=2)
    reopen_window: Limit = Limit(hours=168)

    @classmethod
    def load(cls, path: str | Path | None = None) -> DeadlinePolicy:
        """Read the policy YAML (the packaged defaults when ``path`` is None)."""
        src = Path(path) if path else DEFAULT_PATH
        try:
            data = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read deadlines file {src}: {exc}") from exc
        return cls.from_dict(data, where=str(src))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "deadlines") -> DeadlinePolicy:
        """Build from the YAML's structure; errors name the entry."""
        levels = data.get("levels")
        if not isinstance(levels, dict) or not levels:
            raise ValueError(f"{where}: 'levels' must map blue/yellow/orange/red to stage limits")
        limits: dict[int, dict[str, Limit]] = {}
        for name, stages in levels.items():
            try:
                level = WarningLevel.parse(name)
            except ValueError as exc:
                raise ValueError(f"{where}: levels.{name}: {exc}") from exc
            if not isinstance(stages, dict):
                raise ValueError(f"{where}: levels.{name} must map stages to limits")
            parsed: dict[str, Limit] = {}
            for stage, value in stages.items():
                if stage not in STAGES:
                    raise ValueError(f"{where}: levels.{name}.{stage}: unknown stage, use one of {STAGES}")
                parsed[stage] = Limit.parse(value, f"{where}: levels.{name}.{stage}")
            limits[int(level)] = parsed
        missing = [lv.name for lv in WarningLevel if int(lv) not in limits]
        if missing:
            raise ValueError(f"{where}: levels {missing} have no limits")
        esc = data.get("escalation") or {}
        tz = str(data.get("timezone") or "Asia/Shanghai")
        ZoneInfo(tz)  # fail at load on a bad zone name
        cal = WorkCalendar(
            extra_holidays=frozenset(_dates(data.get("extra_holidays"), f"{where}: extra_holidays")),
            extra_workdays=frozenset(_dates(data.get("extra_workdays"), f"{where}: extra_workdays")),
        )
        kwargs: dict[str, Any] = {}
        for key in ("remind_before", "notice_after", "supervise_after"):
            if key in esc:
                kwargs[key] = Limit.parse(esc[key], f"{where}: escalation.{key}")
        if "reopen_window" in data:
            kwargs["reopen_window"] = Limit.parse(data["reopen_window"], f"{where}: reopen_window")
        return cls(limits=limits, tz=tz, calendar=cal, **kwargs)

    def after(self, start: datetime, limit: Limit) -> datetime:
        """``start`` plus ``limit`` on this policy's calendar."""
        return limit.after(start, self.tz, self.calendar)

    def deadlines(self, level: WarningLevel | int | str, start: datetime) -> dict[str, datetime]:
        """Stage -> deadline for a ticket of ``level`` whose clock starts at ``start``."""
        if start.tzinfo is None:
            raise ValueError("deadlines need a timezone-aware start")
        lv = WarningLevel.parse(level) if isinstance(level, str) else WarningLevel(int(level))
        return {stage: self.after(start, lim) for stage, lim in self.limits[int(lv)].items()}

    def is_workday(self, day: date) -> bool:
        """Whether ``day`` is a working day on this policy's calendar."""
        return self.calendar.is_workday(day)


def _dates(values: Any, where: str) -> list[date]:
    if not values:
        return []
    if not isinstance(values, list):
        raise ValueError(f"{where}: must be a list of ISO dates")
    out = []
    for v in values:
        try:
            out.append(v if isinstance(v, date) else date.fromisoformat(str(v)))
        except ValueError as exc:
            raise ValueError(f"{where}: {v!r} is not an ISO date (YYYY-MM-DD)") from exc
    return out
