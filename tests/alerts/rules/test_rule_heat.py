"""NegativeHeatRule: fires by the highest threshold crossed, only for negative, large-enough events."""

from __future__ import annotations

import pytest

from alerts.rules._config import RuleConfigError
from alerts.rules.heat import NegativeHeatRule
from core.records import WarningLevel

THRESHOLDS = {"blue": 20, "yellow": 35, "orange": 55, "red": 75}


@pytest.fixture
def rule() -> NegativeHeatRule:
    return NegativeHeatRule("负面热度", {"thresholds": THRESHOLDS, "min_negative_share": 0.5, "min_size": 3})


def test_level_escalates_across_thresholds_on_one_event(rule, make_post, make_event) -> None:
    seen = []
    for n, heat in enumerate([10.0, 20.0, 34.9, 35.0, 63.2, 75.0, 120.0]):
        matches = rule.add_data(make_post("燃气爆炸", n=n), make_event(heat=heat))
        seen.append(matches[0].level if matches else None)
    assert seen == [
        None,
        WarningLevel.blue,
        WarningLevel.blue,
        WarningLevel.yellow,
        WarningLevel.orange,
        WarningLevel.red,
        WarningLevel.red,
    ]


def test_reason_names_heat_threshold_and_colour(rule, make_post, make_event) -> None:
    (match,) = rule.add_data(make_post("x"), make_event(heat=63.2, size=14, negative=10))
    assert match.reason.startswith("负面事件热度 63.2 超过 55（橙色阈值）")
    assert "负面占比 71%" in match.reason
    assert match.rule == "负面热度"
    assert match.event_id == "ev-1"
    assert match.details == {"heat": 63.2, "threshold": 55.0, "negative_share": 0.7143, "size": 14}


@pytest.mark.parametrize(
    ("size", "negative", "heat"),
    [
        (10, 4, 90.0),  # 40 % negative: not a negative event
        (2, 2, 90.0),  # too small
        (10, 10, 19.99),  # not hot enough
        (0, 0, 90.0),  # empty event (share undefined → 0)
        (10, 10, float("nan")),  # broken heat never fires
    ],
)
def test_does_not_fire(rule, make_post, make_event, size, negative, heat) -> None:
    assert rule.add_data(make_post("x"), make_event(size=size, negative=negative, heat=heat)) == []


def test_match_time_comes_from_the_data(rule, make_post, make_event) -> None:
    post = make_post("x", n=30)
    (match,) = rule.add_data(post, make_event(heat=40))
    assert match.at == post.published_at  # later than the event's last_seen (T0)


def test_thresholds_subset_and_chinese_level_names(make_post, make_event) -> None:
    rule = NegativeHeatRule("r", {"thresholds": {"黄": 30, "红色": 60}})
    assert rule.add_data(make_post("x"), make_event(heat=25)) == []
    assert rule.add_data(make_post("x"), make_event(heat=45))[0].level is WarningLevel.yellow
    assert rule.add_data(make_post("x"), make_event(heat=61))[0].level is WarningLevel.red


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"thresholds": {"blue": 50, "red": 40}}, "red (40) must be higher than blue (50)"),
        ({"thresholds": {"purple": 1}}, "unknown warning level"),
        ({"thresholds": {"blue": "high"}}, "thresholds.blue must be a number"),
        ({"thresholds": {}}, "non-empty mapping"),
        ({"min_negative_share": 1.5}, "min_negative_share must be at most 1.0"),
        ({"min_size": 0}, "min_size must be at least 1"),
        ({"threshold": {"blue": 1}}, "unknown option(s) threshold"),
        ("not a mapping", "options must be a mapping"),
    ],
)
def test_bad_config_is_a_clear_error(config, fragment) -> None:
    with pytest.raises(RuleConfigError) as info:
        NegativeHeatRule("r", config)
    assert fragment in str(info.value)
