"""The ingest loop: raw records in, each one either published as a Post or dead-lettered with its reason.

Nothing is lost: a record that fails validation goes to ``dead_letter``; a failure of ``publish`` or
``dead_letter`` themselves (the bus or the database is down) is not a record problem and propagates, so
the caller stops and the source is re-read later (downstream is idempotent by post id).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from core.errors import RecordError
from core.records import Post
from ingest.base import RawRecord
from ingest.validate import RecordRejected, parse_record, reason_kind

log = logging.getLogger(__name__)

# Duplicates are counted against the most recent ids only, so a long follow run uses bounded memory.
DUPLICATE_WINDOW = 200_000


@dataclass
class IngestStats:
    """What one run did: records read, published, dead-lettered (by reason kind), duplicates seen."""

    read: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers, for logs and JSON."""
        return {"read": self.read, "accepted": self.accepted, "dead_lettered": self.dead_lettered,
                "duplicates": self.duplicates, "by_reason": dict(self.by_reason),
                "elapsed_s": round(self.elapsed_s, 3)}


def ingest_records(records: Iterable[RawRecord], *, publish: Callable[[Post], None],
                   dead_letter: Callable[[RawRecord, str], None], salt: str, max_text_chars: int,
                   progress: Callable[[IngestStats], None] | None = None,
                   progress_every: int = 1000) -> IngestStats:
    """Validate and publish every record; dead-letter the invalid ones; return the counts."""
    stats = IngestStats()
    recent: OrderedDict[str, None] = OrderedDict()
    for record in records:
        stats.read += 1
        try:
            post = parse_record(record.data, source_hint=record.source_hint, salt=salt,
                                max_text_chars=max_text_chars)
        except RecordError as exc:
            kind = exc.kind if isinstance(exc, RecordRejected) else reason_kind(exc.reason)
            log.info("dead letter %s: %s", record.origin, exc.reason)
            dead_letter(record, exc.reason)
            stats.dead_lettered += 1
            stats.by_reason[kind] += 1
        else:
            # Published even when seen before: idempotency is downstream, by post id; here it is only counted.
            if post.id in recent:
                stats.duplicates += 1
                recent.move_to_end(post.id)
            else:
                recent[post.id] = None
                if len(recent) > DUPLICATE_WINDOW:
                    recent.popitem(last=False)
            publish(post)
            stats.accepted += 1
        if progress is not None and stats.read % progress_every == 0:
            progress(stats)
    if progress is not None:
        progress(stats)
    # Debug: the live feeds and the HTTP route ingest many small batches; the CLI prints its own summary.
    log.debug("ingest done: %s", stats.as_dict())
    return stats
