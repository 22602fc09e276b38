"""Tail the global event log from a saved checkpoint, resuming after a restart.

Projections that live outside the append transaction, search indexes and
realtime fan-out read every event in commit order with this, exactly once per
checkpoint advance: the handler's work and the checkpoint commit are not one
transaction, so handlers must be idempotent (at-least-once delivery).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from taleweaver.domain.events import RecordedEvent
from taleweaver.store.events import EventStore
from taleweaver.store.schema import checkpoints

Handler = Callable[[RecordedEvent], Awaitable[None]]


class Tailer:
    def __init__(self, store: EventStore, name: str) -> None:
        self.store = store
        self.name = name

    async def position(self) -> int:
        async with self.store.db.read() as conn:
            value = await conn.scalar(
                sa.select(checkpoints.c.position).where(checkpoints.c.name == self.name)
            )
        return int(value or 0)

    async def poll(self, handler: Handler, *, batch: int = 500) -> int:
        """Hand every event after the checkpoint to `handler`; return how many."""
        after = await self.position()
        events = await self.store.read_all(after=after, limit=batch)
        for event in events:
            await handler(event)
            await self._save(event.position)
        return len(events)

    async def _save(self, position: int) -> None:
        now = datetime.now(UTC)
        async with self.store.db.write() as conn:
            updated = await conn.execute(
                checkpoints.update()
                .where(checkpoints.c.name == self.name)
                .values(position=position, updated_at=now)
            )
            if updated.rowcount == 0:
                await conn.execute(
                    checkpoints.insert().values(name=self.name, position=position, updated_at=now)
                )
