"""The event store: optimistic appends, stream reads, and the global log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import ConcurrencyConflict, KeyMissing
from taleweaver.domain.events import JSON, CopiedEvent, EventMetadata, NewEvent, RecordedEvent
from taleweaver.store import sqlite_fast
from taleweaver.store.database import Database
from taleweaver.store.schema import events, snapshots
from taleweaver.store.sealing import SEALED, Sealer
from taleweaver.store.upcasting import Upcasters


class EventStore:
    """`sealer` encrypts sensitive workspaces' payloads at rest (the engine always
    passes one); without it payloads are stored as given and sealed ones refuse to
    read."""

    def __init__(
        self, db: Database, upcasters: Upcasters | None = None, sealer: Sealer | None = None
    ) -> None:
        self.db = db
        self.upcasters = upcasters or Upcasters()
        self.sealer = sealer

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
        now = datetime.now(UTC)
        meta = metadata.to_dict()
        copies = [
            CopiedEvent(stream_id, expected_version + i, e, meta, now)
            for i, e in enumerate(new_events, start=1)
        ]
        try:
            return await self._insert(conn, workspace_id, copies)
        except _Duplicate as exc:
            raise ConcurrencyConflict(stream_id, expected_version) from exc.__cause__

    async def append_copies(
        self, conn: AsyncConnection, *, workspace_id: str, copies: Sequence[CopiedEvent]
    ) -> list[RecordedEvent]:
        """Append events recorded elsewhere, in the order given, with their own stream
        versions, times and metadata (a bundle restore): the store stays the one
        writer of the log and hands out every global position. A version already
        taken raises `ConcurrencyConflict`."""
        if not copies:
            return []
        try:
            return await self._insert(conn, workspace_id, copies)
        except _Duplicate as exc:
            first = copies[0]
            raise ConcurrencyConflict(first.stream_id, first.version - 1) from exc.__cause__

    async def _insert(
        self, conn: AsyncConnection, workspace_id: str, copies: Sequence[CopiedEvent]
    ) -> list[RecordedEvent]:
        rows: list[JSON] = [
            {
                "stream_id": c.stream_id,
                "version": c.version,
                "workspace_id": workspace_id,
                "type": str(c.event.type),
                "schema_version": c.event.schema_version,
                "payload": c.event.payload,
                "metadata": c.metadata,
                "recorded_at": c.recorded_at,
            }
            for c in copies
        ]
        sealer = self.sealer
        if sealer is not None and await sealer.sensitive(conn, workspace_id):
            for row in rows:
                row["payload"] = sealer.seal_payload(
                    workspace_id, row["stream_id"], row["version"], row["payload"]
                )
        try:
            if conn.dialect.name == "sqlite":
                await _insert_sqlite(conn, rows)
            else:
                head = await conn.scalar(
                    sa.select(sa.func.coalesce(sa.func.max(events.c.position), 0))
                )
                for i, row in enumerate(rows, start=1):
                    row["position"] = int(head or 0) + i
                for start in range(0, len(rows), _ROWS_PER_STATEMENT):
                    await conn.execute(events.insert(), rows[start : start + _ROWS_PER_STATEMENT])
        except sa.exc.IntegrityError as exc:
            if _is_unique_violation(exc):
                raise _Duplicate from exc
            raise
        # Fresh events are already at their current schema: no upcasting needed.
        return [
            RecordedEvent(
                stream_id=c.stream_id,
                workspace_id=workspace_id,
                version=c.version,
                position=int(row["position"]),
                type=str(c.event.type),
                schema_version=c.event.schema_version,
                payload=c.event.payload,
                metadata=c.metadata,
                recorded_at=c.recorded_at,
            )
            for row, c in zip(rows, copies, strict=True)
        ]

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

    async def read_stream_since(
        self, stream_id: str, *, position: int, limit: int = 500
    ) -> list[RecordedEvent]:
        """A stream's events after a global position, in order (a live channel's replay)."""
        query = (
            sa.select(events)
            .where(events.c.stream_id == stream_id, events.c.position > position)
            .order_by(events.c.position)
            .limit(limit)
        )
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
        # Every live feed asks after every commit: one driver call (or none) on SQLite.
        rows = await sqlite_fast.fetch_rows(self.db, "SELECT max(position) FROM events", {})
        return int(rows[0][0] or 0)

    async def save_snapshot(
        self, conn: AsyncConnection, stream_id: str, version: int, state: JSON
    ) -> None:
        sealer = self.sealer
        workspace_id = str(state.get("workspace_id", ""))
        if sealer is not None and await sealer.sensitive(conn, workspace_id):
            state = sealer.seal_snapshot(stream_id, version, state)
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
        if row is None:
            return None
        state: JSON = row.state
        if SEALED in state:
            state = self._opener().open_snapshot(stream_id, row.version, state)
        return row.version, state

    def _opener(self) -> Sealer:
        if self.sealer is None:
            raise KeyMissing("this event store holds encrypted content but was given no keys")
        return self.sealer

    def _record(self, row: Any) -> RecordedEvent:
        payload = row["payload"]
        if SEALED in payload:  # opened before upcasting: upcasters see what was appended
            payload = self._opener().open_payload(
                row["workspace_id"], row["stream_id"], row["version"], payload
            )
        schema_version, payload = self.upcasters.upcast(row["type"], row["schema_version"], payload)
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


_SQLITE_COLUMNS = (
    "stream_id, version, workspace_id, type, schema_version, payload, metadata, recorded_at"
)
_ROWS_PER_STATEMENT = 1000  # 8,000 parameters on SQLite, well under its limit


async def _insert_sqlite(conn: AsyncConnection, rows: list[JSON]) -> None:
    """The append hot path on SQLite, where each driver call is a thread hop.

    `position` is the table's rowid: left out, SQLite assigns max + 1 per row, so
    a multi-row insert under the write lock gets a contiguous, gap-free range that
    ends at last_insert_rowid. One statement per 1,000 rows, each metadata and
    time serialised once however many rows share it, and the same JSON text and
    timestamp format the Core insert writes.
    """
    metas: dict[int, str] = {}
    stamps: dict[datetime, str] = {}
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        params: list[object] = []
        for r in chunk:
            meta = metas.get(id(r["metadata"]))
            if meta is None:
                meta = metas[id(r["metadata"])] = json.dumps(r["metadata"])
            at = stamps.get(r["recorded_at"])
            if at is None:
                at = stamps[r["recorded_at"]] = sqlite_fast.stamp(r["recorded_at"])
            params += (
                r["stream_id"],
                r["version"],
                r["workspace_id"],
                r["type"],
                r["schema_version"],
                json.dumps(r["payload"]),
                meta,
                at,
            )
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
        last = await sqlite_fast.insert(
            conn, f"INSERT INTO events ({_SQLITE_COLUMNS}) VALUES {values}", params
        )
        for offset, r in enumerate(chunk):
            r["position"] = last - len(chunk) + 1 + offset


class _Duplicate(Exception):
    """A (stream, version) already taken; each caller names its own conflict."""


def _is_unique_violation(exc: Exception) -> bool:
    # SQLite names the constraint in its message; PostgreSQL gives SQLSTATE 23505.
    orig = exc.orig if isinstance(exc, sa.exc.IntegrityError) else exc
    return getattr(orig, "sqlstate", None) == "23505" or "UNIQUE constraint" in str(orig)
