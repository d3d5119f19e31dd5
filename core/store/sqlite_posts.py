"""Post store on SQLite for embedded mode: WAL, one locked writer, per-thread readers, FTS5 search.

Chinese has no spaces, so full-text search runs on pre-segmented words: the caller's ``tokenize``
(jieba in production) is applied to title+text at upsert and to the query at search, and FTS5's
plain ``unicode61`` tokenizer indexes the space-joined words. No SQLite extension is needed.

A post's JSON document (without its MinHash signature, which is kept as a packed blob) is the
source of truth and lives in ``post_docs``; ``posts`` holds narrow copies of the filter columns,
each indexed together with ``published_at`` because every dashboard query is time-bounded, so
counts and sorts over a million rows never read the documents.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import sys
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, NamedTuple

from core.records import AnalyzedPost, Entities, SentimentLabel
from core.store.base import Bucket, Overview, PostPage, PostQuery, PostStore, SignatureRow

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

_WORDLIKE = re.compile(r"[^\W_]")  # a letter or digit: what unicode61 keeps
_CHUNK = 500  # ids per IN (...) list; far below SQLite's variable limit
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
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    # -- connections ------------------------------------------------------------------------------

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
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

    def _r(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("post store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(readonly=True)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    # -- PostStore --------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create tables, indices and the FTS table if missing."""
        with self._write_lock:
            self._w().executescript(_SCHEMA)

    @staticmethod
    def _row(post: AnalyzedPost) -> _Row:
        doc = post.model_dump_json(exclude={"signature"})
        digest = hashlib.blake2b(doc.encode("utf-8"), digest_size=12).digest()
        return _Row(filters=(post.id, post.source.value, post.sentiment.label.value, post.topic.l1,
                             post.event_id, to_ms(post.published_at), to_ms(post.received_at), digest),
                    doc=doc, signature=pack_signature(post.signature))

    def _tokens(self, post: AnalyzedPost) -> str:
        return " ".join(searchable_tokens(self._tokenize(f"{post.title}\n{post.text}")))

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
                if changed:
                    marks = ",".join("?" * len(changed))
                    old = [rids[pid] for pid in changed]
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
        conn = self._r()
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
        row = self._r().execute("SELECT d.doc, d.signature FROM posts p JOIN post_docs d ON d.rid = p.rid"
                                " WHERE p.id=?", (post_id,)).fetchone()
        return self._post(row[0], row[1]) if row else None

    def _match(self, query: PostQuery) -> str | None:
        """The FTS expression for ``query.q``, or None when it has no indexable words."""
        if not (query.q and query.q.strip()):
            return None
        tokens = searchable_tokens(self._tokenize(query.q))
        return match_expression(tokens) if tokens else None

    def _where(self, query: PostQuery) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if query.q and query.q.strip():
            words = self._match(query)
            if words:
                clauses.append("p.rid IN (SELECT rowid FROM posts_fts WHERE posts_fts MATCH ?)")
                params.append(words)
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
        if query.since is not None:
            clauses.append("p.published_ms >= ?")
            params.append(to_ms(query.since))
        if query.until is not None:
            clauses.append("p.published_ms < ?")
            params.append(to_ms(query.until))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def search(self, query: PostQuery) -> PostPage:
        """Filtered full-text search, newest first; ``total`` is exact."""
        where, params = self._where(query)
        conn = self._r()
        words = self._match(query)
        others = (query.source, query.sentiment, query.topic, query.event_id, query.district, query.since,
                  query.until)
        if words and all(v is None or v == "" for v in others):
            # Text is the only filter: FTS counts its own matches without touching posts.
            total = conn.execute("SELECT COUNT(*) FROM posts_fts WHERE posts_fts MATCH ?", (words,)).fetchone()[0]
        else:
            total = conn.execute(f"SELECT COUNT(*) FROM posts p{where}", params).fetchone()[0]  # noqa: S608
        # Sort and page on the narrow rows, then read only the page's documents.
        rows = conn.execute(
            f"SELECT d.doc, d.signature FROM (SELECT p.rid, p.published_ms FROM posts p{where}"  # noqa: S608
            " ORDER BY p.published_ms DESC, p.rid DESC LIMIT ? OFFSET ?) AS page"
            " JOIN post_docs d ON d.rid = page.rid ORDER BY page.published_ms DESC, page.rid DESC",
            [*params, query.limit, query.offset]).fetchall()
        return PostPage(total=total, items=[self._post(doc, sig) for doc, sig in rows])

    def overview(self, query: PostQuery, *, interval: Literal["hour", "day"] = "hour") -> Overview:
        """Counts by sentiment/topic/source/district and a gap-filled series, in one scan plus districts."""
        where, params = self._where(query)
        width = 3_600_000 if interval == "hour" else 86_400_000
        conn = self._r()
        by_sentiment: dict[str, int] = {}
        by_topic: dict[str, int] = {}
        by_source: dict[str, int] = {}
        series: dict[int, dict[str, int]] = {}
        total = 0
        rows = conn.execute(
            f"SELECT (p.published_ms + ?) / ? AS b, p.sentiment, p.topic, p.source, COUNT(*)"  # noqa: S608
            f" FROM posts p{where} GROUP BY b, p.sentiment, p.topic, p.source",
            [self._offset_ms, width, *params])
        for bucket, sentiment, topic, source, n in rows:
            total += n
            by_sentiment[sentiment] = by_sentiment.get(sentiment, 0) + n
            by_topic[topic] = by_topic.get(topic, 0) + n
            by_source[source] = by_source.get(source, 0) + n
            counts = series.setdefault(bucket, {})
            counts[sentiment] = counts.get(sentiment, 0) + n
        if where:
            # CROSS JOIN keeps posts (narrowed by the filters' indices) as the outer loop; left to
            # itself the planner scans every district row first, which is 20x slower on a 24 h window.
            district_sql = (f"SELECT d.district, COUNT(*) FROM posts p CROSS JOIN post_districts d"  # noqa: S608
                            f" ON d.rid = p.rid{where} GROUP BY d.district")
        else:
            district_sql = "SELECT district, COUNT(*) FROM post_districts GROUP BY district"
        by_district = dict(conn.execute(district_sql, params).fetchall())
        buckets: list[Bucket] = []
        if series:
            first, last = min(series), max(series)
            if last - first >= _MAX_BUCKETS:
                raise ValueError(f"{last - first + 1} {interval} buckets: narrow the time range or use interval=day")
            for b in range(first, last + 1):
                start = datetime.fromtimestamp((b * width - self._offset_ms) / 1000, tz=self._tz)
                buckets.append(Bucket(start=start, counts=series.get(b, {})))
        return Overview(total=total, by_sentiment=by_sentiment, by_topic=by_topic, by_source=by_source,
                        by_district=by_district, series=buckets, interval=interval)

    def recent_signatures(self, since: datetime) -> Iterator[SignatureRow]:
        """Posts with an event id published since ``since``, oldest first."""
        cursor = self._r().execute(
            "SELECT p.id, p.event_id, p.published_ms, d.signature, d.doc FROM posts p JOIN post_docs d ON d.rid = p.rid"
            " WHERE p.published_ms >= ? AND p.event_id IS NOT NULL ORDER BY p.published_ms", (to_ms(since),))
        for pid, event_id, published_ms, blob, doc_json in cursor:
            doc = json.loads(doc_json)
            # Anchors (places, orgs, tokens, title) let the clusterer keep long-running compound events whole.
            yield SignatureRow(post_id=pid, event_id=event_id,
                               published_at=datetime.fromtimestamp(published_ms / 1000, tz=UTC),
                               signature=unpack_signature(blob), source=doc.get("source", ""),
                               external_id=doc.get("external_id", ""), repost_of=doc.get("repost_of"),
                               title=doc.get("title_masked") or doc.get("title") or "", tokens=doc.get("tokens") or [],
                               entities=Entities.model_validate(doc.get("entities") or {}))

    def count(self) -> int:
        """How many posts are stored."""
        return int(self._r().execute("SELECT COUNT(*) FROM posts").fetchone()[0])

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
