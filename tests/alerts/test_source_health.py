"""Source health on synthetic streams: silence and collapse are caught, the normal night dip is not."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from alerts.source_health import SourceHealth, enqueue_source_alerts, source_alert_notification
from core.db.models import OutboxRow
from core.db.session import Database

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 1, 0, 0, tzinfo=SHANGHAI).astimezone(UTC)


def daily_rate(at: datetime) -> int:
    """Posts per hour of a weibo crawler: busy days, a deep night dip (about 7% of the day rate)."""
    h = at.astimezone(SHANGHAI).hour
    if 1 <= h <= 6:
        return 15
    if h in (0, 7, 23):
        return 60
    return 220


def feed(health: SourceHealth, start: datetime, hours: int, *, scale: float = 1.0, rng: random.Random,
         source: str = "weibo", alerts_out: list | None = None, stop_at: datetime | None = None) -> None:
    """Feed ``hours`` hours of the stream in one-minute lots, checking after every hour."""
    for k in range(hours):
        hour = start + timedelta(hours=k)
        n = int(daily_rate(hour) * scale * rng.uniform(0.85, 1.15))
        for minute in range(60):
            at = hour + timedelta(minutes=minute)
            if stop_at is not None and at >= stop_at:
                break
            lot = n * (minute + 1) // 60 - n * minute // 60
            if lot:
                health.observe(source, at, lot)
        found = health.check(hour + timedelta(hours=1))
        if alerts_out is not None:
            alerts_out.extend(found)


def test_a_week_of_normal_days_and_nights_raises_nothing() -> None:
    health = SourceHealth()
    alerts: list = []
    feed(health, START, 24 * 8, rng=random.Random(1), alerts_out=alerts)
    assert alerts == []
    night = START + timedelta(days=8, hours=3)  # 03:00 local
    noon = START + timedelta(days=8, hours=12)
    # The night dip is in the profile: at 03:00 only a trickle is expected, so a trickle is fine.
    assert health.expected("weibo", night) == pytest.approx(15, rel=0.2)
    assert health.expected("weibo", noon) == pytest.approx(220, rel=0.2)


def test_silence_is_detected_with_when_it_began() -> None:
    health = SourceHealth(window_hours=2)
    rng = random.Random(2)
    feed(health, START, 24 * 7, rng=rng)
    broke_at = START + timedelta(days=7, hours=10, minutes=5)  # 10:05 local: the crawler dies
    alerts: list = []
    feed(health, START + timedelta(days=7), 14, rng=rng, alerts_out=alerts, stop_at=broke_at)
    assert alerts, "a crawler dead since 10:05 must be reported by 12:00"
    first = alerts[0]
    # The 12:00 check sees 10:00-12:00: five minutes of posts, then nothing. That is a collapse...
    assert first.source == "weibo" and 0 < first.observed <= 0.2 * first.expected and first.expected > 300
    assert first.since == START + timedelta(days=7, hours=10)
    assert "骤降" in first.message and "微博" in first.message and "10:00" in first.message
    # ...and from 13:00 on the window is all silence: the same outage, now reported as silent.
    later = alerts[1]
    assert later.silent and later.since == first.since
    assert "静默" in later.message and "10:04" in later.message  # the last post seen
    assert len({a.since for a in alerts}) == 1  # every later check reports the same outage


def test_collapse_to_a_tenth_is_detected_but_a_modest_dip_is_not() -> None:
    rng = random.Random(3)
    collapsed = SourceHealth()
    feed(collapsed, START, 24 * 7, rng=rng)
    alerts: list = []
    feed(collapsed, START + timedelta(days=7, hours=9), 3, scale=0.1, rng=rng, alerts_out=alerts)
    assert alerts and alerts[-1].observed > 0 and not alerts[-1].silent
    assert "骤降" in alerts[-1].message

    dipped = SourceHealth()
    feed(dipped, START, 24 * 7, rng=random.Random(3))
    alerts = []
    feed(dipped, START + timedelta(days=7, hours=9), 3, scale=0.6, rng=rng, alerts_out=alerts)
    assert alerts == []


def test_a_new_source_is_not_judged_until_it_has_history() -> None:
    health = SourceHealth(min_days=3)
    alerts: list = []
    feed(health, START, 24 * 2, rng=random.Random(4), alerts_out=alerts)
    # Two days of history, then silence: not enough to know what is normal.
    assert health.check(START + timedelta(days=2, hours=6)) == []


def test_an_outage_does_not_teach_the_profile_and_recovery_clears_it() -> None:
    health = SourceHealth()
    rng = random.Random(5)
    feed(health, START, 24 * 7, rng=rng)
    noon = START + timedelta(days=7, hours=12)
    before = health.expected("weibo", noon + timedelta(days=1))
    outage: list = []
    for k in range(24):  # a whole silent day, checked hourly
        outage.extend(health.check(START + timedelta(days=7, hours=k + 1)))
    assert outage
    assert len({a.since for a in outage}) == 1  # one outage, one start
    after = health.expected("weibo", noon + timedelta(days=1))
    assert after == pytest.approx(before)  # the silent day was not learned as normal
    feed(health, START + timedelta(days=8), 6, rng=rng)
    final = health.check(START + timedelta(days=8, hours=6))
    assert final == []


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SourceHealth().observe("weibo", datetime(2026, 1, 1, 8))


def test_alerts_are_enqueued_once_per_outage(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'y.sqlite'}")
    db.migrate()
    health = SourceHealth()
    rng = random.Random(6)
    feed(health, START, 24 * 7, rng=rng)
    feed(health, START + timedelta(days=7), 12, rng=rng, stop_at=START + timedelta(days=7, hours=9))
    first = health.check(START + timedelta(days=7, hours=12))
    second = health.check(START + timedelta(days=7, hours=13))
    assert first and second
    with db.transaction() as s:
        assert enqueue_source_alerts(s, first) == 1
    with db.transaction() as s:
        assert enqueue_source_alerts(s, second) == 0  # same source, same outage: same id
    with db.transaction() as s:
        rows = s.scalars(select(OutboxRow)).all()
        assert len(rows) == 1
        row = rows[0]
        assert (row.channel, row.target, row.kind, row.state) == ("wecom", "office", "source.silent", "pending")
        assert row.id == source_alert_notification(first[0]).id
        assert "微博" in row.notification["subject"] and row.notification["payload"]["observed"] == 0
    db.close()


def test_fed_from_the_post_store_in_one_scheduler_call(tmp_path: Path) -> None:
    """Scale-mode feeding: hourly counts by source read back from a real post store."""
    from alerts.source_health import run_source_health
    from core.records import AnalyzedPost, Sentiment, SentimentLabel, Source, Topic, post_id
    from core.store.sqlite_posts import SqlitePostStore

    store = SqlitePostStore(tmp_path / "posts.sqlite", tokenize=str.split)
    store.ensure_schema()
    db = Database(f"sqlite:///{tmp_path / 'y.sqlite'}")
    db.migrate()
    posts = []
    now = START + timedelta(days=4, hours=12)  # noon local on day 5
    for k in range(4 * 24 + 12):
        hour = START + timedelta(hours=k)
        silent = hour >= START + timedelta(days=4, hours=9)  # weibo stops at 09:00 on day 5
        for source, n in (("weibo", 0 if silent else daily_rate(hour) // 10), ("hotline", 3)):
            for i in range(n):
                at = hour + timedelta(minutes=i * 60 // max(n, 1))
                posts.append(AnalyzedPost(
                    id=post_id(source, f"{k}-{i}"), source=Source(source), external_id=f"{k}-{i}", text="x",
                    published_at=at, received_at=at, topic=Topic(l1="其他"),
                    sentiment=Sentiment(label=SentimentLabel.neutral, score=0.5)))
    store.upsert(posts)
    health = SourceHealth(min_expected=10, min_days=3)
    alerts = run_source_health(health=health, post_store=store, db=db, now=now)
    assert [a.source for a in alerts] == ["weibo"] and alerts[0].silent
    assert alerts[0].since < START + timedelta(days=4, hours=9)
    assert health.sync_from_store(store, now) == 0  # nothing counted twice
    assert run_source_health(health=health, post_store=store, db=db, now=now + timedelta(minutes=30))
    with db.session() as s:
        assert [r.kind for r in s.scalars(select(OutboxRow))] == ["source.silent"]
    store.close()
    db.close()
