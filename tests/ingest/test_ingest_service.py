"""ingest_records: every record is published or dead-lettered with its reason; counts add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.records import Post
from ingest.base import RawRecord
from ingest.jsonl import JsonlSource
from ingest.service import IngestStats, ingest_records


def _line(**fields: object) -> bytes:
    base: dict[str, object] = {"source": "forum", "external_id": "f1", "text": "A4区月湖公园的步道修好了",
                               "published_at": "2024-05-01T10:00:00+08:00"}
    base.update(fields)
    return json.dumps(base, ensure_ascii=False).encode()


def _run(records: list[RawRecord], **kwargs: object) -> tuple[IngestStats, list[Post], list[tuple[RawRecord, str]]]:
    published: list[Post] = []
    dead: list[tuple[RawRecord, str]] = []
    stats = ingest_records(records, publish=published.append, dead_letter=lambda r, why: dead.append((r, why)),
                           salt="s", max_text_chars=1000, **kwargs)  # type: ignore[arg-type]
    return stats, published, dead


def test_nothing_is_lost_from_a_mixed_file(tmp_path: Path) -> None:
    lines = [
        _line(external_id="1"),
        b'{"source": "forum", "external_id": ',  # truncated JSON
        _line(external_id="2", text=""),
        _line(external_id="3", text="x" * 1001),
        b'{"text": "\xff"}',
        _line(external_id="4", likes="abc"),
        _line(external_id="5", text="<script>alert(1)</script>物业乱收费"),
        _line(external_id="6", published_at="not a date"),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    stats, published, dead = _run(list(JsonlSource(path)))

    assert stats.read == 8 == stats.accepted + stats.dead_lettered
    assert [p.external_id for p in published] == ["1", "5"]
    assert published[1].text == "<script>alert(1)</script>物业乱收费"
    reasons = {r.origin: why for r, why in dead}
    assert reasons == {
        "mixed.jsonl:2": "malformed JSON: Expecting value at line 1 column 36",
        "mixed.jsonl:3": "text is empty",
        "mixed.jsonl:4": "text too long: 1001 characters > 1000",
        "mixed.jsonl:5": "invalid UTF-8 at byte 10",
        "mixed.jsonl:6": "field likes: expected a non-negative integer, got 'abc'",
        "mixed.jsonl:8": "published_at: not a date ('not a date')",
    }
    # The dead letter carries the exact bytes that came in, for replay.
    assert dict((r.origin, r.data) for r, _ in dead)["mixed.jsonl:5"] == b'{"text": "\xff"}'
    assert stats.by_reason == {"json": 1, "empty_text": 1, "too_large": 1, "encoding": 1, "type": 1, "time": 1}


def test_duplicates_are_published_and_counted() -> None:
    records = [RawRecord(_line(external_id=i), f"t:{n}") for n, i in enumerate(["a", "b", "a", "a"])]
    stats, published, _ = _run(records)
    assert len(published) == 4 and stats.duplicates == 2
    assert published[0].id == published[2].id


def test_progress_is_reported_periodically_and_at_the_end() -> None:
    seen: list[int] = []
    records = [RawRecord(_line(external_id=str(i)), f"t:{i}") for i in range(7)]
    _run(records, progress=lambda s: seen.append(s.read), progress_every=3)
    assert seen == [3, 6, 7]


def test_publish_failure_propagates_instead_of_losing_the_record() -> None:
    def broken(_post: Post) -> None:
        raise ConnectionError("bus down")

    with pytest.raises(ConnectionError):
        ingest_records([RawRecord(_line(), "t:1")], publish=broken, dead_letter=lambda r, w: None, salt="s",
                       max_text_chars=100)


def test_stats_as_dict() -> None:
    stats, _, _ = _run([RawRecord(b"{", "t:1"), RawRecord(_line(), "t:2")])
    summary = stats.as_dict()
    assert summary["read"] == 2 and summary["accepted"] == 1 and summary["dead_lettered"] == 1
    assert summary["by_reason"] == {"json": 1}
