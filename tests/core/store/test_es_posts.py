"""ElasticsearchPostStore specifics beyond the shared contract (needs the ES test server)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import jieba
import pytest

from core.errors import BackendUnavailable
from core.records import AnalyzedPost, Sentiment, SentimentLabel, Source, Topic, post_id
from core.store.base import PostQuery
from core.store.es_posts import ElasticsearchPostStore

pytestmark = pytest.mark.es


def build(url: str, prefix: str, **kw: object) -> ElasticsearchPostStore:
    args: dict[str, object] = dict(url=url, username=None, password=None, index_prefix=prefix,
                                   index_period="month", bulk_batch=3, request_timeout_s=5.0, max_retries=1,
                                   use_ik=False, tokenize=jieba.lcut_for_search)
    args.update(kw)
    return ElasticsearchPostStore(**args)  # type: ignore[arg-type]


@pytest.fixture
def store(es_url: str) -> Iterator[ElasticsearchPostStore]:
    s = build(es_url, f"yqt-{uuid.uuid4().hex[:10]}")
    s.ensure_schema()
    yield s
    s.drop_all()
    s.close()


def post(i: int, published: datetime) -> AnalyzedPost:
    return AnalyzedPost(id=post_id("news", str(i)), source=Source.news, external_id=str(i), text=f"新闻 {i}",
                        published_at=published, sentiment=Sentiment(label=SentimentLabel.neutral, score=0.2),
                        topic=Topic(l1="其他"))


def test_schema_is_idempotent_and_indices_sit_behind_the_alias(store: ElasticsearchPostStore, es_url: str) -> None:
    store.ensure_schema()
    march, april = datetime(2026, 3, 31, 23, tzinfo=UTC), datetime(2026, 4, 1, 1, tzinfo=UTC)
    assert store.upsert([post(1, march), post(2, april)]) == {post_id("news", "1"), post_id("news", "2")}
    aliases = httpx.get(f"{es_url}/_alias/{store.alias}", timeout=5).json()
    assert {store.index_for(march), store.index_for(april)} <= set(aliases)
    mapping = httpx.get(f"{es_url}/{store.index_for(march)}/_mapping", timeout=5).json()
    props = next(iter(mapping.values()))["mappings"]["properties"]
    assert props["source"]["type"] == "keyword" and props["tokens"]["type"] == "text"


def test_many_batches_report_exact_new_ids(store: ElasticsearchPostStore) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    posts = [post(i, now - timedelta(hours=i)) for i in range(10)]  # bulk_batch=3: four requests
    assert store.upsert(posts[:4]) == {p.id for p in posts[:4]}
    assert store.upsert(posts) == {p.id for p in posts[4:]}
    store.refresh()
    assert store.count() == 10


def test_whole_old_indices_are_dropped(store: ElasticsearchPostStore) -> None:
    store.upsert([post(1, datetime(2026, 1, 10, tzinfo=UTC)), post(2, datetime(2026, 2, 10, tzinfo=UTC)),
                  post(3, datetime(2026, 3, 10, tzinfo=UTC))])
    store.refresh()
    assert store.delete_older_than(datetime(2026, 2, 20, tzinfo=UTC)) == 2
    names = store._indices()
    assert store.index_for(datetime(2026, 1, 10, tzinfo=UTC)) not in names  # dropped whole
    assert store.index_for(datetime(2026, 2, 10, tzinfo=UTC)) in names  # boundary: delete by query
    assert store.count() == 1


def test_a_query_without_words_is_refused(store: ElasticsearchPostStore) -> None:
    with pytest.raises(ValueError, match="no searchable words"):
        store.search(PostQuery(q="！！"))


def test_unreachable_cluster_raises_backend_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    dead = build(f"http://127.0.0.1:{port}", "yqt-dead", request_timeout_s=0.5, max_retries=1)
    with pytest.raises(BackendUnavailable, match="after 2 attempts"):
        dead.upsert([post(1, datetime(2026, 1, 1, tzinfo=UTC))])
    with pytest.raises(BackendUnavailable):
        dead.search(PostQuery())
    dead.close()


def test_ik_without_the_plugin_is_a_clear_error(es_url: str) -> None:
    plugins = httpx.get(f"{es_url}/_cat/plugins?format=json", timeout=5)
    if plugins.status_code == 200 and "analysis-ik" in plugins.text:
        pytest.skip("this cluster has the IK plugin")
    s = build(es_url, f"yqt-{uuid.uuid4().hex[:10]}", use_ik=True)
    with pytest.raises(ValueError, match="analysis-ik plugin"):
        s.ensure_schema()
    s.drop_all()
    s.close()
