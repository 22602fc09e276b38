"""One replica's tail of the global event log, handed out per session.

The feed reads every event after the last position it saw, whenever a signal says
something was committed (on any replica) and, in case a signal was lost, at least
every `poll_s`. With no one watching it only follows the head, so an idle
replica reads no payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from taleweaver.domain.events import RecordedEvent
from taleweaver.store.events import EventStore

log = logging.getLogger(__name__)

BATCH = 500


class EventFeed:
    def __init__(self, store: EventStore, *, poll_s: float = 1.0) -> None:
        self.store = store
        self.poll_s = poll_s
        self.position = 0
        self._watchers: dict[str, set[asyncio.Queue[RecordedEvent]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="live-event-feed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        self._wake.set()

    @contextlib.contextmanager
    def watch(self, session_id: str) -> Iterator[asyncio.Queue[RecordedEvent]]:
        """Every event of the session the feed reads from now on.

        Events committed before may come too: readers skip positions they have.
        """
        queue: asyncio.Queue[RecordedEvent] = asyncio.Queue()
        self._watchers.setdefault(session_id, set()).add(queue)
        try:
            yield queue
        finally:
            watchers = self._watchers.get(session_id, set())
            watchers.discard(queue)
            if not watchers:
                self._watchers.pop(session_id, None)

    async def _run(self) -> None:
        while True:
            # Not wait_for: on Python 3.11 it swallows a cancel that lands as the wake
            # comes, and close() then waits on this loop for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._catch_up()
            except Exception:  # the database blinked: the next round tries again
                log.exception("live event feed could not read the log")

    async def _catch_up(self) -> None:
        if not self._watchers:
            head = await self.store.head_position()
            if not self._watchers:  # one who came meanwhile may need what is below head
                self.position = head
            return
        while True:
            events = await self.store.read_all(after=self.position, limit=BATCH)
            for event in events:
                self.position = event.position
                for queue in self._watchers.get(event.stream_id, ()):
                    queue.put_nowait(event)
            if len(events) < BATCH:
                return
