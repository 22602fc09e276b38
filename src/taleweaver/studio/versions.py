"""Versioned studio material: one event stream per blueprint or recipe, every save
one event holding the whole saved value, and a read-model row written in the same
transaction. Versions, diffs and restores read the stream."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import Conflict, NotFound
from taleweaver.domain.events import JSON, EventMetadata, NewEvent, RecordedEvent
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore

# The read-model columns a saved value fills, beside the bookkeeping ones.
Columns = Callable[[JSON], JSON]


def new_id() -> str:
    return uuid.uuid4().hex


def plain(row: Any) -> JSON:
    data = dict(row._mapping)
    for key, value in data.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            data[key] = value.replace(tzinfo=UTC)
    data.pop("search_text", None)
    return data


@dataclass(frozen=True)
class Kind:
    """One kind of versioned material: its table, stream names and events."""

    what: str  # "blueprint", "recipe"
    table: sa.Table
    value_key: str  # the key of the saved value in the saved event's payload
    saved: str
    deleted: str
    stream: Callable[[str], str]
    columns: Columns


class VersionedStore:
    def __init__(self, db: Database, store: EventStore, kind: Kind) -> None:
        self.db = db
        self.store = store
        self.kind = kind

    async def row(self, conn: AsyncConnection, workspace_id: str, item_id: str) -> JSON | None:
        table = self.kind.table
        found = (
            await conn.execute(
                sa.select(table).where(table.c.id == item_id, table.c.workspace_id == workspace_id)
            )
        ).first()
        return plain(found) if found is not None else None

    async def get(self, workspace_id: str, item_id: str) -> JSON:
        async with self.db.read() as conn:
            found = await self.row(conn, workspace_id, item_id)
        if found is None:
            raise NotFound(f"{self.kind.what} {item_id} not found")
        return found

    async def save(
        self,
        workspace_id: str,
        item_id: str,
        value: JSON,
        meta: EventMetadata,
        *,
        create: bool = False,
        sources: Mapping[str, JSON] | None = None,
        changed: list[str],
        restored_from: int | None = None,
        expected_version: int | None = None,
    ) -> JSON:
        """Append one saved event (a new version) and project it (`create`: the first).
        NotFound for an item not in the workspace, Conflict for a stale
        `expected_version`."""
        async with self.db.write() as conn:
            await self.db.lock(conn)
            await self.save_in(
                conn,
                workspace_id,
                item_id,
                value,
                meta,
                create=create,
                sources=sources,
                changed=changed,
                restored_from=restored_from,
                expected_version=expected_version,
            )
            found = await self.row(conn, workspace_id, item_id)
        assert found is not None
        return found

    async def save_in(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        item_id: str,
        value: JSON,
        meta: EventMetadata,
        *,
        create: bool = False,
        sources: Mapping[str, JSON] | None,
        changed: list[str],
        restored_from: int | None = None,
        expected_version: int | None = None,
    ) -> list[RecordedEvent]:
        """As `save`, inside the caller's write transaction (lock taken)."""
        current = await self.row(conn, workspace_id, item_id)
        if create and current is not None:
            raise Conflict(f"{self.kind.what} {item_id} already exists")
        if not create and current is None:
            raise NotFound(f"{self.kind.what} {item_id} not found")
        if current and expected_version is not None and expected_version != current["version"]:
            raise Conflict(
                f"{self.kind.what} {item_id} is at version {current['version']}, "
                f"not {expected_version}: reload it and save again"
            )
        payload: JSON = {
            self.kind.value_key: value,
            "changed": changed,
            "sources": dict(sources or {}),
            "restored_from": restored_from,
        }
        version = current["version"] if current else 0
        recorded = await self.store.append(
            conn,
            stream_id=self.kind.stream(item_id),
            workspace_id=workspace_id,
            expected_version=version,
            new_events=[NewEvent(self.kind.saved, payload)],
            metadata=meta,
        )
        await self._project(conn, workspace_id, item_id, current, recorded[-1])
        return recorded

    async def _project(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        item_id: str,
        current: JSON | None,
        event: RecordedEvent,
    ) -> None:
        table = self.kind.table
        value = event.payload[self.kind.value_key]
        field_sources = dict(current["field_sources"]) if current else {}
        actor = str(event.metadata.get("actor") or "system")
        for name in event.payload["changed"]:
            field_sources[name] = event.payload["sources"].get(name) or {
                "version": event.version,
                "actor": actor,
            }
        row = self.kind.columns(value) | {
            "field_sources": field_sources,
            "version": event.version,
            "updated_at": event.recorded_at,
            "updated_by": actor[:100],
        }
        if current is None:
            await conn.execute(
                table.insert().values(
                    id=item_id, workspace_id=workspace_id, created_at=event.recorded_at, **row
                )
            )
        else:
            await conn.execute(table.update().where(table.c.id == item_id).values(**row))

    async def delete(self, workspace_id: str, item_id: str, meta: EventMetadata) -> None:
        table = self.kind.table
        async with self.db.write() as conn:
            await self.db.lock(conn)
            current = await self.row(conn, workspace_id, item_id)
            if current is None:
                raise NotFound(f"{self.kind.what} {item_id} not found")
            await self.store.append(
                conn,
                stream_id=self.kind.stream(item_id),
                workspace_id=workspace_id,
                expected_version=current["version"],
                new_events=[NewEvent(self.kind.deleted, {})],
                metadata=meta,
            )
            await conn.execute(table.delete().where(table.c.id == item_id))

    # --- versions ---------------------------------------------------------------------

    async def versions(self, workspace_id: str, item_id: str) -> list[JSON]:
        """Every saved version, oldest first: who, when, what changed, and where from."""
        await self.get(workspace_id, item_id)
        events = await self.store.read_stream(self.kind.stream(item_id))
        return [
            {
                "version": e.version,
                "at": e.recorded_at,
                "actor": e.metadata.get("actor"),
                "changed": e.payload.get("changed", []),
                "sources": e.payload.get("sources", {}),
                "restored_from": e.payload.get("restored_from"),
            }
            for e in events
            if e.type == self.kind.saved
        ]

    async def version(self, workspace_id: str, item_id: str, version: int) -> JSON:
        """The whole value as saved at `version`; NotFound for a version never saved."""
        await self.get(workspace_id, item_id)
        if version < 1:
            raise NotFound(f"{self.kind.what} {item_id} has no version {version}")
        found = await self.store.read_stream(self.kind.stream(item_id), after=version - 1, limit=1)
        if not found or found[0].version != version or found[0].type != self.kind.saved:
            raise NotFound(f"{self.kind.what} {item_id} has no version {version}")
        value: JSON = found[0].payload[self.kind.value_key]
        return value
