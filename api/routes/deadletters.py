"""Dead letters: list and replay (analyst/admin only: raw bytes may hold personal data)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import DbSession, PipelineDep, SettingsDep
from api.schemas import DeadLetterOut, DeadLetterPageOut
from api.security import require_roles
from core.db.models import DeadLetterRow
from ingest import deadletters

# Past these the database cannot hold the number (SQLite integers are 64-bit): 422, never an OverflowError.
MAX_OFFSET = 1_000_000_000
MAX_ID = 2**53  # JSON numbers are exact up to here; ids never come near it

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead letters"],
                   dependencies=[Depends(require_roles("admin", "analyst"))])


def _out(row: DeadLetterRow) -> DeadLetterOut:
    raw: bytes = row.raw or b""
    return DeadLetterOut(
        id=row.id, stage=row.stage, source=row.source, origin=row.origin, reason=row.reason,
        raw_preview=raw[:2000].decode("utf-8", errors="backslashreplace"), raw_size=len(raw),
        received_at=row.received_at, replayed_at=row.replayed_at, replay_result=row.replay_result,
    )


@router.get("", response_model=DeadLetterPageOut)
def list_dead_letters(
    session: DbSession,
    stage: str | None = None,
    include_replayed: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> DeadLetterPageOut:
    """Dead letters, newest first."""
    total, rows = deadletters.list_dead_letters(
        session, stage=stage, limit=limit, offset=offset, include_replayed=include_replayed
    )
    return DeadLetterPageOut(total=total, items=[_out(r) for r in rows])


class ReplayRequest(BaseModel):
    """Which dead letters to replay (all pending ones when ids is empty)."""

    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(default_factory=list, max_length=10_000)


class ReplayOut(BaseModel):
    """What a replay did: replayed ids, and the new reason for each one still failing."""

    replayed: list[int]
    failed: dict[int, str]
    skipped: list[int]
    missing: list[int]


@router.post("/replay", response_model=ReplayOut)
def replay_dead_letters(body: ReplayRequest, session: DbSession, pipeline: PipelineDep,
                        settings: SettingsDep) -> ReplayOut:
    """Validate the stored raw bytes again; those that pass enter the pipeline."""
    result = deadletters.replay(
        session, ids=body.ids or None, publish=pipeline.publish_post,
        salt=settings.author_salt.get_secret_value(), max_text_chars=settings.max_text_chars,
    )
    session.commit()
    pipeline.c.bus.flush()
    return ReplayOut(replayed=result.replayed, failed=result.failed, skipped=result.skipped,
                     missing=result.missing)
