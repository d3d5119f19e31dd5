"""Data lifecycle: retention of raw posts and old records, and consistent backups of the embedded stores.

Retention (``apply_retention``): raw posts older than ``posts_days`` go (they are personal data kept
only as long as needed); so do the events no ticket refers to whose last post is older than that, their
member rows, sent outbox rows, dead letters and scheduler slot records of the same age. Tickets, their
audit trail and responses are kept forever unless ``tickets_years`` is given; then closed tickets closed
longer ago than that go together with their audit rows, responses and events. Open tickets never go.

Backups (embedded mode): ``backup`` copies ``posts.sqlite`` and ``yuqing.sqlite`` with SQLite's online
backup API, page by page under the database's own locking, so the copy is a consistent snapshot even
while the service writes (WAL included); a ``manifest.json`` records sizes, SHA-256 sums, row counts and
the integrity check. ``restore`` verifies all of that before it replaces anything, refuses to overwrite
existing files unless forced, and swaps each file in atomically. Stop the service before restoring.

Scale mode (Elasticsearch + PostgreSQL), the procedure the operator follows instead:

1. PostgreSQL (tickets, audit, outbox, users): ``pg_dump --format=custom --file=yuqing-$(date +%F).dump
   "$YUQING_DATABASE_URL"`` takes a consistent snapshot without stopping the service (it runs in one
   repeatable-read transaction). Restore into an empty database with ``pg_restore --clean --if-exists
   --no-owner --dbname="$URL" yuqing-DATE.dump`` and start the service: migrations are at head already.
   For point-in-time recovery use WAL archiving (``archive_mode=on``) or the platform's managed backups.
2. Elasticsearch (posts): register a snapshot repository once (``PUT _snapshot/yuqing {"type": "fs",
   "settings": {"location": "/backups/es"}}``, the path listed in ``path.repo``), then snapshot nightly
   (``PUT _snapshot/yuqing/posts-%3Cnow%2Fd%3E {"indices": "yuqing-posts-*", "include_global_state":
   false}``), or let an SLM policy do it. Restore with ``POST _snapshot/yuqing/SNAP/_restore`` after
   closing or deleting the target indices. Retention in scale mode drops whole monthly indices
   (``index_period=month``) through ``PostStore.delete_older_than``: no delete-by-query.
3. Kafka holds nothing that is not also in the stores once consumers have committed; it needs no backup.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.db.models import (
    CLOSED_TICKET_STATES,
    DeadLetterRow,
    EventMemberRow,
    EventRow,
    JobRunRow,
    OutboxRow,
    ResponseRow,
    TicketAuditRow,
    TicketRow,
)
from core.db.session import Database
from core.store.base import PostQuery, PostStore

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_CHUNK = 500  # rows per delete statement: short write transactions, bounded parameter lists


@dataclass
class RetentionResult:
    """What one retention run removed (or, in a dry run, would remove)."""

    posts_cutoff: datetime
    tickets_cutoff: datetime | None
    dry_run: bool
    posts: int = 0
    events: int = 0
    event_members: int = 0
    tickets: int = 0
    ticket_audit: int = 0
    responses: int = 0
    outbox: int = 0
    dead_letters: int = 0
    job_runs: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain values for printing."""
        out = asdict(self)
        out["posts_cutoff"] = self.posts_cutoff.isoformat()
        out["tickets_cutoff"] = self.tickets_cutoff.isoformat() if self.tickets_cutoff else None
        return out


def apply_retention(*, post_store: PostStore, db: Database, posts_days: int, tickets_years: int | None,
                    now: datetime, dry_run: bool = False) -> RetentionResult:
    """Delete what has outlived its retention period (see module docstring); ``dry_run`` only counts."""
    if posts_days < 1:
        raise ValueError(f"posts_days must be at least 1, got {posts_days}")
    if tickets_years is not None and tickets_years < 1:
        raise ValueError(f"tickets_years must be at least 1 or None (keep forever), got {tickets_years}")
    posts_cutoff = now - timedelta(days=posts_days)
    tickets_cutoff = now - timedelta(days=round(365.25 * tickets_years)) if tickets_years else None
    result = RetentionResult(posts_cutoff=posts_cutoff, tickets_cutoff=tickets_cutoff, dry_run=dry_run)

    if tickets_cutoff is not None:
        _expire_tickets(db, tickets_cutoff, result)
    _expire_events(db, posts_cutoff, result)
    _expire_rows(db, posts_cutoff, result)
    if dry_run:
        result.posts = post_store.search(PostQuery(until=posts_cutoff, limit=1)).total
    else:
        result.posts = post_store.delete_older_than(posts_cutoff)
    log.info("retention%s: %s", " (dry run)" if dry_run else "", result.as_dict())
    return result


