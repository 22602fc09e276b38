"""Background jobs, on real components: SQLite with taskiq's in-process queue (a laptop,
no Redis), and PostgreSQL with taskiq-redis's stream queue on the machine's Redis (a
cluster). Progress, cancel, retries with backoff, a restart mid-run, and the routes."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from taleweaver.api import create_app
from taleweaver.config import Settings
from taleweaver.domain.jobs import Job, JobResult, JobStatus, backoff_seconds
from taleweaver.engine import Engine
from taleweaver.engine.jobs import EXPORT_WORKSPACE, REINDEX_WORLD
from taleweaver.jobs import JobContext
from taleweaver.llm import HashingEmbedder, ScriptedModel
from taleweaver.memory.world import WorldMemory
from tests.conftest import (
    REDIS_URL,
    DatabaseSpec,
    copy_sqlite_template,
    free_port,
    need_redis,
)
from tests.test_world_bible import harbour_world

pytestmark = pytest.mark.dialects  # SQLite, and PostgreSQL (with Redis)

WS = "local"
RETRY_BASE = 0.3

Opener = Callable[..., Any]


@pytest.fixture
async def open_engine(db_spec: DatabaseSpec, tmp_path: Path) -> AsyncIterator[Opener]:
    """Engines on the test database, each a replica with its job worker started: on
    SQLite an in-process queue, on PostgreSQL a Redis stream of this test's own."""
    redis_url = None
    if db_spec.backend == "postgresql":
        need_redis()
        redis_url = REDIS_URL
    settings = Settings(
        data_dir=tmp_path / "data",
        model="scripted",
        scripted_token_delay_ms=0,
        redis_url=redis_url,
        redis_key_prefix=f"tw-test-{uuid.uuid4().hex[:10]}",
        job_poll_seconds=0.05,
        job_lease_seconds=1.0,
        job_retry_seconds=RETRY_BASE,
    )
    opened: list[Engine] = []

    async def open_(*, start: bool = True, kinds: dict[str, Any] | None = None) -> Engine:
        engine = await Engine.open(settings, model=ScriptedModel(), database=db_spec.open())
        opened.append(engine)
        for kind, handler in (kinds or {}).items():
            engine.jobs.register(kind, handler)
        if start:
            await engine.jobs.start()
        return engine

    yield open_
    for engine in opened:
        if not getattr(engine, "_closed_by_test", False):
            await engine.close()


async def close(engine: Engine) -> None:
    engine._closed_by_test = True  # type: ignore[attr-defined]
    await engine.close()


async def until(engine: Engine, job_id: str, check: Callable[[Job], bool]) -> Job:
    deadline = time.monotonic() + 15
    while True:
        job = await engine.jobs.get(WS, job_id)
        if check(job):
            return job
        assert time.monotonic() < deadline, f"job never got there: {job}"
        await asyncio.sleep(0.02)


async def finished(engine: Engine, job_id: str) -> Job:
    return await until(engine, job_id, lambda job: job.finished)


# --- running -----------------------------------------------------------------------------


async def test_a_job_runs_and_reports_its_progress(open_engine: Opener) -> None:
    go_on = asyncio.Event()

    async def halves(ctx: JobContext) -> JobResult:
        await ctx.progress(0.5, "half way")
        await go_on.wait()
        return JobResult({"answer": ctx.params["n"] * 2})

    engine = await open_engine(kinds={"test.halves": halves})
    job = await engine.jobs.submit(WS, "test.halves", {"n": 21}, created_by="tester")
    assert job.status is JobStatus.QUEUED

    midway = await until(engine, job.id, lambda j: j.progress == 0.5)
    assert (midway.status, midway.message, midway.attempts) == (JobStatus.RUNNING, "half way", 1)
    go_on.set()
    done = await finished(engine, job.id)

    assert done.status is JobStatus.SUCCEEDED
    assert (done.result, done.progress, done.error) == ({"answer": 42}, 1.0, None)
    assert done.started_at is not None and done.finished_at is not None
    listed = await engine.jobs.list(WS, status=JobStatus.SUCCEEDED, kind="test.halves")
    assert [j.id for j in listed.items] == [job.id] and listed.total == 1


async def test_cancel_stops_a_running_job(open_engine: Opener) -> None:
    steps: list[int] = []

    async def forever(ctx: JobContext) -> JobResult:
        while True:
            steps.append(len(steps))
            await ctx.progress(min(0.99, len(steps) / 1000), "working")
            await asyncio.sleep(0.01)

    engine = await open_engine(kinds={"test.forever": forever})
    job = await engine.jobs.submit(WS, "test.forever", {})
    await until(engine, job.id, lambda j: j.progress > 0.005)

    await engine.jobs.cancel(WS, job.id)
    cancelled = await finished(engine, job.id)

    assert cancelled.status is JobStatus.CANCELLED and cancelled.cancel_requested
    ran = len(steps)
    await asyncio.sleep(0.2)
    assert len(steps) == ran, "the handler went on after the cancel"


