"""SqlitePostStore specifics beyond the shared contract."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jieba

from core.records import AnalyzedPost, Engagement, Sentiment, SentimentLabel, Source, Topic, post_id
from core.store.base import PostQuery
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


def test_signature_packing_round_trips_all_ranges() -> None:
    for values in ([1, 2**32 - 1], [2**40, 3], [-5, 7], []):
        assert unpack_signature(pack_signature(values)) == values
    assert len(pack_signature(list(range(128))) or b"") == 1 + 128 * 4