def retention_if_due(*, post_store: PostStore, db: Database, posts_days: int, tickets_years: int | None,
                     now: datetime, worker_id: str, at_hour: int = 3, tz: str = "Asia/Shanghai"
                     ) -> RetentionResult | None:
    """Run retention once a day (after ``at_hour`` local time), once across workers; None when not due."""
    from zoneinfo import ZoneInfo

    from alerts.scheduler import claim

    local = now.astimezone(ZoneInfo(tz))
    if local.hour < at_hour:
        return None
    with db.transaction() as s:
        if not claim(s, job="retention", slot=local.strftime("%Y-%m-%d"), worker_id=worker_id, now=now):
            return None
    return apply_retention(post_store=post_store, db=db, posts_days=posts_days, tickets_years=tickets_years,
                           now=now)


def _chunks(ids: list[Any]) -> list[list[Any]]:
    return [ids[i: i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


def _expire_tickets(db: Database, cutoff: datetime, result: RetentionResult) -> None:
    with db.transaction() as s:
        ids = list(s.scalars(select(TicketRow.id).where(
            TicketRow.state.in_(CLOSED_TICKET_STATES), TicketRow.closed_at.is_not(None), TicketRow.closed_at < cutoff,
        )))
        for chunk in _chunks(ids):
            result.ticket_audit += _count_or_delete(s, TicketAuditRow, TicketAuditRow.ticket_id.in_(chunk),
                                                    result.dry_run)
            result.responses += _count_or_delete(s, ResponseRow, ResponseRow.ticket_id.in_(chunk), result.dry_run)
            result.tickets += _count_or_delete(s, TicketRow, TicketRow.id.in_(chunk), result.dry_run)


def _expire_events(db: Database, cutoff: datetime, result: RetentionResult) -> None:
    """Events whose last post is past the post cutoff and that no (remaining) ticket refers to."""
    with db.transaction() as s:
        ticketed = select(TicketRow.event_id)
        if result.dry_run and result.tickets_cutoff is not None:
            # In a dry run the expired tickets are still there; do not count their events as kept.
            ticketed = ticketed.where(~(TicketRow.state.in_(CLOSED_TICKET_STATES) & TicketRow.closed_at.is_not(None)
                                        & (TicketRow.closed_at < result.tickets_cutoff)))
        ids = list(s.scalars(select(EventRow.id).where(EventRow.last_seen < cutoff, EventRow.id.not_in(ticketed))))
        for chunk in _chunks(ids):
            result.event_members += _count_or_delete(s, EventMemberRow, EventMemberRow.event_id.in_(chunk),
                                                     result.dry_run)
            result.events += _count_or_delete(s, EventRow, EventRow.id.in_(chunk), result.dry_run)


def _expire_rows(db: Database, cutoff: datetime, result: RetentionResult) -> None:
    with db.transaction() as s:
        result.outbox += _count_or_delete(s, OutboxRow, (OutboxRow.state == "sent") & (OutboxRow.created_at < cutoff),
                                          result.dry_run)
        result.dead_letters += _count_or_delete(s, DeadLetterRow, DeadLetterRow.received_at < cutoff, result.dry_run)
        result.job_runs += _count_or_delete(s, JobRunRow, JobRunRow.at < cutoff, result.dry_run)


def _count_or_delete(s: Session, model: Any, where: Any, dry_run: bool) -> int:
    if dry_run:
        return int(s.scalar(select(func.count()).select_from(model).where(where)) or 0)
    outcome = s.execute(delete(model).where(where).execution_options(synchronize_session=False))
    return int(getattr(outcome, "rowcount", 0) or 0)


# -- SQLite backup / restore ------------------------------------------------------------------------------
@dataclass
class FileCheck:
    """One backed-up database file."""

    name: str
    bytes: int
    sha256: str
    integrity: str
    tables: dict[str, int] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def integrity(path: Path) -> str:
    """``ok`` or the first problems ``PRAGMA integrity_check`` reports for the SQLite file at ``path``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchmany(10)]
    except sqlite3.DatabaseError as exc:  # a header too damaged to even run the check
        return f"unreadable: {exc}"
    finally:
        conn.close()
    return "ok" if rows == ["ok"] else "; ".join(str(r) for r in rows)


def table_counts(path: Path) -> dict[str, int]:
    """Rows per ordinary table (FTS shadow tables left out) of a SQLite file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        out: dict[str, int] = {}
        for name in names:
            if any(name.endswith(s) for s in ("_data", "_idx", "_docsize", "_config", "_content")):
                continue
            try:
                out[name] = int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])  # noqa: S608
            except sqlite3.DatabaseError:  # a virtual table whose module is not loaded here
                continue
        return out
    finally:
        conn.close()


