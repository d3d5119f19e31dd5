"""The analyze stage in a child process, so it does not share the GIL with the event stage.

In embedded mode every stage is a thread of one process: the analyze stage (jieba, LAC, the n-gram
sentiment: Python bytecode) and the event stage (clusterer, SQLAlchemy, SQLite) then take turns on one
interpreter lock, and the pipeline runs at about the sum of their costs instead of the slower one's.
``AnalyzeProcess`` keeps the analyze *worker* (poll, publish, commit) in the parent thread and sends each
batch to a spawned child that built its own Analyzer from the same Settings; the parent waits on a pipe
(without the GIL) and publishes what comes back. Ordering and acknowledgement are unchanged: the batch is
published and flushed before the worker commits the raw offsets, exactly as with the in-process analyzer.
If the child dies, the batch is retried (``BackendUnavailable``) with a fresh child; nothing is committed.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any

from core.errors import BackendUnavailable
from core.records import Post

log = logging.getLogger(__name__)

# The child answers the warm-up only after loading every model (jieba, LAC, sentiment): a few seconds.
START_TIMEOUT_S = 300.0


def _serve(conn: Connection, settings: Any) -> None:
    """Child process: build the Analyzer, then answer batches until the pipe closes."""
    from core.wiring import Container

    try:
        analyzer = Container(settings).analyzer
        analyzer.analyze([Post.model_validate_json(_WARM_UP)])
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    from core.runtime import analyzed_key

    while True:
        try:
            payload = conn.recv()
        except (EOFError, OSError):
            return
        try:
            posts = [Post.model_validate_json(raw) for raw in payload]
            analyzed = analyzer.analyze(posts)
            conn.send(("ok", [(analyzed_key(p), p.model_dump_json().encode()) for p in analyzed]))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


_WARM_UP = ('{"id": "warm-up", "source": "news", "external_id": "warm-up", "text": "预热 warm-up",'
            ' "published_at": "2026-01-01T00:00:00Z"}')


class AnalyzeProcess:
    """Analyzer.analyze over a pipe to one spawned child; ``analyze_encoded`` returns (key, json bytes) pairs."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._proc: Any = None
        self._conn: Connection | None = None

    def start(self) -> None:
        """Spawn the child and wait until its models are loaded."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, self.settings), name="yuqing-analyze", daemon=True)
        proc.start()
        child.close()
        if not parent.poll(START_TIMEOUT_S):
            proc.kill()
            raise BackendUnavailable("analyze process did not start in time")
        try:
            status, detail = parent.recv()
        except (EOFError, OSError) as exc:
            raise BackendUnavailable(f"analyze process died while starting: {exc}") from exc
        if status != "ready":
            proc.join(5)
            raise RuntimeError(f"analyze process failed to start: {detail}")
        self._proc, self._conn = proc, parent
        log.info("analyze stage running in child process %s", proc.pid)

    def analyze_encoded(self, posts: list[Post]) -> list[tuple[str, bytes]]:
        """The analyzed posts of a batch, in order, as (partition key, JSON) ready to publish."""
        payload = [p.model_dump_json() for p in posts]
        with self._lock:
            if self._conn is None:
                self._start()
            conn = self._conn
            assert conn is not None
            try:
                conn.send(payload)
                status, result = conn.recv()
            except (EOFError, OSError) as exc:
                self._discard()
                raise BackendUnavailable(f"analyze process lost: {exc}") from exc
        if status != "ok":
            raise RuntimeError(f"analyze process: {result}")
        return [(key, value) for key, value in result]

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.join(1)
            if self._proc.is_alive():
                self._proc.kill()
        self._proc, self._conn = None, None

    def close(self) -> None:
        """Stop the child (closing the pipe ends its loop)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            if self._proc is not None:
                self._proc.join(10)
                if self._proc.is_alive():
                    self._proc.kill()
            self._proc, self._conn = None, None
