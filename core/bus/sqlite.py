"""Durable embedded bus: the in-process bus of ``core.bus.memory`` with every change written to SQLite first.

Why: the embedded bus used to live in memory only, so a stop (kill -9, SIGTERM, Ctrl-C, a crash) lost every
post that had been acknowledged but not yet processed. Here ``publish`` returns only once its messages are
committed to ``bus.sqlite``, consumer offsets are committed there per group, and a new process loads what
some group has not committed yet and delivers it again (at-least-once; the stages are idempotent by post id).

Storage: one SQLite file in WAL mode, one transaction per ``publish``/``publish_many`` call (``executemany``)
and per ``commit``. With ``synchronous=FULL`` (the default) SQLite fsyncs the WAL at every commit, so a
returned ``publish`` survives a process kill *and* a power cut or kernel crash. ``synchronous=NORMAL`` skips
that fsync: a commit is still written to the WAL before ``publish`` returns, so it survives a killed process,
but a power cut may lose the last commits (the database stays consistent: WAL replay keeps a prefix of the
transactions, so an offset commit can never survive without the messages published before it).

Reading never touches the file: the messages some group still needs are also kept in memory (bounded by
``max_backlog`` per topic, as before), so consumers poll at memory speed. Retention: what every subscribed
group has committed is deleted in chunks, and announcement topics keep their newest N messages, so the file
does not grow forever (SQLite reuses the freed pages; ``journal_size_limit`` bounds the WAL).

One process at a time: consumer groups are coordinated in memory, so a second process on the same file is
refused (an exclusive ``flock`` on ``bus.sqlite.lock``, released by the kernel even after kill -9).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from core.bus.base import Message
from core.bus.memory import MemoryBus, _Group
from core.errors import BackendUnavailable

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
    key TEXT, value BLOB NOT NULL, headers TEXT,
    PRIMARY KEY (topic, part, off)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commits (
    grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, off INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (grp TEXT NOT NULL, topic TEXT NOT NULL, PRIMARY KEY (grp, topic))
    WITHOUT ROWID;
"""


class BusInUse(BackendUnavailable):
    """Another process has the embedded bus file open."""


