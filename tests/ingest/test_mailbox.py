"""MailboxSource: JSONL and TipDM-style CSV exports (UTF-8, BOM, GB18030, tabs), through validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import RecordError
from core.records import Post, Source
from ingest.mailbox import MailboxSource
from ingest.validate import parse_record

HEADER = "留言编号,留言用户,留言主题,留言时间,留言详情,点赞数,反对数"
ROWS = [
    '101,U0001,A2区南湖街道垃圾站异味,2019/2/28 11:25:05,"垃圾站夏天异味很大，\n希望移到远离住宅的地方。",3,0',
    "102,U0002,咨询A6区公租房申请条件,2019-03-01 09:00:00,请问A6区公租房需要什么材料？,0,1",
]


def _parse(raw: bytes, hint: str | None) -> Post:
    return parse_record(raw, source_hint=hint, salt="s", max_text_chars=20_000,
                        received_at=datetime(2024, 1, 1, tzinfo=UTC))


def test_jsonl_export_becomes_mailbox_posts(tmp_path: Path) -> None:
    path = tmp_path / "messages.jsonl"
    lines = [
        {"id": "7", "user": "U0007", "subject": "路灯不亮", "time": "2019-04-01T20:00:00+08:00",
         "body": "A1区文昌街道的路灯坏了。", "likes": 0, "dislikes": 0},
        {"id": "8", "user": "U0008", "subject": "缺正文", "time": "2019-04-01T20:00:00+08:00"},
    ]
    path.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    records = list(MailboxSource(path))
    assert [r.origin for r in records] == ["messages.jsonl:1", "messages.jsonl:2"]
    post = _parse(records[0].data, records[0].source_hint)
    assert post.source is Source.mailbox and post.title == "路灯不亮"
    with pytest.raises(RecordError, match="missing field: body"):
        _parse(records[1].data, records[1].source_hint)


def test_hotline_hint_sets_the_source(tmp_path: Path) -> None:
    path = tmp_path / "orders.jsonl"
    path.write_text(json.dumps({"id": 1, "subject": "s", "time": "2019-04-01 08:00", "body": "b"}) + "\n",
                    encoding="utf-8")
    (record,) = list(MailboxSource(path, source_hint="hotline"))
    assert _parse(record.data, record.source_hint).source is Source.hotline


@pytest.mark.parametrize(("encoding", "sep"), [("utf-8", ","), ("utf-8-sig", ","), ("gb18030", ","), ("utf-8", "\t")])
def test_tipdm_csv(tmp_path: Path, encoding: str, sep: str) -> None:
    text = "\n".join([HEADER, *ROWS]) + "\n"
    if sep == "\t":
        text = text.replace(",", "\t")
    path = tmp_path / "附件2.csv"
    path.write_bytes(text.encode(encoding))
    records = list(MailboxSource(path))
    assert len(records) == 2
    posts = [_parse(r.data, r.source_hint) for r in records]
    first = posts[0]
    assert first.external_id == "101" and first.title == "A2区南湖街道垃圾站异味"
    assert first.text == "垃圾站夏天异味很大，\n希望移到远离住宅的地方。"
    assert first.engagement.likes == 3
    assert first.published_at == datetime(2019, 2, 28, 3, 25, 5, tzinfo=UTC)
    assert posts[1].engagement.dislikes == 1


def test_csv_row_with_missing_cells_fails_validation_by_name(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text(HEADER + "\n103,U0003,只有主题\n", encoding="utf-8")
    (record,) = list(MailboxSource(path))
    with pytest.raises(RecordError, match="missing field: body"):
        _parse(record.data, record.source_hint)


def test_directory_mixes_jsonl_and_csv(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("\n".join([HEADER, *ROWS]) + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"id": 9, "body": "x", "time": "2019-01-01"}) + "\n",
                                      encoding="utf-8")
    (tmp_path / "readme.md").write_text("no", encoding="utf-8")
    assert [r.origin.split(":")[0] for r in MailboxSource(tmp_path)] == ["a.csv", "a.csv", "b.jsonl"]
