"""Operations endpoints and guards: ``/metrics``, ``/ready``, request ids in logs, per-IP rate limits.

``install(app, container=..., pipeline=...)`` is called once at the end of ``api.app.create_app``. It adds
one pure-ASGI middleware, outermost, which

- gives every request an id (the caller's ``X-Request-ID`` when it is short and plain, else a new one),
  writes it back into the request so the app's own guard echoes the same id, and keeps it in a context
  variable that a log-record factory copies onto every record logged while the request runs
  (``request_id``, which ``core.logging.JsonFormatter`` already emits);
- rate-limits ``POST /api/v1/auth/login`` and ``POST /api/v1/ingest`` per client address with token
  buckets in memory: a refused request gets 429 and ``Retry-After`` (whole seconds).

The client address is the socket peer. Behind a reverse proxy pass ``trust_forwarded=True`` so the
first ``X-Forwarded-For`` entry is used instead (only then: the header is trivially forged).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from core.metrics import build_registry

if TYPE_CHECKING:
    from core.runtime import Pipeline
    from core.wiring import Container

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[MutableMapping[str, Any]], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

REQUEST_ID: ContextVar[str | None] = ContextVar("yuqing_request_id", default=None)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # anything else could forge log lines; replace it


# -- request ids in log records ----------------------------------------------------------------------
_factory_lock = threading.Lock()


def install_log_record_factory() -> None:
    """Make every log record created during a request carry ``request_id`` (idempotent, process-wide)."""
    with _factory_lock:
        current = logging.getLogRecordFactory()
        if getattr(current, "_yuqing_request_id", False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = current(*args, **kwargs)
            rid = REQUEST_ID.get()
            if rid is not None and not hasattr(record, "request_id"):
                record.request_id = rid
            return record

        factory._yuqing_request_id = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)


class RequestIdFilter(logging.Filter):
    """For handlers set up before the factory: adds ``request_id`` from the context when missing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            rid = REQUEST_ID.get()
            if rid is not None:
                record.request_id = rid
        return True


