"""The engine's background jobs: the job service built from settings, and the kinds the
engine brings (a workspace export to download, re-embedding a world's vectors)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.jobs import Artifact, JobResult
from taleweaver.engine.studio_work import WEBHOOK, WEBHOOK_ATTEMPTS, Run, studio_jobs
from taleweaver.jobs import JobContext, JobHandler, JobService, JobSettings
from taleweaver.store.database import Database

if TYPE_CHECKING:
    from taleweaver.engine.engine import Engine

__all__ = ["EXPORT_WORKSPACE", "REINDEX_WORLD", "job_service", "register_engine_jobs"]

EXPORT_WORKSPACE = "workspace.export"
REINDEX_WORLD = "world.reindex"


def job_service(db: Database, settings: Settings) -> JobService:
    return JobService(
        db,
        JobSettings(
            redis_url=settings.redis_url,
            key_prefix=settings.redis_key_prefix,
            concurrency=settings.job_concurrency,
            lease_s=settings.job_lease_seconds,
            poll_s=settings.job_poll_seconds,
            retry_base_s=settings.job_retry_seconds,
            retry_cap_s=settings.job_retry_cap_seconds,
            max_attempts=settings.job_max_attempts,
        ),
    )


def register_engine_jobs(engine: Engine) -> None:
    """Each handler reads the engine's services when it runs, not when registered."""

    async def export_workspace(ctx: JobContext) -> JobResult:
        await ctx.progress(0.05, "reading the workspace")
        data = await engine.interop.export_workspace(ctx.workspace_id)
        await ctx.progress(0.9, "keeping the bundle")
        name = f"workspace-{ctx.workspace_id}.zip"
        size = len(data)
        # A sensitive workspace's content is sealed at rest, its kept export too.
        if await engine.seals(ctx.workspace_id):
            assert engine.sealer is not None
            data = engine.sealer.seal_file(ctx.workspace_id, ctx.job.id, data)
        return JobResult({"bytes": size}, Artifact(data, "application/zip", name))

    async def reindex_world(ctx: JobContext) -> JobResult:
        world_id = ctx.params.get("world_id")
        if not isinstance(world_id, str):
            raise InvalidInput("a world.reindex job needs a world_id")

        async def progress(checked: int, total: int) -> None:
            await ctx.progress(checked / total if total else 1.0, f"{checked} of {total}")

        await ctx.progress(0.0, "checking the world's vectors")
        embedded = await engine.world.reindex(ctx.workspace_id, world_id, progress=progress)
        return JobResult({"world_id": world_id, "embedded": embedded})

    engine.jobs.register(EXPORT_WORKSPACE, export_workspace)
    engine.jobs.register(REINDEX_WORLD, reindex_world)
    # The studio's: session 1, prep packets, weekly recaps, webhook deliveries.
    for kind, handler in studio_jobs(engine).items():
        attempts = WEBHOOK_ATTEMPTS if kind == WEBHOOK else None
        engine.jobs.register(kind, _studio_handler(handler), max_attempts=attempts)


def _studio_handler(handler: Callable[[Run], Awaitable[JobResult]]) -> JobHandler:
    async def run(ctx: JobContext) -> JobResult:
        return await handler(Run(ctx.job, ctx.progress))

    return run
