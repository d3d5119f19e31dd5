"""JSON Lines files: one raw record per line, from a file or a directory of ``*.jsonl`` (name order).

Follow mode (``tail -f``) keeps polling for appended lines, new files in the directory, and a file that
was truncated or replaced (log rotation), until ``stop()``. A last line without its newline is only
yielded once complete, except at the end of a non-following read where it is a record like any other.
Blank lines carry nothing and are skipped; every other line is yielded as is, valid or not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.base import RawRecord, SourceAdapter

log = logging.getLogger(__name__)


@dataclass
class _Cursor:
    """How far one file has been read: byte offset of the next unread line, its line number, identity."""

    offset: int = 0
    lineno: int = 0
    inode: int | None = None


class JsonlSource(SourceAdapter):
    """Yields each line of a ``.jsonl`` file (or a directory of them) as a RawRecord ``name.jsonl:LINE``."""

    pattern = "*.jsonl"

    def __init__(self, path: Path | str, *, follow: bool = False, source_hint: str | None = None,
                 poll_s: float = 0.5) -> None:
        super().__init__()
        self.path = Path(path)
        self.follow = follow
        self.source_hint = source_hint
        self.poll_s = poll_s
        self._cursors: dict[Path, _Cursor] = {}

    def _files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(p for p in self.path.glob(self.pattern) if p.is_file())
        if not self.path.exists():
            raise FileNotFoundError(f"no such file or directory: {self.path}")
        return [self.path]

    def __iter__(self) -> Iterator[RawRecord]:
        """Yield records in file and line order; in follow mode keep going until stop()."""
        files = self._files()  # OSError here, at iteration start, as the contract says
        if self.path.is_file():
            with self.path.open("rb"):  # surface permission errors now, not at the first poll
                pass
        while True:
            for path in files:
                yield from self._drain(path, final=not self.follow)
                if self.stopped:
                    return
            if not self.follow or self._stop.wait(self.poll_s):
                return
            try:
                files = self._files()
            except FileNotFoundError:
                files = []  # rotated away for a moment; the next poll sees the new file

    def _drain(self, path: Path, *, final: bool) -> Iterator[RawRecord]:
        """Yield the complete lines of ``path`` past its cursor; ``final`` also yields a partial last line."""
        cursor = self._cursors.setdefault(path, _Cursor())
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        if cursor.inode is not None and (stat.st_ino != cursor.inode or stat.st_size < cursor.offset):
            log.warning("%s was truncated or replaced; reading it again from the start", path)
            cursor.offset, cursor.lineno = 0, 0
        cursor.inode = stat.st_ino
        if stat.st_size == cursor.offset:
            return
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            return  # removed between stat and open (rotation); the next poll sees what replaced it
        with fh:
            fh.seek(cursor.offset)
            while not self.stopped:
                line = fh.readline()
                if not line:
                    return
                if not line.endswith(b"\n") and not final:
                    return  # a writer is mid-line: leave the cursor at its start and wait for the rest
                cursor.offset += len(line)
                cursor.lineno += 1
                data = line.rstrip(b"\r\n")
                if not data.strip():
                    continue
                origin = f"{path.name}:{cursor.lineno}"
                yield RawRecord(data=data, origin=origin, source_hint=self.source_hint)

