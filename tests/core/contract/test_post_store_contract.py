"""The post store contract (core/store/base.py), asserted identically for every backend."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from core.records import AnalyzedPost, Engagement, Entities, Sentiment, SentimentLabel, Source, Topic, post_id
from core.store.base import PostQuery, PostStore

NOW = datetime(2026, 3, 15, 10, 30, tzinfo=UTC)

TEXTS = [
    ("weibo", "小区夜间施工噪音扰民，居民无法休息", SentimentLabel.negative, "城乡建设", ["d-a1"], "ev-noise"),
    ("weibo", "施工噪音又开始了，凌晨两点还在打桩", SentimentLabel.negative, "城乡建设", ["d-a1"], "ev-noise"),
    ("news", "市政府召开新闻发布会通报疫苗接种进展", SentimentLabel.neutral, "卫生健康", ["d-b2"], "ev-vax"),
    ("forum", "感谢环卫工人冒雨清理道路积水", SentimentLabel.positive, "城市管理", ["d-a1", "d-b2"], None),
    ("mailbox", "反映学校门口交通拥堵问题，希望增设红绿灯", SentimentLabel.negative, "交通运输", ["d-c3"], None),
    ("hotline", "自来水水质发黄，请相关部门检查", SentimentLabel.negative, "城市管理", [], "ev-water"),
]


def make_post(i: int, source: str, text: str, label: SentimentLabel, topic: str, districts: list[str],
              event_id: str | None, *, hours_ago: float) -> AnalyzedPost:
    ext = f"ext-{i}"
    return AnalyzedPost(
        id=post_id(source, ext), source=Source(source), external_id=ext, title=f"标题{i}", text=text,
        published_at=NOW - timedelta(hours=hours_ago), received_at=NOW,
        engagement=Engagement(likes=i), sentiment=Sentiment(label=label, score=0.9 if label == "负面" else 0.1),
        topic=Topic(l1=topic), entities=Entities(districts=districts), event_id=event_id,
        signature=[(i * 7919 + k * 104729) % 2**32 for k in range(16)],
    )


@pytest.fixture
def posts() -> list[AnalyzedPost]:
    """Six posts spread over the last 50 hours, newest first."""
    return [make_post(i, *row, hours_ago=i * 10) for i, row in enumerate(TEXTS)]


@pytest.fixture
def filled(store: PostStore, posts: list[AnalyzedPost]) -> PostStore:
    assert store.upsert(posts) == {p.id for p in posts}
    store.refresh()
    return store


def ids(page_items: list[AnalyzedPost]) -> list[str]:
    return [p.id for p in page_items]


def test_upsert_is_idempotent_by_id(store: PostStore, posts: list[AnalyzedPost]) -> None:
    assert store.upsert(posts[:3]) == {p.id for p in posts[:3]}
    assert store.upsert(posts[:3]) == set()
    assert store.upsert(posts) == {p.id for p in posts[3:]}
    store.refresh()
    assert store.count() == len(posts)
    assert store.existing_ids([posts[0].id, "no-such-id"]) == {posts[0].id}
    assert store.search(PostQuery(q="噪音")).total == 2


def test_a_changed_post_is_updated_not_duplicated(store: PostStore, posts: list[AnalyzedPost]) -> None:
    store.upsert(posts)
    later = posts[5].model_copy(update={"engagement": Engagement(likes=999), "event_id": "ev-merged",
                                        "received_at": NOW + timedelta(minutes=5)})
    assert store.upsert([later]) == set()
    store.refresh()
    got = store.get(posts[5].id)
    assert got is not None and got.engagement.likes == 999 and got.event_id == "ev-merged"
    assert store.count() == len(posts)
    assert ids(store.search(PostQuery(q="水质")).items) == [posts[5].id]
    assert store.search(PostQuery(event_id="ev-merged")).total == 1
    assert store.search(PostQuery(event_id="ev-water")).total == 0


def test_get_returns_the_full_record(filled: PostStore, posts: list[AnalyzedPost]) -> None:
    got = filled.get(posts[2].id)
    assert got == posts[2]
    assert filled.get("missing") is None


def test_get_many_returns_the_stored_ones_by_id(filled: PostStore, posts: list[AnalyzedPost]) -> None:
    wanted = [posts[4].id, "missing", posts[1].id, posts[4].id]
    assert filled.get_many(wanted) == {posts[4].id: posts[4], posts[1].id: posts[1]}
    assert filled.get_many([]) == {}
    assert filled.get_many([p.id for p in posts] * 300) == {p.id: p for p in posts}  # past one chunk


def test_search_by_chinese_word(filled: PostStore, posts: list[AnalyzedPost]) -> None:
    page = filled.search(PostQuery(q="噪音"))
    assert page.total == 2
    assert ids(page.items) == [posts[0].id, posts[1].id]  # newest first
    assert ids(filled.search(PostQuery(q="红绿灯")).items) == [posts[4].id]
    assert ids(filled.search(PostQuery(q="施工 凌晨")).items) == [posts[1].id]  # every word must match
    assert filled.search(PostQuery(q="地铁")).total == 0


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("source", "weibo", [0, 1]),
    ("sentiment", "负面", [0, 1, 4, 5]),
    ("sentiment", "positive", [3]),
    ("topic", "城市管理", [3, 5]),
    ("event_id", "ev-noise", [0, 1]),
    ("district", "d-b2", [2, 3]),
])
def test_filters(filled: PostStore, posts: list[AnalyzedPost], field: str, value: str,
                 expected: list[int]) -> None:
    page = filled.search(PostQuery(**{field: value}))
    assert ids(page.items) == [posts[i].id for i in expected]
    assert page.total == len(expected)


def test_time_range_and_combined_filters(filled: PostStore, posts: list[AnalyzedPost]) -> None:
    window = PostQuery(since=NOW - timedelta(hours=35), until=NOW - timedelta(hours=5))
    assert ids(filled.search(window).items) == [posts[1].id, posts[2].id, posts[3].id]
    combined = PostQuery(q="噪音", source="weibo", since=NOW - timedelta(hours=5))
    assert ids(filled.search(combined).items) == [posts[0].id]


def test_pagination(filled: PostStore, posts: list[AnalyzedPost]) -> None:
    pages = [filled.search(PostQuery(limit=4, offset=o)) for o in (0, 4, 8)]
    assert [p.total for p in pages] == [6, 6, 6]
    assert [len(p.items) for p in pages] == [4, 2, 0]
    assert ids(pages[0].items) + ids(pages[1].items) == [p.id for p in posts]


def test_overview_counts(filled: PostStore) -> None:
    ov = filled.overview(PostQuery())
    assert ov.total == 6
    assert ov.by_sentiment == {"负面": 4, "中性": 1, "正面": 1}
    assert ov.by_topic == {"城乡建设": 2, "卫生健康": 1, "城市管理": 2, "交通运输": 1}
    assert ov.by_source == {"weibo": 2, "news": 1, "forum": 1, "mailbox": 1, "hotline": 1}
    assert ov.by_district == {"d-a1": 3, "d-b2": 2, "d-c3": 1}
    assert sum(sum(b.counts.values()) for b in ov.series) == 6
    assert ov.interval == "hour"
    starts = [b.start for b in ov.series]
    assert starts == sorted(starts)
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(starts))

    negative_recent = filled.overview(PostQuery(sentiment="负面", since=NOW - timedelta(hours=45)))
    assert negative_recent.total == 3 and negative_recent.by_sentiment == {"负面": 3}

    daily = filled.overview(PostQuery(), interval="day")
    assert daily.interval == "day"
    assert sum(sum(b.counts.values()) for b in daily.series) == 6
    assert all(b.start.hour == daily.series[0].start.hour for b in daily.series)
    assert len(daily.series) <= 4


def test_recent_signatures_round_trip(filled: PostStore, posts: list[AnalyzedPost]) -> None:
    rows = list(filled.recent_signatures(NOW - timedelta(hours=25)))
    assert {r.post_id for r in rows} == {posts[0].id, posts[1].id, posts[2].id}  # only posts with events
    by_id = {r.post_id: r for r in rows}
    for post in posts[:3]:
        assert by_id[post.id].signature == post.signature
        assert by_id[post.id].event_id == post.event_id
        assert by_id[post.id].published_at == post.published_at
        # The clusterer's anchors survive a restart: entities, tokens and identity come back too.
        assert by_id[post.id].entities == post.entities
        assert by_id[post.id].tokens == post.tokens
        assert (by_id[post.id].source, by_id[post.id].external_id) == (post.source.value, post.external_id)
        # ... and so do the topic and the mood the place rules read.
        assert (by_id[post.id].topic, by_id[post.id].sentiment) == (post.topic.l1, post.sentiment.label.value)


def test_delete_older_than(filled: PostStore, posts: list[AnalyzedPost]) -> None:
    assert filled.delete_older_than(NOW - timedelta(hours=25)) == 3
    filled.refresh()
    assert filled.count() == 3
    assert ids(filled.search(PostQuery()).items) == [p.id for p in posts[:3]]
    assert filled.search(PostQuery(q="红绿灯")).total == 0
    assert filled.overview(PostQuery()).by_district == {"d-a1": 2, "d-b2": 1}
    assert filled.delete_older_than(NOW - timedelta(hours=25)) == 0


def test_retention_across_months(store: PostStore) -> None:
    ages = {"old-1": 70, "old-2": 40, "kept-1": 20, "kept-2": 1}  # days before NOW
    posts = [make_post(i, "weibo", f"留存测试 {name}", SentimentLabel.neutral, "其他", [], f"ev-{name}",
                       hours_ago=days * 24) for i, (name, days) in enumerate(ages.items())]
    assert len(store.upsert(posts)) == 4
    store.refresh()
    assert store.delete_older_than(NOW - timedelta(days=30)) == 2
    store.refresh()
    assert store.count() == 2
    assert {p.id for p in store.search(PostQuery(q="留存测试")).items} == {posts[2].id, posts[3].id}
    assert store.delete_older_than(NOW - timedelta(days=30)) == 0
    assert store.upsert(posts[:1]) == {posts[0].id}, "a deleted post is new again"
