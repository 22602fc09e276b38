"""Reads over the read models: session lists, messages, history and search.

Sealed titles and messages (sensitive workspaces, store.sealing) are opened here,
so callers only see plaintext; full-text search never finds sealed messages.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from taleweaver.domain.errors import KeyMissing
from taleweaver.domain.events import JSON
from taleweaver.domain.sessions import SessionFilter
from taleweaver.store import sqlite_fast
from taleweaver.store.database import Database
from taleweaver.store.schema import events, messages, sessions
from taleweaver.store.sealing import Sealer

_WORD = re.compile(r"\w+", re.UNICODE)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_MESSAGE_COLUMNS = [
    messages.c.id,
    messages.c.session_id,
    messages.c.turn_id,
    messages.c.turn_number,
    messages.c.role,
    messages.c.content,
    messages.c.choices,
    messages.c.alternatives,
    messages.c.active,
    messages.c.created_at,
    messages.c.workspace_id,  # with `sealed`: what opening a sealed row needs
    messages.c.sealed,
]


class Queries:
    """`sealer` opens sealed rows (the engine always passes one); without it a sealed
    row raises `KeyMissing` rather than handing out ciphertext."""

    def __init__(self, db: Database, sealer: Sealer | None = None) -> None:
        self.db = db
        self.sealer = sealer

    def _opener(self) -> Sealer:
        if self.sealer is None:
            raise KeyMissing("the read models hold encrypted content but no keys were given")
        return self.sealer

    def _title(self, workspace_id: str, session_id: str, title: str, sealed: bool) -> str:
        return self._opener().open_title(workspace_id, session_id, title) if sealed else title

    def _session_dict(self, row: Any) -> JSON:
        data = dict(row._mapping)
        data["created_at"] = _utc(data["created_at"])
        data["updated_at"] = _utc(data["updated_at"])
        data["title"] = self._title(
            data["workspace_id"], data["id"], data["title"], data.pop("sealed")
        )
        return data

    def _message_dict(self, row: Any) -> JSON:
        data = dict(row._mapping)
        data["created_at"] = _utc(data["created_at"])
        if data["sealed"]:
            data = self._opener().open_message_row(data)
        del data["sealed"], data["workspace_id"]
        return data

    async def session(self, workspace_id: str, session_id: str) -> JSON | None:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(sessions).where(
                        sessions.c.id == session_id, sessions.c.workspace_id == workspace_id
                    )
                )
            ).first()
        return None if row is None else self._session_dict(row)

    async def sessions(
        self, workspace_id: str, where: SessionFilter, *, limit: int, offset: int
    ) -> tuple[list[JSON], int]:
        conditions = [sessions.c.workspace_id == workspace_id]
        if where.kind is not None:
            conditions.append(sessions.c.kind == where.kind)
        if where.archived is not None:
            conditions.append(sessions.c.archived == where.archived)
        if where.pinned is not None:
            conditions.append(sessions.c.pinned == where.pinned)
        if where.owners is not None:
            conditions.append(sessions.c.owner_id.in_(sorted(where.owners)))
        query = (
            sa.select(sessions)
            .where(*conditions)
            .order_by(sessions.c.pinned.desc(), sessions.c.updated_at.desc(), sessions.c.id)
            .limit(limit)
            .offset(offset)
        )
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
            total = await conn.scalar(sa.select(sa.func.count()).where(*conditions))
        return [self._session_dict(r) for r in rows], int(total or 0)

    async def messages(
        self, session_id: str, *, after_turn: int = 0, limit: int = 100
    ) -> list[JSON]:
        query = (
            sa.select(*_MESSAGE_COLUMNS)
            .where(messages.c.session_id == session_id, messages.c.turn_number > after_turn)
            .order_by(messages.c.seq)
            .limit(limit)
        )
        async with self.db.read() as conn:
            return [self._message_dict(r) for r in await conn.execute(query)]

    async def history(self, session_id: str, *, before_turn: int, limit: int) -> list[JSON]:
        """The last `limit` messages before a turn, oldest first."""
        # Every turn reads this: one driver call on SQLite.
        found = await sqlite_fast.fetch_rows(
            self.db,
            "SELECT role, content, turn_number, id, workspace_id, sealed FROM messages "
            "WHERE session_id = :sid AND turn_number < :before ORDER BY seq DESC LIMIT :limit",
            {"sid": session_id, "before": before_turn, "limit": limit},
        )
        return [
            {
                "role": role,
                "content": self._opener().open_message(ws, mid, content)[0] if sealed else content,
                "turn_number": number,
            }
            for role, content, number, mid, ws, sealed in reversed(found)
        ]

    async def session_version(self, session_id: str) -> int | None:
        found = await sqlite_fast.fetch_rows(
            self.db, "SELECT version FROM sessions WHERE id = :sid", {"sid": session_id}
        )
        return int(found[0][0]) if found else None

    async def turn_event_version(
        self, session_id: str, turn_id: str, types: Collection[str]
    ) -> int | None:
        """The version of the last event of one of `types` in a session's stream whose
        payload names `turn_id`, or None.

        The stream's (stream_id, version) index walks it from its end, so a recent
        turn is found after a few rows and no event leaves the database but the
        answer; `turn_id` stays in clear text in sealed payloads (store.sealing).
        """
        query = (
            sa.select(events.c.version)
            .where(
                events.c.stream_id == session_id,
                events.c.type.in_(list(types)),
                events.c.payload["turn_id"].as_string() == turn_id,
            )
            .order_by(events.c.version.desc())
            .limit(1)
        )
        async with self.db.read() as conn:
            version = await conn.scalar(query)
        return None if version is None else int(version)

    async def search(
        self,
        workspace_id: str,
        text: str,
        *,
        session_id: str | None = None,
        owners: frozenset[str] | None = None,
        limit: int = 20,
        character: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        context: int = 0,
    ) -> list[JSON]:
        """Full-text search over messages, best match first; sealed messages are in no
        index (their plaintext must not be, their ciphertext would match nothing).

        `character` keeps sessions whose settings name that character (by name, any
        case, or by id in `character_ids`); `since`/`until` bound when a message was
        written; `context` adds that many neighbouring messages on each side."""
        words = _WORD.findall(text)
        if not words:
            return []
        cols = ", ".join(
            f"m.{c}"
            for c in ("id", "session_id", "turn_id", "turn_number", "role", "content", "seq")
        )
        params: dict[str, Any] = {"ws": workspace_id, "limit": limit}
        postgres = self.db.dialect == "postgresql"
        scope = " AND NOT m.sealed"
        if session_id is not None:
            scope = " AND m.session_id = :sid"
            params["sid"] = session_id
        if owners is not None:
            names = [f":owner{i}" for i in range(len(owners))]
            scope += f" AND s.owner_id IN ({', '.join(names) or 'NULL'})"
            params |= {n[1:]: o for n, o in zip(names, sorted(owners), strict=True)}
        if kind is not None:
            scope += " AND s.kind = :kind"
            params["kind"] = kind
        for name, bound, op in (("since", since, ">="), ("until", until, "<=")):
            if bound is not None:
                scope += f" AND m.created_at {op} :{name}"
                at = _utc(bound).astimezone(UTC)
                params[name] = at if postgres else sqlite_fast.stamp(at)
        if character is not None:
            params["character"] = character
            params["character_name"] = character.casefold()
            if postgres:
                named = (
                    "(lower(e.payload->'settings'->'character'->>'name') = :character_name "
                    "OR e.payload->'settings'->'character_ids' "
                    "@> to_jsonb(CAST(:character AS text)))"
                )
            else:
                named = (
                    "(lower(json_extract(e.payload, '$.settings.character.name')) = "
                    ":character_name OR EXISTS (SELECT 1 FROM json_each(e.payload, "
                    "'$.settings.character_ids') WHERE value = :character))"
                )
            scope += (
                " AND m.session_id IN (SELECT e.stream_id FROM events e WHERE "
                f"e.workspace_id = :ws AND e.type = 'session.created' AND {named})"
            )
        if postgres:
            params["q"] = " ".join(words)
            sql = (
                f"SELECT {cols}, m.created_at, s.kind AS session_kind, s.title AS session_title, "
                "s.sealed AS title_sealed, "
                "ts_headline('english', m.content, plainto_tsquery('english', :q), "
                "'StartSel=[, StopSel=], MaxFragments=1, MaxWords=20, MinWords=5') AS snippet "
                "FROM messages m JOIN sessions s ON s.id = m.session_id "
                "WHERE m.search @@ plainto_tsquery('english', :q) AND m.workspace_id = :ws"
                f"{scope} ORDER BY ts_rank(m.search, plainto_tsquery('english', :q)) DESC, "
                "m.created_at DESC LIMIT :limit"
            )
        else:
            # Each word quoted, so user input can never be FTS5 query syntax.
            params["q"] = " ".join('"' + w.replace('"', "") + '"' for w in words)
            sql = (
                f"SELECT {cols}, m.created_at, s.kind AS session_kind, s.title AS session_title, "
                "s.sealed AS title_sealed, "
                "snippet(messages_fts, 0, '[', ']', '…', 12) AS snippet "
                "FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid "
                "JOIN sessions s ON s.id = m.session_id "
                "WHERE messages_fts MATCH :q AND messages_fts.workspace_id = :ws"
                f"{scope} ORDER BY rank LIMIT :limit"
            )
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.text(sql), params)).all()
            found = []
            for r in rows:
                data = dict(r._mapping)
                data["created_at"] = _parse_stamp(data["created_at"])
                data["session_title"] = self._title(
                    workspace_id,
                    data["session_id"],
                    data["session_title"],
                    data.pop("title_sealed"),
                )
                found.append(data)
            if context > 0 and found:
                near = sa.or_(
                    *(
                        sa.and_(
                            messages.c.session_id == hit["session_id"],
                            messages.c.seq.between(hit["seq"] - context, hit["seq"] + context),
                        )
                        for hit in found
                    )
                )
                query = sa.select(*_MESSAGE_COLUMNS, messages.c.seq).where(near)
                neighbours: dict[str, list[JSON]] = {}
                for row in await conn.execute(query.order_by(messages.c.seq)):
                    neighbours.setdefault(row.session_id, []).append(self._message_dict(row))
                for hit in found:
                    low, high = hit["seq"] - context, hit["seq"] + context
                    hit["context"] = [
                        m for m in neighbours.get(hit["session_id"], []) if low <= m["seq"] <= high
                    ]
        return found


def _parse_stamp(value: Any) -> datetime:
    """A timestamp from a raw SQL row (SQLite hands back its stored text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return _utc(value)
