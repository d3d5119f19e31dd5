"""SpikeRule on the real BurstDetector: steady flow is quiet, a sudden crowd fires, magnitude escalates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.rules._config import RuleConfigError
from alerts.rules.spike import SpikeRule
from core.records import WarningLevel

T0 = datetime(2026, 5, 4, 0, 0, tzinfo=UTC)


def _steady(rule, make_post, make_event, *, hours: int, per_hour: int, event_id: str = "ev-1", **post_kw):
    """Feed an even flow; return every match produced."""
    matches = []
    step = timedelta(minutes=60 / per_hour)
    for i in range(hours * per_hour):
        at = T0 + i * step
        post = make_post("路面塌陷", n=i, at=at, event_id=event_id, **post_kw)
        matches += rule.add_data(post, make_event(id=event_id, last_seen=at))
    return matches, T0 + hours * per_hour * step


def test_steady_flow_never_fires(make_post, make_event) -> None:
    rule = SpikeRule("声量突增", {})
    matches, _ = _steady(rule, make_post, make_event, hours=48, per_hour=3, districts=["a3"])
    assert matches == []


def test_sudden_crowd_on_an_event_fires_and_escalates_with_magnitude(make_post, make_event) -> None:
    rule = SpikeRule("声量突增", {"keys": {"event": "yellow"}, "escalate": {"orange": 8, "red": 20}, "ratio_floor": 3})
    _, end = _steady(rule, make_post, make_event, hours=24, per_hour=2)
    levels = []
    for k in range(80):  # 80 posts in 10 minutes after two an hour
        at = end + timedelta(seconds=7.5 * k)
        post = make_post("路面塌陷 车辆被困", n=1000 + k, at=at)
        found = rule.add_data(post, make_event(last_seen=at))
        levels.append(max((m.level for m in found), default=None))
    assert levels[:4] == [None] * 4  # below min_count nothing fires
    # Yellow from the fifth post, orange at 8x the floored baseline (24 posts), red at 20x (60 posts).
    assert levels[4:23] == [WarningLevel.yellow] * 19
    assert levels[23:59] == [WarningLevel.orange] * 36
    assert levels[59:] == [WarningLevel.red] * 21
    match = rule.add_data(make_post("x", n=2000, at=end + timedelta(minutes=10)),
                          make_event(last_seen=end + timedelta(minutes=10)))[0]
    assert match.details["key_kind"] == "event"
    assert match.details["ratio_for_level"] >= 20
    assert match.details["observed"] >= 60
    assert match.reason.startswith("事件「A3区某小区燃气爆炸」近 60 分钟声量")
    assert "红色预警" in match.reason


def _topic_burst(rule, make_post, make_event, *, negative: int):
    """25 posts in 5 minutes, each from a different event of the same topic and district."""
    matches = []
    for k in range(25):
        at = T0 + timedelta(seconds=12 * k)
        post = make_post("公交停运", n=k, at=at, topic="交通运输", districts=["a5"], event_id=f"e{k}")
        for match in rule.add_data(post, make_event(id=f"e{k}", size=10, negative=negative, last_seen=at)):
            assert match.event_id == post.event_id  # a topic/district spike warns through this post's event
            matches.append(match)
    return matches


def test_topic_and_district_spikes_warn_through_negative_events(make_post, make_event) -> None:
    config = {"keys": {"topic": "blue", "district": "yellow"}, "escalate": {"red": 1000}}
    matches = _topic_burst(SpikeRule("s", config), make_post, make_event, negative=8)
    kinds = {m.details["key"]: m.level for m in matches}
    assert kinds == {"topic:交通运输": WarningLevel.blue, "district:a5": WarningLevel.yellow}
    assert any(m.reason.startswith("属地「a5」") for m in matches)
    assert any(m.reason.startswith("领域「交通运输」") for m in matches)


def test_spikes_of_calm_events_do_not_warn(make_post, make_event) -> None:
    config = {"keys": {"event": "yellow", "topic": "blue", "district": "blue"}}
    assert _topic_burst(SpikeRule("s", config), make_post, make_event, negative=1) == []
    rule = SpikeRule("s", {"keys": {"event": "yellow"}})
    for k in range(30):  # 30 posts in 5 minutes on one mostly positive event
        at = T0 + timedelta(seconds=10 * k)
        assert rule.add_data(make_post("点赞", n=k, at=at), make_event(size=30, negative=3, last_seen=at)) == []


def test_min_count_holds_back_small_bursts(make_post, make_event) -> None:
    small = SpikeRule("s", {"keys": {"event": "yellow"}, "min_count": 30})
    big = SpikeRule("s", {"keys": {"event": "yellow"}, "min_count": 5})
    for rule, expected in ((small, False), (big, True)):
        fired = False
        for k in range(20):
            at = T0 + timedelta(seconds=20 * k)
            fired |= bool(rule.add_data(make_post("x", n=k, at=at), make_event(last_seen=at)))
        assert fired is expected


def test_same_input_same_matches(make_post, make_event) -> None:
    runs = []
    for _ in range(2):
        rule = SpikeRule("s", {})
        runs.append([m.model_dump() for m in _topic_burst(rule, make_post, make_event, negative=9)])
    assert runs[0] == runs[1] and runs[0]


def test_garbage_collect_drops_idle_keys(make_post, make_event) -> None:
    rule = SpikeRule("s", {"detector": {"idle_days": 1}})
    _topic_burst(rule, make_post, make_event, negative=9)
    assert len(rule.detector) == 25 + 2  # one key per event, plus the topic and the district
    rule.garbage_collect(T0 + timedelta(hours=12))
    assert len(rule.detector) == 27
    rule.garbage_collect(T0 + timedelta(days=2))
    assert len(rule.detector) == 0


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"keys": {"city": "red"}}, "unknown key kind 'city'"),
        ({"keys": {"event": "purple"}}, "keys.event"),
        ({"bucket_minutes": 7}, "must divide a day"),
        ({"detector": {"no_such_option": 1}}, "detector:"),
        ({"escalate": {"red": 5, "orange": 10}}, "must be higher than"),
        ({"max_p_value": 2}, "max_p_value must be at most 1.0"),
    ],
)
def test_bad_config(config, fragment) -> None:
    with pytest.raises(RuleConfigError) as info:
        SpikeRule("s", config)
    assert fragment in str(info.value)
