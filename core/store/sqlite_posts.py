"""Post store on SQLite for embedded mode: WAL, one locked writer, per-thread readers, FTS5 search.

Chinese has no spaces, so full-text search runs on pre-segmented words: the caller's ``tokenize``
(jieba in production) is applied to title+text at upsert and to the query at search, and FTS5's
plain ``unicode61`` tokenizer indexes the space-joined words. No SQLite extension is needed.

A post's JSON document (without its MinHash signature, which is kept as a packed blob) is the
source of truth and lives in ``post_docs``; ``posts`` holds narrow copies of the filter columns,
each indexed together with ``published_at`` because every dashboard query is time-bounded, so
counts and sorts over a million rows never read the documents.

Hourly rollups (``post_hours``, ``post_district_hours``, ``post_district_hour_totals``) are updated in
the same transaction as every upsert and retention delete; ``overview`` reads them for the whole hours
of its window and counts only the two partial edge hours from ``posts``, with the same answers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import sqlite3
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, NamedTuple

from core.errors import BackendUnavailable
from core.records import AnalyzedPost, Entities, SentimentLabel
from core.store.base import Bucket, Overview, PostPage, PostQuery, PostStore, SignatureRow, index_tokens

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS posts (
    rid INTEGER PRIMARY KEY,               -- rowid alias, shared with post_docs, posts_fts, post_districts
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    sentiment TEXT NOT NULL,
    topic TEXT NOT NULL,
    event_id TEXT,
    published_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    doc_hash BLOB NOT NULL                 -- tells a redelivery from a changed post without reading the doc
);
-- Covering index for time-bounded overviews: one range scan answers every count.
CREATE INDEX IF NOT EXISTS posts_time ON posts(published_ms, sentiment, topic, source);
CREATE INDEX IF NOT EXISTS posts_source ON posts(source, published_ms);
CREATE INDEX IF NOT EXISTS posts_sentiment ON posts(sentiment, published_ms);
CREATE INDEX IF NOT EXISTS posts_topic ON posts(topic, published_ms);
CREATE INDEX IF NOT EXISTS posts_event ON posts(event_id, published_ms);
-- Documents live apart so the rows every filter, count and sort touches stay small and cached.
CREATE TABLE IF NOT EXISTS post_docs (
    rid INTEGER PRIMARY KEY,
    doc TEXT NOT NULL,
    signature BLOB
);
CREATE TABLE IF NOT EXISTS post_districts (
    district TEXT NOT NULL,
    rid INTEGER NOT NULL,
    PRIMARY KEY (district, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS post_districts_rid ON post_districts(rid);
CREATE VIRTUAL TABLE IF NOT EXISTS posts_fts USING fts5(tokens, tokenize = 'unicode61 remove_diacritics 2');
"""

# Hourly rollups kept in step with ``posts`` inside every write transaction, so the dashboard's
# overview reads a few thousand rollup rows instead of range-scanning a week of posts. Kept apart
# from _SCHEMA because the dashboard benchmark keys its 1M-post cache on that text.
_ROLLUP_SCHEMA = """
CREATE TABLE IF NOT EXISTS post_hours (
    hour_ms INTEGER NOT NULL,              -- UTC hour start, epoch ms
    sentiment TEXT NOT NULL,
    topic TEXT NOT NULL,
    source TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, sentiment, topic, source)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS post_district_hours (
    hour_ms INTEGER NOT NULL,
    district TEXT NOT NULL,
    sentiment TEXT NOT NULL,
    topic TEXT NOT NULL,
    source TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, district, sentiment, topic, source)
) WITHOUT ROWID;
-- The same per (hour, district) only: what an unfiltered overview reads (a few rows per hour).
CREATE TABLE IF NOT EXISTS post_district_hour_totals (
    hour_ms INTEGER NOT NULL,
    district TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, district)
) WITHOUT ROWID;
"""
_HOUR_MS = 3_600_000
# Floor to the hour in SQL the way Python's // does (SQLite's % truncates toward zero for negatives).
_HOUR_SQL = f"(p.published_ms - ((p.published_ms % {_HOUR_MS}) + {_HOUR_MS}) % {_HOUR_MS})"
_FTS_SORT_LIMIT = 5_000  # FTS matches up to which sorting them all beats walking the time index

