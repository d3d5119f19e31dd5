"""HTTP ingest: a batch of records, each validated; bad ones become dead letters with their reason."""

from __future__ import annotations

import re
from collections.abc import Iterator

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from api.deps import PipelineDep, SettingsDep, unprocessable
from api.schemas import IngestDuplicate, IngestItemError, IngestResult
from api.security import require_roles
from core.records import Post
from ingest.base import RawRecord

# Seconds a client is asked to wait when the service is shutting down (a restart takes about this long).
RETRY_AFTER_S = 30

# Machines send with an API token (`yuqing users token NAME`) of an analyst or admin account.
router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"], dependencies=[Depends(require_roles("admin", "analyst"))])

BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "A JSON array of records, or JSON lines (one record per line).",
        "content": {
            # Any JSON: an array of records, or one record; whatever a record holds is validated per record and
            # a bad one is dead-lettered with its reason (202), so no body shape is refused as a whole.
            "application/json": {"schema": {}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    },
}


@router.post("", response_model=IngestResult, status_code=202, openapi_extra=BODY_DOC, responses={
    413: {"description": "body or batch too large"}, 422: {"description": "empty body"},
    429: {"description": "too many requests from this address"},
    503: {"description": "shutting down (or the queue is unavailable): send again later"}})
async def ingest_batch(request: Request, pipeline: PipelineDep, settings: SettingsDep,
                       source: str | None = None) -> IngestResult:
    """Accept a JSON array of records (or JSON lines); answers which ones were dead-lettered and why.

    Records of the batch with the same source and external id as an earlier one are the same post: only the
    first is taken, the others are listed under ``duplicates`` (not counted as accepted).
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
    duplicates: list[IngestDuplicate] = []
    records = [RawRecord(data=raw, origin=f"http[{i}]", source_hint=source) for i, raw in enumerate(raws)]
    first_index: dict[str, int] = {}
    pending: list[Post] = []  # published in one call: one transaction (one fsync) on the durable bus
    current = [0]

    def in_order() -> Iterator[RawRecord]:
        for i, record in enumerate(records):
            current[0] = i
            yield record

    def publish_once(post: Post) -> None:
        seen = first_index.setdefault(post.id, current[0])
        if seen != current[0]:
            duplicates.append(IngestDuplicate(index=current[0], duplicate_of=seen))
            return
        pending.append(post)

    def on_dead(record: RawRecord, reason: str) -> None:
        errors.append(IngestItemError(index=int(record.origin[5:-1]), reason=reason))

    def run() -> None:
        from ingest.service import ingest_records
        from ingest.validate import guess_source

        def dead(record: RawRecord, reason: str) -> None:
            pipeline.dead_letter(stage="ingest", source=guess_source(record.data, record.source_hint),
                                 origin=record.origin, reason=reason, raw=record.data)
            on_dead(record, reason)

        ingest_records(in_order(), publish=publish_once, dead_letter=dead,
                       salt=settings.author_salt.get_secret_value(), max_text_chars=settings.max_text_chars)
        if pending:
            pipeline.publish_posts(pending)
        pipeline.c.bus.flush()  # 202 only once every accepted post is durable

    await run_in_threadpool(run)
    errors = [e.model_copy(update={"reason": _masked(e.reason)}) for e in errors]
    accepted = len(records) - len(errors) - len(duplicates)
    return IngestResult(accepted=accepted, dead_lettered=len(errors), errors=errors, duplicates=duplicates)


def _masked(reason: str) -> str:
    from ingest.validate import mask_reason

    return mask_reason(reason)


# A JSON string (escapes skipped) or one structural character; strings are matched whole so brackets and
# commas inside them never count.
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]', re.DOTALL)


def _split_array(body: bytes) -> list[bytes] | None:
    """The raw bytes of each element of a top-level JSON array, or None when it is not a well-formed array.

    Elements are cut at the array's own commas by a scanner that tracks nesting with a counter: nothing is
    decoded here, so a lone surrogate, a 5,000-digit number or nesting 100,000 deep stays inside its own
    element and is dead-lettered by validation with its reason, exactly as the same record sent as a line.
    """
    start = body.find(b"[")
    depth = 0
    items: list[bytes] = []
    segment_from = start + 1
    commas = 0
    for m in _JSON_TOKEN.finditer(body, start):
        token = m.group()
        if token[:1] == b'"':
            continue
        if token in (b"[", b"{"):
            depth += 1
        elif token in (b"]", b"}"):
            depth -= 1
            if depth == 0:
                last = body[segment_from:m.start()].strip()
                if last or commas:
                    items.append(last)
                return items if not body[m.end():].strip() else None
        elif depth == 1:  # a comma between elements
            items.append(body[segment_from:m.start()].strip())
            segment_from = m.end()
            commas += 1
    return None


def _split(body: bytes) -> list[bytes]:
    """A JSON array becomes one raw record per element; anything else is taken as JSON lines."""
    if body.lstrip().startswith(b"["):
        items = _split_array(body)
        if items is not None:
            return items
        # Not a well-formed array: let each line fail (or pass) validation on its own.
    return [line for line in body.splitlines() if line.strip()]