def _create_private(path: Path) -> None:
    """Create ``path`` readable by this user only (0600); an existing file is tightened to 0600 too."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class SqliteBus(MemoryBus):
    """A ``MemoryBus`` whose messages, offsets and subscriptions are stored in SQLite before they count."""

    def __init__(self, path: Path | str, *, partitions: int = 4, max_backlog: int = 100_000,
                 publish_timeout_s: float = 30.0, retention: Mapping[str, int] | None = None,
                 synchronous: Literal["full", "normal"] = "full") -> None:
        super().__init__(partitions=partitions, max_backlog=max_backlog, publish_timeout_s=publish_timeout_s,
                         retention=retention)
        if synchronous not in ("full", "normal"):
            raise ValueError("synchronous must be 'full' or 'normal'")
        self.path = Path(path)
        self.synchronous = synchronous
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_file_lock()
        try:
            _create_private(self.path)
            # One connection, used only under the bus lock; autocommit mode with explicit BEGIN/COMMIT.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute("PRAGMA journal_size_limit=67108864")  # truncate the WAL to 64 MiB after checkpoints
            self._db.executescript(_SCHEMA)
            for suffix in ("-wal", "-shm"):  # SQLite gives them the database's mode; make sure
                side = Path(str(self.path) + suffix)
                if side.exists():
                    os.chmod(side, 0o600)
            self.partitions = self._stored_partitions(partitions)
            self.recovered = self._load()
        except BaseException:
            os.close(self._lock_fd)
            raise
        if self.recovered:
            log.info("bus: %d message(s) queued before the last stop are delivered again from %s",
                     self.recovered, self.path)

    # -- opening -------------------------------------------------------------------------------

    def _take_file_lock(self) -> int:
        lock_path = Path(str(self.path) + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BusInUse(
                f"the embedded bus {self.path} is in use by another yuqing process: send posts to the running "
                "service (POST /api/v1/ingest) or stop it first") from None
        return fd

    def _stored_partitions(self, wanted: int) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'partitions'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta (name, value) VALUES ('partitions', ?)", (str(wanted),))
            return wanted
        stored = int(row[0])
        if stored != wanted:
            # Re-partitioning would move keys between partitions and break per-key order of queued messages.
            log.warning("bus %s was created with %d partitions; keeping them (asked for %d)", self.path, stored, wanted)
        return stored

    def _load(self) -> int:
        """Rebuild topics, groups, offsets and the uncommitted messages from the file; returns the backlog."""
        db = self._db
        for grp, topic in db.execute("SELECT grp, topic FROM subscriptions"):
            self._groups.setdefault(grp, _Group(grp))
            self._topic(topic).groups.add(grp)
        commit_max: dict[tuple[str, int], int] = {}
        for grp, topic, part, off in db.execute("SELECT grp, topic, part, off FROM commits"):
            self._groups.setdefault(grp, _Group(grp)).committed[(topic, part)] = off
            commit_max[(topic, part)] = max(commit_max.get((topic, part), 0), off)
            self._topic(topic)
        rows = db.execute("SELECT topic, part, off, key, value, headers FROM messages ORDER BY topic, part, off")
        for topic_name, part_no, off, key, value, headers in rows:
            part = self._topic(topic_name).partitions[part_no]
            if not part.log:
                part.base = off
            elif off != part.end:
                raise RuntimeError(f"bus {self.path}: {topic_name}[{part_no}] has a gap at offset {off}")
            part.log.append(Message(topic=topic_name, key=key, value=bytes(value), partition=part_no, offset=off,
                                    headers=json.loads(headers) if headers else {}))
        for (topic_name, part_no), off in commit_max.items():
            part = self._topic(topic_name).partitions[part_no]
            if not part.log and off > part.base:
                part.base = off  # everything was consumed and pruned: new offsets continue after the commits
        return sum(self._backlog(t) for name, t in self._topics.items() if name not in self.retention)

    # -- persistence hooks (called by MemoryBus with the bus lock held) ------------------------

    def _write(self, sql: str, rows: Sequence[tuple[object, ...]], *, sync: bool = True) -> None:
        """One transaction; any SQLite failure (disk full, I/O) is a retryable backend error.

        ``sync=False`` skips the fsync even under ``synchronous=FULL``: for offset commits and pruning, whose
        loss in a power cut only means a redelivery. The WAL keeps transactions in order, so the next synced
        publish makes them durable too, and none can survive without the messages written before it.
        """
        if self._closed:
            raise BackendUnavailable("bus is closed")
        relax = not sync and self.synchronous == "full"
        try:
            if relax:
                self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._write_once(sql, rows)
            finally:
                if relax:
                    self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"bus file {self.path}: {exc}") from exc

    def _write_once(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(sql, rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _store_messages(self, messages: Sequence[Message]) -> None:
        self._write("INSERT INTO messages (topic, part, off, key, value, headers) VALUES (?, ?, ?, ?, ?, ?)",
                    [(m.topic, m.partition, m.offset, m.key, m.value,
                      json.dumps(m.headers, ensure_ascii=False) if m.headers else None) for m in messages],
                    # Announcement streams (retention topics: ticket changes, dead-letter copies) are a window
                    # nobody acknowledged; the event stage publishes one per matching post, so no fsync each.
                    sync=not messages or messages[0].topic not in self.retention)

    def _store_commit(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        self._write("INSERT INTO commits (grp, topic, part, off) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (grp, topic, part) DO UPDATE SET off = excluded.off",
                    [(group, t, p, off) for (t, p), off in offsets.items()], sync=False)

    def _store_subscription(self, group: str, topic: str) -> None:
        self._write("INSERT OR IGNORE INTO subscriptions (grp, topic) VALUES (?, ?)", [(group, topic)])

    def _store_trim(self, topic: str, partition: int, base: int) -> None:
        try:
            self._write("DELETE FROM messages WHERE topic = ? AND part = ? AND off < ?", [(topic, partition, base)],
                        sync=False)
        except BackendUnavailable:
            # Pruning is housekeeping: rows left behind are below every commit and skipped at the next start.
            log.warning("bus: could not prune %s[%d] below %d; will retry at the next trim", topic, partition, base,
                        exc_info=True)

    # -- Bus -------------------------------------------------------------------------------------

    def flush(self, timeout_s: float = 30.0) -> None:
        """Nothing to do: ``publish`` returns only after its transaction is committed."""

    def close(self) -> None:
        """Wake waiters, close the file (a checkpoint folds the WAL in) and release the process lock."""
        super().close()
        with self._cond:
            if self._lock_fd < 0:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                log.warning("bus: checkpoint at close failed; SQLite replays the WAL at the next open", exc_info=True)
            self._db.close()
            os.close(self._lock_fd)
            self._lock_fd = -1

    def queued(self) -> int:
        """Messages of the pipeline topics some group has not committed (they are replayed at the next start)."""
        with self._cond:
            return sum(self._backlog(t) for name, t in self._topics.items() if name not in self.retention)
