"""Submitting, running, cancelling and retrying jobs; the kinds capabilities register.

A run: the queue delivers a job id; this worker claims the record (one conditional
update, so a redelivered or doubled message runs nothing twice), runs the kind's
handler while renewing a lease, and writes the outcome only while it still holds
that lease: a result is recorded once. A failure goes back to the queue with a
doubling wait until the kind's attempts are spent; a cancel stops the handler at its
next progress report, or at once on the replica running it; an orderly shutdown
gives the run back, and a crashed replica's lease runs out and the job is queued
again by any replica's poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.events import JSON
from taleweaver.domain.jobs import Artifact, Job, JobPage, JobResult, JobStatus, backoff_seconds
from taleweaver.jobs.records import JobRecords
from taleweaver.store.database import Database

if TYPE_CHECKING:
    from taleweaver.jobs.broker import JobQueue

__all__ = ["JobCancelled", "JobContext", "JobHandler", "JobService", "JobSettings"]

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a handler by `JobContext.progress` when the job was cancelled."""


@dataclass(frozen=True, slots=True)
class JobSettings:
    redis_url: str | None = None  # None: an in-process queue (a laptop)
    key_prefix: str = "taleweaver"
    concurrency: int = 4  # jobs one replica runs at once
    lease_s: float = 30.0  # a run unrenewed this long is taken to be dead
    poll_s: float = 1.0  # how often each replica looks for due retries and dead runs
    retry_base_s: float = 2.0  # the first retry's wait; it doubles each time
    retry_cap_s: float = 300.0
    max_attempts: int = 3


class JobContext:
    """What a handler gets: its job, and a way to say how far it is."""

    def __init__(self, job: Job, report: Callable[[float, str], Awaitable[bool]]) -> None:
        self.job = job
        self._report = report

    @property
    def params(self) -> JSON:
        return self.job.params

    @property
    def workspace_id(self) -> str:
        return self.job.workspace_id

    async def progress(self, fraction: float, message: str = "") -> None:
        """Record progress (0..1); raises JobCancelled when a cancel was asked for."""
        if await self._report(fraction, message):
            raise JobCancelled(self.job.id)


JobHandler = Callable[[JobContext], Coroutine[object, object, JobResult]]


@dataclass(frozen=True, slots=True)
class _Kind:
    handler: JobHandler
    max_attempts: int


class _Run:
    """One job running here: its handler's task, and why it was stopped, if it was."""

    def __init__(self, task: asyncio.Task[JobResult]) -> None:
        self.task = task
        self.stop: str | None = None  # "cancel", "shutdown" or "lost"


