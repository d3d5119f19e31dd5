"""The post stores index ``tokenize_for_search(title + text)``; from the analyze stage's words where they allow.

The shortcut (``core.store.base.index_tokens``) must give exactly the terms a second jieba pass gives, or
search would find other posts than before. If the analyze stage ever segments another text than
``text_for_scoring(strip_html(full_text))``, the demo test here fails rather than the index drifting.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analyze import segment
from analyze.normalize import strip_html, text_for_scoring
from analyze.segment import tokenize, tokenize_for_search
from core.records import AnalyzedPost, Post, Sentiment, SentimentLabel, Topic
from core.store.base import index_tokens


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory: pytest.TempPathFactory) -> list[AnalyzedPost]:
    from core.settings import Settings
    from core.wiring import Container
    from ingest.demo import DemoStream
    from ingest.validate import parse_record

    container = Container(Settings(mode="embedded", data_dir=tmp_path_factory.mktemp("tokens"), database_url=""))
    salt = container.settings.author_salt.get_secret_value()
    posts: list[Post] = []
    for i, record in enumerate(DemoStream(seed=7, rate_per_min=600.0)):
        if i >= 300:
            break
        posts.append(parse_record(json.dumps(record, ensure_ascii=False).encode(), source_hint=None, salt=salt,
                                  max_text_chars=container.settings.max_text_chars))
    try:
        return container.analyzer.analyze(posts)
    finally:
        container.close()


def _count_passes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the texts segmented again (jieba's second pass)."""
    calls: list[str] = []
    real = segment.Segmenter.tokenize_for_search

    def spy(self: segment.Segmenter, text: str) -> list[str]:
        calls.append(text)
        return real(self, text)

    monkeypatch.setattr(segment.Segmenter, "tokenize_for_search", spy)
    return calls


def test_demo_posts_index_the_same_terms_mostly_without_a_second_pass(
        analyzed: list[AnalyzedPost], monkeypatch: pytest.MonkeyPatch) -> None:
    want = [tokenize_for_search(f"{p.title}\n{p.text}") for p in analyzed]
    calls = _count_passes(monkeypatch)
    got = [index_tokens(p, tokenize_for_search) for p in analyzed]
    assert got == want
    assert len(calls) < len(analyzed) / 2, "the analyze stage's words should serve most demo posts"


def _post(text: str, title: str = "") -> AnalyzedPost:
    post = Post(id="p1", source="weibo", external_id="x", title=title, text=text,
                published_at=datetime(2024, 5, 1, tzinfo=UTC))
    return AnalyzedPost(**post.model_dump(), tokens=tokenize(text_for_scoring(strip_html(post.full_text))),
                        sentiment=Sentiment(label=SentimentLabel.neutral, score=0.5), topic=Topic(l1="其他"))


@pytest.mark.parametrize(("title", "text"), [
    ("", "丽发新城小区门口的搅拌站噪音越来越大，半夜还在施工"),  # a stopword whose parts are kept
    ("", "一下子来了好多人，中华人民共和国国歌响起"),
    ("", "NASA 和 nasa 还有 Covid-19 疫苗 PM2.5 超标"),  # upper-case ASCII words: parts looked up as written
    ("", "hello world abcdef 市民热线 12345 反映"),
    ("通知", "关于暮云街道停水的通知\n明天上午八点到下午五点停水"),
    ("市政府召开新闻发布会", "市政府召开新闻发布会，介绍地铁3号线开通情况"),  # text repeats the title
    ("", "<p>地铁3号线<br>今天开通了</p>&amp;"),  # HTML: the analyze stage read other text
    ("", "#A4区生活# 转发 //@张三: 太好了 https://t.cn/abc @市政府 [哈哈]"),
    ("", ""),
    ("", "，。！？"),
])
def test_edge_cases_index_the_same_terms(title: str, text: str) -> None:
    post = _post(text, title)
    assert index_tokens(post, tokenize_for_search) == tokenize_for_search(f"{title}\n{text}")


def test_a_store_with_another_tokenizer_keeps_it() -> None:
    post = _post("地铁 开通")
    assert index_tokens(post, str.split) == ["地铁", "开通"]


def test_stores_index_through_it(tmp_path: Path, analyzed: list[AnalyzedPost]) -> None:
    from core.store.sqlite_posts import SqlitePostStore

    store = SqlitePostStore(tmp_path / "posts.db", tokenize=tokenize_for_search)
    store.ensure_schema()
    try:
        store.upsert(analyzed[:50])
        from core.store.base import PostQuery

        word = next(t for t in tokenize_for_search(analyzed[0].text) if len(t) > 1)
        found = {p.id for p in store.search(PostQuery(q=word, limit=1000)).items}
        want = {p.id for p in analyzed[:50] if word in tokenize_for_search(f"{p.title}\n{p.text}")}
        assert found == want and analyzed[0].id in found
    finally:
        store.close()
