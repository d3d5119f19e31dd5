"""The FastAPI app factory. The API reads stores; it never reaches into workers.

Live ticket changes reach browsers through ``/api/v1/stream/tickets`` (Server-Sent Events), fed by
the pipeline's ticket announcements (the ``tickets.changed`` stream), not by polling the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, StreamingResponse

from api.deps import Reader, can_see_ticket
from api.overview_cache import TtlCache
from core.errors import BackendUnavailable, ConflictError, Forbidden, InvalidTransition, NotFound
from core.runtime import Pipeline
from core.store.base import Overview
from core.wiring import Container

log = logging.getLogger(__name__)


class TicketBroadcaster:
    """Fans ticket changes out to every connected SSE client (bounded queues: slow clients drop old items)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the server's event loop so worker threads can publish into it."""
        self._loop = loop

    def publish(self, change: dict[str, Any]) -> None:
        """Called from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._fan_out, change)

    def _fan_out(self, change: dict[str, Any]) -> None:
        for q in list(self._queues):
            if q.full():
                q.get_nowait()
            q.put_nowait(change)

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Yield changes until the client goes away."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=500)
        self._queues.add(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._queues.discard(q)


def create_app(container: Container, *, pipeline: Pipeline | None = None) -> FastAPI:
    """Build the app over a Container (and, in embedded mode, the running Pipeline for ingest)."""
    settings = container.settings
    broadcaster = TicketBroadcaster()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from core.memory import tune_process

        # Before the thread pool grows: the API is a long-running process too (scale mode runs it alone).
        tune_process(arenas=settings.malloc_arenas, trim_interval_s=settings.heap_trim_interval_s)
        broadcaster.bind(asyncio.get_running_loop())
        yield

    app = FastAPI(
        title="yuqing 政务舆情监测与回应",
        version="0.1.0",
        description="Public-opinion monitoring and response: posts, events, early-warning tickets.",
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.settings = settings
    from api.security import resolve_session_secret

    resolve_session_secret(settings)  # refuse to start with the public placeholder; generate one if unset
    app.state.db = container.db
    app.state.pipeline = pipeline
    app.state.broadcaster = broadcaster
    app.state.deadline_policy = container.deadline_policy
    app.state.required_approvals = settings.alerts.required_approvals
    app.state.overview_cache = TtlCache[Overview](settings.api.overview_cache_s)
    if pipeline is not None:
        pipeline.ticket_listeners.append(broadcaster.publish)

    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.api.cors_origins, allow_credentials=True,
            allow_methods=["GET", "POST"], allow_headers=["Content-Type", "X-CSRF-Token", "Authorization"],
        )

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.api.max_body_bytes:
            return JSONResponse({"detail": f"body too large: {length} bytes > {settings.api.max_body_bytes}"},
                                status_code=413)
        response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith(("/docs", "/redoc")):
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            )
        return response

    def _error(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handler(_request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc)}, status_code=status)

        return handler

    app.add_exception_handler(NotFound, _error(404))
    app.add_exception_handler(Forbidden, _error(403))
    app.add_exception_handler(InvalidTransition, _error(409))
    app.add_exception_handler(ConflictError, _error(409))
    app.add_exception_handler(BackendUnavailable, _error(503))

    @app.get("/health", tags=["health"])
    def health() -> JSONResponse:
        """200 when the stores answer; 503 with the failing part otherwise."""
        from api.observability import store_checks

        checks = store_checks(container)
        if pipeline is not None:
            dead = [w.name for w in pipeline.workers if not w.alive]
            checks["workers"] = "ok" if not dead else f"stopped: {', '.join(dead)}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/api/v1/stream/tickets", tags=["tickets"])
    async def ticket_stream(request: Request, user: Reader) -> StreamingResponse:
        """Server-Sent Events: one ``ticket`` event per new or changed ticket the caller may see."""

        async def events() -> AsyncIterator[bytes]:
            yield b": connected\n\n"
            async for change in broadcaster.subscribe():
                if await request.is_disconnected():
                    break
                if not can_see_ticket(user, change):
                    continue
                yield f"event: ticket\ndata: {json.dumps(change, ensure_ascii=False)}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    from fastapi.staticfiles import StaticFiles

    from api.routes import admin, dashboard, deadletters, events, ingest, posts, stats, watchlists

    for module in (posts, events, stats, ingest, deadletters, watchlists, admin, dashboard):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    from api.routes import auth, reports, tickets

    for module in (auth, tickets, reports):
        app.include_router(module.router)
    from api.routes import workbench

    app.include_router(workbench.router)  # 我的待办, notification health, user admin for the dashboard
    from api.routes import apidocs

    apidocs.install(app)  # /docs and /redoc from local files (no CDN), security schemes, the ingest body

    from api.observability import install

    api_settings = settings.api
    install(app, container=container, pipeline=pipeline, login_per_minute=api_settings.login_per_minute,
            ingest_per_minute=api_settings.ingest_per_minute, trust_forwarded=api_settings.trust_forwarded,
            metrics_token=api_settings.metrics_token.get_secret_value() if api_settings.metrics_token else None)
    return app
