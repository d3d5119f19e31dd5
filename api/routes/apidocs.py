"""The API's own documentation, offline: Swagger UI at /docs and ReDoc at /redoc from local files.

FastAPI's default pages load their JavaScript and CSS from a CDN, which a government intranet does not reach, so
they show a blank page there. The assets ship in the ``fastapi-offline`` package (Swagger UI and ReDoc dist files,
MIT/Apache-2.0) and are served from ``/docs-assets``. The OpenAPI document also declares how to authenticate (a
Bearer API token or the session cookie) and what ``POST /api/v1/ingest`` takes, which the route reads raw.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field

ASSETS_PREFIX = "/docs-assets"
_ASSETS = {  # served name -> media type; nothing else in the package directory is reachable
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


def assets_dir() -> Path:
    """Where the Swagger UI and ReDoc files are (the ``fastapi_offline`` package's static folder)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


class IngestEngagement(BaseModel):
    """Interaction counts as the platform reported them."""

    reposts: int = Field(default=0, ge=0)
    comments: int = Field(default=0, ge=0)
    likes: int = Field(default=0, ge=0)
    dislikes: int = Field(default=0, ge=0)


class IngestRecord(BaseModel):
    """One post as a crawler or importer sends it (a record that fails validation becomes a dead letter)."""

    source: Literal["weibo", "wechat", "douyin", "news", "forum", "hotline", "mailbox"]
    external_id: str = Field(description="the platform's own id; with source it makes the post id (idempotent)")
    title: str = ""
    text: str = Field(description="the post text (required, not empty)")
    url: str | None = None
    author: str | None = Field(default=None, description="stored only as a salted hash and a masked display form")
    published_at: datetime = Field(description="ISO 8601; a time without zone is taken as Asia/Shanghai")
    engagement: IngestEngagement = Field(default_factory=IngestEngagement)
    repost_of: str | None = Field(default=None, description="external id of the original post on the same source")
    place_hints: list[str] = Field(default_factory=list, description="places the source already knows, e.g. A3区")


_EXAMPLE = [{"source": "weibo", "external_id": "4890012345", "text": "A3区某小区停水三天了…", "author": "user123",
             "published_at": "2026-11-21T09:30:00+08:00", "engagement": {"reposts": 12, "comments": 3, "likes": 40}}]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the security schemes and the ingest request body."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update({
        "apiToken": {"type": "http", "scheme": "bearer",
                     "description": "An API token from `yuqing users token NAME` (machines; no CSRF token needed)."},
        "session": {"type": "apiKey", "in": "cookie", "name": "yuqing_session",
                    "description": "The dashboard's login session (POST /api/v1/auth/login); writes also need the "
                                   "X-CSRF-Token header."},
    })
    public = {"/health", "/ready", "/api/v1/auth/login", "/", "/metrics"}
    for path, operations in schema.get("paths", {}).items():
        if path in public:
            continue
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.setdefault("security", [{"apiToken": []}, {"session": []}])
    record = IngestRecord.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in record.pop("$defs", {}).items():
        components.setdefault("schemas", {})[name] = sub
    components.setdefault("schemas", {})["IngestRecord"] = record
    ingest = schema.get("paths", {}).get("/api/v1/ingest", {}).get("post")
    if ingest is not None:
        # The body stays "any JSON" (a bad record is dead-lettered with its reason, never the whole request
        # refused); the record's shape is documented beside it and shown by the examples.
        body = ingest.setdefault("requestBody", {"required": True, "content": {}})
        body["description"] = ("A JSON array of records (each as `IngestRecord` under Schemas), or JSON lines "
                               "(one record per line). A record that fails validation is dead-lettered with its "
                               "reason; the others are accepted.")
        content = body.setdefault("content", {})
        content.setdefault("application/json", {"schema": {}})["example"] = _EXAMPLE
        # No example for JSON lines: schema-driven clients (schemathesis) cannot serialise one for that type.
    app.openapi_schema = schema
    return schema


def install(app: FastAPI) -> None:
    """Replace FastAPI's CDN-based /docs and /redoc with local ones and extend the OpenAPI document."""
    replaced = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in replaced]
    openapi_url = app.openapi_url or "/openapi.json"
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]

    @app.get(ASSETS_PREFIX + "/{name}", include_in_schema=False)
    def docs_asset(name: str) -> FileResponse:
        """One of the bundled Swagger UI / ReDoc files."""
        if name not in _ASSETS:
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(assets_dir() / name, media_type=_ASSETS[name],
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        """Swagger UI over local assets."""
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS_PREFIX}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PREFIX}/favicon.png", oauth2_redirect_url="/docs/oauth2-redirect",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_redirect() -> HTMLResponse:
        """Swagger UI's OAuth2 helper page."""
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        """ReDoc over local assets (no web fonts from a CDN)."""
        page = get_redoc_html(openapi_url=openapi_url, title=f"{app.title} - API",
                              redoc_js_url=f"{ASSETS_PREFIX}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS_PREFIX}/favicon.png", with_google_fonts=False)
        # ReDoc's menu shows a logo from cdn.redoc.ly: images from elsewhere than this server are not fetched.
        html = bytes(page.body).decode().replace(
            "<head>", "<head>\n<meta http-equiv=\"Content-Security-Policy\" content=\"img-src 'self' data: blob:\">", 1)
        return HTMLResponse(html)
