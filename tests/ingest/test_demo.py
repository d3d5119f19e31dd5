"""The demo stream: deterministic, valid, varied, with incidents that burst early and carry ground truth."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.records import Post, Source
from ingest.demo import DemoStream, Incident, default_incidents, write_jsonl
from ingest.demo_text import DISTRICTS, TOPICS
from ingest.validate import parse_record

START = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sample() -> list[tuple[datetime, dict[str, Any]]]:
    return list(itertools.islice(DemoStream(seed=7, start=START).timed(), 4000))


@pytest.fixture(scope="module")
def posts(sample: list[tuple[datetime, dict[str, Any]]]) -> list[Post]:
    received = START + timedelta(hours=2)
    return [parse_record(json.dumps(rec, ensure_ascii=False).encode(), source_hint=None, salt="s",
                         max_text_chars=20_000, received_at=received) for _, rec in sample]


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    def head(seed: int) -> list[dict[str, Any]]:
        return list(itertools.islice(DemoStream(seed=seed, start=START), 300))

    assert head(7) == head(7)
    assert [r["text"] for r in head(7)] != [r["text"] for r in head(8)]
    later = list(itertools.islice(DemoStream(seed=7, start=START + timedelta(days=1)), 5))
    assert {r["external_id"] for r in later}.isdisjoint(r["external_id"] for r in head(7))


def test_every_record_validates_and_is_time_ordered(sample: list[tuple[datetime, dict[str, Any]]],
                                                    posts: list[Post]) -> None:
    assert len(posts) == len(sample)
    times = [p.published_at for p in posts]
    assert times == sorted(times)
    assert all(when == post.published_at for (when, _), post in zip(sample, posts, strict=True))
    assert len({p.id for p in posts}) == len(posts)


def test_background_covers_sources_topics_and_districts(sample: list[tuple[datetime, dict[str, Any]]],
                                                        posts: list[Post]) -> None:
    assert {p.source for p in posts} == set(Source)
    background = [rec for _, rec in sample if "incident" not in rec]
    assert {rec["demo_topic"] for rec in background} == set(TOPICS)
    text = "".join(rec["text"] for rec in background)
    assert all(d in text for d in DISTRICTS)
    hotline = [p for p in posts if p.source is Source.hotline and "incident" not in p.raw]
    assert hotline and all("诉求" in p.text and p.place_hints for p in hotline)
    social = [p for p in posts if p.source is Source.weibo]
    totals = sorted(p.engagement.total for p in social)
    assert totals[-1] > 10 * (totals[len(totals) // 2] + 1)  # heavy-tailed, like real platforms


def test_personal_data_and_html_appear_for_masking_and_escaping(posts: list[Post]) -> None:
    texts = [p.text for p in posts]
    assert sum(bool(re.search(r"1[3578]\d{9}", t)) for t in texts) >= 20
    assert any(re.search(r"\d{17}[\dX]", t) for t in texts)
    assert any("<script>" in t for t in texts) and any("onerror=" in t for t in texts)
    authors = [p.author_display for p in posts if p.source is Source.hotline]
    assert all(a and re.fullmatch("网友[0-9A-F]{6}", a) for a in authors)


def test_incidents_have_originals_reposts_variants_and_rising_volume(posts: list[Post]) -> None:
    by_incident: dict[str, list[Post]] = {}
    for p in posts:
        if "incident" in p.raw:
            by_incident.setdefault(p.raw["incident"], []).append(p)
    assert set(by_incident) == {i.name for i in default_incidents()}
    chem = by_incident["a7-chemical-plant"]
    original = chem[0]
    assert original.repost_of is None and "A7县" in original.text
    reposts = [p for p in chem if p.repost_of == original.external_id]
    assert len(reposts) > 20 and all(p.source is original.source for p in reposts)
    variants = [p for p in chem if p.repost_of is None and original.text.rstrip("？") in p.text and p is not original]
    assert len(variants) > 10
    assert any(p.source is Source.hotline and "诉求" in p.text for p in chem)
    official = [p for p in chem if p.source is Source.news]  # outlets carry only the official statement
    assert len(official) == 1 and "通报" in official[0].text

    def seconds(p: Post) -> float:
        return (p.published_at - START).total_seconds()

    within_40 = [p for p in chem if seconds(p) <= 40]
    early = [p for p in chem if 5 <= seconds(p) < 20]
    late = [p for p in chem if 25 <= seconds(p) < 40]
    assert len(within_40) >= 15 and len(late) > 2 * len(early)
    # Engagement rises with the heat: posts at the peak get more than the first ones.
    def mean_engagement(group: list[Post]) -> float:
        return sum(p.engagement.total for p in group) / max(1, len(group))

    assert mean_engagement(late) > mean_engagement(early)


def test_repost_targets_exist_in_the_stream(posts: list[Post]) -> None:
    ids = {(p.source, p.external_id) for p in posts}
    assert all((p.source, p.repost_of) in ids for p in posts if p.repost_of)


def test_custom_incident_and_no_background() -> None:
    incident = Incident(name="test-flood", topic="城市管理", district="A4区", start_s=0.0, peak_per_min=600.0,
                        originals=("A4区北辰街道积水齐腰深",), followups=("北辰街道积水还没退",), ramp_s=1.0,
                        hold_s=5.0, decay_s=1.0)
    records = list(DemoStream(seed=1, start=START, rate_per_min=0, incidents=[incident]))
    assert records and all(r["incident"] == "test-flood" for r in records)
    assert records[0]["text"] == "A4区北辰街道积水齐腰深"
    assert 40 < len(records) < 100  # about 600/min over ~6.5 effective seconds
    assert incident.rate_per_s(-1) == 0 == incident.rate_per_s(100)
    assert incident.rate_per_s(3) == pytest.approx(10.0)


def test_incident_schedule_repeats_when_asked() -> None:
    incident = Incident(name="loop", topic="交通", district="A1区", start_s=0.0, peak_per_min=120.0,
                        originals=("A1区迎宾大道大堵车",), followups=("迎宾大道还在堵",), ramp_s=1.0, hold_s=5.0,
                        decay_s=1.0)
    stream = DemoStream(seed=1, start=START, rate_per_min=0, incidents=[incident], repeat_every_s=60)
    timed = list(itertools.takewhile(lambda pair: pair[0] < START + timedelta(seconds=150), stream.timed()))
    names = Counter(rec["incident"] for _, rec in timed)
    assert set(names) == {"loop", "loop#2", "loop#3"}
    firsts = {}
    for when, rec in timed:
        firsts.setdefault(rec["incident"], (when, rec["text"]))
    assert firsts["loop#2"] == (START + timedelta(seconds=60), "A1区迎宾大道大堵车")
    assert len({rec["external_id"] for _, rec in timed}) == len(timed)
    with pytest.raises(ValueError, match="repeat_every_s"):
        DemoStream(incidents=[incident], repeat_every_s=5)


def test_write_jsonl_by_count_and_by_duration(tmp_path: Path) -> None:
    n = write_jsonl(tmp_path / "a.jsonl", count=50, seed=3, start=START)
    lines = (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()
    assert n == 50 == len(lines) and json.loads(lines[0])["source"]
    n = write_jsonl(tmp_path / "b.jsonl", duration=60, seed=3, start=START, incidents=[])
    last = json.loads((tmp_path / "b.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert 60 < n < 200 and datetime.fromisoformat(last["published_at"]) <= START + timedelta(seconds=60)
    with pytest.raises(ValueError, match="count= or duration="):
        write_jsonl(tmp_path / "c.jsonl")


def test_live_releases_records_in_real_time() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    stream = DemoStream(seed=7, start=START)
    records = list(itertools.islice(stream.live(speed=1.0, clock=lambda: now[0], sleep=sleep), 200))
    last = json.loads(records[-1].data)
    first = json.loads(records[0].data)
    span = (datetime.fromisoformat(last["published_at"]) - datetime.fromisoformat(first["published_at"]))
    assert now[0] == pytest.approx(span.total_seconds(), abs=1.0)
    assert records[0].origin == "demo:1" and slept
