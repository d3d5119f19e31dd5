"""Graceful stop of ``yuqing run``: SIGTERM and SIGINT both stop intake, drain (bounded), clean up, exit 0.

systemd, Docker and Kubernetes stop a service with SIGTERM; a terminal sends SIGINT. Both run the same steps:

1. stop taking posts: HTTP ingest answers 503 with ``Retry-After``, the demo feeder stops;
2. wait up to ``shutdown_drain_s`` for the workers to process what is queued;
3. stop the HTTP server, the workers (each finishes and commits its batch) and close the stores;
4. log what is left: with the durable bus it stays in ``bus.sqlite`` and is processed at the next start.

A second signal skips the rest of the drain (nothing is lost: the queue is on disk). uvicorn's own signal
handling is switched off because it re-raises SIGTERM after serving, which killed the process with status 143
before any of this could run.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

log = logging.getLogger("yuqing")


def quiet_uvicorn_server(config: Any) -> Any:
    """A ``uvicorn.Server`` that leaves SIGINT/SIGTERM to ``GracefulShutdown``."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        def install_signal_handlers(self) -> None:  # uvicorn < 0.29 names it so
            return None

    return _Server(config)


class GracefulShutdown:
    """Turns the first SIGTERM/SIGINT into stop-intake + bounded drain + server exit; ``finish`` cleans up."""

    def __init__(self, *, pipeline: Any, drain_s: float, stop_server: Callable[[], None],
                 stop_intake: Callable[[], None] | None = None) -> None:
        self.pipeline = pipeline
        self.drain_s = drain_s
        self.stop_server = stop_server
        self.stop_intake = stop_intake
        self.signals: list[int] = []
        self.drained: bool | None = None
        self._drainer: threading.Thread | None = None

    def install(self) -> None:
        """Handle SIGTERM and SIGINT in this (main) thread from now on."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, sig: int, _frame: FrameType | None) -> None:
        self.signals.append(sig)
        name = signal.Signals(sig).name
        if self._drainer is not None:
            log.warning("%s again: stopping without waiting for the drain; queued posts stay on disk", name)
            self.stop_server()
            return
        log.info("%s received: no longer taking posts; draining the pipeline for up to %.0fs", name, self.drain_s)
        # Only flags here: the drain waits, and a signal handler must not block the event loop serving 503s.
        self.pipeline.draining.set()
        self._drainer = threading.Thread(target=self._drain, name="shutdown-drain", daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        try:
            if self.stop_intake is not None:
                self.stop_intake()
            self.drained = self.pipeline.drain(self.drain_s)
            if self.drained:
                log.info("pipeline drained")
            else:
                log.warning("drain timed out after %.0fs with %d message(s) queued", self.drain_s,
                            self.pipeline.backlog())
        except Exception:
            log.exception("drain failed; stopping anyway")
        finally:
            self.stop_server()

    def finish(self, *, close: Callable[[], None]) -> int:
        """Stop the workers, count what is still queued, close the stores, log the outcome; returns that count."""
        self.pipeline.draining.set()
        self.pipeline.stop()
        busy = [w.name for w in self.pipeline.workers if w.alive]
        queued = self.pipeline.backlog()
        bus = self.pipeline.c.bus
        durable = callable(getattr(bus, "queued", None))
        close()
        if busy:
            log.warning("worker(s) %s did not finish their batch in time; it is processed again at the next start",
                        ", ".join(busy))
        if queued and durable:
            log.warning("stopped: %d message(s) left queued in %s; they are kept and processed at the next start",
                        queued, getattr(bus, "path", "the bus"))
        elif queued:
            log.error("stopped: %d message(s) in the in-memory bus were DROPPED (bus_backend=memory keeps nothing "
                      "across a stop; the default durable bus does)", queued)
        elif busy:
            log.info("stopped: nothing left queued")
        elif not self.pipeline.workers:
            log.info("stopped cleanly (no stage workers in this process: accepted posts wait on the bus)")
        else:
            log.info("stopped cleanly: every accepted post was processed")
        return queued