async def test_a_queued_job_cancelled_never_runs(open_engine: Opener) -> None:
    ran: list[str] = []

    async def note(ctx: JobContext) -> JobResult:
        ran.append(ctx.job.id)
        return JobResult({})

    idle = await open_engine(start=False, kinds={"test.note": note})
    job = await idle.jobs.submit(WS, "test.note", {})
    assert (await idle.jobs.cancel(WS, job.id)).status is JobStatus.CANCELLED

    await idle.jobs.start()
    await asyncio.sleep(0.3)
    assert ran == [] and (await idle.jobs.get(WS, job.id)).status is JobStatus.CANCELLED


async def test_a_job_that_fails_twice_is_retried_with_backoff_then_succeeds(
    open_engine: Opener,
) -> None:
    runs: list[float] = []

    async def flaky(ctx: JobContext) -> JobResult:
        runs.append(time.monotonic())
        if len(runs) < 3:
            raise RuntimeError(f"flaked on run {len(runs)}")
        return JobResult({"runs": len(runs)})

    engine = await open_engine(kinds={"test.flaky": flaky})
    job = await engine.jobs.submit(WS, "test.flaky", {})

    waiting = await until(engine, job.id, lambda j: j.status is JobStatus.QUEUED and j.attempts > 0)
    assert waiting.error == "RuntimeError: flaked on run 1" and waiting.run_after is not None
    done = await finished(engine, job.id)

    assert (done.status, done.attempts, done.result) == (JobStatus.SUCCEEDED, 3, {"runs": 3})
    first_wait, second_wait = runs[1] - runs[0], runs[2] - runs[1]
    assert first_wait >= backoff_seconds(1, base=RETRY_BASE, cap=300)  # 0.3 s
    assert second_wait >= backoff_seconds(2, base=RETRY_BASE, cap=300)  # 0.6 s: doubled


async def test_a_job_failing_every_attempt_fails_with_its_error(open_engine: Opener) -> None:
    async def broken(ctx: JobContext) -> JobResult:
        raise ValueError("no such thing")

    engine = await open_engine(kinds={"test.broken": broken})
    engine.jobs.settings = replace(engine.jobs.settings, retry_base_s=0.01)
    job = await engine.jobs.submit(WS, "test.broken", {})
    failed = await finished(engine, job.id)
    assert (failed.status, failed.attempts) == (JobStatus.FAILED, 3)
    assert failed.error == "ValueError: no such thing" and failed.result is None


# --- surviving a restart -----------------------------------------------------------------


async def test_a_job_interrupted_by_stopping_the_engine_completes_once_after_a_restart(
    open_engine: Opener,
) -> None:
    started = asyncio.Event()
    results: list[str] = []

    async def slow_then_stuck(ctx: JobContext) -> JobResult:
        await ctx.progress(0.3, "a third")
        started.set()
        await asyncio.Event().wait()  # until the engine stops
        results.append("first replica")
        return JobResult({"by": "first"})

    async def quick(ctx: JobContext) -> JobResult:
        results.append("second replica")
        return JobResult({"by": "second", "attempt": ctx.job.attempts})

    first = await open_engine(kinds={"test.long": slow_then_stuck})
    job = await first.jobs.submit(WS, "test.long", {})
    await asyncio.wait_for(started.wait(), 10)
    await close(first)

    second = await open_engine(start=False, kinds={"test.long": quick})
    given_back = await second.jobs.get(WS, job.id)
    assert (given_back.status, given_back.attempts) == (JobStatus.QUEUED, 0)
    await second.jobs.start()
    done = await finished(second, job.id)

    assert done.status is JobStatus.SUCCEEDED and done.result == {"by": "second", "attempt": 1}
    # The same job delivered again (a message redelivered, a poller racing) runs nothing.
    await second.jobs._deliver(job.id)
    await asyncio.sleep(0.2)
    assert results == ["second replica"]
    assert (await second.jobs.get(WS, job.id)).result == {"by": "second", "attempt": 1}


async def test_a_job_whose_worker_died_is_taken_over_when_its_lease_runs_out(
    open_engine: Opener,
) -> None:
    runs: list[int] = []

    async def count(ctx: JobContext) -> JobResult:
        runs.append(ctx.job.attempts)
        return JobResult({"attempt": ctx.job.attempts})

    engine = await open_engine(start=False, kinds={"test.count": count})
    job = await engine.jobs.submit(WS, "test.count", {})
    # A replica claimed it and was killed: nobody renews its lease.
    claimed = await engine.jobs.records.claim(job.id, "worker_killed", timedelta(seconds=0.3))
    assert claimed is not None and claimed.status is JobStatus.RUNNING

    await engine.jobs.start()
    done = await finished(engine, job.id)

    assert (done.status, done.result, runs) == (JobStatus.SUCCEEDED, {"attempt": 2}, [2])
    # The dead worker's late result is refused: the job was recorded once.
    assert not await engine.jobs.records.succeed(job.id, "worker_killed", {"late": True}, None)
    assert (await engine.jobs.get(WS, job.id)).result == {"attempt": 2}