# -- rate limits --------------------------------------------------------------------------------------
class TokenBucket:
    """Per-key token buckets: ``per_minute`` refill, ``burst`` capacity; bounded number of keys."""

    def __init__(self, *, per_minute: float, burst: int, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_minute > 0 and burst >= 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every address (an operator unblocking, or a test starting clean)."""
        with self._lock:
            self._buckets.clear()

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when allowed, else seconds until one is free."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)  # most recently used last
            while len(self._buckets) > self.max_keys:
                # The least recently seen address goes: its bucket would have refilled by now anyway.
                self._buckets.popitem(last=False)
            return wait


class ObservabilityMiddleware:
    """Request ids and rate limits in front of the app (pure ASGI: no body buffering, streams untouched)."""

    def __init__(self, app: ASGIApp, *, limits: dict[tuple[str, str], TokenBucket],
                 trust_forwarded: bool = False) -> None:
        self.app = app
        self.limits = limits
        self.trust_forwarded = trust_forwarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        given = next((v.decode("latin-1") for k, v in headers if k == b"x-request-id"), "")
        rid = given if _SAFE_ID.match(given) else uuid.uuid4().hex[:16]
        if rid != given:
            headers = [(k, v) for k, v in headers if k != b"x-request-id"] + [(b"x-request-id", rid.encode())]
            scope = dict(scope, headers=headers)
        token = REQUEST_ID.set(rid)
        try:
            bucket = self.limits.get((scope.get("method", ""), scope.get("path", "").rstrip("/") or "/"))
            if bucket is not None:
                wait = bucket.take(self._client(scope, headers))
                if wait > 0:
                    await self._refuse(send, rid, wait)
                    return
            await self.app(scope, receive, send)
        finally:
            REQUEST_ID.reset(token)

    def _client(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> str:
        if self.trust_forwarded:
            forwarded = next((v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"), "")
            first = forwarded.split(",")[0].strip()
            if first:
                return first
        client = scope.get("client")
        return str(client[0]) if client else "unknown"

    @staticmethod
    async def _refuse(send: Send, rid: str, wait: float) -> None:
        retry = max(1, math.ceil(wait))
        log.info("rate limit: refused %s for %d s", rid, retry)
        body = json.dumps({"detail": f"请求过于频繁，请 {retry} 秒后再试 / too many requests, retry in {retry} s"},
                          ensure_ascii=False).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry).encode()), (b"x-request-id", rid.encode()),
            (b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"),
        ]})
        await send({"type": "http.response.body", "body": body})


# -- readiness ------------------------------------------------------------------------------------------
def store_checks(container: Container) -> dict[str, str]:
    """Whether the database and the post store answer (``ok`` or the error's type)."""
    checks: dict[str, str] = {}
    try:
        with container.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            # A database that answers reads but refuses writes (read-only file or mount, a standby) cannot
            # keep tickets: a write that changes nothing, rolled back, finds out without touching data.
            try:
                conn.execute(text("UPDATE alembic_version SET version_num = version_num WHERE 1 = 0"))
            finally:
                conn.rollback()
        checks["database"] = "ok"
    except Exception as exc:
        readonly = "readonly" in str(exc).replace("-", "").replace(" ", "").lower()
        checks["database"] = "error: read-only" if readonly else f"error: {type(exc).__name__}"
    try:
        container.post_store.count()
        checks["post_store"] = "ok"
    except Exception as exc:
        checks["post_store"] = f"error: {type(exc).__name__}"
    return checks


def readiness(container: Container, pipeline: Pipeline | None) -> dict[str, str]:
    """Each readiness check and its outcome (``ok`` or why not)."""
    checks = store_checks(container)
    try:
        checks["bus"] = "ok" if container.bus is not None else "missing"
    except Exception as exc:
        checks["bus"] = f"error: {type(exc).__name__}"
    if pipeline is not None:
        # A draining process refuses new posts (ingest answers 503): a balancer must stop sending them here.
        checks["intake"] = "draining" if pipeline.draining.is_set() else "ok"
        if pipeline.workers:  # an API-only process (ingest publishes, workers run elsewhere) has none
            dead = [w.name for w in pipeline.workers if not w.alive]
            checks["workers"] = "ok" if not dead else f"stopped: {', '.join(dead)}"
        if any(w.name == "analyze" for w in pipeline.workers):
            checks["sentiment"] = "ok" if "sentiment" in container.__dict__ else _warm_up(container)
    return checks


_warming: weakref.WeakSet[Any] = weakref.WeakSet()  # containers whose analyzer is loading or loaded
_warming_lock = threading.Lock()


def _warm_up(container: Container) -> str:
    """Load the analyzer (and so the sentiment model) in the background, once; report ``loading``."""
    with _warming_lock:
        if container not in _warming:
            _warming.add(container)

            def load() -> None:
                try:
                    _ = container.analyzer
                except Exception:
                    log.exception("could not load the analyzer; /ready stays unavailable")
                    with _warming_lock:
                        _warming.discard(container)  # let the next probe try again

            threading.Thread(target=load, name="warm-up", daemon=True).start()
    return "loading"


# -- the OpenAPI schema says every answer the app gives ------------------------------------------------
_ERROR = {"type": "object", "required": ["detail"], "properties": {"detail": {"anyOf": [
    {"type": "string"}, {"type": "array", "items": {"type": "object"}}]}}, "title": "Error"}
_PUBLIC = {("/api/v1/auth/login", "post"), ("/health", "get"), ("/ready", "get"), ("/", "get")}
_RATE_LIMITED = {("/api/v1/auth/login", "post"), ("/api/v1/ingest", "post")}


def document_errors(schema: dict[str, Any], *, page_size_max: int) -> dict[str, Any]:
    """Add the error answers FastAPI's generated schema leaves out, so clients (and schemathesis) know them.

    401/403 on everything behind a login, 404 where a path names a thing, 400 and 413 where a body is read,
    409 on ticket actions, 429 on the rate-limited doors, 503 when a store is down; 422 bodies may carry a
    plain string detail as well as FastAPI's list. ``limit`` of posts and events gets its real maximum.
    """
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            wanted: dict[str, str] = {"503": "a store is unavailable"}
            if (path, method) not in _PUBLIC and path.startswith("/api/"):
                wanted.update({"401": "not logged in", "403": "not allowed for this role (or no CSRF token)"})
            if "{" in path:
                wanted["404"] = "not found (or not visible to the caller)"
            if method in ("post", "put", "patch", "delete"):
                wanted.update({"400": "the body could not be read or is inconsistent", "413": "body too large"})
            if path.startswith("/api/v1/tickets"):
                wanted.update({"400": "inconsistent request", "409": "not allowed in the ticket's state"})
            if path.startswith("/api/v1/dashboard/users"):
                wanted["409"] = "conflicts with what exists (name taken, unknown unit, own account, no unit)"
            if (path, method) in _RATE_LIMITED:
                wanted["429"] = "too many requests"
            for code, why in wanted.items():
                responses.setdefault(code, {"description": why, "content": error})
            if "422" in responses:
                responses["422"]["content"] = {"application/json": {"schema": {"anyOf": [
                    {"$ref": "#/components/schemas/HTTPValidationError"},
                    {"$ref": "#/components/schemas/Error"}]}}}
            for param in op.get("parameters", []):
                if param.get("name") == "limit" and path in ("/api/v1/posts", "/api/v1/events"):
                    param["schema"]["maximum"] = page_size_max
    report = schema.get("paths", {}).get("/api/v1/reports/units", {}).get("get")
    if report is not None:
        content = report["responses"]["200"].setdefault("content", {})
        content["text/csv"] = {"schema": {"type": "string"}}
        content["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"] = {
            "schema": {"type": "string", "format": "binary"}}
    return schema


def _install_openapi(app: FastAPI, *, page_size_max: int) -> None:
    # Wraps whatever built the document before (api.routes.apidocs: security schemes, the ingest body's
    # records), adding the error answers on top, so neither part is lost whichever is installed first.
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if not getattr(app.state, "openapi_errors_documented", False):
            app.openapi_schema = document_errors(build(), page_size_max=page_size_max)
            app.state.openapi_errors_documented = True
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class AllowHeaderMiddleware:
    """A 405 names every method the path serves, from the OpenAPI paths (Starlette names only the methods of
    the first route whose path matched)."""

    def __init__(self, app: ASGIApp, *, openapi: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.openapi = openapi
        self._paths: list[tuple[re.Pattern[str], set[str]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_allow(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and message.get("status") == 405:
                methods = self._methods(scope.get("path", ""))
                if methods:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    headers.append((b"allow", ", ".join(sorted(methods)).encode()))
                    message = dict(message, headers=headers)
            await send(message)

        await self.app(scope, receive, send_with_allow)

    def _methods(self, path: str) -> set[str]:
        if self._paths is None:
            paths: list[tuple[re.Pattern[str], set[str]]] = []
            for template, item in self.openapi().get("paths", {}).items():
                source = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
                paths.append((re.compile(f"^{source}$"), {m.upper() for m in item if m != "parameters"}))
            self._paths = paths
        found: set[str] = set()
        for compiled, methods in self._paths:
            if compiled.match(path):
                found |= methods
        return found


# -- install --------------------------------------------------------------------------------------------
def install(app: FastAPI, *, container: Container, pipeline: Pipeline | None = None,
            login_per_minute: float = 10.0, login_burst: int = 5,
            ingest_per_minute: float = 120.0, ingest_burst: int = 30,
            trust_forwarded: bool = False, metrics_cache_s: float = 10.0, metrics_token: str | None = None) -> None:
    """Add ``/metrics``, ``/ready``, request ids and rate limits to ``app`` (call last in the factory; once).

    ``metrics_token``: when set, ``/metrics`` answers only ``Authorization: Bearer <token>`` (Prometheus'
    ``authorization`` scrape option); otherwise keep it reachable from the monitoring network only.
    """
    if getattr(app.state, "rate_limits", None) is not None:
        return  # installed already: limits can still be replaced in ``app.state.rate_limits``
    install_log_record_factory()
    registry = build_registry(container, pipeline=pipeline, cache_s=metrics_cache_s)
    limits = {
        ("POST", "/api/v1/auth/login"): TokenBucket(per_minute=login_per_minute, burst=login_burst),
        ("POST", "/api/v1/ingest"): TokenBucket(per_minute=ingest_per_minute, burst=ingest_burst),
    }
    app.state.rate_limits = limits
    app.state.metrics_registry = registry
    # Only for deployments that keep /metrics on a monitoring network: YUQING_API__METRICS_PUBLIC=true.
    metrics_public = bool(getattr(container.settings.api, "metrics_public", False))

    @app.get("/metrics", tags=["health"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
                        401: {"description": "no scrape token or API token"},
                        403: {"description": "the token's account is not admin or analyst"}})
    def metrics(request: Request) -> Response:
        """Prometheus metrics (text exposition format)."""
        given = request.headers.get("authorization", "")
        if metrics_token is not None and hmac.compare_digest(given.encode(), f"Bearer {metrics_token}".encode()):
            pass  # the scrape token
        elif not metrics_public:
            # Counts of posts, tickets and dead letters are not for anonymous callers: an admin's or
            # analyst's API token (Prometheus' ``authorization`` option) or the scrape token is needed.
            from fastapi import HTTPException

            from api.security import current_user

            try:
                user = current_user(request)
            except (HTTPException, AttributeError):  # AttributeError: an app without users (tests, tools)
                return JSONResponse({"detail": "metrics need the scrape token or an admin/analyst API token"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            if user.role not in ("admin", "analyst"):
                return JSONResponse({"detail": "metrics need an admin or analyst account"}, status_code=403)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/ready", tags=["health"])
    def ready() -> JSONResponse:
        """200 when this process can serve and work: stores answer, bus exists, model loaded, workers alive."""
        checks = readiness(container, pipeline)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    app.add_middleware(AllowHeaderMiddleware, openapi=lambda: app.openapi())
    app.add_middleware(ObservabilityMiddleware, limits=limits, trust_forwarded=trust_forwarded)
    _install_openapi(app, page_size_max=int(getattr(container.settings.api, "page_size_max", 200)))
