"""The analyze stage's per-text work in child processes (``analyze.processes``), one batch split across them.

Segmentation, sentiment, topic, NER, masking and the MinHash signature are Python bytecode and hold the
interpreter lock: in one process they use one core, and in embedded mode they also take turns with the
event stage. ``AnalyzePool`` starts ``processes`` spawned children (spawn, not fork: the parent may already
run ONNX Runtime, SQLite and worker threads, none of which survive a fork safely); each builds its own
models once from the same Settings. ``Analyzer`` keeps the cache, the within-batch de-duplication and the
assembly of AnalyzedPosts in the caller's thread and hands the texts it has to analyse to ``derive``,
which splits them into a few chunks per child, balanced by estimated cost (NER texts cost ~3x), hands the
next chunk to whichever child answers first, waits on the pipes without the GIL, and puts the answers
back in order. A child analyses its
chunk with ``Analyzer._derive`` - the in-thread code - so the results are the in-thread results (sentiment
scores to the last bit or so: the n-gram matrix product depends on the batch size, see
tests/analyze/test_process.py).

Ordering and acknowledgement are unchanged: ``Analyzer.analyze`` returns when the whole batch is done. If a
child dies the batch fails with ``BackendUnavailable`` (the stage worker retries it, nothing is committed)
and the next batch starts a fresh set of children.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from core.errors import BackendUnavailable
from core.records import Post

log = logging.getLogger(__name__)

# A child answers the warm-up only after loading every model (jieba, LAC, sentiment): a few seconds.
START_TIMEOUT_S = 300.0
# The Analyzer's cost model for balancing chunks: per post, per character, and the NER model's extra.
_POST_COST = 150
_NER_POST_COST = 500
_NER_CHAR_COST = 2
_NER_MAX_CHARS = 400  # analyze.entities.LAC_MAX_CHARS
# Chunks per child and batch, handed out as children finish (balances a child that lost its core a while).
CHUNKS_PER_CHILD = 3


def child_settings(settings: Any, processes: int) -> Any:
    """The Settings a child builds its Analyzer from: in-thread analysis, the sentiment threads shared out."""
    analyze = settings.analyze.model_copy(update={
        "processes": 0, "subprocess": False,
        "sentiment_threads": max(1, settings.analyze.sentiment_threads // max(1, processes)),
    })
    return settings.model_copy(update={"analyze": analyze})


def _serve(conn: Connection, settings: Any) -> None:
    """Child process: build the Analyzer, then derive chunks of posts until the pipe closes."""
    # One core per child: numerical libraries must not start a thread per core in each child.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from core.wiring import Container

    try:
        analyzer = Container(settings).analyzer
        analyzer.analyze([Post.model_validate_json(_WARM_UP)])
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", analyzer.ner is not None))
    while True:
        try:
            posts = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer: tuple[str, Any] = ("ok", analyzer._derive(posts))
        except Exception as exc:
            answer = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(answer)
        except (EOFError, OSError):  # the parent gave up on this set of children
            return


_WARM_UP = ('{"id": "warm-up", "source": "news", "external_id": "warm-up", "text": "预热 warm-up",'
            ' "published_at": "2026-01-01T00:00:00Z"}')


def split_by_cost(costs: Sequence[int], parts: int) -> list[list[int]]:
    """Indices split into ``parts`` lists of about equal total cost (longest first onto the lightest part)."""
    loads = [0] * parts
    out: list[list[int]] = [[] for _ in range(parts)]
    for i in sorted(range(len(costs)), key=lambda k: -costs[k]):
        j = loads.index(min(loads))
        out[j].append(i)
        loads[j] += costs[i]
    for chunk in out:
        chunk.sort()  # each child sees its posts in batch order
    return [chunk for chunk in out if chunk]


class AnalyzePool:
    """``processes`` spawned children, each with its own models; ``derive`` is ``Analyzer._derive`` across them."""

    def __init__(self, settings: Any, processes: int, *, ner_sources: frozenset[str] = frozenset()) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.processes = processes
        self.settings = child_settings(settings, processes)
        self.ner_sources = ner_sources
        self._lock = threading.Lock()
        self._children: list[tuple[Any, Connection]] = []
        self.ner_enabled: bool | None = None  # whether the children run the NER model (known once started)

    def start(self) -> None:
        """Spawn the children and wait until every one has loaded its models."""
        with self._lock:
            if not self._children:
                self._start()

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        started: list[tuple[Any, Connection]] = []
        for k in range(self.processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, self.settings), name=f"yuqing-analyze-{k}", daemon=True)
            proc.start()
            child.close()
            started.append((proc, parent))
        try:
            ner = set()
            for _proc, parent in started:
                if not parent.poll(START_TIMEOUT_S):
                    raise BackendUnavailable("analyze process did not start in time")
                try:
                    status, detail = parent.recv()
                except (EOFError, OSError) as exc:
                    raise BackendUnavailable(f"analyze process died while starting: {exc}") from exc
                if status != "ready":
                    raise RuntimeError(f"analyze process failed to start: {detail}")
                ner.add(bool(detail))
        except BaseException:
            self._stop(started, wait_s=1)
            raise
        self._children = started
        self.ner_enabled = ner == {True}
        log.info("analyze stage: %d child processes (%s)", len(started), ", ".join(str(p.pid) for p, _ in started))

    def _cost(self, post: Post) -> int:
        text = post.full_text
        cost = _POST_COST + len(text)
        if self.ner_enabled and post.source.value in self.ner_sources:
            cost += _NER_POST_COST + _NER_CHAR_COST * min(len(text), _NER_MAX_CHARS)
        return cost

    def derive(self, posts: Sequence[Post]) -> list[dict[str, Any]]:
        """What ``Analyzer._derive`` gives for these posts, in order, computed by the children in parallel."""
        if not posts:
            return []
        with self._lock:
            if not self._children:
                self._start()
            children = len(self._children)
            # A few chunks per child, handed out as children finish: a child slowed down (another process took
            # its core for a while) takes fewer, so the batch does not wait on the unluckiest chunk.
            chunks = split_by_cost([self._cost(p) for p in posts], children * CHUNKS_PER_CHILD)
            chunks.sort(key=lambda c: -sum(self._cost(posts[i]) for i in c))
            out: list[dict[str, Any] | None] = [None] * len(posts)
            errors: list[str] = []
            pending = list(reversed(chunks))  # pop() hands out the costliest chunk first
            busy: dict[Connection, list[int]] = {}
            try:
                for _, conn in self._children:
                    if not pending:
                        break
                    chunk = pending.pop()
                    conn.send([posts[i] for i in chunk])
                    busy[conn] = chunk
                while busy:
                    for ready in wait(list(busy)):
                        conn = ready  # type: ignore[assignment]
                        status, result = conn.recv()
                        chunk = busy.pop(conn)
                        if status != "ok":
                            errors.append(str(result))
                        else:
                            for i, fields in zip(chunk, result, strict=True):
                                out[i] = fields
                        if pending:
                            chunk = pending.pop()
                            conn.send([posts[i] for i in chunk])
                            busy[conn] = chunk
            except (EOFError, OSError) as exc:
                self._stop(self._children, wait_s=1)
                self._children = []
                raise BackendUnavailable(f"analyze process lost: {exc}") from exc
        if errors:
            raise RuntimeError(f"analyze process: {errors[0]}")
        return out  # type: ignore[return-value]  # every index is in exactly one chunk

    @staticmethod
    def _stop(children: list[tuple[Any, Connection]], *, wait_s: float) -> None:
        for _, conn in children:
            conn.close()  # a child's recv() fails and its loop ends
        for proc, _ in children:
            proc.join(wait_s)
            if proc.is_alive():
                proc.kill()
                proc.join(1)

    def pids(self) -> list[int]:
        """Process ids of the running children."""
        return [proc.pid for proc, _ in self._children]

    def close(self) -> None:
        """Stop the children."""
        with self._lock:
            self._stop(self._children, wait_s=10)
            self._children = []
