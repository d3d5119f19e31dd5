"""WatchlistRule: keyword plans fire at their own level; run-time replacement from watch-list rows."""

from __future__ import annotations

import pytest

from alerts.rules._config import RuleConfigError
from alerts.rules.watchlist import WatchlistRule, load_watchlist_rows
from core.db.models import WatchlistRow
from core.db.session import Database
from core.records import WarningLevel

PLANS = [
    {"name": "A3A4区安全事故", "expr": "(A3区 | A4区) & (爆炸 | 起火 | 泄漏) & !演习", "level": "orange"},
    {"name": "校园安全", "expr": "(学校 | 幼儿园) & 中毒", "level": "yellow"},
]


@pytest.fixture
def rule() -> WatchlistRule:
    return WatchlistRule("关键词方案", {"expressions": PLANS})


def test_fires_at_the_plans_level_with_the_terms_hit(rule, make_post, make_event) -> None:
    (match,) = rule.add_data(make_post("A3区化工厂凌晨发生爆炸，现场浓烟"), make_event())
    assert match.level is WarningLevel.orange
    assert match.reason == "命中关键词方案「A3A4区安全事故」：A3区、爆炸（橙色）"
    assert match.details["hits"] == ["A3区", "爆炸"]
    assert match.details["watchlist"] == "A3A4区安全事故"


@pytest.mark.parametrize(
    "text",
    [
        "A3区消防演习中模拟爆炸",  # excluded word
        "A5区化工厂爆炸",  # other district
        "A3区道路维修",  # no event word
        "",
    ],
)
def test_does_not_fire(rule, make_post, make_event, text) -> None:
    assert rule.add_data(make_post(text), make_event()) == []


def test_title_counts_and_every_matching_plan_fires(rule, make_post, make_event) -> None:
    post = make_post("食堂饭菜导致多名学生中毒，A4区一处仓库也起火", title="A4区某学校")
    assert [m.details["watchlist"] for m in rule.add_data(post, make_event())] == ["A3A4区安全事故", "校园安全"]
    titled = make_post("多名学生身体不适，疑似中毒", title="某学校食堂")
    assert [m.details["watchlist"] for m in rule.add_data(titled, make_event())] == ["校园安全"]


def test_database_rows_add_to_replace_and_switch_off_file_lists(rule, make_post, make_event, tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'y.db'}")
    db.migrate()
    with db.transaction() as session:
        session.add_all([
            WatchlistRow(name="拆迁", expression="拆迁 且 (冲突 或 强拆)", level=3, enabled=True),
            WatchlistRow(name="停用草稿", expression="未写完 &", level=4, enabled=False),  # not checked: disabled
            WatchlistRow(name="校园安全", expression="学校 & 中毒", level=1, enabled=False),  # switches a file list off
        ])
    with db.transaction() as session:
        rows = load_watchlist_rows(session)
    assert rule.set_expressions(rows) == []
    post = make_post("A3区化工厂爆炸，另有拆迁户反映强拆；某学校学生中毒")
    found = [(m.details["watchlist"], m.level) for m in rule.add_data(post, make_event())]
    assert found == [("A3A4区安全事故", WarningLevel.orange), ("拆迁", WarningLevel.orange)]
    # An edited copy of a file list replaces it, in the file list's place.
    rule.set_expressions([{"name": "A3A4区安全事故", "expr": "爆炸", "level": "red"}])
    found = [(m.details["watchlist"], m.level) for m in rule.add_data(post, make_event())]
    assert found == [("A3A4区安全事故", WarningLevel.red), ("校园安全", WarningLevel.yellow)]
    # Clearing the run-time set restores the file's lists.
    rule.set_expressions([])
    assert [m.level for m in rule.add_data(post, make_event())] == [WarningLevel.orange, WarningLevel.yellow]


def test_strict_replacement_is_all_or_nothing(rule, make_post, make_event) -> None:
    with pytest.raises(RuleConfigError, match=r"expressions\[1\] \(坏\): bad expression at position"):
        rule.set_expressions([{"name": "好", "expr": "暴雨", "level": 1}, {"name": "坏", "expr": "暴雨 &"}])
    # The old set is still in force.
    assert [m.details["watchlist"] for m in rule.add_data(make_post("A3区起火"), make_event())] == ["A3A4区安全事故"]


def test_lenient_replacement_skips_bad_entries_and_reports_them(rule, make_post, make_event) -> None:
    problems = rule.set_expressions(
        [{"name": "好", "expr": "暴雨", "level": 1}, {"name": "坏", "expr": "(暴雨"}, {"name": "好", "expr": "x"}],
        strict=False,
    )
    assert len(problems) == 2
    assert "never closed" in problems[0]
    assert "used twice" in problems[1]
    (match,) = rule.add_data(make_post("暴雨内涝"), make_event())
    assert (match.details["watchlist"], match.level) == ("好", WarningLevel.blue)
    assert len(rule.watches) == 3  # the two file lists and the good run-time one


def test_level_defaults_to_yellow_and_empty_set_fires_nothing(make_post, make_event) -> None:
    rule = WatchlistRule("w", {"expressions": [{"name": "n", "expression": "停水"}]})
    assert rule.add_data(make_post("小区停水三天"), make_event())[0].level is WarningLevel.yellow
    assert WatchlistRule("empty", {}).add_data(make_post("停水"), make_event()) == []


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"expressions": "爆炸"}, "expressions must be a list"),
        ({"expressions": [{"expr": "爆炸"}]}, "expressions[0]: name must be non-empty"),
        ({"expressions": [{"name": "n", "expr": 5}]}, "expr must be text"),
        ({"expressions": [{"name": "n", "expr": "爆炸", "level": "purple"}]}, "unknown warning level"),
        ({"expressions": [{"name": "n", "expr": "A3区 爆炸"}]}, "missing operator before '爆炸'"),
        ({"expressions": [{"name": "n", "expr": "x", "enabled": "yes"}]}, "enabled must be true or false"),
        ({"expressions": [{"name": "n", "expr": "x"}, {"name": "n", "expr": "y"}]}, "'n' is used twice"),
    ],
)
def test_bad_config(config, fragment) -> None:
    with pytest.raises(RuleConfigError) as info:
        WatchlistRule("w", config)
    assert fragment in str(info.value)