_WORDLIKE = re.compile(r"[^\W_]")  # a letter or digit: what unicode61 keeps
_CHUNK = 500  # ids per IN (...) list; far below SQLite's variable limit
READERS = 6  # pooled reader connections (concurrent dashboard reads beyond this wait their turn)
READER_WAIT_S = 60.0
READER_CACHE_KIB = 16_384
WRITER_CACHE_KIB = 65_536
_DELETE_CHUNK = 5_000  # rows per retention transaction, so readers and the writer are not starved
_MAX_BUCKETS = 20_000
_SENTIMENT_BY_NAME = {label.name: label.value for label in SentimentLabel}


class _Row(NamedTuple):
    filters: tuple[Any, ...]  # id, source, sentiment, topic, event_id, published_ms, received_ms, doc_hash
    doc: str
    signature: bytes | None


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def pack_signature(signature: Sequence[int]) -> bytes | None:
    """MinHash values as a little-endian uint32 (or int64) array with a one-byte type code."""
    if not signature:
        return None
    try:
        code, packed = "I", array("I", signature)
    except OverflowError:  # values beyond 32 bits (or negative)
        code = "Q" if min(signature) >= 0 else "q"
        packed = array(code, signature)
    if sys.byteorder == "big":
        packed.byteswap()
    return code.encode() + packed.tobytes()


def unpack_signature(blob: bytes | None) -> list[int]:
    """Inverse of ``pack_signature``."""
    if not blob:
        return []
    values = array(blob[:1].decode())
    values.frombytes(blob[1:])
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def sentiment_value(value: str) -> str:
    """Accept a label's name (negative) or value (负面)."""
    return _SENTIMENT_BY_NAME.get(value, value)


def match_expression(tokens: Sequence[str]) -> str:
    """An FTS5 query that requires every word: each token quoted so no token is read as syntax."""
    return " ".join('"' + t.replace('"', '""') + '"' for t in tokens)


