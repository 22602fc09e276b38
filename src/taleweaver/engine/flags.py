"""A workspace's feature flags: read for each turn, set and cleared by its admins.

Every change is written to the audit log in the same transaction as the flag, so
the log says who turned what on or off, when, and what it was before.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.auth import AuditLog
from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.flags import (
    FLAGS,
    PLUGIN_PREFIX,
    TRACE_CONTENT,
    Flag,
    FlagSet,
    known_flag,
    plugin_flag,
)
from taleweaver.store.database import Database
from taleweaver.store.flags_schema import workspace_flags
from taleweaver.store.schema import workspaces
from taleweaver.store.sqlite_fast import fetch_rows


@dataclass(frozen=True, slots=True)
class FlagState:
    """One flag as a workspace has it: set there (with who and when), or its default."""

    name: str
    description: str
    default: bool
    enabled: bool
    updated_at: datetime | None = None
    updated_by: str | None = None


@dataclass(frozen=True, slots=True)
class _Stored:
    """A flag's row: what the workspace set, when and by whom."""

    enabled: bool
    updated_at: datetime
    updated_by: str


_READ = "SELECT name, enabled FROM workspace_flags WHERE workspace_id = :workspace_id"


async def _sensitive(conn: AsyncConnection, workspace_id: str) -> bool:
    query = sa.select(workspaces.c.sensitive).where(workspaces.c.id == workspace_id)
    return bool(await conn.scalar(query))


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite reads naive


class WorkspaceFlags:
    def __init__(
        self, db: Database, audit: AuditLog, plugins: Callable[[], Collection[str]] = tuple
    ) -> None:
        self.db = db
        self.audit = audit
        # The installed plugins' names: each has a flag `plugin:<name>`, on by default.
        self.plugins = plugins

    def _flags(self) -> dict[str, Flag]:
        return dict(FLAGS) | {f.name: f for f in map(plugin_flag, self.plugins())}

    def _known(self, name: str) -> Flag:
        flag = self._flags().get(name)
        if flag is None and name.startswith(PLUGIN_PREFIX):
            installed = ", ".join(sorted(self.plugins())) or "none"
            raise InvalidInput(
                f"no installed plugin is called {name.removeprefix(PLUGIN_PREFIX)!r} "
                f"(installed: {installed})"
            )
        return flag or known_flag(name)

    async def read(self, workspace_id: str) -> FlagSet:
        """What a turn in this workspace runs with (one query, at its start)."""
        # On every turn: one driver call on SQLite (see store/sqlite_fast.py).
        rows = await fetch_rows(self.db, _READ, {"workspace_id": workspace_id})
        # A row for a flag since retired is ignored rather than failing the turn.
        settings = {
            str(name): bool(on)
            for name, on in rows
            if name in FLAGS or str(name).startswith(PLUGIN_PREFIX)
        }
        if settings.get(TRACE_CONTENT):  # rare: only then the second query
            async with self.db.read() as conn:
                if await _sensitive(conn, workspace_id):  # marked so since it was set
                    settings[TRACE_CONTENT] = False
        return FlagSet(settings)

    async def list(self, workspace_id: str) -> list[FlagState]:
        """Every known flag, by name, as this workspace has it."""
        async with self.db.read() as conn:
            rows = await self._rows(conn, workspace_id)
        flags = self._flags()
        return [self._state(flags[name], rows.get(name)) for name in sorted(flags)]

    async def set(self, workspace_id: str, name: str, enabled: bool, *, actor: str) -> FlagState:
        flag = self._known(name)
        now = datetime.now(UTC)
        where = (workspace_flags.c.workspace_id == workspace_id, workspace_flags.c.name == name)
        values = {"enabled": enabled, "updated_at": now, "updated_by": actor}
        async with self.db.write() as conn:
            await self.db.lock(conn)
            if name == TRACE_CONTENT and enabled and await _sensitive(conn, workspace_id):
                raise Conflict("a sensitive workspace's traces never carry what was written")
            before = (await self._rows(conn, workspace_id, name)).get(name)
            if before is None:
                await conn.execute(
                    workspace_flags.insert().values(workspace_id=workspace_id, name=name, **values)
                )
            else:
                await conn.execute(workspace_flags.update().where(*where).values(**values))
            await self.audit.record(
                actor,
                "flag.set",
                workspace_id=workspace_id,
                target=name,
                details={"enabled": enabled, "was": self._state(flag, before).enabled},
                conn=conn,
            )
        return self._state(flag, _Stored(enabled, now, actor))

    async def clear(self, workspace_id: str, name: str, *, actor: str) -> FlagState:
        """Back to the default; audited only when the workspace had set it."""
        flag = self._known(name)
        async with self.db.write() as conn:
            await self.db.lock(conn)
            before = (await self._rows(conn, workspace_id, name)).get(name)
            if before is not None:
                await conn.execute(
                    workspace_flags.delete().where(
                        workspace_flags.c.workspace_id == workspace_id,
                        workspace_flags.c.name == name,
                    )
                )
                await self.audit.record(
                    actor,
                    "flag.cleared",
                    workspace_id=workspace_id,
                    target=name,
                    details={"enabled": flag.default, "was": before.enabled},
                    conn=conn,
                )
        return self._state(flag, None)

    @staticmethod
    async def _rows(
        conn: AsyncConnection, workspace_id: str, name: str | None = None
    ) -> dict[str, _Stored]:
        query = sa.select(workspace_flags).where(workspace_flags.c.workspace_id == workspace_id)
        if name is not None:
            query = query.where(workspace_flags.c.name == name)
        rows = (await conn.execute(query)).all()
        return {r.name: _Stored(bool(r.enabled), _utc(r.updated_at), r.updated_by) for r in rows}

    @staticmethod
    def _state(flag: Flag, stored: _Stored | None) -> FlagState:
        if stored is None:
            return FlagState(flag.name, flag.description, flag.default, flag.default)
        return FlagState(
            flag.name,
            flag.description,
            flag.default,
            stored.enabled,
            stored.updated_at,
            stored.updated_by,
        )
