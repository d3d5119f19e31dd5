"""Dead letters: records a stage could not process, stored with the reason and raw bytes, listed and replayed.

Service functions take the session (the caller owns the transaction) and keyword arguments only.
Replay re-validates the stored bytes with today's rules and limits: a success publishes the post and
marks the row ``replayed_at``; a record that is still bad keeps its row and gets ``replay_result`` set to
the new reason. Publishing happens before the caller commits, so a crash in between re-publishes on the
next replay, which is harmless because every consumer is idempotent by post id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db.models import DeadLetterRow
from core.db.session import Database
from core.errors import NotFound, RecordError
from core.records import DeadLetter, Post, Source, utcnow
from ingest.base import RawRecord
from ingest.validate import guess_source, mask_reason, parse_record

log = logging.getLogger(__name__)

MAX_PAGE = 1000


@dataclass
class ReplayResult:
    """Outcome of one replay: which rows were published, which are still bad (id -> reason), which skipped."""

    replayed: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)  # already replayed earlier
    missing: list[int] = field(default_factory=list)  # asked for, but no such row

    @property
    def attempted(self) -> int:
        """Rows re-validated in this replay."""
        return len(self.replayed) + len(self.failed)


def record(session: Session, *, stage: str, source: str, origin: str, reason: str, raw: bytes) -> int:
    """Store one dead letter and return its id (the reason masked: it is logged and listed; raw bytes are kept)."""
    reason = mask_reason(reason)
    row = DeadLetterRow(stage=stage[:16], source=(source or "unknown")[:32], origin=origin[:256],
                        reason=reason, raw=bytes(raw), received_at=utcnow())
    session.add(row)
    session.flush()
    log.info("dead letter #%s (%s, %s): %s", row.id, stage, origin, reason)
    return row.id


def list_dead_letters(session: Session, *, stage: str | None = None, limit: int = 50, offset: int = 0,
                      include_replayed: bool = False) -> tuple[int, list[DeadLetterRow]]:
    """The total count and one page of dead letters, newest first."""
    query = select(DeadLetterRow)
    if stage is not None:
        query = query.where(DeadLetterRow.stage == stage)
    if not include_replayed:
        query = query.where(DeadLetterRow.replayed_at.is_(None))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    limit = max(1, min(limit, MAX_PAGE))
    rows = session.scalars(query.order_by(DeadLetterRow.id.desc()).limit(limit).offset(max(0, offset))).all()
    return total, list(rows)


def get(session: Session, *, id: int) -> DeadLetterRow:
    """One dead letter by id, or NotFound."""
    row = session.get(DeadLetterRow, id)
    if row is None:
        raise NotFound(f"dead letter {id} not found")
    return row


def to_record(row: DeadLetterRow) -> DeadLetter:
    """The row as the ``DeadLetter`` record (raw bytes included: mask before it leaves the core)."""
    return DeadLetter(id=str(row.id), stage=row.stage, source=row.source, reason=row.reason, raw=row.raw,
                      received_at=row.received_at, replayed_at=row.replayed_at)


def _revalidate(row: DeadLetterRow, *, salt: str, max_text_chars: int) -> Post:
    if row.stage != "ingest":
        # Later stages dead-letter the bus message, i.e. a Post's JSON; fall through if it is not one.
        try:
            return Post.model_validate_json(row.raw)
        except ValidationError:
            pass
    hint = row.source if row.source in Source.__members__ else None
    return parse_record(row.raw, source_hint=hint, salt=salt, max_text_chars=max_text_chars)


def replay(session: Session, *, ids: Sequence[int] | None, publish: Callable[[Post], None], salt: str,
           max_text_chars: int) -> ReplayResult:
    """Re-validate stored raw bytes (given ids, or all unreplayed ingest rows); publish the good ones."""
    result = ReplayResult()
    if ids is None:
        rows = list(session.scalars(select(DeadLetterRow).where(DeadLetterRow.stage == "ingest",
                                                                DeadLetterRow.replayed_at.is_(None))
                                    .order_by(DeadLetterRow.id)))
    else:
        wanted = list(dict.fromkeys(ids))
        found = {r.id: r for r in session.scalars(select(DeadLetterRow).where(DeadLetterRow.id.in_(wanted)))}
        result.missing = [i for i in wanted if i not in found]
        rows = [found[i] for i in wanted if i in found]
    for row in rows:
        if row.replayed_at is not None:
            result.skipped.append(row.id)
            continue
        try:
            post = _revalidate(row, salt=salt, max_text_chars=max_text_chars)
        except RecordError as exc:
            row.replay_result = mask_reason(exc.reason)
            result.failed[row.id] = row.replay_result
            continue
        publish(post)
        row.replayed_at = utcnow()
        row.replay_result = f"published as post {post.id}"
        result.replayed.append(row.id)
    session.flush()
    log.info("replayed %d dead letters, %d still bad, %d skipped, %d missing", len(result.replayed),
             len(result.failed), len(result.skipped), len(result.missing))
    return result


def writer(database: Database, *, stage: str = "ingest") -> Callable[[RawRecord, str], None]:
    """A ``dead_letter`` callback for ``ingest_records`` that stores each record in its own transaction."""

    def _write(raw_record: RawRecord, reason: str) -> None:
        with database.transaction() as session:
            record(session, stage=stage, source=guess_source(raw_record.data, raw_record.source_hint),
                   origin=raw_record.origin, reason=reason, raw=raw_record.data)

    return _write