def _like_escape(text: str) -> str:
    """``text`` for a LIKE pattern with ESCAPE '\\': its own wildcards matched literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def searchable_tokens(tokens: Sequence[str]) -> list[str]:
    """Drop tokens that ``unicode61`` would index as nothing (punctuation, spaces)."""
    return [t for t in tokens if _WORDLIKE.search(t)]


class SqlitePostStore(PostStore):
    """SQLite + FTS5 post store; safe to share between threads."""

    def __init__(self, path: Path, *, tokenize: Callable[[str], list[str]],
                 utc_offset_hours: int = 8) -> None:
        self.path = Path(path)
        self._tokenize = tokenize
        # Daily buckets follow local (China Standard Time) days, not UTC ones.
        self._tz = timezone(timedelta(hours=utc_offset_hours))
        self._offset_ms = utc_offset_hours * 3_600_000
        self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._reader_slots = threading.BoundedSemaphore(READERS)
        self._idle_readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    # -- connections ------------------------------------------------------------------------------

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        from core.private_files import private_file

        private_file(self.path)  # 0600 before SQLite creates it (and its -wal/-shm) with the umask
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        # Page cache per connection: the writer's is larger (index pages of every insert), the pool's readers
        # share the OS page cache beyond theirs.
        conn.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB if readonly else WRITER_CACHE_KIB}")
        conn.execute("PRAGMA temp_store=MEMORY")
        if readonly:
            conn.execute("PRAGMA query_only=1")
        return conn

    def _w(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("post store is closed")
        if self._writer is None:
            self._writer = self._connect(readonly=False)
        return self._writer

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A reader connection from a small pool, for the duration of the block.

        A fixed pool rather than one connection per thread: the API's thread pool has dozens of threads and
        each connection's page cache fills up over time, so per-thread connections grow memory with traffic.
        """
        if self._closed:
            raise RuntimeError("post store is closed")
        if not self._reader_slots.acquire(timeout=READER_WAIT_S):
            raise BackendUnavailable(f"sqlite post store: no reader free within {READER_WAIT_S:.0f}s")
        try:
            try:
                conn = self._idle_readers.get_nowait()
            except queue.Empty:
                conn = self._connect(readonly=True)
                with self._readers_lock:
                    self._readers.append(conn)
            try:
                yield conn
            finally:
                self._idle_readers.put(conn)
        finally:
            self._reader_slots.release()

    # -- PostStore --------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create tables, indices and the FTS table if missing."""
        with self._write_lock:
            conn = self._w()
            conn.executescript(_SCHEMA)
            conn.executescript(_ROLLUP_SCHEMA)
            if (conn.execute("SELECT 1 FROM post_hours LIMIT 1").fetchone() is None
                    and conn.execute("SELECT 1 FROM posts LIMIT 1").fetchone() is not None):
                self._build_rollups(conn)
            elif (conn.execute("SELECT 1 FROM post_district_hour_totals LIMIT 1").fetchone() is None
                    and conn.execute("SELECT 1 FROM post_district_hours LIMIT 1").fetchone() is not None):
                # Written by a build that had the detailed district rollup only.
                conn.execute("INSERT INTO post_district_hour_totals (hour_ms, district, n)"
                             " SELECT hour_ms, district, SUM(n) FROM post_district_hours GROUP BY hour_ms, district")

    @staticmethod
    def _build_rollups(conn: sqlite3.Connection) -> None:
        """Fill the hourly rollups from ``posts`` (a database written before they existed)."""
        log.info("building hourly rollups from existing posts (one-off; about a minute per million posts)")
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM post_district_hours")
            conn.execute("DELETE FROM post_district_hour_totals")
            conn.execute(f"INSERT INTO post_hours (hour_ms, sentiment, topic, source, n)"  # noqa: S608
                         f" SELECT {_HOUR_SQL} AS h, p.sentiment, p.topic, p.source, COUNT(*) FROM posts p"
                         f" GROUP BY h, p.sentiment, p.topic, p.source")
            log.info("post_hours built in %.0f s; building post_district_hours", time.perf_counter() - started)
            conn.execute(f"INSERT INTO post_district_hours (hour_ms, district, sentiment, topic, source, n)"  # noqa: S608
                         f" SELECT {_HOUR_SQL} AS h, d.district, p.sentiment, p.topic, p.source, COUNT(*)"
                         f" FROM posts p JOIN post_districts d ON d.rid = p.rid"
                         f" GROUP BY h, d.district, p.sentiment, p.topic, p.source")
            conn.execute("INSERT INTO post_district_hour_totals (hour_ms, district, n)"
                         " SELECT hour_ms, district, SUM(n) FROM post_district_hours GROUP BY hour_ms, district")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("hourly rollups built in %.0f s", time.perf_counter() - started)

    @staticmethod
    def _rollup_keys(conn: sqlite3.Connection, rids: Sequence[int]
                     ) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
        """Rollup keys (with counts) of stored rows, read before they are rewritten or deleted."""
        hours: Counter[tuple[Any, ...]] = Counter()
        districts: Counter[tuple[Any, ...]] = Counter()
        for i in range(0, len(rids), _CHUNK):
            chunk = list(rids[i:i + _CHUNK])
            marks = ",".join("?" * len(chunk))
            for h, sentiment, topic, source, n in conn.execute(
                    f"SELECT {_HOUR_SQL} AS h, p.sentiment, p.topic, p.source, COUNT(*) FROM posts p"  # noqa: S608
                    f" WHERE p.rid IN ({marks}) GROUP BY h, p.sentiment, p.topic, p.source", chunk):
                hours[(h, sentiment, topic, source)] += n
            for h, district, sentiment, topic, source, n in conn.execute(
                    f"SELECT {_HOUR_SQL} AS h, d.district, p.sentiment, p.topic, p.source, COUNT(*)"  # noqa: S608
                    f" FROM posts p JOIN post_districts d ON d.rid = p.rid WHERE p.rid IN ({marks})"
                    f" GROUP BY h, d.district, p.sentiment, p.topic, p.source", chunk):
                districts[(h, district, sentiment, topic, source)] += n
        return hours, districts

    @staticmethod
    def _apply_rollup(conn: sqlite3.Connection, hours: dict[tuple[Any, ...], int],
                      districts: dict[tuple[Any, ...], int]) -> None:
        """Add signed deltas to the rollups and drop rows that reached zero."""
        totals: Counter[tuple[Any, ...]] = Counter()
        for (hour, district, *_dims), n in districts.items():
            totals[(hour, district)] += n
        for table, columns, delta in (("post_hours", ("hour_ms", "sentiment", "topic", "source"), hours),
                                      ("post_district_hours",
                                       ("hour_ms", "district", "sentiment", "topic", "source"), districts),
                                      ("post_district_hour_totals", ("hour_ms", "district"), totals)):
            changes = [(*key, n) for key, n in delta.items() if n]
            if not changes:
                continue
            marks = ",".join("?" * (len(columns) + 1))
            conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}, n) VALUES ({marks})"  # noqa: S608
                             f" ON CONFLICT DO UPDATE SET n = n + excluded.n", changes)
            gone = [key for key, n in delta.items() if n < 0]
            if gone:
                match = " AND ".join(f"{c} = ?" for c in columns)
                conn.executemany(f"DELETE FROM {table} WHERE {match} AND n <= 0", gone)  # noqa: S608

    @staticmethod
    def _row(post: AnalyzedPost) -> _Row:
        doc = post.model_dump_json(exclude={"signature"})
        digest = hashlib.blake2b(doc.encode("utf-8"), digest_size=12).digest()
        return _Row(filters=(post.id, post.source.value, post.sentiment.label.value, post.topic.l1,
                             post.event_id, to_ms(post.published_at), to_ms(post.received_at), digest),
                    doc=doc, signature=pack_signature(post.signature))

    def _tokens(self, post: AnalyzedPost) -> str:
        return " ".join(searchable_tokens(index_tokens(post, self._tokenize)))

    def upsert(self, posts: Sequence[AnalyzedPost]) -> set[str]:
        """Insert new posts and refresh changed ones in one transaction; return the new ids.

        A post already stored is rewritten only when its document changed and it was received no
        earlier than the stored copy (later engagement, an event id assigned by clustering); a plain
        redelivery of the same post is a no-op. The FTS row and district rows follow the document.
        """
        latest: dict[str, AnalyzedPost] = {}
        for post in posts:
            kept = latest.get(post.id)
            if kept is None or post.received_at >= kept.received_at:
                latest[post.id] = post
        if not latest:
            return set()
        rows = {pid: self._row(p) for pid, p in latest.items()}
        with self._write_lock:
            conn = self._w()
            conn.execute("BEGIN IMMEDIATE")
            try:
                stored: dict[str, tuple[int, int, bytes]] = {}
                ids = list(latest)
                for i in range(0, len(ids), _CHUNK):
                    chunk = ids[i:i + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    for pid, rid, received_ms, digest in conn.execute(
                            f"SELECT id, rid, received_ms, doc_hash FROM posts WHERE id IN ({marks})",  # noqa: S608
                            chunk):
                        stored[pid] = (rid, received_ms, digest)
                new_ids = [pid for pid in ids if pid not in stored]
                changed = [pid for pid, (_rid, received_ms, digest) in stored.items()
                           if rows[pid].filters[7] != digest and rows[pid].filters[6] >= received_ms]
                rids = {pid: stored[pid][0] for pid in changed}
                next_rid = conn.execute("SELECT COALESCE(MAX(rid), 0) + 1 FROM posts").fetchone()[0]
                rids.update((pid, next_rid + n) for n, pid in enumerate(new_ids))
                hour_delta: Counter[tuple[Any, ...]] = Counter()
                district_delta: Counter[tuple[Any, ...]] = Counter()
                if changed:
                    marks = ",".join("?" * len(changed))
                    old = [rids[pid] for pid in changed]
                    # The rewritten rows leave their old rollup cells (sentiment, topic, districts may move).
                    gone_hours, gone_districts = self._rollup_keys(conn, old)
                    hour_delta.subtract(gone_hours)
                    district_delta.subtract(gone_districts)
                    for table, column in (("posts", "rid"), ("post_docs", "rid"), ("posts_fts", "rowid"),
                                          ("post_districts", "rid")):
                        conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", old)  # noqa: S608
                write = new_ids + changed
                conn.executemany(
                    "INSERT INTO posts (rid, id, source, sentiment, topic, event_id, published_ms, received_ms,"
                    " doc_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(rids[pid], *rows[pid].filters) for pid in write])
                conn.executemany("INSERT INTO post_docs (rid, doc, signature) VALUES (?, ?, ?)",
                                 [(rids[pid], rows[pid].doc, rows[pid].signature) for pid in write])
                conn.executemany("INSERT INTO posts_fts (rowid, tokens) VALUES (?, ?)",
                                 [(rids[pid], self._tokens(latest[pid])) for pid in write])
                conn.executemany("INSERT INTO post_districts (district, rid) VALUES (?, ?)",
                                 [(d, rids[pid]) for pid in write for d in set(latest[pid].entities.districts)])
                for pid in write:
                    _id, source, sentiment, topic, _event, published_ms, _received, _hash = rows[pid].filters
                    hour = published_ms - published_ms % _HOUR_MS
                    hour_delta[(hour, sentiment, topic, source)] += 1
                    for d in set(latest[pid].entities.districts):
                        district_delta[(hour, d, sentiment, topic, source)] += 1
                self._apply_rollup(conn, hour_delta, district_delta)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if changed:
            log.debug("upsert: %d new, %d updated, %d unchanged", len(new_ids), len(changed),
                      len(stored) - len(changed))
        return set(new_ids)

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of these ids are stored."""
        found: set[str] = set()
        unique = list(dict.fromkeys(ids))
        with self._reading() as conn:
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in conn.execute(
                    f"SELECT id FROM posts WHERE id IN ({marks})", chunk))  # noqa: S608
            return found

    @staticmethod
    def _post(doc: str, signature: bytes | None) -> AnalyzedPost:
        data = json.loads(doc)
        data["signature"] = unpack_signature(signature)
        return AnalyzedPost.model_validate(data)

    def get(self, post_id: str) -> AnalyzedPost | None:
        """One post by id, or None."""
        return self.get_many([post_id]).get(post_id)

    def get_many(self, post_ids: Sequence[str]) -> dict[str, AnalyzedPost]:
        """The stored posts among ``post_ids``, by id."""
        unique = list(dict.fromkeys(post_ids))
        found: dict[str, AnalyzedPost] = {}
        with self._reading() as conn:
            for i in range(0, len(unique), _CHUNK):
                chunk = unique[i:i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                sql = ("SELECT p.id, d.doc, d.signature FROM posts p JOIN post_docs d ON d.rid = p.rid"  # noqa: S608
                       f" WHERE p.id IN ({marks})")  # only placeholders are formatted in
                for pid, doc, signature in conn.execute(sql, chunk):
                    found[pid] = self._post(doc, signature)
        return found

    def _match(self, query: PostQuery) -> str | None:
        """The FTS expression for ``query.q``, or None when it has no indexable words."""
        if not (query.q and query.q.strip()):
            return None
        tokens = searchable_tokens(self._tokenize(query.q))
        return match_expression(tokens) if tokens else None

    def _where(self, query: PostQuery, *, since_ms: int | None = None,
               until_ms: int | None = None) -> tuple[str, list[Any]]:
        """SQL conditions on ``posts p`` for the query; ``since_ms``/``until_ms`` replace its time bounds."""
        clauses: list[str] = []
        params: list[Any] = []
        if query.q and query.q.strip():
            words = self._match(query)
            if words:
                clauses.append("p.rid IN (SELECT rowid FROM posts_fts WHERE posts_fts MATCH ?)")
                params.append(words)
                if query.masked_only:
                    # The FTS index holds raw words; each word must also be in what this caller can see.
                    for token in searchable_tokens(self._tokenize(query.q)):
                        clauses.append("EXISTS (SELECT 1 FROM post_docs m WHERE m.rid = p.rid AND"
                                       " (coalesce(json_extract(m.doc, '$.title_masked'), '') || char(10) ||"
                                       " coalesce(json_extract(m.doc, '$.text_masked'), '')) LIKE ? ESCAPE '\\')")
                        params.append("%" + _like_escape(token) + "%")
            elif query.masked_only:
                needle = "%" + _like_escape(query.q.strip()) + "%"
                clauses.append("p.rid IN (SELECT rid FROM post_docs WHERE json_extract(doc, '$.title_masked') LIKE ?"
                               " ESCAPE '\\' OR json_extract(doc, '$.text_masked') LIKE ? ESCAPE '\\')")
                params.extend([needle, needle])
            else:
                # Nothing indexable (e.g. only symbols): substring match on the raw title and text.
                needle = "%" + query.q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                clauses.append("p.rid IN (SELECT rid FROM post_docs WHERE json_extract(doc, '$.title') LIKE ?"
                               " ESCAPE '\\' OR json_extract(doc, '$.text') LIKE ? ESCAPE '\\')")
                params.extend([needle, needle])
        for column, value in (("source", query.source), ("topic", query.topic), ("event_id", query.event_id),
                              ("sentiment", sentiment_value(query.sentiment) if query.sentiment else None)):
            if value:
                clauses.append(f"p.{column} = ?")
                params.append(value)
        if query.district:
            clauses.append("p.rid IN (SELECT rid FROM post_districts WHERE district = ?)")
            params.append(query.district)
        if since_ms is None and query.since is not None:
            since_ms = to_ms(query.since)
        if until_ms is None and query.until is not None:
            until_ms = to_ms(query.until)
        if since_ms is not None:
            clauses.append("p.published_ms >= ?")
            params.append(since_ms)
        if until_ms is not None:
            clauses.append("p.published_ms < ?")
            params.append(until_ms)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def search(self, query: PostQuery) -> PostPage:
        """Filtered full-text search, newest first; ``total`` is exact."""
        where, params = self._where(query)
        with self._reading() as conn:
            words = self._match(query)
            others = (query.source, query.sentiment, query.topic, query.event_id, query.district, query.since,
                      query.until)
            matches = None
            if words:
                # FTS counts its own matches from the doclists without touching posts: cheap even for common words.
                matches = conn.execute("SELECT COUNT(*) FROM posts_fts WHERE posts_fts MATCH ?", (words,)).fetchone()[0]
            if matches is not None and not query.masked_only and all(v is None or v == "" for v in others):
                total = matches
            elif matches == 0:
                total = 0
            else:
                total = conn.execute(f"SELECT COUNT(*) FROM posts p{where}", params).fetchone()[0]  # noqa: S608
            if query.offset >= total:
                return PostPage(total=total, items=[])
            # A common word: walk the time index newest-first, testing FTS membership, and stop at limit+offset
            # instead of fetching and sorting every match. With a column filter the planner already walks that
            # column's (column, published_ms) index in order, which is narrower.
            column_filter = query.event_id or query.source or query.sentiment or query.topic
            hint = " INDEXED BY posts_time" if matches is not None and matches > _FTS_SORT_LIMIT \
                and not column_filter else ""
            # Sort and page on the narrow rows, then read only the page's documents.
            rows = conn.execute(
                f"SELECT d.doc, d.signature FROM (SELECT p.rid, p.published_ms FROM posts p{hint}{where}"  # noqa: S608
                " ORDER BY p.published_ms DESC, p.rid DESC LIMIT ? OFFSET ?) AS page"
                " JOIN post_docs d ON d.rid = page.rid ORDER BY page.published_ms DESC, page.rid DESC",
                [*params, query.limit, query.offset]).fetchall()
            return PostPage(total=total, items=[self._post(doc, sig) for doc, sig in rows])

    def iter_recent(self, since: datetime, *, batch: int = 1000) -> Iterator[AnalyzedPost]:
        """Posts published since ``since``, newest first, read in keyset pages of ``batch`` (no count)."""
        with self._reading() as conn:
            since_ms = to_ms(since)
            cursor: tuple[int, int] | None = None
            while True:
                if cursor is None:
                    after, args = "", [since_ms]
                else:
                    # A plain upper bound on published_ms lets the index seek straight to the next page.
                    after = " AND p.published_ms <= ? AND NOT (p.published_ms = ? AND p.rid >= ?)"
                    args = [since_ms, cursor[0], cursor[0], cursor[1]]
                rows = conn.execute(
                    "SELECT page.published_ms, page.rid, d.doc, d.signature FROM (SELECT p.rid, p.published_ms"  # noqa: S608
                    f" FROM posts p WHERE p.published_ms >= ?{after}"
                    " ORDER BY p.published_ms DESC, p.rid DESC LIMIT ?) AS page JOIN post_docs d ON d.rid = page.rid"
                    " ORDER BY page.published_ms DESC, page.rid DESC", [*args, batch]).fetchall()
                for _published, _rid, doc, sig in rows:
                    yield self._post(doc, sig)
                if len(rows) < batch:
                    return
                cursor = (rows[-1][0], rows[-1][1])

    def overview(self, query: PostQuery, *, interval: Literal["hour", "day"] = "hour",
                 exact: bool = False) -> Overview:
        """Counts by sentiment/topic/source/district and a gap-filled series; whole hours come from the rollups.

        ``exact=True`` counts everything from ``posts`` (the reference the rollups are checked against).
        """
        width = _HOUR_MS if interval == "hour" else 86_400_000
        with self._reading() as conn:
            by_sentiment: dict[str, int] = {}
            by_topic: dict[str, int] = {}
            by_source: dict[str, int] = {}
            by_district: dict[str, int] = {}
            series: dict[int, dict[str, int]] = {}
            total = 0

            def add(rows: Iterator[tuple[int, str, str, str, int]]) -> None:
                nonlocal total
                for bucket, sentiment, topic, source, n in rows:
                    total += n
                    by_sentiment[sentiment] = by_sentiment.get(sentiment, 0) + n
                    by_topic[topic] = by_topic.get(topic, 0) + n
                    by_source[source] = by_source.get(source, 0) + n
                    counts = series.setdefault(bucket, {})
                    counts[sentiment] = counts.get(sentiment, 0) + n

            def add_districts(rows: Iterator[tuple[str, int]]) -> None:
                for district, n in rows:
                    by_district[district] = by_district.get(district, 0) + n

            # One read transaction: the rollups and the edge hours must come from the same snapshot.
            own_snapshot = not conn.in_transaction
            if own_snapshot:
                conn.execute("BEGIN")
            try:
                whole = None if exact else self._whole_hours(query)
                if whole is None:
                    add(self._exact_counts(conn, query, width))
                    add_districts(self._exact_districts(conn, query))
                else:
                    first, end = whole
                    # Partial hours at either edge are counted exactly from posts; everything between from the rollups.
                    if query.since is not None and first is not None and to_ms(query.since) < first:
                        add(self._exact_counts(conn, query, width, until_ms=first))
                        add_districts(self._exact_districts(conn, query, until_ms=first))
                    if query.until is not None and end is not None and end < to_ms(query.until):
                        add(self._exact_counts(conn, query, width, since_ms=end))
                        add_districts(self._exact_districts(conn, query, since_ms=end))
                    add(self._rollup_counts(conn, query, width, first, end))
                    if query.district:
                        # Which other districts the district's posts name needs the posts themselves.
                        add_districts(self._exact_districts(conn, query, since_ms=first, until_ms=end))
                    else:
                        add_districts(self._rollup_districts(conn, query, first, end))
            finally:
                if own_snapshot:
                    conn.execute("COMMIT")
            buckets: list[Bucket] = []
            if series:
                first_bucket, last_bucket = min(series), max(series)
                if last_bucket - first_bucket >= _MAX_BUCKETS:
                    raise ValueError(f"{last_bucket - first_bucket + 1} {interval} buckets:"
                                     " narrow the time range or use interval=day")
                for b in range(first_bucket, last_bucket + 1):
                    start = datetime.fromtimestamp((b * width - self._offset_ms) / 1000, tz=self._tz)
                    buckets.append(Bucket(start=start, counts=series.get(b, {})))
            return Overview(total=total, by_sentiment=by_sentiment, by_topic=by_topic, by_source=by_source,
                            by_district=by_district, series=buckets, interval=interval)

    @staticmethod
    def _whole_hours(query: PostQuery) -> tuple[int | None, int | None] | None:
        """[first, end) of the whole UTC hours inside the query's window (None = unbounded), or None when the
        rollups cannot answer it (full text, an event filter, or no whole hour in the window)."""
        if (query.q and query.q.strip()) or query.event_id:
            return None
        first = None if query.since is None else -(-to_ms(query.since) // _HOUR_MS) * _HOUR_MS
        end = None if query.until is None else to_ms(query.until) // _HOUR_MS * _HOUR_MS
        if first is not None and end is not None and first >= end:
            return None
        return first, end

    def _exact_counts(self, conn: sqlite3.Connection, query: PostQuery, width: int, *,
                      since_ms: int | None = None, until_ms: int | None = None
                      ) -> Iterator[tuple[int, str, str, str, int]]:
        where, params = self._where(query, since_ms=since_ms, until_ms=until_ms)
        return conn.execute(
            f"SELECT (p.published_ms + ?) / ? AS b, p.sentiment, p.topic, p.source, COUNT(*)"  # noqa: S608
            f" FROM posts p{where} GROUP BY b, p.sentiment, p.topic, p.source",
            [self._offset_ms, width, *params])

    def _exact_districts(self, conn: sqlite3.Connection, query: PostQuery, *, since_ms: int | None = None,
                         until_ms: int | None = None) -> Iterator[tuple[str, int]]:
        where, params = self._where(query, since_ms=since_ms, until_ms=until_ms)
        if not where:
            return conn.execute("SELECT district, COUNT(*) FROM post_districts GROUP BY district")
        # CROSS JOIN keeps posts (narrowed by the filters' indices) as the outer loop; left to
        # itself the planner scans every district row first, which is 20x slower on a 24 h window.
        return conn.execute(f"SELECT d.district, COUNT(*) FROM posts p CROSS JOIN post_districts d"  # noqa: S608
                            f" ON d.rid = p.rid{where} GROUP BY d.district", params)

    @staticmethod
    def _rollup_where(query: PostQuery, first: int | None, end: int | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("source", query.source), ("topic", query.topic), ("district", query.district),
                              ("sentiment", sentiment_value(query.sentiment) if query.sentiment else None)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if first is not None:
            clauses.append("hour_ms >= ?")
            params.append(first)
        if end is not None:
            clauses.append("hour_ms < ?")
            params.append(end)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def _rollup_counts(self, conn: sqlite3.Connection, query: PostQuery, width: int, first: int | None,
                       end: int | None) -> Iterator[tuple[int, str, str, str, int]]:
        where, params = self._rollup_where(query, first, end)
        table = "post_district_hours" if query.district else "post_hours"
        return conn.execute(
            f"SELECT (hour_ms + ?) / ? AS b, sentiment, topic, source, SUM(n) FROM {table}{where}"  # noqa: S608
            f" GROUP BY b, sentiment, topic, source HAVING SUM(n) > 0", [self._offset_ms, width, *params])

    def _rollup_districts(self, conn: sqlite3.Connection, query: PostQuery, first: int | None,
                          end: int | None) -> Iterator[tuple[str, int]]:
        where, params = self._rollup_where(query, first, end)
        table = "post_district_hours" if (query.source or query.topic or query.sentiment) \
            else "post_district_hour_totals"
        return conn.execute(f"SELECT district, SUM(n) FROM {table}{where}"  # noqa: S608
                            f" GROUP BY district HAVING SUM(n) > 0", params)

    def recent_signatures(self, since: datetime) -> Iterator[SignatureRow]:
        """Posts with an event id published since ``since``, oldest first."""
        with self._reading() as conn:
            cursor = conn.execute(
                "SELECT p.id, p.event_id, p.published_ms, d.signature, d.doc"
                " FROM posts p JOIN post_docs d ON d.rid = p.rid"
                " WHERE p.published_ms >= ? AND p.event_id IS NOT NULL ORDER BY p.published_ms", (to_ms(since),))
            for pid, event_id, published_ms, blob, doc_json in cursor:
                doc = json.loads(doc_json)
                # Anchors (places, orgs, tokens, title) let the clusterer keep long-running compound events whole.
                yield SignatureRow(post_id=pid, event_id=event_id,
                                   published_at=datetime.fromtimestamp(published_ms / 1000, tz=UTC),
                                   signature=unpack_signature(blob), source=doc.get("source", ""),
                                   external_id=doc.get("external_id", ""), repost_of=doc.get("repost_of"),
                                   title=doc.get("title_masked") or doc.get("title") or "",
                                   text_norm=doc.get("text_norm") or "", tokens=doc.get("tokens") or [],
                                   entities=Entities.model_validate(doc.get("entities") or {}),
                                   topic=(doc.get("topic") or {}).get("l1") or "",
                                   sentiment=(doc.get("sentiment") or {}).get("label") or "")

    def count(self) -> int:
        """How many posts are stored."""
        with self._reading() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM posts").fetchone()[0])

    def delete_older_than(self, cutoff: datetime) -> int:
        """Delete posts published before ``cutoff`` in bounded transactions; return how many went."""
        cutoff_ms = to_ms(cutoff)
        deleted = 0
        while True:
            with self._write_lock:
                conn = self._w()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    rids = [r[0] for r in conn.execute(
                        "SELECT rid FROM posts WHERE published_ms < ? LIMIT ?", (cutoff_ms, _DELETE_CHUNK))]
                    if rids:
                        gone_hours, gone_districts = self._rollup_keys(conn, rids)
                        self._apply_rollup(conn, {k: -n for k, n in gone_hours.items()},
                                           {k: -n for k, n in gone_districts.items()})
                        marks = ",".join("?" * len(rids))
                        conn.execute(f"DELETE FROM posts_fts WHERE rowid IN ({marks})", rids)  # noqa: S608
                        conn.execute(f"DELETE FROM post_districts WHERE rid IN ({marks})", rids)  # noqa: S608
                        conn.execute(f"DELETE FROM post_docs WHERE rid IN ({marks})", rids)  # noqa: S608
                        conn.execute(f"DELETE FROM posts WHERE rid IN ({marks})", rids)  # noqa: S608
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            deleted += len(rids)
            if len(rids) < _DELETE_CHUNK:
                break
        if deleted:
            log.info("retention: deleted %d posts published before %s", deleted, cutoff.isoformat())
        return deleted

    def close(self) -> None:
        """Close the writer and every reader connection."""
        self._closed = True
        with self._write_lock:
            if self._writer is not None:
                try:
                    self._writer.execute("PRAGMA optimize")  # refresh planner statistics where useful
                except sqlite3.Error as exc:
                    log.debug("PRAGMA optimize skipped: %s", exc)
                self._writer.close()
                self._writer = None
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
