"""Heap trimming: freed memory goes back to the OS (glibc), and the trimmer thread runs and stops."""

from __future__ import annotations

import os
import time

import pytest

from core import memory

glibc_only = pytest.mark.skipif(memory._glibc() is None, reason="malloc_trim is glibc-only")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@glibc_only
def test_trim_returns_pages_freed_below_a_live_allocation():
    # 1 KB objects come from malloc (above pymalloc's 512 B); the last one stays alive at the top of the
    # heap, so free() cannot shrink the heap by itself: only trim() gives the ~240 MB below it back.
    chunks = [bytes(1000) + i.to_bytes(4, "little") for i in range(240_000)]
    survivor = chunks[-1]
    del chunks
    before = _rss_mb()
    assert memory.trim()
    after = _rss_mb()
    assert before - after > 100, (before, after)
    assert survivor[-4:] == (239_999).to_bytes(4, "little")


@glibc_only
def test_limit_arenas_applies_on_glibc_and_refuses_zero():
    assert memory.limit_arenas(2)
    assert not memory.limit_arenas(0)


@glibc_only
def test_heap_trimmer_runs_periodically_until_stopped():
    trimmer = memory.HeapTrimmer(interval_s=0.02)
    assert trimmer.start()
    assert not trimmer.start()  # already running
    deadline = time.monotonic() + 5
    while trimmer.runs < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    trimmer.stop()
    assert trimmer.runs >= 3
    runs = trimmer.runs
    time.sleep(0.1)
    assert trimmer.runs == runs


def test_heap_trimmer_rejects_a_non_positive_interval():
    with pytest.raises(ValueError, match="interval_s"):
        memory.HeapTrimmer(interval_s=0)


def test_tune_process_starts_one_trimmer_per_process():
    first = memory.tune_process(arenas=2, trim_interval_s=60)
    assert memory.tune_process(arenas=2, trim_interval_s=60) is first
    if memory._glibc() is not None:
        assert first is not None


@pytest.mark.skipif(memory.sqlite_memory_bytes() is None, reason="sqlite3 is not a shared library here")
def test_sqlite_memory_follows_a_connections_page_cache():
    import sqlite3

    before = memory.sqlite_memory_bytes()
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", (("x" * 200,) for _ in range(50_000)))
    conn.commit()
    filled = memory.sqlite_memory_bytes()
    conn.close()
    closed = memory.sqlite_memory_bytes()
    assert before is not None and filled is not None and closed is not None
    assert filled - before > 8 * 2**20, (before, filled)  # ~10 MB of rows sit in the page cache
    assert filled - closed > 8 * 2**20, (filled, closed)  # and closing gives it back
