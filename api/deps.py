"""FastAPI dependencies as ``Annotated`` aliases (the full-stack template's style)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from pydantic import BeforeValidator
from sqlalchemy.orm import Session

from api.overview_cache import TtlCache
from core.runtime import Pipeline
from core.settings import Settings
from core.store.base import Overview, PostStore
from core.wiring import Container

PRIVILEGED_ROLES = frozenset({"admin", "analyst"})
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: Any) -> Any:
    """Query times as the schema says (RFC 3339 with an offset): not epoch numbers, not naive local times."""
    if isinstance(value, str) and not _RFC3339.match(value.strip()):
        raise ValueError("expected an RFC 3339 date-time with a timezone, e.g. 2026-11-20T09:00:00+08:00")
    return value


# A query parameter that is a point in time; anything pydantic would guess at (0.5, "2026-11-20") is a 422.
QueryTime = Annotated[datetime, BeforeValidator(_rfc3339)]


def unprocessable(loc: list[str], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors (so clients and the OpenAPI schema agree)."""
    return HTTPException(status_code=422, detail=[{"loc": loc, "msg": message, "type": "value_error"}])


def get_container(request: Request) -> Container:
    """The process's Container (set by the app factory)."""
    container: Container = request.app.state.container
    return container


def get_settings_dep(request: Request) -> Settings:
    """The Settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """One SQLAlchemy session per request; committed by the service that changes things."""
    session = request.app.state.db.session()
    try:
        yield session
    finally:
        session.close()


def get_post_store(request: Request) -> PostStore:
    """The post store."""
    store: PostStore = request.app.state.container.post_store
    return store


def get_overview_cache(request: Request) -> TtlCache[Overview]:
    """The shared cache of live overviews (see api/overview_cache.py)."""
    cache: TtlCache[Overview] = request.app.state.overview_cache
    return cache


def get_pipeline(request: Request) -> Pipeline:
    """The ingest entry point."""
    pipeline: Pipeline | None = getattr(request.app.state, "pipeline", None)
    if pipeline is None:
        raise HTTPException(status_code=503, detail="ingest is not available in this process")
    return pipeline


def reader(request: Request) -> Any:
    """Any logged-in user (session cookie or API token): every read of posts, events and stats needs one."""
    from api.security import current_user

    return current_user(request)


def is_privileged(user: Any | None) -> bool:
    """Whether the caller may see unmasked personal data (admin and analyst roles only)."""
    return user is not None and getattr(user, "role", None) in PRIVILEGED_ROLES


def can_see_ticket(user: Any, change: dict[str, Any]) -> bool:
    """Whether a ticket change may be shown to ``user``: unit handlers see their own unit's tickets only."""
    if getattr(user, "role", None) != "handler":
        return True
    unit = getattr(user, "unit_id", None)
    return unit is not None and (change.get("lead_unit") == unit or unit in (change.get("cooperating_units") or []))


ContainerDep = Annotated[Container, Depends(get_container)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DbSession = Annotated[Session, Depends(get_session)]
PostStoreDep = Annotated[PostStore, Depends(get_post_store)]
OverviewCacheDep = Annotated[TtlCache[Overview], Depends(get_overview_cache)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
Reader = Annotated[Any, Depends(reader)]
