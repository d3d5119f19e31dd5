"""analyze.pipeline.Analyzer: a repeated text is analysed once; the results are those of analysing it afresh."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyze.pipeline import Analyzer
from core.settings import Settings
from core.wiring import Container
from ingest.demo import DemoStream
from ingest.validate import parse_record


def _posts(n: int) -> list:
    out = []
    for i, record in enumerate(DemoStream(seed=13, rate_per_min=600.0)):
        if i >= n:
            break
        out.append(parse_record(json.dumps(record, ensure_ascii=False).encode(), source_hint=None, salt="t",
                                max_text_chars=20_000))
    return out


def test_cached_analysis_equals_fresh_analysis(tmp_path: Path) -> None:
    shared = Container(Settings(mode="embedded", data_dir=tmp_path, database_url="")).analyzer
    cached = shared
    fresh = Analyzer(sentiment=shared.sentiment, topics=shared.topics, entities=shared.entities,
                     neutral_band=shared.neutral_band, num_perm=shared.num_perm, ner=shared.ner,
                     ner_sources=shared.ner_sources, cache_size=0)
    posts = _posts(700)
    # The same texts again under other ids and place hints, as reposts arrive.
    reposts = [p.model_copy(update={"id": p.id + "-r", "place_hints": ["A9市"]}) for p in posts[:150]]
    stream = posts + reposts
    got = []
    for i in range(0, len(stream), 128):
        got += cached.analyze(stream[i:i + 128])
    assert cached.cache_hits >= 150
    expected = [fresh.analyze([p])[0] for p in stream]  # one post per call: nothing shared, nothing cached
    assert len(got) == len(expected)
    for a, e in zip(got, expected, strict=True):
        # The n-gram model's matrix product already differs in the last bit between batch sizes (1e-16):
        # scores are compared to 1e-12, everything else exactly.
        assert a.sentiment.score == pytest.approx(e.sentiment.score, rel=1e-12, abs=1e-12)
        assert a.model_dump(exclude={"sentiment"}) == e.model_dump(exclude={"sentiment"})
        assert a.sentiment.label == e.sentiment.label
    # Results are independent objects: a caller's edit does not leak into the next copy of the text.
    got[0].entities.places.append("X")
    again = cached.analyze([posts[0]])[0]
    assert "X" not in again.entities.places
