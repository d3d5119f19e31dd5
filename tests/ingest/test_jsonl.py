"""JsonlSource: files, directories, partial lines, follow mode with a live writer, stop()."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ingest.base import RawRecord
from ingest.jsonl import JsonlSource


def test_file_lines_with_origins_and_blank_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": 2}\r\n   \nnot json\n{"a": 3}')  # last line has no newline
    records = list(JsonlSource(path, source_hint="weibo"))
    assert [r.data for r in records] == [b'{"a": 1}', b'{"a": 2}', b"not json", b'{"a": 3}']
    assert [r.origin for r in records] == ["in.jsonl:1", "in.jsonl:3", "in.jsonl:5", "in.jsonl:6"]
    assert all(r.source_hint == "weibo" for r in records)


def test_directory_reads_jsonl_files_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "b.jsonl").write_text('{"n": "b1"}\n', encoding="utf-8")
    (tmp_path / "a.jsonl").write_text('{"n": "a1"}\n{"n": "a2"}\n', encoding="utf-8")
    (tmp_path / "notes.txt").write_text("ignored\n", encoding="utf-8")
    origins = [r.origin for r in JsonlSource(tmp_path)]
    assert origins == ["a.jsonl:1", "a.jsonl:2", "b.jsonl:1"]


def test_missing_path_raises_oserror_at_iteration_start(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="no such file"):
        next(iter(JsonlSource(tmp_path / "nope.jsonl")))


def test_invalid_bytes_are_yielded_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "\xff\xfe"}\n')
    assert [r.data for r in JsonlSource(path)] == [b'{"text": "\xff\xfe"}']


def test_stop_ends_a_plain_read_early(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text("".join(f'{{"n": {i}}}\n' for i in range(100)), encoding="utf-8")
    source = JsonlSource(path)
    seen = []
    for record in source:
        seen.append(record)
        if len(seen) == 3:
            source.stop()
    assert len(seen) == 3


def _collect(source: JsonlSource, want: int, timeout_s: float = 10.0) -> list[RawRecord]:
    """Iterate a following source in a thread until ``want`` records arrived, then stop it."""
    out: list[RawRecord] = []
    done = threading.Event()

    def run() -> None:
        for record in source:
            out.append(record)
            if len(out) >= want:
                source.stop()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not done.wait(timeout_s):
        source.stop()
        thread.join(2)
        pytest.fail(f"follow mode delivered {len(out)} of {want} records in {timeout_s}s")
    return out


def test_follow_reads_appended_lines_and_waits_for_partial_ones(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    path.write_bytes(b'{"n": 1}\n')
    source = JsonlSource(path, follow=True, poll_s=0.01)

    def writer() -> None:
        time.sleep(0.05)
        with path.open("ab") as fh:
            fh.write(b'{"n": 2}\n{"n": ')  # a writer flushes half a line...
            fh.flush()
            time.sleep(0.1)  # ...several polls happen meanwhile...
            fh.write(b'3, "text": "\xe8\xb7\xaf"}\n')  # ...then the rest (split inside a UTF-8 sequence too)
            fh.flush()
            time.sleep(0.05)
            fh.write(b'{"n": 4}\n')

    threading.Thread(target=writer, daemon=True).start()
    records = _collect(source, want=4)
    assert [r.data for r in records] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3, "text": "\xe8\xb7\xaf"}', b'{"n": 4}']
    assert [r.origin for r in records] == ["live.jsonl:1", "live.jsonl:2", "live.jsonl:3", "live.jsonl:4"]


def test_follow_picks_up_new_files_in_a_directory(tmp_path: Path) -> None:
    (tmp_path / "001.jsonl").write_text('{"n": 1}\n', encoding="utf-8")
    source = JsonlSource(tmp_path, follow=True, poll_s=0.01)

    def writer() -> None:
        time.sleep(0.05)
        (tmp_path / "002.jsonl").write_text('{"n": 2}\n', encoding="utf-8")

    threading.Thread(target=writer, daemon=True).start()
    assert [r.origin for r in _collect(source, want=2)] == ["001.jsonl:1", "002.jsonl:1"]


def test_follow_rereads_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "rot.jsonl"
    path.write_text('{"n": 1}\n{"n": 2}\n', encoding="utf-8")
    source = JsonlSource(path, follow=True, poll_s=0.01)

    def writer() -> None:
        time.sleep(0.05)
        path.write_text('{"n": 9}\n', encoding="utf-8")  # copytruncate-style rotation: shorter than before

    threading.Thread(target=writer, daemon=True).start()
    assert [r.data for r in _collect(source, want=3)][-1] == b'{"n": 9}'


def test_stop_ends_follow_mode_promptly(tmp_path: Path) -> None:
    path = tmp_path / "idle.jsonl"
    path.write_text("", encoding="utf-8")
    source = JsonlSource(path, follow=True, poll_s=5.0)
    finished = threading.Event()
    thread = threading.Thread(target=lambda: (list(source), finished.set()), daemon=True)
    thread.start()
    time.sleep(0.05)
    source.stop()
    assert finished.wait(2.0), "stop() did not interrupt the poll wait"
