"""Background jobs: list and show a workspace's jobs, cancel one, download what it
made; start a workspace export or a world's re-embedding as a job.

Every member sees the workspace's jobs (kind, state, progress, never the story);
its admins cancel them; a job's file is downloaded under the action that made it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from taleweaver.api.deps import EngineDep
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.domain.jobs import Job, JobStatus
from taleweaver.engine.jobs import EXPORT_WORKSPACE, REINDEX_WORLD

router = APIRouter(prefix="/api/v1", tags=["jobs"])


class JobPublic(BaseModel):
    id: str
    kind: str
    status: JobStatus
    progress: float = Field(description="How far it is, 0 to 1.")
    message: str = Field(description="What it is doing now, in a few words.")
    attempts: int = Field(description="Runs started so far.")
    max_attempts: int
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None = Field(description="Why the last run failed (kept while it retries).")
    download: str | None = Field(description="Where to download the file it made, if any.")
    cancel_requested: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    retry_at: datetime | None = Field(description="When a failed job runs again.")


class JobPage(BaseModel):
    items: list[JobPublic]
    total: int
    limit: int
    offset: int


def _public(job: Job) -> JobPublic:
    return JobPublic(
        id=job.id,
        kind=job.kind,
        status=job.status,
        progress=job.progress,
        message=job.message,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        params=job.params,
        result=job.result,
        error=job.error,
        download=f"/api/v1/jobs/{job.id}/download" if job.artifact_name else None,
        cancel_requested=job.cancel_requested,
        created_by=job.created_by,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        retry_at=job.run_after if job.status is JobStatus.QUEUED else None,
    )


@router.get("/jobs")
async def list_jobs(
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORKSPACE_READ)],
    status: JobStatus | None = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> JobPage:
    """The workspace's jobs, newest first."""
    page = await engine.jobs.list(
        access.workspace_id, status=status, kind=kind, limit=limit, offset=offset
    )
    return JobPage(
        items=[_public(j) for j in page.items], total=page.total, limit=limit, offset=offset
    )


@router.get("/jobs/{job_id}")
async def get_job(
    job_id: str, engine: EngineDep, access: Annotated[Access, requires(Action.WORKSPACE_READ)]
) -> JobPublic:
    """One job: its state, progress, and result or error."""
    return _public(await engine.jobs.get(access.workspace_id, job_id))


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(
    job_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORKSPACE_UPDATE)],
) -> JobPublic:
    """Cancel a job: a queued one at once, a running one at its next step (its
    status says when it has stopped). A finished job is left as it is."""
    job = await engine.jobs.cancel(access.workspace_id, job_id)
    await engine.audit.record(
        access.principal.user_id, "job.cancelled", workspace_id=access.workspace_id, target=job_id
    )
    return _public(job)


@router.get(
    "/jobs/{job_id}/download",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
async def download_job_file(
    job_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORKSPACE_EXPORT)],
) -> Response:
    """The file a finished job made (a workspace export's bundle)."""
    artifact = await engine.job_file(access.workspace_id, job_id)
    return Response(
        artifact.data,
        media_type=artifact.media_type,
        headers={"content-disposition": f'attachment; filename="{artifact.filename}"'},
    )


@router.post("/workspaces/{workspace_id}/exports", status_code=202)
async def start_workspace_export(
    workspace_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORKSPACE_EXPORT)],
) -> JobPublic:
    """Export the workspace as a bundle in the background: the job's `download`
    gives the zip once it has succeeded (GET .../export does it in one request)."""
    user = access.principal.user_id
    job = await engine.jobs.submit(access.workspace_id, EXPORT_WORKSPACE, {}, created_by=user)
    await engine.audit.record(
        user, "workspace.exported", workspace_id=access.workspace_id, target=job.id
    )
    return _public(job)


@router.post("/worlds/{world_id}/reindex", status_code=202)
async def start_world_reindex(
    world_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.WORLD_EDIT)],
) -> JobPublic:
    """Re-embed the world's entities whose vectors are missing or stale, in the
    background."""
    await engine.world.bible.world(access.workspace_id, world_id)  # this workspace's
    job = await engine.jobs.submit(
        access.workspace_id,
        REINDEX_WORLD,
        {"world_id": world_id},
        created_by=access.principal.user_id,
    )
    return _public(job)
