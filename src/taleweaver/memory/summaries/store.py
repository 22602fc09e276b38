"""Where summaries live: rows per session, sealed in sensitive workspaces.

Every query names the workspace as well as the session. Texts are opened only
when asked for (`texts`, `page`): recall reads the small index of every summary,
then the text of the few it uses.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import KeyMissing
from taleweaver.domain.events import JSON
from taleweaver.domain.sessions import EventType
from taleweaver.domain.summaries import IndexEntry, Span, SummaryRow
from taleweaver.store import sqlite_fast
from taleweaver.store.database import Database
from taleweaver.store.schema import events, sessions
from taleweaver.store.sealing import Sealer
from taleweaver.store.summaries_schema import summaries, summary_aad, summary_progress

__all__ = ["Draft", "SessionInfo", "SummaryStore", "summary_aad"]

# What recall and the planner read of every summary on every pass: no texts, no sources.
_INDEX_COLUMNS = [
    summaries.c.id,
    summaries.c.level,
    summaries.c.first_turn,
    summaries.c.last_turn,
    summaries.c.stale,
    summaries.c.method,
    summaries.c.model,
    summaries.c.retry_at,
    summaries.c.attempts,
]
_FULL_COLUMNS = [
    *_INDEX_COLUMNS,
    summaries.c.prompt_version,
    summaries.c.sources,
    summaries.c.source_version,
    summaries.c.fallback_reason,
    summaries.c.created_at,
    summaries.c.sealed,
    summaries.c.text,
]


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Draft:
    """A summary about to be written (replacing any earlier one of its span)."""

    span: Span
    text: str
    method: str
    model: str
    prompt_version: int
    source_version: int
    sources: list[JSON] = field(default_factory=list)
    fallback_reason: str | None = None
    attempts: int = 0
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    workspace_id: str
    turn_count: int
    version: int


class SummaryStore:
    def __init__(self, db: Database, sealer: Sealer | None) -> None:
        self.db = db
        self.sealer = sealer

    # --- reading ----------------------------------------------------------------------

    async def index(self, workspace_id: str, session_id: str) -> list[IndexEntry]:
        """Every summary of the session, without its text."""
        query = (
            sa.select(*_INDEX_COLUMNS)
            .where(summaries.c.workspace_id == workspace_id, summaries.c.session_id == session_id)
            .order_by(summaries.c.first_turn, summaries.c.level)
        )
        async with self.db.read() as conn:
            return [_entry(r._mapping) for r in await conn.execute(query)]

    async def texts(self, workspace_id: str, ids: Sequence[str]) -> dict[str, str]:
        """The opened texts of the given summaries."""
        if not ids:
            return {}
        query = sa.select(summaries.c.id, summaries.c.text, summaries.c.sealed).where(
            summaries.c.workspace_id == workspace_id, summaries.c.id.in_(list(ids))
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return {r.id: self._open(workspace_id, r.id, r.text, r.sealed) for r in rows}

    async def page(
        self,
        workspace_id: str,
        session_id: str,
        *,
        level: int | None,
        limit: int,
        offset: int,
    ) -> tuple[list[SummaryRow], int]:
        """Summaries with their texts in story order (a coarser one before the finer
        ones it holds), and how many there are in all."""
        conditions = [
            summaries.c.workspace_id == workspace_id,
            summaries.c.session_id == session_id,
        ]
        if level is not None:
            conditions.append(summaries.c.level == level)
        query = (
            sa.select(*_FULL_COLUMNS)
            .where(*conditions)
            .order_by(summaries.c.first_turn, summaries.c.level.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
            total = await conn.scalar(
                sa.select(sa.func.count()).select_from(summaries).where(*conditions)
            )
        return [self._row(workspace_id, r._mapping) for r in rows], int(total or 0)

    async def session_info(self, workspace_id: str, session_id: str) -> SessionInfo | None:
        query = sa.select(sessions.c.workspace_id, sessions.c.turn_count, sessions.c.version).where(
            sessions.c.id == session_id, sessions.c.workspace_id == workspace_id
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else SessionInfo(row[0], int(row[1]), int(row[2]))

    async def replaced_turns(
        self, workspace_id: str, session_id: str, after_version: int
    ) -> list[tuple[int, int]]:
        """(version, turn number) of every regenerate, edit or telling chosen after a
        stream version.

        The turn number is one of the payload fields never sealed, so this reads
        sealed streams without opening them.
        """
        query = (
            sa.select(events.c.version, events.c.payload)
            .where(
                events.c.stream_id == session_id,
                events.c.workspace_id == workspace_id,
                events.c.version > after_version,
                events.c.type.in_(
                    [EventType.TURN_REGENERATED, EventType.TURN_EDITED, EventType.TURN_SELECTED]
                ),
            )
            .order_by(events.c.version)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [(int(r.version), int(r.payload["number"])) for r in rows]

    async def generation(self, workspace_id: str, session_id: str) -> int:
        """A counter that changes whenever the session's summaries do (0: none yet)."""
        found = await sqlite_fast.fetch_rows(
            self.db,
            "SELECT generation FROM summary_progress "
            "WHERE session_id = :sid AND workspace_id = :ws",
            {"sid": session_id, "ws": workspace_id},
        )
        return int(found[0][0]) if found else 0

    async def checked_version(self, workspace_id: str, session_id: str) -> int:
        query = sa.select(summary_progress.c.checked_version).where(
            summary_progress.c.session_id == session_id,
            summary_progress.c.workspace_id == workspace_id,
        )
        async with self.db.read() as conn:
            value = await conn.scalar(query)
        return int(value or 0)

    # --- writing ----------------------------------------------------------------------

    async def mark_replaced(
        self, workspace_id: str, session_id: str, replaced: Sequence[tuple[int, int]], checked: int
    ) -> int:
        """Mark stale every summary (at every level) holding a replaced turn that it
        was made before; remember how far the stream was scanned. How many were marked."""
        marked = 0
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            for version, turn in replaced:
                result = await conn.execute(
                    summaries.update()
                    .where(
                        summaries.c.workspace_id == workspace_id,
                        summaries.c.session_id == session_id,
                        summaries.c.first_turn <= turn,
                        summaries.c.last_turn >= turn,
                        summaries.c.source_version < version,
                        summaries.c.stale == sa.false(),
                    )
                    .values(stale=True)
                )
                marked += result.rowcount
            await _progress(conn, workspace_id, session_id, now, checked=checked, bump=marked > 0)
        return marked

    async def mark_all_stale(self, workspace_id: str, session_id: str) -> int:
        async with self.db.write() as conn:
            result = await conn.execute(
                summaries.update()
                .where(
                    summaries.c.workspace_id == workspace_id,
                    summaries.c.session_id == session_id,
                )
                .values(stale=True)
            )
            await _progress(conn, workspace_id, session_id, datetime.now(UTC), bump=True)
        return int(result.rowcount)

    async def save(self, workspace_id: str, session_id: str, drafts: Sequence[Draft]) -> None:
        """Write summaries in one transaction, each replacing its span's earlier one,
        and mark stale the summaries above that were made from what they replace."""
        if not drafts:
            return
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            await _progress(conn, workspace_id, session_id, now, bump=True)
            seal = self.sealer is not None and await self.sealer.sensitive(conn, workspace_id)
            for draft in drafts:
                span = draft.span
                await conn.execute(
                    summaries.delete().where(
                        summaries.c.workspace_id == workspace_id,
                        summaries.c.session_id == session_id,
                        summaries.c.level == span.level,
                        summaries.c.first_turn == span.first,
                    )
                )
                summary_id = uuid.uuid4().hex
                text = draft.text
                if seal:
                    assert self.sealer is not None
                    text = self.sealer.keys.encrypt(text, summary_aad(workspace_id, summary_id))
                await conn.execute(
                    summaries.insert().values(
                        id=summary_id,
                        workspace_id=workspace_id,
                        session_id=session_id,
                        level=span.level,
                        first_turn=span.first,
                        last_turn=span.last,
                        text=text,
                        sealed=seal,
                        method=draft.method,
                        model=draft.model[:200],
                        prompt_version=draft.prompt_version,
                        sources=draft.sources,
                        source_version=draft.source_version,
                        stale=False,
                        fallback_reason=(draft.fallback_reason or "")[:500] or None,
                        attempts=draft.attempts,
                        retry_at=draft.retry_at,
                        created_at=now,
                    )
                )
                await conn.execute(
                    summaries.update()
                    .where(
                        summaries.c.workspace_id == workspace_id,
                        summaries.c.session_id == session_id,
                        summaries.c.level > span.level,
                        summaries.c.first_turn <= span.first,
                        summaries.c.last_turn >= span.last,
                    )
                    .values(stale=True)
                )

    async def forget(self, workspace_id: str, session_id: str) -> None:
        """Drop a deleted session's summaries."""
        async with self.db.write() as conn:
            for table in (summaries, summary_progress):
                await conn.execute(
                    table.delete().where(
                        table.c.session_id == session_id, table.c.workspace_id == workspace_id
                    )
                )

    # --- rows -------------------------------------------------------------------------

    def _open(self, workspace_id: str, summary_id: str, text: str, sealed: bool) -> str:
        if not sealed:
            return text
        if self.sealer is None:
            raise KeyMissing("a summary is encrypted but no keys were given")
        return self.sealer.keys.decrypt(text, summary_aad(workspace_id, summary_id))

    def _row(self, workspace_id: str, m: sa.RowMapping) -> SummaryRow:
        created = _utc(m["created_at"])
        assert created is not None
        return SummaryRow(
            entry=_entry(m),
            text=self._open(workspace_id, m["id"], m["text"], m["sealed"]),
            prompt_version=m["prompt_version"],
            sources=list(m["sources"]),
            source_version=m["source_version"],
            fallback_reason=m["fallback_reason"],
            created_at=created,
            sealed=bool(m["sealed"]),
        )


def _entry(m: sa.RowMapping) -> IndexEntry:
    return IndexEntry(
        id=m["id"],
        span=Span(m["level"], m["first_turn"], m["last_turn"]),
        stale=bool(m["stale"]),
        method=m["method"],
        model=m["model"],
        retry_at=_utc(m["retry_at"]),
        attempts=m["attempts"],
    )


async def _progress(
    conn: AsyncConnection,
    workspace_id: str,
    session_id: str,
    now: datetime,
    *,
    checked: int | None = None,
    bump: bool = False,
) -> None:
    """Record how far the stream was scanned, and/or that the summaries changed."""
    values: dict[str, object] = {"updated_at": now}
    if checked is not None:
        values["checked_version"] = checked
    if bump:
        values["generation"] = summary_progress.c.generation + 1
    result = await conn.execute(
        summary_progress.update()
        .where(
            summary_progress.c.session_id == session_id,
            summary_progress.c.workspace_id == workspace_id,
        )
        .values(values)
    )
    if result.rowcount == 0:
        await conn.execute(
            summary_progress.insert().values(
                session_id=session_id,
                workspace_id=workspace_id,
                checked_version=checked or 0,
                generation=1 if bump else 0,
                updated_at=now,
            )
        )
