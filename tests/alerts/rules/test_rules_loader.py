"""Loading rules from YAML: the shipped defaults work; a broken file names the file, the entry and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.rules.heat import NegativeHeatRule
from alerts.rules.loader import DEFAULT_RULES_FILE, RulesFileError, load_rules, rule_class
from alerts.rules.sensitive import SensitiveTermsRule
from alerts.rules.spike import SpikeRule
from alerts.rules.watchlist import WatchlistRule
from core.records import WarningLevel


def test_default_file_loads_every_rule_type_in_file_order() -> None:
    rules = load_rules()
    assert [type(r) for r in rules] == [NegativeHeatRule, SensitiveTermsRule, WatchlistRule, SpikeRule]
    assert load_rules(DEFAULT_RULES_FILE)[0].name == rules[0].name == "负面热度"
    heat = rules[0]
    assert isinstance(heat, NegativeHeatRule)
    assert heat.thresholds == {WarningLevel.blue: 20, WarningLevel.yellow: 35, WarningLevel.orange: 55,
                               WarningLevel.red: 75}


def test_default_rules_fire_on_a_crafted_post(make_post, make_event) -> None:
    rules = {r.name: r for r in load_rules()}
    post = make_post("A3区化工厂爆炸，一人死亡")
    assert rules["关键词方案"].add_data(post, make_event())[0].details["watchlist"] == "安全生产事故"
    assert rules["敏感词"].add_data(post, make_event())[0].level is WarningLevel.yellow
    assert rules["负面热度"].add_data(post, make_event(heat=80))[0].level is WarningLevel.red


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_short_names_class_names_dotted_paths_and_disabled_entries(tmp_path) -> None:
    path = _write(tmp_path, """
rules:
  - {name: a, type: negative_heat}
  - {name: b, type: NegativeHeatRule, min_size: 5}
  - {name: c, type: alerts.rules.sensitive.SensitiveTermsRule}
  - {name: d, type: watchlist, enabled: false, expressions: [{name: x, expr: "y"}]}
""")
    rules = load_rules(path)
    assert [(r.name, type(r).__name__) for r in rules] == [
        ("a", "NegativeHeatRule"), ("b", "NegativeHeatRule"), ("c", "SensitiveTermsRule"),
    ]
    assert rules[1].min_size == 5


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("rules:\n  - {name: a, type: negative_heat\n", "invalid YAML at line"),
        ("- {name: a, type: negative_heat}\n", "top-level 'rules:' list"),
        ("rules: {name: a}\n", "'rules' must be a list"),
        ("rules: []\nextra: 1\n", "unknown top-level key(s) extra"),
        ("rules:\n  - {type: negative_heat}\n", "rules[0]: 'name' is missing"),
        ("rules:\n  - {name: a, type: negative_heat}\n  - {name: a, type: spike}\n",
         "rules[1] (a): the name is already used by rules[0]"),
        ("rules:\n  - {name: a}\n", "rules[0] (a): 'type' is missing"),
        ("rules:\n  - {name: a, type: frequency}\n", "rules[0] (a): unknown rule type 'frequency'"),
        ("rules:\n  - {name: a, type: os.path.join}\n", "is not a subclass of alerts.rules.base.Rule"),
        ("rules:\n  - {name: a, type: no_such_pkg.Rule}\n", "cannot be imported"),
        ("rules:\n  - {name: ok, type: negative_heat}\n  - {name: b, type: negative_heat, thresholds: {red: x}}\n",
         "rules[1] (b): thresholds.red must be a number"),
        ("rules:\n  - {name: a, type: negative_heat, min_sise: 3}\n", "rules[0] (a): unknown option(s) min_sise"),
        ("rules:\n  - {name: a, type: watchlist, expressions: [{name: w, expr: \"A & (B\"}]}\n",
         "rules[0] (a): expressions[0] (w): bad expression at position 4"),
        ("rules:\n  - {name: a, type: negative_heat, enabled: maybe}\n", "'enabled' must be true or false"),
        ("rules:\n  - just text\n", "rules[0]: an entry must be a mapping"),
    ],
)
def test_broken_files_fail_with_file_entry_and_problem(tmp_path, text, fragment) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(RulesFileError) as info:
        load_rules(path)
    assert str(info.value).startswith(str(path))
    assert fragment in str(info.value)


def test_unreadable_files(tmp_path) -> None:
    with pytest.raises(RulesFileError, match="cannot read the rules file"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("rules: [{name: caf\xe9}]".encode("latin-1"))
    with pytest.raises(RulesFileError, match="not UTF-8"):
        load_rules(bad)


def test_rule_class_lists_known_types() -> None:
    with pytest.raises(ValueError, match="known types: negative_heat, sensitive_terms, spike, watchlist"):
        rule_class("nope")
