"""Router: 属地管理 for one district, departments lead major wide events, topic-only, unknown → office."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.routing import DEFAULT_UNITS_FILE, Router, UnitsFileError, unit_rows
from alerts.rules.base import Match
from core.records import Event, WarningLevel

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
TAXONOMY = Path(__file__).resolve().parents[3] / "shared" / "data" / "mailbox" / "taxonomy.csv"


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.load()


def event(*, title: str = "", topic: str | None = None, districts: list[str] | None = None,
          places: list[str] | None = None) -> Event:
    return Event(id="ev-1", title=title, first_seen=T0, last_seen=T0, topic=topic,
                 districts=list(districts or []), places=list(places or []))


def match(level: WarningLevel = WarningLevel.yellow, reason: str = "负面事件热度 40.0 超过 35（黄色阈值）",
          rule: str = "负面热度") -> Match:
    return Match(rule=rule, event_id="ev-1", level=level, reason=reason, at=T0)


def test_single_district_government_leads_department_cooperates(router) -> None:
    decision = router.route(event(title="A3区某小区燃气爆炸", topic="城乡建设", districts=["a3"]),
                            match(WarningLevel.orange, rule="敏感词"))
    assert decision.lead_unit == "gov-a3"
    assert decision.cooperating_units == ["dept-housing"]
    why = decision.explanation
    assert why["strategy"] == "single_district"
    assert why["rule"] == "敏感词"
    assert why["topic"] == "城乡建设"
    assert why["district_names"] == ["A3区"]
    assert why["department_basis"]["matched"] == ["一级分类 城乡建设"]
    assert why["department_basis"]["keywords"] == ["小区", "燃气"]
    assert why["summary"] == "属地管理：事件指向A3区，由A3区人民政府牵头处置，市住房和城乡建设局配合"
    assert why["lead_unit_name"] == "A3区人民政府"
    assert why["lead_supervisor"] == "office"
    assert why["cooperating_unit_names"] == ["市住房和城乡建设局"]
    assert why["level_zh"] == "橙色（重大）"


@pytest.mark.parametrize("level", [WarningLevel.orange, WarningLevel.red])
def test_major_multi_district_event_department_leads_districts_cooperate(router, level) -> None:
    decision = router.route(event(title="河道污染", topic="环境保护", districts=["a4", "a3"]), match(level))
    assert decision.lead_unit == "dept-environment"
    assert decision.cooperating_units == ["gov-a4", "gov-a3"]
    assert decision.explanation["strategy"] == "major_wide"
    assert decision.explanation["summary"].startswith(f"分级负责：{level.colour_zh}色预警涉及A4区、A3区")


def test_lower_level_multi_district_first_district_leads(router) -> None:
    decision = router.route(event(title="河道污染", topic="环境保护", districts=["a4", "a3"]), match())
    assert decision.lead_unit == "gov-a4"
    assert decision.cooperating_units == ["gov-a3", "dept-environment"]
    assert decision.explanation["strategy"] == "multi_district"


def test_major_city_wide_event_with_department(router) -> None:
    decision = router.route(event(title="全市公交停运", topic="交通运输", places=["A市"]), match(WarningLevel.red))
    assert (decision.lead_unit, decision.cooperating_units) == ("dept-transport", [])
    assert decision.explanation["strategy"] == "major_wide"
    assert decision.explanation["city_wide"] is True


def test_topic_only(router) -> None:
    decision = router.route(event(title="中考招生政策", topic="教育文体"), match())
    assert (decision.lead_unit, decision.cooperating_units) == ("dept-education", [])
    assert decision.explanation["strategy"] == "topic_only"
    assert decision.explanation["districts"] == []


def test_nothing_known_goes_to_the_office(router) -> None:
    decision = router.route(event(title="某事"), match())
    assert (decision.lead_unit, decision.cooperating_units) == ("office", [])
    assert decision.explanation["strategy"] == "fallback"
    assert decision.explanation["department"] is None
    major = router.route(event(title="某事", places=["全市"]), match(WarningLevel.red))
    assert (major.lead_unit, major.explanation["strategy"]) == ("office", "major_wide")


def test_level_two_topic_beats_level_one(router) -> None:
    decision = router.route(event(title="餐馆", topic="卫生计生/食品药品监管"), match())
    assert decision.lead_unit == "dept-market"
    basis = decision.explanation["department_basis"]
    assert basis["matched"] == ["二级分类 卫生计生/食品药品监管"]
    assert router.route(event(title="看病难", topic="卫生计生"), match()).lead_unit == "dept-health"


def test_keywords_in_the_reason_choose_a_department_without_topic(router) -> None:
    decision = router.route(event(title="某校学生", districts=["a7"]),
                            match(reason="敏感词「食物中毒」（食品药品与公共卫生）"))
    assert decision.lead_unit == "gov-a7"
    assert decision.cooperating_units == ["dept-market"]


@pytest.mark.parametrize(
    ("districts", "places", "title", "expected"),
    [
        (["A3区"], [], "", ["a3"]),
        (["Ａ３区"], [], "", ["a3"]),  # full-width spelling
        (["A3"], [], "", ["a3"]),
        ([], ["A市", "A5区"], "", ["a5"]),  # a place names the district; the city is its parent
        ([], [], "A9市某乡镇卫生院", ["a9"]),  # last resort: the title
        (["西地省", "a2"], [], "", ["a2"]),  # unknown names are kept aside, not fatal
    ],
)
def test_district_spellings(router, districts, places, title, expected) -> None:
    decision = router.route(event(title=title, districts=districts, places=places), match())
    assert decision.explanation["districts"] == expected
    assert decision.lead_unit == f"gov-{expected[0]}"


def test_unrecognised_district_is_recorded(router) -> None:
    decision = router.route(event(districts=["西地省"]), match())
    assert decision.explanation["unrecognised_districts"] == ["西地省"]
    assert decision.lead_unit == "office"


def _default_data() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(DEFAULT_UNITS_FILE.read_text(encoding="utf-8"), Loader=loader)


def test_strategy_order_is_configurable() -> None:
    data = _default_data()
    data["routing"]["order"] = ["topic_only", "single_district", "fallback"]
    decision = Router.from_dict(data).route(event(title="燃气", topic="城乡建设", districts=["a3"]), match())
    assert (decision.lead_unit, decision.explanation["strategy"]) == ("dept-housing", "topic_only")


def test_default_units_cover_the_office_districts_and_departments(router) -> None:
    ids = {u.id for u in router.units}
    assert {"office", *(f"gov-a{i}" for i in range(1, 10))} <= ids
    assert {"dept-housing", "dept-education", "dept-health", "dept-hrss", "dept-transport", "dept-environment",
            "dept-market", "dept-emergency", "dept-civil", "dept-police", "dept-land", "dept-agri",
            "dept-commerce", "dept-urban"} <= ids
    assert router.unit("gov-a7").name == "A7县人民政府"
    rows = list(unit_rows(router))
    assert rows[0]["id"] == "office" and rows[0]["supervisor"] is None
    # Targets say only whether a robot exists; its key comes from settings, never from this file.
    assert all(set(row["config"]["targets"]) == {"wecom", "email"} for row in rows)
    assert all(isinstance(row["config"]["targets"]["wecom"], bool) for row in rows)


@pytest.mark.shared
def test_department_topics_are_taxonomy_classes(router) -> None:
    if not TAXONOMY.exists():
        pytest.skip(f"../shared/data not found: {TAXONOMY}")
    with TAXONOMY.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    l1 = {r["一级分类"] for r in rows}
    l2 = {(r["一级分类"], r["二级分类"]) for r in rows}
    for unit in router.units:
        for claim in unit.topics:
            first, _, second = claim.partition("/")
            assert first in l1, f"{unit.id}: {claim}"
            if second:
                assert (first, second) in l2, f"{unit.id}: {claim}"


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["units"][1].update(supervisor="nobody"), "units[1] (gov-a1): supervisor 'nobody' is not a unit"),
        (lambda d: d["units"][1].update(districts=["a99"]), "units[1] (gov-a1): district 'a99' is not under"),
        (lambda d: d["units"].append(dict(d["units"][0])), "(office): the id is used twice"),
        (lambda d: d["units"][2].update(colour="red"), "units[2] (gov-a2): colour: Extra inputs are not permitted"),
        (lambda d: d["units"][0]["targets"].update(email=["not-an-address"]), "is not an e-mail address"),
        (lambda d: d["units"][0]["targets"].update(key="abc"), "targets.key: Extra inputs are not permitted"),
        (lambda d: d["routing"].update(order=["single_district"]), "must end with 'fallback'"),
        (lambda d: d["routing"].update(order=["nearest", "fallback"]), "unknown strategy 'nearest'"),
        (lambda d: d["routing"].update(fallback_unit="gov-z"), "fallback_unit 'gov-z' is not a unit"),
        (lambda d: d["routing"].update(major_level="purple"), "routing.major_level"),
        (lambda d: d.update(extra=1), "unknown top-level key(s) extra"),
        (lambda d: d.update(units=[]), "'units' must be a non-empty list"),
    ],
)
def test_broken_units_file_names_file_and_entry(tmp_path, mutate, fragment) -> None:
    data = _default_data()
    mutate(data)
    path = tmp_path / "units.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(UnitsFileError) as info:
        Router.load(path)
    assert str(info.value).startswith(str(path))
    assert fragment in str(info.value)


def test_unreadable_units_files(tmp_path) -> None:
    with pytest.raises(UnitsFileError, match="cannot read the units file"):
        Router.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("units: [\n", encoding="utf-8")
    with pytest.raises(UnitsFileError, match="invalid YAML at line"):
        Router.load(bad)
