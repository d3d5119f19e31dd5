"""Ingest bench: parse_record throughput (records/s) on demo records, best of three passes.

The records are generated and encoded before the clock starts, so only validation is measured
(decode, JSON, field checks, author hashing and masking, Post construction).
``YUQING_BENCH_INGEST_RECORDS`` sets the record count (default 20,000).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.demo import DemoStream
from ingest.validate import parse_record

Report = Callable[[str, Any], None]
START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def run(report: Report) -> None:
    """Measure parse_record records/s and report it as one line."""
    n = int(os.environ.get("YUQING_BENCH_INGEST_RECORDS", "20000"))
    raws = [json.dumps(rec, ensure_ascii=False).encode("utf-8")
            for rec in itertools.islice(DemoStream(seed=5, start=START), n)]
    received = START + timedelta(days=1)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for raw in raws:
            parse_record(raw, source_hint=None, salt="bench-salt", max_text_chars=20_000, received_at=received)
        best = min(best, time.perf_counter() - started)
    report("ingest.parse_records_per_s", len(raws) / best)
