"""The usage ledger: one row per model call that used tokens, and sums over them.

Usage is written apart from the turn's transaction: a call that failed or was
cancelled mid-reply was still paid for, though its turn commits nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from taleweaver.store.database import Database
from taleweaver.store.schema import model_usage

__all__ = ["Totals", "UsageLedger", "UsageRecord"]

log = logging.getLogger(__name__)

Outcome = Literal["ok", "failed", "cancelled"]
Grouping = Literal["task", "model", "provider", "session_id"]


@dataclass(frozen=True, slots=True)
class UsageRecord:
    workspace_id: str
    session_id: str | None
    turn_id: str | None
    task: str
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    outcome: Outcome
    estimated: bool


@dataclass(frozen=True, slots=True)
class Totals:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


_SUMS = (
    sa.func.count().label("calls"),
    sa.func.coalesce(sa.func.sum(model_usage.c.prompt_tokens), 0).label("prompt_tokens"),
    sa.func.coalesce(sa.func.sum(model_usage.c.completion_tokens), 0).label("completion_tokens"),
    sa.func.coalesce(sa.func.sum(model_usage.c.cost_usd), 0.0).label("cost_usd"),
)


def _totals(row: Any) -> Totals:
    return Totals(
        int(row.calls), int(row.prompt_tokens), int(row.completion_tokens), float(row.cost_usd)
    )


class UsageLedger:
    """Writes usage rows and sums them.

    `record_soon` buffers a row and writes the buffer in one transaction a moment
    later (`flush_after` seconds), off every turn's path: written one by one, each
    row's transaction would contend with the turn's own commit for the database's
    write lock. Every read writes what is buffered first, so a process always
    reads its own usage; `flush` (at shutdown) writes the rest.
    """

    def __init__(self, db: Database, *, flush_after: float = 1.0) -> None:
        self.db = db
        self.flush_after = flush_after
        self._buffer: list[UsageRecord] = []
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def record_soon(self, entry: UsageRecord) -> None:
        self._buffer.append(entry)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_after)
        self._timer = None
        await self._write_buffer()

    async def flush(self) -> None:
        """Write every buffered row now."""
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        await self._write_buffer()

    async def _write_buffer(self) -> None:
        async with self._lock:
            rows, self._buffer = self._buffer, []
            if not rows:
                return
            try:
                await self.record(*rows)
            except Exception:  # losing usage rows must not lose anything else
                log.exception("could not record %d usage rows", len(rows))

    async def record(self, *entries: UsageRecord) -> None:
        """Write rows now, in one transaction."""
        now = datetime.now(UTC)
        values = [
            {
                "workspace_id": entry.workspace_id,
                "session_id": entry.session_id,
                "turn_id": entry.turn_id,
                "task": entry.task,
                "provider": entry.provider[:100],
                "model": entry.model[:200],
                "prompt_tokens": entry.prompt_tokens,
                "completion_tokens": entry.completion_tokens,
                "cost_usd": entry.cost_usd,
                "outcome": entry.outcome,
                "estimated": entry.estimated,
                "created_at": now,
            }
            for entry in entries
        ]
        # Not `Database.write()`: usage never needs the event table's lock.
        async with self.db.engine.begin() as conn:
            await conn.execute(model_usage.insert(), values)

    def _where(
        self, workspace_id: str, session_id: str | None, since: datetime | None
    ) -> list[sa.ColumnElement[bool]]:
        conditions = [model_usage.c.workspace_id == workspace_id]
        if session_id is not None:
            conditions.append(model_usage.c.session_id == session_id)
        if since is not None:
            conditions.append(model_usage.c.created_at >= since)
        return conditions

    async def totals(
        self, workspace_id: str, *, session_id: str | None = None, since: datetime | None = None
    ) -> Totals:
        await self.flush()
        query = sa.select(*_SUMS).where(*self._where(workspace_id, session_id, since))
        async with self.db.read() as conn:
            row = (await conn.execute(query)).one()
        return _totals(row)

    async def breakdown(
        self,
        workspace_id: str,
        by: Grouping,
        *,
        session_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Totals per task, model, provider or session, the costliest first."""
        await self.flush()
        key = model_usage.c[by]
        columns = [key, model_usage.c.provider] if by == "model" else [key]
        query = (
            sa.select(*columns, *_SUMS)
            .where(*self._where(workspace_id, session_id, since))
            .group_by(*columns)
            .order_by(sa.desc("cost_usd"), sa.desc("calls"), *columns)
            .limit(limit)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        result = []
        for row in rows:
            entry: dict[str, Any] = {by: getattr(row, by)}
            if by == "model":
                entry["provider"] = row.provider
            result.append(entry | _totals(row).to_dict())
        return result
