"""The event store: optimistic appends, stream reads, and the global log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import ConcurrencyConflict
from taleweaver.domain.events import JSON, EventMetadata, NewEvent, RecordedEvent
from taleweaver.store.database import Database
from taleweaver.store.schema import events, snapshots
from taleweaver.store.upcasting import Upcasters


class EventStore:
    def __init__(self, db: Database, upcasters: Upcasters | None = None) -> None:
        self.db = db
        self.upcasters = upcasters or Upcasters()

    async def append(
        self,
        conn: AsyncConnection,
        *,
        stream_id: str,
        workspace_id: str,
        expected_version: int,
        new_events: Sequence[NewEvent],
        metadata: EventMetadata,
    ) -> list[RecordedEvent]:
        """Append inside the caller's write transaction (see `Database.write`).

        The unique (stream_id, version) constraint is what rejects a stale
        expected version; nothing is checked first and inserted after.
        """
        if not new_events:
            return []
        head = await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(events.c.position), 0)))
        now = datetime.now(UTC)
        meta = metadata.to_dict()
        rows = [
            {
                "position": int(head or 0) + i,
                "stream_id": stream_id,
                "version": expected_version + i,
                "workspace_id": workspace_id,
                "type": e.type,
                "schema_version": e.schema_version,
                "payload": e.payload,
                "metadata": meta,
                "recorded_at": now,
            }
            for i, e in enumerate(new_events, start=1)
        ]
        try:
            await conn.execute(events.insert(), rows)
        except sa.exc.IntegrityError as exc:
            if _is_unique_violation(exc):
                raise ConcurrencyConflict(stream_id, expected_version) from exc
            raise
        return [self._record(row) for row in rows]

    async def read_stream(
        self, stream_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        query = (
            sa.select(events)
            .where(events.c.stream_id == stream_id, events.c.version > after)
            .order_by(events.c.version)
        )
        if limit is not None:
            query = query.limit(limit)
        async with self.db.read() as conn:
            result = await conn.execute(query)
            return [self._record(row._mapping) for row in result]

    async def read_all(self, *, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Every stream's events in commit order, for tailers that resume by position."""
        query = (
            sa.select(events).where(events.c.position > after).order_by(events.c.position)
        ).limit(limit)
        async with self.db.read() as conn:
            result = await conn.execute(query)
            return [self._record(row._mapping) for row in result]

    async def head_position(self) -> int:
        async with self.db.read() as conn:
            value = await conn.scalar(sa.select(sa.func.max(events.c.position)))
            return int(value or 0)

    async def save_snapshot(
        self, conn: AsyncConnection, stream_id: str, version: int, state: JSON
    ) -> None:
        await conn.execute(snapshots.delete().where(snapshots.c.stream_id == stream_id))
        await conn.execute(
            snapshots.insert().values(
                stream_id=stream_id, version=version, state=state, taken_at=datetime.now(UTC)
            )
        )

    async def load_snapshot(self, stream_id: str) -> tuple[int, JSON] | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(snapshots.c.version, snapshots.c.state).where(
                        snapshots.c.stream_id == stream_id
                    )
                )
            ).first()
        return None if row is None else (row.version, row.state)

    def _record(self, row: Any) -> RecordedEvent:
        schema_version, payload = self.upcasters.upcast(
            row["type"], row["schema_version"], row["payload"]
        )
        recorded_at = row["recorded_at"]
        if recorded_at.tzinfo is None:  # SQLite hands back naive datetimes
            recorded_at = recorded_at.replace(tzinfo=UTC)
        return RecordedEvent(
            stream_id=row["stream_id"],
            workspace_id=row["workspace_id"],
            version=row["version"],
            position=row["position"],
            type=row["type"],
            schema_version=schema_version,
            payload=payload,
            metadata=row["metadata"],
            recorded_at=recorded_at,
        )


def _is_unique_violation(exc: sa.exc.IntegrityError) -> bool:
    # SQLite names the constraint in its message; PostgreSQL gives SQLSTATE 23505.
    return getattr(exc.orig, "sqlstate", None) == "23505" or "UNIQUE constraint" in str(exc.orig)
