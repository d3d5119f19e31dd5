"""SensitiveTermsRule: one post warns at the group's level; distinct authors in the event escalate."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerts.rules._config import RuleConfigError
from alerts.rules.sensitive import SensitiveTermsRule
from core.records import WarningLevel

CONFIG = {
    "groups": [
        {"name": "人员伤亡", "level": "yellow", "terms": ["死亡", "遇难"]},
        {"name": "事故灾难", "level": "yellow", "terms": ["爆炸", "坍塌"]},
        {"name": "群体性事件", "level": "blue", "terms": ["聚集", "维权"]},
    ],
    "ignore_phrases": ["未造成人员伤亡", "无人死亡"],
    "crowd": {"orange": 3, "red": 5},
    "window_hours": 24,
}


@pytest.fixture
def rule() -> SensitiveTermsRule:
    return SensitiveTermsRule("敏感词", CONFIG)


def test_one_post_warns_at_the_group_level(rule, make_post, make_event) -> None:
    (match,) = rule.add_data(make_post("A3区工地坍塌，一人遇难"), make_event())
    assert match.level is WarningLevel.yellow
    assert match.reason == "敏感词「遇难、坍塌」（人员伤亡、事故灾难），本事件 1 位不同作者提及（黄色）"
    assert match.details == {"terms": ["遇难", "坍塌"], "groups": ["人员伤亡", "事故灾难"], "authors": 1}


def test_a_crowd_escalates_and_repeats_by_one_author_do_not(rule, make_post, make_event) -> None:
    levels = []
    for n, author in enumerate(["a", "a", "a", "b", "c", "c", "d", "e"]):
        (match,) = rule.add_data(make_post("业主聚集维权", n=n, author=author), make_event())
        levels.append(match.level)
    assert levels == [WarningLevel.blue] * 4 + [WarningLevel.orange] * 3 + [WarningLevel.red]
    assert "达到 5 位（红色阈值）" in match.reason


def test_authors_are_counted_per_event(rule, make_post, make_event) -> None:
    for n in range(4):
        rule.add_data(make_post("爆炸", n=n, author=f"u{n}"), make_event(id="ev-1"))
    (other,) = rule.add_data(make_post("爆炸", n=9, author="u9", event_id="ev-2"), make_event(id="ev-2"))
    assert other.details["authors"] == 1
    assert other.level is WarningLevel.yellow


def test_posts_without_author_count_separately(rule, make_post, make_event) -> None:
    for n in range(3):
        (match,) = rule.add_data(make_post("有人死亡", n=n, author=""), make_event())
    assert match.details["authors"] == 3
    assert match.level is WarningLevel.orange


@pytest.mark.parametrize(
    "text",
    ["小区环境整治", "事故未造成人员伤亡", "现场无人死亡，火势已扑灭", ""],
)
def test_does_not_fire(rule, make_post, make_event, text) -> None:
    assert rule.add_data(make_post(text), make_event()) == []


def test_ignored_phrase_does_not_hide_other_terms(rule, make_post, make_event) -> None:
    (match,) = rule.add_data(make_post("仓库爆炸，未造成人员伤亡"), make_event())
    assert match.details["terms"] == ["爆炸"]


def test_garbage_collect_forgets_quiet_events(rule, make_post, make_event) -> None:
    for n in range(4):
        rule.add_data(make_post("死亡", n=n, author=f"u{n}"), make_event())
    last = make_post("死亡", n=4, author="u0").published_at
    rule.garbage_collect(last + timedelta(hours=23))
    assert rule.add_data(make_post("死亡", n=5, author="u1"), make_event())[0].details["authors"] == 4
    rule.garbage_collect(last + timedelta(hours=49))
    assert rule.add_data(make_post("死亡", n=6, author="u1"), make_event())[0].details["authors"] == 1


def test_state_is_bounded(make_post, make_event) -> None:
    rule = SensitiveTermsRule("s", {**CONFIG, "max_events": 3})
    for n in range(10):
        for k in range(8):  # more authors than the highest crowd threshold
            rule.add_data(make_post("爆炸", n=n * 10 + k, event_id=f"e{n}"), make_event(id=f"e{n}"))
    assert list(rule._events) == ["e7", "e8", "e9"]
    assert all(len(state.authors) <= 5 for state in rule._events.values())


def test_defaults_load_and_fire(make_post, make_event) -> None:
    rule = SensitiveTermsRule("defaults", {})
    assert rule.add_data(make_post("疑似食物中毒"), make_event())[0].details["groups"] == ["食品药品与公共卫生"]


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"groups": []}, "groups must be a non-empty list"),
        ({"groups": [{"name": "g", "terms": []}]}, "terms must be a non-empty list"),
        ({"groups": [{"name": "g", "terms": ["x"], "lvl": 2}]}, "unknown option(s) lvl"),
        ({"groups": [{"name": "g", "terms": ["x"], "level": 9}]}, "level"),
        ({"crowd": {"red": 2, "orange": 4}}, "must be higher than"),
        ({"ignore_phrases": "无人死亡"}, "ignore_phrases must be a list"),
        ({"window_hours": -1}, "window_hours must be at least"),
    ],
)
def test_bad_config(config, fragment) -> None:
    with pytest.raises(RuleConfigError) as info:
        SensitiveTermsRule("s", config)
    assert fragment in str(info.value)