# --- the engine's own kinds ----------------------------------------------------------------


async def test_a_workspace_export_job_keeps_the_bundle_to_download(open_engine: Opener) -> None:
    engine = await open_engine()
    await harbour_world(engine)
    job = await engine.jobs.submit(WS, EXPORT_WORKSPACE, {})
    done = await finished(engine, job.id)

    assert done.status is JobStatus.SUCCEEDED and done.artifact_name == "workspace-local.zip"
    artifact = await engine.jobs.artifact(WS, job.id)
    assert done.result == {"bytes": len(artifact.data)}
    with zipfile.ZipFile(io.BytesIO(artifact.data)) as archive:
        assert "manifest.json" in archive.namelist()
        # The bundle leaves jobs out: they are the instance's, not the story's.
        assert not [name for name in archive.namelist() if "jobs" in name]


async def test_re_embedding_a_world_runs_as_a_job_with_progress(open_engine: Opener) -> None:
    engine = await open_engine()
    engine.world = WorldMemory(engine.db, engine.repository.store, None, embedder=HashingEmbedder())
    world = await harbour_world(engine)
    job = await engine.jobs.submit(WS, REINDEX_WORLD, {"world_id": world["world"]})
    done = await finished(engine, job.id)

    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result is not None and done.result["world_id"] == world["world"]
    assert done.progress == 1.0 and done.message.endswith(" of 3")


# --- over HTTP -----------------------------------------------------------------------------


def test_the_routes_list_show_cancel_and_download_a_workspaces_jobs(
    tmp_path: Path, sqlite_template: Path
) -> None:
    data_dir = tmp_path / "server"
    copy_sqlite_template(sqlite_template, data_dir / "taleweaver.db")
    settings = Settings(
        data_dir=data_dir, model="scripted", scripted_token_delay_ms=0, job_poll_seconds=0.05
    )
    with TestClient(create_app(settings, model=ScriptedModel())) as http:
        started = http.post("/api/v1/workspaces/local/exports")
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        assert started.json()["status"] in ("queued", "running", "succeeded")

        deadline = time.monotonic() + 15
        while (shown := http.get(f"/api/v1/jobs/{job_id}").json())["status"] != "succeeded":
            assert time.monotonic() < deadline, shown
            time.sleep(0.02)
        assert shown["kind"] == "workspace.export" and shown["progress"] == 1.0
        assert shown["download"] == f"/api/v1/jobs/{job_id}/download"
        download = http.get(shown["download"])
        assert download.status_code == 200
        assert download.headers["content-type"] == "application/zip"
        assert download.content[:2] == b"PK" and shown["result"]["bytes"] == len(download.content)

        query = {"status": "succeeded", "kind": "workspace.export"}
        listed = http.get("/api/v1/jobs", params=query)
        assert [j["id"] for j in listed.json()["items"]] == [job_id]
        assert listed.json()["total"] == 1
        assert http.get("/api/v1/jobs", params={"status": "failed"}).json()["items"] == []
        assert http.get("/api/v1/jobs", params={"limit": 1, "offset": 1}).json()["items"] == []

        # Cancelling a finished job leaves it as it is.
        cancelled = http.post(f"/api/v1/jobs/{job_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "succeeded"

        # Another workspace's job does not exist here.
        other = http.post("/api/v1/workspaces", json={"name": "Other"}).json()["id"]
        theirs = http.post(f"/api/v1/workspaces/{other}/exports").json()["id"]
        for method, path in [
            ("GET", f"/api/v1/jobs/{theirs}"),
            ("POST", f"/api/v1/jobs/{theirs}/cancel"),
            ("GET", f"/api/v1/jobs/{theirs}/download"),
        ]:
            refused = http.request(method, path, headers={"X-Workspace": "local"})
            assert refused.status_code == 404, (method, path, refused.text)
        assert theirs not in [j["id"] for j in http.get("/api/v1/jobs").json()["items"]]
        mine = http.get(f"/api/v1/jobs/{theirs}", headers={"X-Workspace": other})
        assert mine.status_code == 200

        # The one-request export still answers as before.
        assert http.get("/api/v1/workspaces/local/export").content[:2] == b"PK"


async def test_a_queue_out_of_reach_leaves_the_server_up_and_jobs_waiting(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        model="scripted",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    )
    engine = await Engine.open(settings, model=ScriptedModel())
    try:
        await engine.jobs.start()  # does not raise: it keeps trying in the background
        job = await engine.jobs.submit(WS, EXPORT_WORKSPACE, {})
        assert (await engine.jobs.get(WS, job.id)).status is JobStatus.QUEUED
    finally:
        await engine.close()
