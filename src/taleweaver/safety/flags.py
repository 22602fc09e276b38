"""Crisis flags: one per crisis raised; an open pausing flag holds its session's story."""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from taleweaver.domain.errors import Conflict, NotFound
from taleweaver.domain.events import JSON
from taleweaver.safety.protocol import CrisisSignal
from taleweaver.store import sqlite_fast
from taleweaver.store.database import Database
from taleweaver.store.safety_schema import safety_flags

MAX_FLAGS = 500
MAX_REMEMBERED = 10_000


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _row(row: Any) -> JSON:
    data = dict(row._mapping)
    data["categories"] = list(data["categories"])
    data["created_at"] = _utc(data["created_at"])
    data["resolved_at"] = _utc(data["resolved_at"])
    return data


class Flags:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._owners: OrderedDict[tuple[str, str], str | None] = OrderedDict()

    async def create(self, signal: CrisisSignal, *, conn: Any) -> str:
        """Record a crisis inside the caller's transaction; pauses its session if any."""
        flag_id = uuid.uuid4().hex
        await conn.execute(
            safety_flags.insert().values(
                id=flag_id,
                workspace_id=signal.workspace_id,
                session_id=signal.session_id,
                user_id=signal.user_id,
                level=signal.level,
                categories=list(signal.categories),
                source=signal.source,
                ref=signal.ref,
                paused=signal.session_id is not None,
                status="open",
                detail=dict(signal.detail),
                created_at=datetime.now(UTC),
            )
        )
        return flag_id

    async def carry(
        self, workspace_id: str, source_id: str, fork_id: str, *, conn: Any
    ) -> list[str]:
        """Copy the source session's open pausing flags onto its fork, inside the
        fork's transaction: forking must not be a way out of the crisis protocol, so
        the fork starts paused until someone resumes it too. Returns the new ids."""
        rows = (
            await conn.execute(
                sa.select(safety_flags).where(
                    safety_flags.c.workspace_id == workspace_id,
                    safety_flags.c.session_id == source_id,
                    safety_flags.c.status == "open",
                    safety_flags.c.paused,
                )
            )
        ).all()
        now = datetime.now(UTC)
        copies = [
            {
                "id": uuid.uuid4().hex,
                "workspace_id": workspace_id,
                "session_id": fork_id,
                "user_id": row.user_id,  # the player in crisis, whoever forked
                "level": row.level,
                "categories": list(row.categories),
                "source": "fork",
                "ref": row.id,  # the flag it was carried from
                "paused": True,
                "status": "open",
                "detail": dict(row.detail) | {"forked_from": source_id},
                "created_at": now,
            }
            for row in rows
        ]
        if copies:
            await conn.execute(safety_flags.insert(), copies)
        return [c["id"] for c in copies]

    async def pause_of(self, workspace_id: str, session_id: str) -> JSON | None:
        """The level and categories of the newest open pausing flag of a session, or
        None when it may go on (asked on every turn: one driver call on SQLite)."""
        rows = await sqlite_fast.fetch_rows(
            self.db,
            "SELECT level, categories FROM safety_flags WHERE workspace_id = :ws "
            "AND session_id = :sid AND status = 'open' AND paused "
            "ORDER BY created_at DESC LIMIT 1",
            {"ws": workspace_id, "sid": session_id},
        )
        if not rows:
            return None
        level, categories = rows[0]
        if isinstance(categories, str | bytes):
            categories = json.loads(categories)
        return {"level": level, "categories": list(categories)}

    async def list(
        self,
        workspace_id: str,
        *,
        users: Collection[str] | None,
        status: str | None,
        session_id: str | None = None,
        limit: int = 100,
    ) -> list[JSON]:
        """Flags newest first; `users` limits them to those players (None: everyone)."""
        query = sa.select(safety_flags).where(safety_flags.c.workspace_id == workspace_id)
        if users is not None:
            query = query.where(safety_flags.c.user_id.in_(list(users)))
        if status is not None:
            query = query.where(safety_flags.c.status == status)
        if session_id is not None:
            query = query.where(safety_flags.c.session_id == session_id)
        query = query.order_by(safety_flags.c.created_at.desc()).limit(min(limit, MAX_FLAGS))
        async with self.db.read() as conn:
            return [_row(r) for r in (await conn.execute(query)).all()]

    async def resume(self, workspace_id: str, session_id: str, *, actor: str, conn: Any) -> int:
        """Resolve every open flag of the session; `Conflict` when it is not paused."""
        done = await conn.execute(
            safety_flags.update()
            .where(
                safety_flags.c.workspace_id == workspace_id,
                safety_flags.c.session_id == session_id,
                safety_flags.c.status == "open",
            )
            .values(
                status="resolved", paused=False, resolved_at=datetime.now(UTC), resolved_by=actor
            )
        )
        if done.rowcount == 0:
            raise Conflict(f"session {session_id} is not paused by the safety layer")
        return int(done.rowcount)

    async def acknowledge(
        self, workspace_id: str, user_id: str, flag_id: str, *, actor: str, conn: Any
    ) -> JSON:
        """Mark one open flag of a player as seen and handled. A flag that holds a
        session paused is lifted by resuming that session instead (`Conflict`)."""
        row = (
            await conn.execute(
                sa.select(safety_flags).where(
                    safety_flags.c.workspace_id == workspace_id,
                    safety_flags.c.user_id == user_id,
                    safety_flags.c.id == flag_id,
                )
            )
        ).first()
        if row is None:
            raise NotFound(f"flag {flag_id} not found")
        if row.status == "open" and row.paused:
            raise Conflict(f"flag {flag_id} pauses its session: resume the session instead")
        if row.status == "open":
            await conn.execute(
                safety_flags.update()
                .where(safety_flags.c.id == flag_id)
                .values(status="resolved", resolved_at=datetime.now(UTC), resolved_by=actor)
            )
        found = (
            await conn.execute(sa.select(safety_flags).where(safety_flags.c.id == flag_id))
        ).first()
        return _row(found)

    async def session_owner(self, workspace_id: str, session_id: str) -> str | None:
        """Who started the session (it never changes, so it is remembered)."""
        key = (workspace_id, session_id)
        if key in self._owners:
            return self._owners[key]
        rows = await sqlite_fast.fetch_rows(
            self.db,
            "SELECT owner_id FROM sessions WHERE workspace_id = :ws AND id = :sid",
            {"ws": workspace_id, "sid": session_id},
        )
        owner: str | None = rows[0][0] if rows else None
        if rows:
            self._owners[key] = owner
            while len(self._owners) > MAX_REMEMBERED:
                self._owners.popitem(last=False)
        return owner
