"""Backends under the contract suite: every test runs once per implementation of the contract.

Server-backed parameters take their address from the shared fixtures in ``tests/conftest.py`` and
get a fresh topic/index prefix per test, so tests never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.bus.base import Bus
from core.store.base import PostStore


def _tokenize() -> Callable[[str], list[str]]:
    """The product's segmentation (jieba), as core.wiring passes it to the stores."""
    import jieba

    jieba.setLogLevel(60)

    def tokenize(text: str) -> list[str]:
        return [t for t in jieba.lcut_for_search(text) if t.strip()]

    return tokenize


@pytest.fixture(scope="session")
def tokenize() -> Callable[[str], list[str]]:
    """Word segmentation shared by the store tests."""
    return _tokenize()


@pytest.fixture(params=["memory", "sqlite", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bus]:
    """A fresh bus of each kind, with a small partition count so splitting is visible."""
    if request.param == "memory":
        from core.bus.memory import MemoryBus

        built: Bus = MemoryBus(partitions=4)
    elif request.param == "sqlite":
        from core.bus.sqlite import SqliteBus

        built = SqliteBus(tmp_path / "bus.sqlite", partitions=4)
    else:
        from core.bus.kafka import KafkaBus

        bootstrap = request.getfixturevalue("kafka_bootstrap")
        built = KafkaBus(bootstrap=bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.", partitions=4,
                         replication_factor=1, acks="all", linger_ms=5, batch_size=64 * 1024,
                         compression="none", max_poll_records=500, max_poll_interval_ms=60_000,
                         session_timeout_ms=6_000, request_timeout_ms=10_000,
                         group_prefix=f"g{uuid.uuid4().hex[:10]}-")
    yield built
    built.close()


@pytest.fixture(params=["sqlite", pytest.param("elasticsearch", marks=pytest.mark.es)])
def store(request: pytest.FixtureRequest, tmp_path: Path,
          tokenize: Callable[[str], list[str]]) -> Iterator[PostStore]:
    """An empty post store of each kind with its schema in place."""
    if request.param == "sqlite":
        from core.store.sqlite_posts import SqlitePostStore

        built: PostStore = SqlitePostStore(tmp_path / "posts.sqlite", tokenize=tokenize)
        built.ensure_schema()
        yield built
        built.close()
    else:
        from core.store.es_posts import ElasticsearchPostStore

        url = request.getfixturevalue("es_url")
        es = ElasticsearchPostStore(url=url, username=None, password=None,
                                    index_prefix=f"yqt-{uuid.uuid4().hex[:10]}", index_period="month",
                                    bulk_batch=50, request_timeout_s=10.0, max_retries=2, use_ik=False,
                                    tokenize=tokenize)
        es.ensure_schema()
        yield es
        es.drop_all()
        es.close()
