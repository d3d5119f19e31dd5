"""analyze.process: the analyze stage in a spawned child gives what the in-process Analyzer gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyze.process import AnalyzeProcess
from core.errors import BackendUnavailable
from core.runtime import analyzed_key
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


def test_child_process_matches_in_process_analyzer(tmp_path: Path) -> None:
    settings = Settings(mode="embedded", data_dir=tmp_path, database_url="", analyze=AnalyzeSettings(subprocess=True))
    posts = _posts(120)
    local = Container(settings).analyzer
    expected = []
    for i in range(0, len(posts), 50):
        expected += [(analyzed_key(p), p.model_dump_json().encode()) for p in local.analyze(posts[i:i + 50])]
    remote = AnalyzeProcess(settings)
    remote.start()
    try:
        got = []
        for i in range(0, len(posts), 50):
            got += remote.analyze_encoded(posts[i:i + 50])
        assert got == expected
        # A lost child is restarted on the next batch; the failed batch is retried by the worker, not dropped.
        remote._proc.kill()
        remote._proc.join(5)
        with pytest.raises(BackendUnavailable):
            remote.analyze_encoded(posts[:3])
        assert remote.analyze_encoded(posts[:3]) == expected[:3]
    finally:
        remote.close()
