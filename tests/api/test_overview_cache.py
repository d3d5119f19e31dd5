"""The live-overview cache: fresh values are shared, stale ones recomputed, explicit windows never cached."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.overview_cache import TtlCache
from tests.support import bearer, embedded, make_token, post_record


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_fresh_value_is_served_and_a_stale_one_recomputed() -> None:
    clock = Clock()
    cache: TtlCache[int] = TtlCache(10.0, clock=clock)
    calls: list[str] = []

    def compute(tag: str) -> int:
        calls.append(tag)
        return len(calls)

    assert cache.get_or_compute("k", lambda: compute("a")) == 1
    clock.now += 9.9
    assert cache.get_or_compute("k", lambda: compute("b")) == 1  # still fresh: not recomputed
    assert cache.get_or_compute("other", lambda: compute("c")) == 2  # keys are separate
    clock.now += 0.1
    assert cache.get_or_compute("k", lambda: compute("d")) == 3  # 10 s old: recomputed
    assert calls == ["a", "c", "d"]
    assert (cache.hits, cache.misses) == (1, 3)


def test_entries_are_bounded_oldest_out_first() -> None:
    cache: TtlCache[str] = TtlCache(60.0, max_entries=3, clock=Clock())
    for key in "abcd":
        cache.get_or_compute(key, lambda k=key: k.upper())
    assert len(cache) == 3
    assert cache.get_or_compute("a", lambda: "recomputed") == "recomputed"  # "a" was evicted
    assert cache.get_or_compute("d", lambda: "recomputed") == "D"


def test_zero_ttl_never_caches_and_bad_arguments_are_refused() -> None:
    cache: TtlCache[int] = TtlCache(0.0, clock=Clock())
    values = iter(range(10))
    assert [cache.get_or_compute("k", lambda: next(values)) for _ in range(3)] == [0, 1, 2]
    assert len(cache) == 0
    with pytest.raises(ValueError, match="ttl_s"):
        TtlCache(-1.0)
    with pytest.raises(ValueError, match="max_entries"):
        TtlCache(1.0, max_entries=0)


def test_a_failed_computation_is_not_cached() -> None:
    cache: TtlCache[int] = TtlCache(60.0, clock=Clock())

    def broken() -> int:
        raise ConnectionError("store down")

    with pytest.raises(ConnectionError):
        cache.get_or_compute("k", broken)
    assert cache.get_or_compute("k", lambda: 7) == 7


def test_the_live_overview_is_shared_for_the_ttl_and_explicit_windows_are_live(tmp_path: Path) -> None:
    with embedded(tmp_path, api={"overview_cache_s": 10}) as (container, pipeline):
        app = create_app(container, pipeline=pipeline)
        clock = Clock()
        assert app.state.overview_cache.ttl_s == 10  # from the settings
        app.state.overview_cache.clock = clock
        with TestClient(app, headers=bearer(make_token(container, "analyst1", "analyst"))) as c:
            recent = datetime.now(UTC) - timedelta(hours=1)  # inside the live 24 hours

            def ingest(ext: str) -> None:
                body = json.dumps([post_record(ext, "A3区自来水发黄，居民反映多日", base=recent)], ensure_ascii=False)
                assert c.post("/api/v1/ingest", content=body.encode()).status_code == 202
                assert pipeline.wait_idle(timeout_s=60)
                container.post_store.refresh()

            def live_total() -> int:
                return int(c.get("/api/v1/stats/overview").json()["total"])

            ingest("cache-1")
            assert live_total() == 1
            ingest("cache-2")
            window = {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}
            assert c.get("/api/v1/stats/overview", params=window).json()["total"] == 2  # never cached
            clock.now += 9.9
            assert live_total() == 1  # the shared live view, at most 10 s old
            assert c.get("/api/v1/stats/overview", params={"source": "weibo"}).json()["total"] == 2  # own key
            clock.now += 0.1
            assert live_total() == 2