def backup_sqlite(src_path: Path, dest_path: Path, *, pages_per_step: int = -1) -> FileCheck:
    """Copy a live SQLite database consistently (online backup API) and verify the copy."""
    if not src_path.exists():
        raise FileNotFoundError(f"no database at {src_path}")
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    partial = dest_path.with_name(dest_path.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(src_path, timeout=30)  # read-write open: a read-only one cannot join a live WAL
    dst = sqlite3.connect(partial)
    try:
        # One step = one read transaction: in WAL mode writers go on meanwhile and the copy is the snapshot
        # at its start. (Several small steps would restart whenever another connection writes, and under
        # a steady stream of posts might never finish.)
        src.backup(dst, pages=pages_per_step, sleep=0.005)
        dst.execute("PRAGMA journal_mode=DELETE")  # a self-contained file, no -wal beside it
    finally:
        dst.close()
        src.close()
    check = integrity(partial)
    if check != "ok":
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"backup of {src_path.name} failed its integrity check: {check}")
    os.replace(partial, dest_path)
    return FileCheck(name=dest_path.name, bytes=dest_path.stat().st_size, sha256=_sha256(dest_path),
                     integrity=check, tables=table_counts(dest_path))


def backup(*, files: dict[str, Path], dest_dir: Path, now: datetime) -> Path:
    """Back up each named SQLite file into ``dest_dir/yuqing-backup-<UTC time>/`` with a manifest; returns it."""
    folder = dest_dir / f"yuqing-backup-{now.strftime('%Y%m%dT%H%M%SZ')}"
    if folder.exists():
        raise FileExistsError(f"{folder} exists already")
    folder.mkdir(parents=True)
    checks = []
    for name, path in files.items():
        check = backup_sqlite(path, folder / name)
        checks.append(asdict(check))
        log.info("backed up %s (%d bytes, tables %s)", name, check.bytes, check.tables)
    manifest = {"created_at": now.isoformat(), "format": 1, "files": checks}
    (folder / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    return folder


def verify_backup(folder: Path) -> list[dict[str, Any]]:
    """Check a backup folder against its manifest (presence, SHA-256, integrity); returns the file entries."""
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(f"{folder} has no {MANIFEST}: not a yuqing backup")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    entries: list[dict[str, Any]] = manifest.get("files") or []
    if not entries:
        raise ValueError(f"{manifest_path} lists no files")
    for entry in entries:
        path = folder / entry["name"]
        if Path(entry["name"]).name != entry["name"]:
            raise ValueError(f"unsafe file name in the manifest: {entry['name']!r}")
        if not path.exists():
            raise FileNotFoundError(f"{path} is listed in the manifest but missing")
        if _sha256(path) != entry["sha256"]:
            raise ValueError(f"{path} does not match its manifest checksum: the backup is damaged")
        check = integrity(path)
        if check != "ok":
            raise ValueError(f"{path} fails PRAGMA integrity_check: {check}")
    return entries


def restore(*, src_dir: Path, targets: dict[str, Path], force: bool = False) -> list[Path]:
    """Replace the target files with a verified backup; refuses to overwrite existing files unless ``force``."""
    entries = {e["name"]: e for e in verify_backup(src_dir)}
    missing = [name for name in targets if name not in entries]
    if missing:
        raise FileNotFoundError(f"the backup in {src_dir} has no {', '.join(missing)}")
    existing = [p for p in targets.values() if p.exists()]
    if existing and not force:
        raise FileExistsError(
            "refusing to overwrite " + ", ".join(str(p) for p in existing) + ": stop the service and pass --force")
    restored = []
    for name, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".restore", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            shutil.copyfile(src_dir / name, tmp)
            if _sha256(tmp) != entries[name]["sha256"]:
                raise ValueError(f"copy of {name} does not match the manifest")
            # A -wal/-shm pair left by the old database would be replayed onto the restored one.
            for suffix in ("-wal", "-shm", "-journal"):
                Path(str(target) + suffix).unlink(missing_ok=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        restored.append(target)
        log.info("restored %s from %s", target, src_dir)
    return restored
