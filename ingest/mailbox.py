"""12345 hotline / 市长信箱 exports: JSONL of ``{id, user, subject, time, body, likes, dislikes}``, or CSV.

The CSV is the TipDM layout (``留言编号,留言用户,留言主题,留言时间,留言详情,点赞数,反对数`` and optionally
``答复意见,答复时间``), comma- or tab-separated, UTF-8 (with or without BOM) or GB18030 as Excel writes it.
Each CSV row is re-encoded as one JSON object of the JSONL shape, so validation and dead letters see one
format; a row with missing cells still becomes a record and fails validation with the field's name.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.base import RawRecord, SourceAdapter
from ingest.jsonl import JsonlSource

log = logging.getLogger(__name__)

# TipDM column -> JSONL field. English headers of the JSONL shape are accepted as they are.
CSV_COLUMNS = {
    "留言编号": "id",
    "留言用户": "user",
    "留言主题": "subject",
    "留言时间": "time",
    "留言详情": "body",
    "点赞数": "likes",
    "反对数": "dislikes",
    "答复意见": "reply",
    "答复时间": "reply_time",
}


def _decode_csv(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        log.info("CSV is not UTF-8; reading it as GB18030")
        return data.decode("gb18030", errors="replace")


def _csv_records(path: Path, source_hint: str | None, stop: SourceAdapter) -> Iterator[RawRecord]:
    text = _decode_csv(path.read_bytes())
    head = text[:4096]
    delimiter = "\t" if head.count("\t") > head.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    fields = [CSV_COLUMNS.get(name.strip(), name.strip()) for name in header]
    for row in reader:
        if stop.stopped:
            return
        if not any(cell.strip() for cell in row):
            continue
        # Cells stay strings: validation accepts decimal strings as counts, and keeps the reason specific.
        obj: dict[str, Any] = {name: cell.strip() for name, cell in zip(fields, row, strict=False) if name}
        if len(row) > len(fields):
            obj["_extra_cells"] = row[len(fields):]
        data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        yield RawRecord(data=data, origin=f"{path.name}:{reader.line_num}", source_hint=source_hint)


class MailboxSource(SourceAdapter):
    """Reads a mailbox/hotline export (``.jsonl`` or ``.csv`` file, or a directory of them, name order)."""

    def __init__(self, path: Path | str, *, source_hint: str | None = "mailbox") -> None:
        super().__init__()
        self.path = Path(path)
        self.source_hint = source_hint

    def _files(self) -> list[Path]:
        if self.path.is_dir():
            files = (p for p in self.path.iterdir() if p.suffix.lower() in (".jsonl", ".csv"))
            return sorted(p for p in files if p.is_file())
        if not self.path.exists():
            raise FileNotFoundError(f"no such file or directory: {self.path}")
        return [self.path]

    def __iter__(self) -> Iterator[RawRecord]:
        """Yield every message of every file as a RawRecord."""
        for path in self._files():
            if self.stopped:
                return
            if path.suffix.lower() == ".csv":
                yield from _csv_records(path, self.source_hint, self)
            else:
                inner = JsonlSource(path, source_hint=self.source_hint)
                for record in inner:
                    yield record
                    if self.stopped:
                        return
