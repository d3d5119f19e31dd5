"""Deadlines on the Chinese working calendar: National Day, adjusted working weekends, overrides."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alerts.deadlines import DeadlinePolicy, Limit, WorkCalendar, add_working_days
from core.records import WarningLevel

SH = ZoneInfo("Asia/Shanghai")


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


def test_national_day_2025_is_skipped() -> None:
    # Tue 2025-09-30 10:00 + 1 working day: Oct 1-8 are off, Oct 9 (Thu) is the next working day.
    assert add_working_days(sh(2025, 9, 30, 10), 1) == sh(2025, 10, 9, 10)
    # + 3: Oct 9 Thu, Oct 10 Fri, Oct 11 Sat (adjusted working Saturday).
    assert add_working_days(sh(2025, 9, 30, 10), 3) == sh(2025, 10, 11, 10)
    # + 4: Sunday Oct 12 is a normal day off -> Monday Oct 13.
    assert add_working_days(sh(2025, 9, 30, 10), 4) == sh(2025, 10, 13, 10)


def test_adjusted_working_sunday_counts() -> None:
    # Fri 2025-09-26 + 1: Saturday 27 off, Sunday 28 is an adjusted working day.
    assert add_working_days(sh(2025, 9, 26, 15, 30), 1) == sh(2025, 9, 28, 15, 30)
    # A ticket raised on that working Sunday is counted from Sunday itself.
    assert add_working_days(sh(2025, 9, 28, 9), 1) == sh(2025, 9, 29, 9)


def test_start_on_a_holiday_counts_from_next_working_morning() -> None:
    # Raised during the holiday: the clock starts at 00:00 of Oct 9, so 1 working day ends at Oct 10 00:00.
    assert add_working_days(sh(2025, 10, 3, 14), 1) == sh(2025, 10, 10, 0)
    assert add_working_days(sh(2025, 10, 3, 14), 0) == sh(2025, 10, 9, 0)


def test_utc_input_is_counted_in_beijing_time() -> None:
    # 2025-09-30 17:00 UTC is already Oct 1 01:00 in Beijing: a holiday.
    start = datetime(2025, 9, 30, 17, tzinfo=UTC)
    assert add_working_days(start, 1) == sh(2025, 10, 10, 0)


def test_naive_and_negative_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add_working_days(datetime(2025, 9, 30, 10), 1)
    with pytest.raises(ValueError, match=">= 0"):
        add_working_days(sh(2025, 9, 30), -1)


def test_override_lists_win_and_cover_unknown_years() -> None:
    cal = WorkCalendar(
        extra_holidays=frozenset({date(2025, 9, 29)}), extra_workdays=frozenset({date(2025, 9, 27)})
    )
    assert add_working_days(sh(2025, 9, 26, 10), 1, calendar=cal) == sh(2025, 9, 27, 10)
    assert add_working_days(sh(2025, 9, 28, 10), 1, calendar=cal) == sh(2025, 9, 30, 10)
    # A year the package does not know yet falls back to Monday-Friday unless overridden.
    far = sh(2099, 1, 2, 10)  # a Friday
    assert add_working_days(far, 1) == sh(2099, 1, 5, 10)
    cal2 = WorkCalendar(extra_holidays=frozenset({date(2099, 1, 5)}))
    assert add_working_days(far, 1, calendar=cal2) == sh(2099, 1, 6, 10)


def test_default_policy_follows_state_council_rules() -> None:
    policy = DeadlinePolicy.load()
    start = sh(2025, 9, 30, 10)
    red = policy.deadlines(WarningLevel.red, start)
    assert red["sign"] == start + timedelta(minutes=30)
    assert red["authoritative_info"] == start + timedelta(hours=5)
    assert red["press_conference"] == start + timedelta(hours=24)
    assert policy.deadlines("orange", start)["press_conference"] == start + timedelta(hours=24)
    blue = policy.deadlines(1, start)
    assert blue["sign"] == start + timedelta(hours=1)
    assert blue["first_response"] == start + timedelta(hours=48)
    assert "press_conference" not in blue
    # close is in working days: 15 working days from Sep 30 skip the whole National Day holiday.
    assert blue["close"] == add_working_days(start, 15)
    assert blue["close"] > start + timedelta(days=15 + 7)


def test_policy_yaml_overrides_and_errors(tmp_path) -> None:
    good = tmp_path / "d.yaml"
    good.write_text(
        "levels:\n"
        "  red: {sign: {hours: 0.25}, close: {working_days: 1}}\n"
        "  orange: {sign: {hours: 1}}\n  yellow: {sign: {hours: 2}}\n  blue: {sign: {hours: 3}}\n"
        "escalation: {remind_before: {hours: 1}}\n"
        "extra_workdays: ['2025-10-04']\n",
        encoding="utf-8",
    )
    pol = DeadlinePolicy.load(good)
    assert pol.remind_before == Limit(hours=1)
    d = pol.deadlines("红", sh(2025, 10, 3, 12))
    assert d["sign"] == sh(2025, 10, 3, 12, 15)
    # Oct 4 made a working day by the override: the clock starts there, one working day later is Oct 9.
    assert d["close"] == sh(2025, 10, 9, 0)
    assert pol.is_workday(date(2025, 10, 4)) and not DeadlinePolicy.load().is_workday(date(2025, 10, 4))
    bad = tmp_path / "bad.yaml"
    bad.write_text("levels:\n  red: {sign: {minutes: 5}}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"levels\.red\.sign"):
        DeadlinePolicy.load(bad)
    bad.write_text("levels:\n  red: {sgin: {hours: 1}}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown stage"):
        DeadlinePolicy.load(bad)
    bad.write_text("levels:\n  red: {sign: {hours: 1}}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no limits"):
        DeadlinePolicy.load(bad)
