"""The queue: taskiq carries "run job X" from whoever submits it to a worker.

On a laptop (no Redis) taskiq's in-process broker runs each job in this process; on a
cluster taskiq-redis's stream broker hands each message to one replica of the
consumer group, and redelivers what a dead replica had taken but not acknowledged.
Either way the message holds only a job id: the job itself is its record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from taskiq import AsyncBroker, InMemoryBroker
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

__all__ = ["JobQueue"]

log = logging.getLogger(__name__)

TASK_NAME = "taleweaver.job"


class JobQueue:
    """One broker, one task ("run this job"), and this process's worker for it."""

    def __init__(
        self,
        run: Callable[[str], Awaitable[None]],
        *,
        redis_url: str | None,
        key_prefix: str,
        concurrency: int,
        redeliver_after_s: float,
    ) -> None:
        self.in_process = redis_url is None
        self.concurrency = concurrency
        broker: AsyncBroker
        if redis_url is None:
            broker = InMemoryBroker(max_async_tasks=concurrency, propagate_exceptions=False)
        else:
            broker = RedisStreamBroker(
                redis_url,
                queue_name=f"{key_prefix}:jobs",
                consumer_group_name=f"{key_prefix}:jobs",
                consumer_id="0",  # a group made after some kicks still gets them
                xread_block=1000,
                idle_timeout=int(redeliver_after_s * 1000),
                maxlen=100_000,
            )
        self.broker = broker

        async def run_job(job_id: str) -> None:
            await run(job_id)

        self._task = broker.register_task(run_job, task_name=TASK_NAME)
        self._listening: asyncio.Task[None] | None = None
        self._finish = asyncio.Event()
        self._started = False

    async def start(self) -> None:
        """Connect, and (with Redis) start taking messages for this replica."""
        if self._started:
            return
        self._started = True
        await self.broker.startup()
        if not self.in_process:
            receiver = Receiver(
                self.broker,
                max_async_tasks=self.concurrency,
                run_startup=False,
                propagate_exceptions=False,
                wait_tasks_timeout=5.0,
            )
            self._finish = asyncio.Event()
            self._listening = asyncio.create_task(
                receiver.listen(self._finish), name="taleweaver job worker"
            )

    async def kick(self, job_id: str) -> None:
        await self._task.kiq(job_id)

    async def close(self) -> None:
        if not self._started:
            return
        self._started = False
        if self._listening is not None:
            self._finish.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._listening), 10.0)
            except TimeoutError:
                self._listening.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._listening
            except Exception:  # a listener that failed has nothing left to stop
                log.exception("the job worker stopped with an error")
            self._listening = None
        if isinstance(self.broker, InMemoryBroker):
            await self.broker.wait_all()
        await self.broker.shutdown()
