"""An append-only, hash-chained audit log of security and content-lifecycle actions.

Each entry's hash covers its own fields and the previous entry's hash, so editing,
inserting or deleting any row breaks the chain from that row on; `verify` finds
the first broken link.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.events import JSON
from taleweaver.store.database import Database
from taleweaver.store.schema import audit_log

GENESIS = "0" * 64


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def entry_hash(prev_hash: str, entry: JSON) -> str:
    body = {
        k: entry[k] for k in ("seq", "at", "actor", "action", "workspace_id", "target", "details")
    }
    body["at"] = _utc(entry["at"]).isoformat()
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str = ""


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        actor: str,
        action: str,
        *,
        workspace_id: str | None = None,
        target: str | None = None,
        details: JSON | None = None,
        conn: AsyncConnection | None = None,
    ) -> None:
        """Append an entry, inside the caller's write transaction when one is given."""
        if conn is not None:
            await self._append(conn, actor, action, workspace_id, target, details or {})
            return
        async with self.db.write() as own:
            await self._append(own, actor, action, workspace_id, target, details or {})

    async def _append(
        self,
        conn: AsyncConnection,
        actor: str,
        action: str,
        workspace_id: str | None,
        target: str | None,
        details: JSON,
    ) -> None:
        # Chain order is append order: one writer at a time, from the read of the
        # last entry to the insert of the next.
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
        else:
            await self.db.lock(conn)
        last = (
            await conn.execute(
                sa.select(audit_log.c.seq, audit_log.c.hash)
                .order_by(audit_log.c.seq.desc())
                .limit(1)
            )
        ).first()
        entry: dict[str, Any] = {
            "seq": (last.seq + 1) if last else 1,
            "at": datetime.now(UTC),
            "actor": actor,
            "action": action,
            "workspace_id": workspace_id,
            "target": target,
            "details": details,
        }
        prev = last.hash if last else GENESIS
        entry["prev_hash"] = prev
        entry["hash"] = entry_hash(prev, entry)
        await conn.execute(audit_log.insert().values(**entry))

    async def entries(
        self,
        *,
        workspace_id: str | None = None,
        after: int = 0,
        limit: int = 100,
        with_instance: bool = False,
    ) -> list[JSON]:
        """Entries after `after`: one workspace's (with `with_instance`, also those about
        the instance itself: accounts, logins, API keys), or all of them."""
        query = sa.select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq)
        if workspace_id is not None:
            scope = audit_log.c.workspace_id == workspace_id
            if with_instance:
                scope = sa.or_(scope, audit_log.c.workspace_id.is_(None))
            query = query.where(scope)
        async with self.db.read() as conn:
            rows = (await conn.execute(query.limit(limit))).all()
        return [dict(r._mapping) | {"at": _utc(r.at)} for r in rows]

    async def verify(self) -> Verification:
        prev = GENESIS
        count = 0
        expected_seq = 1
        async with self.db.read() as conn:
            result = await conn.stream(sa.select(audit_log).order_by(audit_log.c.seq))
            async for row in result:
                entry = dict(row._mapping)
                count += 1
                if entry["seq"] != expected_seq:
                    return Verification(False, count, entry["seq"], "an entry is missing")
                if entry["prev_hash"] != prev:
                    return Verification(False, count, entry["seq"], "the chain is broken")
                if entry_hash(prev, entry) != entry["hash"]:
                    return Verification(False, count, entry["seq"], "the entry was altered")
                prev = entry["hash"]
                expected_seq += 1
        return Verification(True, count)
