"""Rolling session summaries, layered, as the narrator sees them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from taleweaver.api.deps import EngineDep
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.domain.summaries import SummaryRow

router = APIRouter(prefix="/api/v1", tags=["summaries"])


class SummaryPublic(BaseModel):
    id: str
    level: int
    first_turn: int
    last_turn: int
    ref: str
    text: str
    # "model", or "extractive" when the model failed or gave nothing usable.
    method: str
    model: str
    prompt_version: int
    stale: bool
    sources: list[dict[str, Any]]
    source_version: int
    fallback_reason: str | None
    attempts: int
    retry_at: datetime | None
    created_at: datetime


class SummaryPage(BaseModel):
    items: list[SummaryPublic]
    total: int
    limit: int
    offset: int
    # Whether summaries of this session are being written right now.
    in_progress: bool


class RebuildAccepted(BaseModel):
    marked_stale: int
    in_progress: bool


def _public(row: SummaryRow) -> SummaryPublic:
    entry = row.entry
    return SummaryPublic(
        id=entry.id,
        level=entry.span.level,
        first_turn=entry.span.first,
        last_turn=entry.span.last,
        ref=entry.span.ref,
        text=row.text,
        method=entry.method,
        model=entry.model,
        prompt_version=row.prompt_version,
        stale=entry.stale,
        sources=row.sources,
        source_version=row.source_version,
        fallback_reason=row.fallback_reason,
        attempts=entry.attempts,
        retry_at=entry.retry_at,
        created_at=row.created_at,
    )


@router.get("/sessions/{session_id}/summaries")
async def list_summaries(
    session_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_READ)],
    level: Annotated[int | None, Query(ge=1, le=10)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> SummaryPage:
    """The session's summaries in story order (coarser before finer at the same start)."""
    rows, total = await engine.summaries.page(
        access.workspace_id, session_id, level=level, limit=limit, offset=offset
    )
    return SummaryPage(
        items=[_public(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
        in_progress=engine.summaries.running(session_id),
    )


@router.post("/sessions/{session_id}/summaries/rebuild", status_code=202)
async def rebuild_summaries(
    session_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.SESSION_UPDATE)],
) -> RebuildAccepted:
    """Redo every summary of the session in the background (they stay usable meanwhile)."""
    marked = await engine.summaries.rebuild(access.workspace_id, session_id)
    return RebuildAccepted(marked_stale=marked, in_progress=engine.summaries.running(session_id))
