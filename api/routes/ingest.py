"""HTTP ingest: a batch of records, each validated; bad ones become dead letters with their reason."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from api.deps import PipelineDep, SettingsDep, unprocessable
from api.schemas import IngestItemError, IngestResult
from api.security import require_roles
from ingest.base import RawRecord

# Seconds a client is asked to wait when the service is shutting down (a restart takes about this long).
RETRY_AFTER_S = 30

# Machines send with an API token (`yuqing users token NAME`) of an analyst or admin account.
router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"], dependencies=[Depends(require_roles("admin", "analyst"))])


@router.post("", response_model=IngestResult, status_code=202,
             responses={503: {"description": "shutting down (or the queue is unavailable): send again later"}})
async def ingest_batch(request: Request, pipeline: PipelineDep, settings: SettingsDep,
                       source: str | None = None) -> IngestResult:
    """Accept a JSON array of records (or JSON lines); answers which ones were dead-lettered and why.

    202 means every accepted record is durable in the queue (it survives any stop of the service).
    """
    if pipeline.draining.is_set():
        raise HTTPException(503, "shutting down: not taking posts; send them again after the restart",
                            headers={"Retry-After": str(RETRY_AFTER_S)})
    body = await request.body()
    if len(body) > settings.api.max_body_bytes:
        raise HTTPException(413, f"body too large: {len(body)} bytes > {settings.api.max_body_bytes}")
    if not body.strip():
        raise unprocessable(["body"], "empty body: send a JSON array of records or JSON lines")
    raws = _split(body)
    if len(raws) > settings.api.max_ingest_batch:
        raise HTTPException(413, f"too many records: {len(raws)} > {settings.api.max_ingest_batch} per request")
    errors: list[IngestItemError] = []
    records = [RawRecord(data=raw, origin=f"http[{i}]", source_hint=source) for i, raw in enumerate(raws)]

    def on_dead(record: RawRecord, reason: str) -> None:
        errors.append(IngestItemError(index=int(record.origin[5:-1]), reason=reason))

    stats = await run_in_threadpool(pipeline.ingest, records, on_dead=on_dead)
    return IngestResult(accepted=stats.accepted, dead_lettered=stats.dead_lettered, errors=errors)


def _split(body: bytes) -> list[bytes]:
    """A JSON array becomes one raw record per element; anything else is taken as JSON lines."""
    stripped = body.lstrip()
    if stripped.startswith(b"["):
        try:
            items = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            # Not a valid array: let each line fail (or pass) validation on its own.
            return [line for line in body.splitlines() if line.strip()]
        return [json.dumps(item, ensure_ascii=False).encode() for item in items]
    return [line for line in body.splitlines() if line.strip()]
