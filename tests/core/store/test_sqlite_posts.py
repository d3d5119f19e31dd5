"""SqlitePostStore specifics beyond the shared contract."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jieba
import pytest

from core.records import AnalyzedPost, Engagement, Entities, Sentiment, SentimentLabel, Source, Topic, post_id
from core.store import sqlite_posts
from core.store.base import PostQuery, PostStore
from core.store.sqlite_posts import SqlitePostStore, pack_signature, unpack_signature

NOW = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def tokenize(text: str) -> list[str]:
    return jieba.lcut_for_search(text)


def make(i: int, text: str, *, received: datetime = NOW, likes: int = 0) -> AnalyzedPost:
    return AnalyzedPost(id=post_id("weibo", str(i)), source=Source.weibo, external_id=str(i), text=text,
                        published_at=NOW - timedelta(minutes=i), received_at=received,
                        engagement=Engagement(likes=likes),
                        sentiment=Sentiment(label=SentimentLabel.neutral, score=0.3), topic=Topic(l1="其他"))


def open_store(tmp_path: Path) -> SqlitePostStore:
    store = SqlitePostStore(tmp_path / "p.sqlite", tokenize=tokenize)
    store.ensure_schema()
    store.ensure_schema()  # idempotent
    return store


def test_query_without_indexable_words_falls_back_to_substring(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.upsert([make(1, "价格上涨 ¥¥ 100%"), make(2, "一切正常")])
    assert [p.id for p in store.search(PostQuery(q="¥¥")).items] == [post_id("weibo", "1")]
    assert store.search(PostQuery(q="%")).total == 1  # LIKE wildcards are escaped
    store.close()


def test_fts_syntax_in_a_query_is_taken_literally(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.upsert([make(1, "投诉 OR 举报 NEAR 物业")])
    assert store.search(PostQuery(q='物业 "OR')).total == 1
    assert store.search(PostQuery(q="NOT")).total == 0
    store.close()


def test_older_redelivery_does_not_overwrite_a_newer_copy(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.upsert([make(1, "原文", likes=5, received=NOW + timedelta(hours=1))])
    assert store.upsert([make(1, "原文", likes=1, received=NOW)]) == set()
    got = store.get(post_id("weibo", "1"))
    assert got is not None and got.engagement.likes == 5
    store.close()


def test_duplicates_within_one_batch_keep_the_latest(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    batch = [make(1, "旧", received=NOW), make(1, "新内容", received=NOW + timedelta(seconds=1))]
    assert store.upsert(batch) == {post_id("weibo", "1")}
    assert store.count() == 1
    assert store.search(PostQuery(q="新内容")).total == 1
    assert store.search(PostQuery(q="旧")).total == 0
    store.close()


def test_readers_in_other_threads_see_committed_writes(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    errors: list[BaseException] = []
    seen: dict[int, list[int]] = {}

    def read() -> None:
        mine = seen.setdefault(threading.get_ident(), [])
        try:
            for _ in range(50):
                mine.append(store.count())
                store.search(PostQuery(q="测试"))
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for n in range(20):
        store.upsert([make(100 + n * 10 + k, f"测试 {n} {k}") for k in range(10)])
    for t in readers:
        t.join()
    assert not errors
    for counts in seen.values():
        assert counts == sorted(counts), "a reader went back in time"
        assert all(c % 10 == 0 for c in counts), "a reader saw half of a batch"
    assert store.count() == 200
    store.close()
    reopened = open_store(tmp_path)
    assert reopened.count() == 200
    reopened.close()


def test_many_reader_threads_share_a_bounded_pool_of_connections(tmp_path: Path) -> None:
    from core.store.sqlite_posts import READERS

    store = open_store(tmp_path)
    store.upsert([make(k, f"测试 {k}") for k in range(30)])
    counts: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def read() -> None:
        try:
            for _ in range(5):
                n = store.search(PostQuery(q="测试")).total
                with lock:
                    counts.append(n)
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(40)]  # the API's thread pool is this wide
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert counts == [30] * 200
    # Forty threads, but never more reader connections (each with its own page cache) than the pool holds.
    assert 1 <= len(store._readers) <= READERS
    store.close()


def test_signature_packing_round_trips_all_ranges() -> None:
    for values in ([1, 2**32 - 1], [2**40, 3], [-5, 7], []):
        assert unpack_signature(pack_signature(values)) == values
    assert len(pack_signature(list(range(128))) or b"") == 1 + 128 * 4


# -- hourly rollups, common-word search, iter_recent -----------------------------------------------------

SOURCES = [Source.weibo, Source.news, Source.hotline]
TOPICS = ["城乡建设", "教育", "交通运输"]
DISTRICTS = ["A1区", "A2区", "A3县"]
LABELS = list(SentimentLabel)


def random_post(rng: random.Random, i: int, *, received: datetime = NOW) -> AnalyzedPost:
    # Minutes and seconds land anywhere in the hour, so queries' edges cut hours in the middle.
    published = NOW - timedelta(seconds=rng.randrange(0, 3 * 86400))
    return AnalyzedPost(id=post_id("weibo", str(i)), source=rng.choice(SOURCES), external_id=str(i),
                        text=f"化工厂 噪音 {i}", published_at=published, received_at=received,
                        sentiment=Sentiment(label=rng.choice(LABELS), score=0.5), topic=Topic(l1=rng.choice(TOPICS)),
                        entities=Entities(districts=rng.sample(DISTRICTS, rng.randrange(0, 3))))


def random_query(rng: random.Random) -> PostQuery:
    start = NOW - timedelta(seconds=rng.randrange(0, 4 * 86400))
    return PostQuery(since=rng.choice([None, start]),
                     until=rng.choice([None, start + timedelta(seconds=rng.randrange(0, 2 * 86400))]),
                     source=rng.choice([None, None, *SOURCES]), topic=rng.choice([None, None, *TOPICS]),
                     sentiment=rng.choice([None, None, "negative", "正面"]),
                     district=rng.choice([None, None, *DISTRICTS]))


def assert_rollups_match(store: SqlitePostStore, rng: random.Random, posts: dict[str, AnalyzedPost]) -> None:
    for _ in range(40):
        query = random_query(rng)
        interval = rng.choice(["hour", "day"])
        got = store.overview(query, interval=interval)
        assert got == store.overview(query, interval=interval, exact=True), query
    # And against the posts themselves: every whole hour of the store, split by district.
    everything = store.overview(PostQuery(since=NOW - timedelta(days=5), until=NOW + timedelta(hours=1)))
    assert everything.total == len(posts)
    assert everything.by_district == dict(Counter(d for p in posts.values() for d in set(p.entities.districts)))


def test_overview_from_rollups_equals_the_exact_count(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    store = open_store(tmp_path)
    posts = {p.id: p for p in (random_post(rng, i) for i in range(400))}
    store.upsert(list(posts.values()))
    assert_rollups_match(store, rng, posts)
    # Rewrites move their counts: a later copy with another sentiment, topic, source or districts.
    later = [random_post(rng, i, received=NOW + timedelta(minutes=1)) for i in rng.sample(range(400), 120)]
    for p in later:
        p.published_at = posts[p.id].published_at if rng.random() < 0.5 else p.published_at
    store.upsert(later)
    posts.update((p.id, p) for p in later)
    assert_rollups_match(store, rng, posts)
    # Retention subtracts, including from hours it cuts in the middle.
    cutoff = NOW - timedelta(days=1, minutes=17)
    assert store.delete_older_than(cutoff) == sum(p.published_at < cutoff for p in posts.values())
    posts = {k: p for k, p in posts.items() if p.published_at >= cutoff}
    assert_rollups_match(store, rng, posts)
    store.close()


def test_existing_database_gets_its_rollups_at_start(tmp_path: Path) -> None:
    rng = random.Random(7)
    store = open_store(tmp_path)
    posts = {p.id: p for p in (random_post(rng, i) for i in range(200))}
    store.upsert(list(posts.values()))
    store.close()
    with sqlite3.connect(tmp_path / "p.sqlite") as conn:  # as written by a version without rollups
        conn.execute("DROP TABLE post_hours")
        conn.execute("DROP TABLE post_district_hours")
        conn.execute("DROP TABLE post_district_hour_totals")
    reopened = open_store(tmp_path)
    assert_rollups_match(reopened, rng, posts)
    reopened.close()


def test_common_word_search_walking_the_time_index_gives_the_same_pages(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    store = open_store(tmp_path)
    posts = [random_post(rng, i) for i in range(300)]
    for p in posts[:40]:  # ties on published time are ordered by storage order in both plans
        p.published_at = NOW - timedelta(hours=2)
    store.upsert(posts)
    queries = [PostQuery(q="化工厂", limit=25, offset=o) for o in (0, 25, 280, 300)] + [
        PostQuery(q="化工厂 噪音", since=NOW - timedelta(days=1), limit=10, offset=5),
        PostQuery(q="化工厂", sentiment="负面", district="A1区", limit=50)]
    sorted_pages = [store.search(q) for q in queries]
    monkeypatch.setattr(sqlite_posts, "_FTS_SORT_LIMIT", 0)
    walked_pages = [store.search(q) for q in queries]
    assert walked_pages == sorted_pages
    assert sorted_pages[0].total == 300 and len(sorted_pages[2].items) == 20 and sorted_pages[3].items == []
    newest_first = sorted(enumerate(posts), key=lambda ip: (ip[1].published_at, ip[0]), reverse=True)
    assert [p.id for p in sorted_pages[0].items] == [p.id for _i, p in newest_first][:25]
    store.close()


def test_iter_recent_pages_by_key_newest_first(tmp_path: Path) -> None:
    rng = random.Random(11)
    store = open_store(tmp_path)
    posts = [random_post(rng, i) for i in range(120)]
    for p in posts[:30]:
        p.published_at = NOW - timedelta(hours=5)  # a tie that spans several keyset pages
    store.upsert(posts)
    since = NOW - timedelta(days=2)
    expected = store.search(PostQuery(since=since, limit=1000))
    keyset = [p.id for p in store.iter_recent(since, batch=7)]
    assert keyset == [p.id for p in expected.items]
    assert len(keyset) == expected.total == sum(p.published_at >= since for p in posts)
    assert [p.id for p in PostStore.iter_recent(store, since, batch=7)] == keyset  # the contract's default
    assert list(store.iter_recent(NOW + timedelta(days=1))) == []
    store.close()