class JobService:
    def __init__(self, db: Database, settings: JobSettings | None = None) -> None:
        self.settings = settings or JobSettings()
        self.records = JobRecords(db)
        self.worker_id = f"worker_{uuid.uuid4().hex[:16]}"
        self._kinds: dict[str, _Kind] = {}
        self._runs: dict[str, _Run] = {}
        self._deliveries: set[asyncio.Task[object]] = set()
        self._queue: JobQueue | None = None
        self._poller: asyncio.Task[None] | None = None
        self._starting: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self.settings.lease_s)

    def register(self, kind: str, handler: JobHandler, *, max_attempts: int | None = None) -> None:
        """A capability's kind of job (e.g. "workspace.export")."""
        if kind in self._kinds:
            raise InvalidInput(f"job kind {kind!r} is registered already")
        attempts = max_attempts or self.settings.max_attempts
        self._kinds[kind] = _Kind(handler, attempts)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    # --- what the API calls --------------------------------------------------------------

    async def submit(
        self, workspace_id: str, kind: str, params: JSON, *, created_by: str | None = None
    ) -> Job:
        """Record a job and hand it to the queue. Without a started worker here it
        waits, queued, for the next replica that starts."""
        spec = self._kinds.get(kind)
        if spec is None:
            raise InvalidInput(f"unknown job kind {kind!r}")
        job = await self.records.create(
            workspace_id, kind, params, max_attempts=spec.max_attempts, created_by=created_by
        )
        if self._queue is not None and await self.records.mark_kicked(job.id, None):
            await self._queue.kick(job.id)
        return job

    async def get(self, workspace_id: str, job_id: str) -> Job:
        return await self.records.get(workspace_id, job_id)

    async def list(
        self,
        workspace_id: str,
        *,
        status: JobStatus | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobPage:
        return await self.records.page(
            workspace_id, status=status, kind=kind, limit=limit, offset=offset
        )

    async def artifact(self, workspace_id: str, job_id: str) -> Artifact:
        return await self.records.artifact(workspace_id, job_id)

    async def cancel(self, workspace_id: str, job_id: str) -> Job:
        job = await self.records.request_cancel(workspace_id, job_id)
        run = self._runs.get(job_id)
        if run is not None and job.status is JobStatus.RUNNING:
            self._stop(run, "cancel")
        return job

    async def wait(self, workspace_id: str, job_id: str) -> Job:
        """Until the job has finished (for the CLI and tests; bound it with
        asyncio.timeout)."""
        while True:
            job = await self.records.get(workspace_id, job_id)
            if job.finished:
                return job
            await asyncio.sleep(0.02)

    # --- this replica's worker -----------------------------------------------------------

    async def start(self) -> None:
        """Start working: connect the queue, pick up what was interrupted, and keep
        looking for due retries and dead runs. A queue that cannot be reached (Redis
        away) is tried again in the background: the server serves meanwhile, and the
        jobs asked for wait in the database."""
        if self._queue is not None or self._starting is not None:
            return
        self._stopping = False
        try:
            await self._connect()
        except Exception as exc:
            log.warning("job queue not reached (%s): trying again in the background", exc)
            self._starting = asyncio.create_task(self._keep_connecting(), name="job queue")

    async def _keep_connecting(self) -> None:
        wait = 1.0
        while not self._stopping:
            await asyncio.sleep(wait)
            try:
                await self._connect()
            except Exception as exc:
                log.warning("job queue still not reached (%s)", exc)
                wait = min(wait * 2, 30.0)
            else:
                log.info("job queue reached: jobs run again")
                return

    async def _connect(self) -> None:
        # taskiq (and what it imports) loads only in a process that runs jobs: a CLI
        # command that opens the engine never pays for it.
        from taleweaver.jobs.broker import JobQueue

        s = self.settings
        queue = JobQueue(
            self._deliver,
            redis_url=s.redis_url,
            key_prefix=s.key_prefix,
            concurrency=s.concurrency,
            redeliver_after_s=max(2 * s.lease_s, 1.0),
        )
        await queue.start()
        self._queue = queue
        if queue.in_process:  # what was handed to the last process's queue died with it
            await self.records.forget_kicks()
        await self._poll_once()
        self._poller = asyncio.create_task(self._poll(), name="taleweaver job poller")

    async def close(self) -> None:
        """Stop: runs under way are given back (queued again, for the next start)."""
        self._stopping = True
        if self._starting is not None:
            self._starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starting
            self._starting = None
        if self._queue is None:
            return
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        for run in list(self._runs.values()):
            self._stop(run, "shutdown")
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=10.0)
        queue, self._queue = self._queue, None
        await queue.close()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_s)
            try:
                await self._poll_once()
            except Exception:  # the next round tries again; the database may be back
                log.exception("looking for due jobs failed")

    async def _poll_once(self) -> None:
        await self.records.recover_expired()
        queue = self._queue
        if queue is None:
            return
        stale = timedelta(seconds=max(4 * self.settings.lease_s, 1.0))
        for job_id, kicked_at in await self.records.due(stale_kick=stale):
            if await self.records.mark_kicked(job_id, kicked_at):
                await queue.kick(job_id)

    def _stop(self, run: _Run, why: str) -> None:
        if run.stop is None:
            run.stop = why
        run.task.cancel()

    async def _deliver(self, job_id: str) -> None:
        """The queue's task: run the job if it is ours to run."""
        task = asyncio.current_task()
        assert task is not None
        self._deliveries.add(task)
        try:
            await self._run(job_id)
        except Exception:  # the record says what went wrong; the queue needs nothing
            log.exception("job %s: running it failed", job_id)
        finally:
            self._deliveries.discard(task)

    async def _run(self, job_id: str) -> None:
        if self._stopping:
            return
        job = await self.records.claim(job_id, self.worker_id, self._lease)
        if job is None:
            return  # done, cancelled, not due, or another worker's: a doubled message
        spec = self._kinds.get(job.kind)
        if spec is None:
            await self.records.fail(job_id, self.worker_id, f"unknown job kind {job.kind!r}")
            return

        async def report(fraction: float, message: str) -> bool:
            cancel = await self.records.renew(
                job_id, self.worker_id, self._lease, progress=fraction, message=message
            )
            return cancel is None or cancel

        run = _Run(asyncio.create_task(spec.handler(JobContext(job, report))))
        self._runs[job_id] = run
        try:
            outcome = await self._watch(job_id, run)
        finally:
            self._runs.pop(job_id, None)
        await self._settle(job, run, outcome)

    async def _watch(self, job_id: str, run: _Run) -> JobResult | BaseException:
        """Wait for the handler, renewing the lease and watching for a cancel."""
        every = max(self.settings.lease_s / 3, 0.05)
        while True:
            done, _ = await asyncio.wait({run.task}, timeout=every)
            if done:
                break
            cancel = await self.records.renew(job_id, self.worker_id, self._lease)
            if cancel is None:
                self._stop(run, "lost")
            elif cancel:
                self._stop(run, "cancel")
        if run.task.cancelled():
            return asyncio.CancelledError()
        error = run.task.exception()
        return error if error is not None else run.task.result()

    async def _settle(self, job: Job, run: _Run, outcome: JobResult | BaseException) -> None:
        records, me = self.records, self.worker_id
        if isinstance(outcome, JobResult):
            if not await records.succeed(job.id, me, outcome.result, outcome.artifact):
                log.warning("job %s finished after its lease was lost: result dropped", job.id)
            return
        if run.stop == "shutdown":
            await records.release(job.id, me)
        elif run.stop == "cancel" or isinstance(outcome, JobCancelled):
            await records.cancelled(job.id, me)
        elif run.stop == "lost":
            log.warning("job %s: its lease was lost; another worker has it", job.id)
        elif job.attempts < job.max_attempts:
            wait = backoff_seconds(
                job.attempts, base=self.settings.retry_base_s, cap=self.settings.retry_cap_s
            )
            await records.retry_later(job.id, me, _describe(outcome), timedelta(seconds=wait))
        else:
            await records.fail(job.id, me, _describe(outcome))


def _describe(error: BaseException) -> str:
    if isinstance(error, NotFound | InvalidInput):
        return str(error)
    detail = getattr(error, "detail", None) or str(error)
    return f"{type(error).__name__}: {detail}"[:2000]
