"""analyze.process: the analyze stage split across child processes gives what the in-thread Analyzer gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from analyze.process import AnalyzePool, child_settings, split_by_cost
from core.errors import BackendUnavailable
from core.settings import AnalyzeSettings, Settings
from core.wiring import Container
from ingest.demo import DemoStream
from ingest.validate import parse_record


def _posts(n: int) -> list:
    out = []
    for i, record in enumerate(DemoStream(seed=5, rate_per_min=600.0)):
        if i >= n:
            break
        out.append(parse_record(json.dumps(record, ensure_ascii=False).encode(), source_hint=None, salt="t",
                                max_text_chars=20_000))
    return out


def _assert_same(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for a, e in zip(got, expected, strict=True):
        # The n-gram model's matrix product differs in the last bit between batch sizes (a child scores its
        # chunk, not the whole batch): scores to 1e-12, everything else exactly.
        assert a.sentiment.score == pytest.approx(e.sentiment.score, rel=1e-12, abs=1e-12)
        assert a.sentiment.label == e.sentiment.label
        assert a.model_dump(exclude={"sentiment"}) == e.model_dump(exclude={"sentiment"})


def test_pool_matches_in_thread_analyzer(tmp_path: Path) -> None:
    posts = _posts(420)
    unseen = posts[400:]
    posts = posts[:400]
    reposts = [p.model_copy(update={"id": p.id + "-r", "place_hints": ["A9市"]}) for p in posts[:60]]
    stream = posts + reposts
    local = Container(Settings(mode="embedded", data_dir=tmp_path / "a", database_url="")).analyzer
    assert local.pool is None
    expected = []
    for i in range(0, len(stream), 128):
        expected += local.analyze(stream[i:i + 128])
    container = Container(Settings(mode="embedded", data_dir=tmp_path / "b", database_url="",
                                   analyze=AnalyzeSettings(processes=2)))
    try:
        pooled = container.analyzer
        assert pooled.pool is not None and len(pooled.pool.pids()) == 2
        assert pooled.sentiment is None  # the models live in the children only
        assert pooled.ner_enabled == local.ner_enabled
        got = []
        for i in range(0, len(stream), 128):
            got += pooled.analyze(stream[i:i + 128])
        _assert_same(got, expected)
        assert pooled.cache_hits >= 60  # the cache stays in the parent
        # Batches smaller than the pool, and an empty one.
        _assert_same(pooled.analyze(posts[200:201]), local.analyze(posts[200:201]))
        assert pooled.analyze([]) == []
        # A lost child: the batch fails (the stage worker retries it, nothing committed); the next starts afresh.
        pool = pooled.pool
        pool._children[1][0].kill()
        pool._children[1][0].join(5)
        with pytest.raises(BackendUnavailable):
            pool.derive(posts[:5])
        _assert_same(pooled.analyze(unseen), local.analyze(unseen))
        assert len(pool.pids()) == 2
    finally:
        container.close()
    assert pooled.pool.pids() == []


def test_split_by_cost_balances_and_keeps_order() -> None:
    costs = [10, 1, 1, 1, 10, 1, 1, 1, 3, 3]
    chunks = split_by_cost(costs, 2)
    assert sorted(i for c in chunks for i in c) == list(range(10))
    assert all(c == sorted(c) for c in chunks)
    loads = [sum(costs[i] for i in c) for c in chunks]
    assert abs(loads[0] - loads[1]) <= 1
    assert split_by_cost([5], 3) == [[0]]
    assert split_by_cost([], 2) == []


def test_processes_setting() -> None:
    assert AnalyzeSettings().processes == 0
    assert AnalyzeSettings(processes=2).processes == 2
    assert AnalyzeSettings(subprocess=True).processes == 1  # the old switch still means one child
    assert AnalyzeSettings(subprocess=True, processes=3).processes == 3
    with pytest.raises(ValidationError):
        AnalyzeSettings(processes=-1)
    with pytest.raises(ValidationError):
        AnalyzeSettings(processes=65)
    settings = Settings(analyze=AnalyzeSettings(processes=2, sentiment_threads=2))
    child = child_settings(settings, 2)
    assert child.analyze.processes == 0 and not child.analyze.subprocess  # no pool inside a child
    assert child.analyze.sentiment_threads == 1
    assert settings.analyze.processes == 2  # the parent's settings are not changed
    with pytest.raises(ValueError):
        AnalyzePool(settings, 0)


def test_processes_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUQING_ANALYZE__PROCESSES", "2")
    assert Settings().analyze.processes == 2
