"""Job records in our database: every change of state is one conditional UPDATE, so
two replicas racing for a job, or a worker whose lease ran out, can never both win.

Writes use their own short transactions, not `Database.write()`: jobs are no events,
and must not queue behind (or lock) the event log.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import NotFound
from taleweaver.domain.events import JSON
from taleweaver.domain.jobs import Artifact, Job, JobPage, JobStatus
from taleweaver.store.database import Database
from taleweaver.store.jobs_schema import jobs

__all__ = ["JobRecords"]

_RUNNING = JobStatus.RUNNING.value
_QUEUED = JobStatus.QUEUED.value
# Every column but the artifact: lists and polls never carry the file.
_COLUMNS = [c for c in jobs.c if c.name != "artifact"]


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite reads naive


def _job(row: Any) -> Job:
    created = _utc(row.created_at)
    updated = _utc(row.updated_at)
    assert created is not None and updated is not None
    return Job(
        id=row.id,
        kind=row.kind,
        workspace_id=row.workspace_id,
        status=JobStatus(row.status),
        params=dict(row.params),
        progress=float(row.progress),
        message=row.message,
        attempts=int(row.attempts),
        max_attempts=int(row.max_attempts),
        result=None if row.result is None else dict(row.result),
        error=row.error,
        artifact_name=row.artifact_name,
        cancel_requested=bool(row.cancel_requested),
        created_by=row.created_by,
        created_at=created,
        updated_at=updated,
        started_at=_utc(row.started_at),
        finished_at=_utc(row.finished_at),
        run_after=_utc(row.run_after),
    )


class JobRecords:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _change(self, query: sa.Update) -> bool:
        """Run one conditional update; whether it matched a row."""
        async with self.db.engine.begin() as conn:
            return (await conn.execute(query)).rowcount == 1

    # --- reading ---------------------------------------------------------------------

    async def _one(self, conn: AsyncConnection, job_id: str) -> Job | None:
        row = (await conn.execute(sa.select(*_COLUMNS).where(jobs.c.id == job_id))).first()
        return None if row is None else _job(row)

    async def find(self, job_id: str) -> Job | None:
        async with self.db.read() as conn:
            return await self._one(conn, job_id)

    async def get(self, workspace_id: str, job_id: str) -> Job:
        """The job, if it is this workspace's; another workspace's is not found."""
        job = await self.find(job_id)
        if job is None or job.workspace_id != workspace_id:
            raise NotFound(f"job {job_id} not found")
        return job

    async def page(
        self,
        workspace_id: str,
        *,
        status: JobStatus | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobPage:
        where = [jobs.c.workspace_id == workspace_id]
        if status is not None:
            where.append(jobs.c.status == status.value)
        if kind is not None:
            where.append(jobs.c.kind == kind)
        query = (
            sa.select(*_COLUMNS)
            .where(*where)
            .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
            total = await conn.scalar(sa.select(sa.func.count()).select_from(jobs).where(*where))
        return JobPage([_job(r) for r in rows], int(total or 0))

    async def artifact(self, workspace_id: str, job_id: str) -> Artifact:
        query = sa.select(
            jobs.c.artifact, jobs.c.artifact_type, jobs.c.artifact_name, jobs.c.workspace_id
        ).where(jobs.c.id == job_id)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        if row is None or row.workspace_id != workspace_id:
            raise NotFound(f"job {job_id} not found")
        if row.artifact is None:
            raise NotFound(f"job {job_id} has no file to download (yet)")
        return Artifact(bytes(row.artifact), row.artifact_type, row.artifact_name)

    # --- the life of a job ---------------------------------------------------------------

    async def create(
        self,
        workspace_id: str,
        kind: str,
        params: JSON,
        *,
        max_attempts: int,
        created_by: str | None,
    ) -> Job:
        now = _now()
        job_id = f"job_{uuid.uuid4().hex}"
        values = {
            "id": job_id,
            "workspace_id": workspace_id,
            "kind": kind,
            "status": _QUEUED,
            "params": params,
            "progress": 0.0,
            "message": "",
            "attempts": 0,
            "max_attempts": max_attempts,
            "cancel_requested": False,
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
        }
        async with self.db.engine.begin() as conn:
            await conn.execute(jobs.insert().values(values))
            job = await self._one(conn, job_id)
        assert job is not None
        return job

    async def mark_kicked(self, job_id: str, previous: datetime | None) -> bool:
        """Take the right to hand a queued job to the queue: one replica wins."""
        at = jobs.c.kicked_at.is_(None) if previous is None else jobs.c.kicked_at == previous
        return await self._change(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.status == _QUEUED, at)
            .values(kicked_at=_now())
        )

    async def due(self, *, stale_kick: timedelta, limit: int = 100) -> list[tuple[str, Any]]:
        """Queued jobs to hand to the queue: never handed, or handed so long ago that
        the message must have been lost; a retry only once its wait is over."""
        now = _now()
        query = (
            sa.select(jobs.c.id, jobs.c.kicked_at)
            .where(
                jobs.c.status == _QUEUED,
                sa.or_(jobs.c.run_after.is_(None), jobs.c.run_after <= now),
                sa.or_(jobs.c.kicked_at.is_(None), jobs.c.kicked_at < now - stale_kick),
            )
            .order_by(jobs.c.created_at)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [(r.id, r.kicked_at) for r in await conn.execute(query)]

    async def forget_kicks(self) -> None:
        """Queued jobs were handed to an in-process queue that died with its process."""
        await self._change(jobs.update().where(jobs.c.status == _QUEUED).values(kicked_at=None))

    async def claim(self, job_id: str, owner: str, lease: timedelta) -> Job | None:
        """Start a run of the job: it must be queued, due, and not cancelled."""
        now = _now()
        claimed = await self._change(
            jobs.update()
            .where(
                jobs.c.id == job_id,
                jobs.c.status == _QUEUED,
                jobs.c.cancel_requested.is_(False),
                sa.or_(jobs.c.run_after.is_(None), jobs.c.run_after <= now),
            )
            .values(
                status=_RUNNING,
                attempts=jobs.c.attempts + 1,
                lease_owner=owner,
                lease_until=now + lease,
                started_at=sa.func.coalesce(jobs.c.started_at, now),
                updated_at=now,
            )
        )
        return await self.find(job_id) if claimed else None

    async def renew(
        self,
        job_id: str,
        owner: str,
        lease: timedelta,
        *,
        progress: float | None = None,
        message: str | None = None,
    ) -> bool | None:
        """Extend this worker's lease (and record progress): whether a cancel was
        asked for; None when the job is no longer this worker's to run."""
        now = _now()
        values: dict[str, Any] = {"lease_until": now + lease, "updated_at": now}
        if progress is not None:
            values["progress"] = min(1.0, max(0.0, progress))
        if message is not None:
            values["message"] = message[:500]
        mine = (jobs.c.id == job_id, jobs.c.status == _RUNNING, jobs.c.lease_owner == owner)
        async with self.db.engine.begin() as conn:
            if (await conn.execute(jobs.update().where(*mine).values(values))).rowcount != 1:
                return None
            return bool(
                await conn.scalar(sa.select(jobs.c.cancel_requested).where(jobs.c.id == job_id))
            )

    def _finish(self, job_id: str, owner: str, status: JobStatus, **values: Any) -> sa.Update:
        now = _now()
        return (
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.status == _RUNNING, jobs.c.lease_owner == owner)
            .values(
                status=status.value,
                lease_owner=None,
                lease_until=None,
                updated_at=now,
                finished_at=now,
                **values,
            )
        )

    async def succeed(
        self, job_id: str, owner: str, result: JSON, artifact: Artifact | None
    ) -> bool:
        """Record the result, once: only the worker holding the lease can."""
        files: dict[str, Any] = {}
        if artifact is not None:
            files = {
                "artifact": artifact.data,
                "artifact_type": artifact.media_type,
                "artifact_name": artifact.filename,
            }
        return await self._change(
            self._finish(
                job_id, owner, JobStatus.SUCCEEDED, result=result, progress=1.0, error=None, **files
            )
        )

    async def fail(self, job_id: str, owner: str, error: str) -> bool:
        return await self._change(self._finish(job_id, owner, JobStatus.FAILED, error=error))

    async def cancelled(self, job_id: str, owner: str) -> bool:
        return await self._change(
            self._finish(job_id, owner, JobStatus.CANCELLED, message="cancelled")
        )

    async def retry_later(self, job_id: str, owner: str, error: str, wait: timedelta) -> bool:
        """Back to the queue after a failed run, to be run again after `wait`."""
        now = _now()
        return await self._change(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.status == _RUNNING, jobs.c.lease_owner == owner)
            .values(
                status=_QUEUED,
                error=error,
                lease_owner=None,
                lease_until=None,
                run_after=now + wait,
                kicked_at=None,
                updated_at=now,
            )
        )

    async def release(self, job_id: str, owner: str) -> bool:
        """An orderly shutdown gives the run back: queued again, the attempt uncounted."""
        return await self._change(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.status == _RUNNING, jobs.c.lease_owner == owner)
            .values(
                status=_QUEUED,
                attempts=jobs.c.attempts - 1,
                lease_owner=None,
                lease_until=None,
                kicked_at=None,
                message="interrupted: waiting to run again",
                updated_at=_now(),
            )
        )

    async def recover_expired(self) -> int:
        """Runs whose worker stopped renewing (it died): queued again, or failed when
        they have had all their attempts."""
        now = _now()
        expired = (jobs.c.status == _RUNNING, jobs.c.lease_until < now)
        async with self.db.engine.begin() as conn:
            failed = await conn.execute(
                jobs.update()
                .where(*expired, jobs.c.attempts >= jobs.c.max_attempts)
                .values(
                    status=JobStatus.FAILED.value,
                    error="the worker running it stopped, and it has no attempts left",
                    lease_owner=None,
                    lease_until=None,
                    finished_at=now,
                    updated_at=now,
                )
            )
            queued = await conn.execute(
                jobs.update()
                .where(*expired)
                .values(
                    status=_QUEUED,
                    lease_owner=None,
                    lease_until=None,
                    kicked_at=None,
                    message="interrupted: waiting to run again",
                    updated_at=now,
                )
            )
        return int(failed.rowcount) + int(queued.rowcount)

    async def request_cancel(self, workspace_id: str, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one is asked to stop (its
        worker sees it at its next progress report or lease renewal); a finished
        one stays as it is."""
        await self.get(workspace_id, job_id)  # another workspace's: not found
        now = _now()
        mine = (jobs.c.id == job_id, jobs.c.workspace_id == workspace_id)
        async with self.db.engine.begin() as conn:
            await conn.execute(
                jobs.update()
                .where(*mine, jobs.c.status == _QUEUED)
                .values(
                    status=JobStatus.CANCELLED.value,
                    cancel_requested=True,
                    message="cancelled",
                    finished_at=now,
                    updated_at=now,
                )
            )
            await conn.execute(
                jobs.update()
                .where(*mine, jobs.c.status == _RUNNING)
                .values(cancel_requested=True, updated_at=now)
            )
            job = await self._one(conn, job_id)
        assert job is not None
        return job
