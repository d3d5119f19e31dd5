"""Dead letters on a real SQLite database: record, list, get, replay (success and still-bad), writer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.db.session import Database
from core.errors import NotFound
from core.records import Post
from ingest import deadletters
from ingest.base import RawRecord
from ingest.service import ingest_records


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/t.sqlite")
    database.migrate()
    yield database
    database.close()


def _raw(text: str, ext: str = "x1") -> bytes:
    return json.dumps({"source": "news", "external_id": ext, "text": text,
                       "published_at": "2024-05-01T10:00:00+08:00"}, ensure_ascii=False).encode()


def test_record_list_get(db: Database) -> None:
    with db.transaction() as s:
        first = deadletters.record(s, stage="ingest", source="weibo", origin="a.jsonl:1", reason="text is empty",
                                   raw=b'{"text": ""}')
        second = deadletters.record(s, stage="analyze", source="bus", origin="posts.raw@0:5", reason="boom",
                                    raw=b"{}")
        third = deadletters.record(s, stage="ingest", source="unknown", origin="a.jsonl:9", reason="x", raw=b"\xff")
    with db.transaction() as s:
        total, rows = deadletters.list_dead_letters(s)
        assert total == 3 and [r.id for r in rows] == [third, second, first]  # newest first
        total, rows = deadletters.list_dead_letters(s, stage="ingest", limit=1, offset=1)
        assert total == 2 and [r.id for r in rows] == [first]
        row = deadletters.get(s, id=first)
        assert (row.stage, row.source, row.origin, row.reason, row.raw) == (
            "ingest", "weibo", "a.jsonl:1", "text is empty", b'{"text": ""}')
        assert row.received_at.tzinfo is not None and row.replayed_at is None
        assert deadletters.get(s, id=third).raw == b"\xff"  # invalid bytes stored exactly
        with pytest.raises(NotFound):
            deadletters.get(s, id=9999)
        assert deadletters.to_record(row).reason == "text is empty"


def test_replay_publishes_fixed_records_and_updates_still_bad_ones(db: Database) -> None:
    published: list[Post] = []
    with db.transaction() as s:
        long_id = deadletters.record(s, stage="ingest", source="news", origin="f:1",
                                     reason="text too long: 150 characters > 100", raw=_raw("长" * 150))
        bad_id = deadletters.record(s, stage="ingest", source="unknown", origin="f:2", reason="malformed JSON",
                                    raw=b"{nope")
    # Replay with the limit raised (as after a settings change): the long text now passes.
    with db.transaction() as s:
        result = deadletters.replay(s, ids=None, publish=published.append, salt="s", max_text_chars=200)
    assert result.replayed == [long_id] and list(result.failed) == [bad_id] and result.attempted == 2
    assert result.failed[bad_id].startswith("malformed JSON: Expecting property name")
    assert [p.text for p in published] == ["长" * 150]
    with db.transaction() as s:
        total, rows = deadletters.list_dead_letters(s)
        assert total == 1 and rows[0].id == bad_id and rows[0].replay_result == result.failed[bad_id]
        replayed = deadletters.get(s, id=long_id)
        assert replayed.replayed_at is not None and replayed.replay_result == f"published as post {published[0].id}"
        assert deadletters.list_dead_letters(s, include_replayed=True)[0] == 2
    # Replaying again by id skips what was done and reports unknown ids; nothing is published twice.
    with db.transaction() as s:
        again = deadletters.replay(s, ids=[long_id, 4242, bad_id], publish=published.append, salt="s",
                                   max_text_chars=200)
    assert again.skipped == [long_id] and again.missing == [4242] and list(again.failed) == [bad_id]
    assert len(published) == 1


def test_replay_of_a_later_stage_row_republishes_the_post(db: Database) -> None:
    post = Post(id="p1", source="weibo", external_id="e1", text="已经校验过的帖子",
                published_at=datetime(2024, 5, 1, tzinfo=UTC), author_hash="h")
    with db.transaction() as s:
        row_id = deadletters.record(s, stage="analyze", source="bus", origin="posts.raw@0:1", reason="model error",
                                    raw=post.model_dump_json().encode())
    published: list[Post] = []
    with db.transaction() as s:
        result = deadletters.replay(s, ids=[row_id], publish=published.append, salt="s", max_text_chars=100)
    assert result.replayed == [row_id] and published == [post]


def test_writer_stores_ingest_failures_with_a_guessed_source(db: Database) -> None:
    records = [RawRecord(_raw("好"), "f:1"), RawRecord(b'{"source": "douyin", "text": 1}', "f:2", "weibo"),
               RawRecord(b"\xff", "f:3", "mailbox")]
    stats = ingest_records(records, publish=lambda p: None, dead_letter=deadletters.writer(db), salt="s",
                           max_text_chars=100)
    assert stats.dead_lettered == 2
    with db.transaction() as s:
        _, rows = deadletters.list_dead_letters(s)
    assert {(r.origin, r.source, r.reason) for r in rows} == {
        ("f:2", "douyin", "missing field: external_id"),
        ("f:3", "mailbox", "invalid UTF-8 at byte 0"),
    }


PHONE, ID_NUMBER = "13812345678", "110101199003077777"


@pytest.mark.parametrize("field", ["published_at", "source", "url", "engagement"])
def test_reasons_never_carry_raw_personal_data(db: Database, field: str, caplog: pytest.LogCaptureFixture) -> None:
    record = json.loads(_raw("A1区停水"))
    record[field] = f"联系电话{PHONE} 身份证{ID_NUMBER}"
    raw = json.dumps(record, ensure_ascii=False).encode()
    caplog.set_level("INFO")
    stats = ingest_records([RawRecord(data=raw, origin="t:1")], publish=lambda _p: None,
                           dead_letter=deadletters.writer(db), salt="s", max_text_chars=1000)
    assert stats.dead_lettered == 1
    with db.transaction() as s:
        _total, [row] = deadletters.list_dead_letters(s)
        assert field in row.reason and row.raw == raw  # the reason still names the field; raw bytes kept
        for secret in (PHONE, ID_NUMBER):
            assert secret not in row.reason
    assert PHONE not in caplog.text and ID_NUMBER not in caplog.text


def test_a_later_stage_reason_is_masked_before_it_is_stored_or_logged(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    from tests.support import embedded

    caplog.set_level("INFO")
    with embedded(tmp_path, start=False) as (container, pipeline):
        pipeline.dead_letter(stage="analyze", source="bus", origin="posts.raw@0:1",
                             reason=f"ValidationError: input_value='我叫张三，电话{PHONE}'", raw=b"{}")
        with container.db.transaction() as s:
            _total, [row] = deadletters.list_dead_letters(s, stage="analyze")
    assert PHONE not in row.reason and "138****5678" in row.reason
    assert PHONE not in caplog.text


def test_database_files_are_private(tmp_path: Path) -> None:
    import stat

    from tests.support import embedded

    with embedded(tmp_path / "data", start=False) as (container, _pipeline):
        with container.db.transaction() as s:
            deadletters.record(s, stage="ingest", source="x", origin="o", reason="r", raw=b"x")
        container.post_store.count()
        files = [p for p in (tmp_path / "data").iterdir() if p.is_file()]
        assert {"yuqing.sqlite", "posts.sqlite"} <= {p.name for p in files}
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700


def test_a_world_readable_database_is_tightened_when_opened(tmp_path: Path) -> None:
    import stat

    path = tmp_path / "old.sqlite"
    Database(f"sqlite:///{path}").close()
    path.chmod(0o644)
    database = Database(f"sqlite:///{path}")
    database.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
