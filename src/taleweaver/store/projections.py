"""Read models for sessions and messages, written in the events' own transaction.

In a sensitive workspace titles and messages are written sealed (store.sealing);
`sealer` is None only where no workspace is sensitive (bare stores in tests).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import KeyMissing
from taleweaver.domain.events import JSON, RecordedEvent
from taleweaver.domain.sessions import EventType
from taleweaver.store import sqlite_fast
from taleweaver.store.characters_schema import character_sessions
from taleweaver.store.lorebook_schema import lorebook_timed
from taleweaver.store.schema import messages, sessions, snapshots
from taleweaver.store.sealing import Sealer
from taleweaver.store.summaries_schema import summaries, summary_progress
from taleweaver.store.therapy_schema import therapy_checkpoints

# State derived from one session that goes with it. Records about people (usage,
# safety flags, therapy progress) outlive it under their own retention rules.
_SESSION_STATE = (
    summaries,
    summary_progress,
    lorebook_timed,
    character_sessions,
    therapy_checkpoints,
)

_MESSAGE_COLUMNS = [c.name for c in messages.columns]
_JSON_COLUMNS = {"choices", "alternatives"}


async def project(
    conn: AsyncConnection, recorded: Sequence[RecordedEvent], sealer: Sealer | None = None
) -> None:
    """Apply freshly appended events to the read models (full-text indexes follow
    the messages table by themselves: a trigger on SQLite, a generated column on
    PostgreSQL, both skipping sealed rows)."""
    seal = None
    if sealer is not None and recorded:
        seal = sealer if await sealer.sensitive(conn, recorded[0].workspace_id) else None
    for event in recorded:
        await _project_one(conn, event, _Sealing(sealer, seal))
    if recorded and recorded[-1].type != EventType.SESSION_DELETED:
        last = recorded[-1]
        turns = [e.payload["number"] for e in recorded if e.type == EventType.TURN_COMMITTED]
        turn_count = max(turns) if turns else None
        if conn.dialect.name == "sqlite":  # every turn runs this: one driver call
            await sqlite_fast.execute(
                conn,
                "UPDATE sessions SET version = ?, updated_at = ?, "
                "turn_count = coalesce(?, turn_count) WHERE id = ?",
                (last.version, sqlite_fast.stamp(last.recorded_at), turn_count, last.stream_id),
            )
            return
        values: dict[str, object] = {"version": last.version, "updated_at": last.recorded_at}
        if turn_count is not None:
            values["turn_count"] = turn_count
        await conn.execute(sessions.update().where(sessions.c.id == last.stream_id).values(values))


class _Sealing:
    """Whether this commit seals what it writes (`seal`), and the keys to open what
    earlier commits sealed (`opener`): the two differ once a workspace's flag changes."""

    def __init__(self, opener: Sealer | None, seal: Sealer | None) -> None:
        self._opener = opener
        self.seal = seal

    @property
    def opener(self) -> Sealer:
        if self._opener is None:
            raise KeyMissing("a read model holds encrypted content but no keys were given")
        return self._opener

    def title(self, workspace_id: str, session_id: str, title: str) -> dict[str, object]:
        if self.seal is None:
            return {"title": title, "sealed": False}
        return {"title": self.seal.seal_title(workspace_id, session_id, title), "sealed": True}

    def message(
        self, workspace_id: str, message_id: str, content: str, choices: list[str], alts: list[JSON]
    ) -> JSON:
        if self.seal is None:
            return {"content": content, "choices": choices, "alternatives": alts, "sealed": False}
        sealed = self.seal.seal_message(workspace_id, message_id, content, choices, alts)
        return {"content": sealed, "choices": [], "alternatives": [], "sealed": True}


async def _project_one(conn: AsyncConnection, event: RecordedEvent, sealing: _Sealing) -> None:
    p = event.payload
    sid = event.stream_id
    match event.type:
        case EventType.SESSION_CREATED:
            await conn.execute(
                sessions.insert().values(
                    id=sid,
                    workspace_id=p["workspace_id"],
                    kind=p["kind"],
                    **sealing.title(p["workspace_id"], sid, p["title"]),
                    pinned=False,
                    archived=False,
                    version=event.version,
                    turn_count=0,
                    forked_from=(p.get("forked_from") or {}).get("session_id"),
                    owner_id=p.get("owner_id"),
                    created_at=event.recorded_at,
                    updated_at=event.recorded_at,
                )
            )
        case EventType.SESSION_RENAMED:
            await _update_session(conn, sid, **sealing.title(event.workspace_id, sid, p["title"]))
        case EventType.SESSION_PINNED:
            await _update_session(conn, sid, pinned=p["pinned"])
        case EventType.SESSION_ARCHIVED:
            await _update_session(conn, sid, archived=p["archived"])
        case EventType.SESSION_DELETED:
            await _delete_session(conn, sid)
        case EventType.TURN_COMMITTED:
            await _insert_turn(conn, event, sealing)
        case EventType.TURN_REGENERATED | EventType.TURN_EDITED:
            await _replace_reply(conn, event, sealing)
        case EventType.TURN_SELECTED:
            await _select_reply(conn, event, sealing)
        case _:
            pass  # cancelled and failed turns leave the story as it was


async def _update_session(conn: AsyncConnection, sid: str, **values: object) -> None:
    await conn.execute(sessions.update().where(sessions.c.id == sid).values(**values))


async def _delete_session(conn: AsyncConnection, sid: str) -> None:
    for table in _SESSION_STATE:
        await conn.execute(table.delete().where(table.c.session_id == sid))
    await conn.execute(messages.delete().where(messages.c.session_id == sid))
    await conn.execute(sessions.delete().where(sessions.c.id == sid))
    await conn.execute(snapshots.delete().where(snapshots.c.stream_id == sid))


async def _insert_turn(conn: AsyncConnection, event: RecordedEvent, sealing: _Sealing) -> None:
    p = event.payload
    ws = event.workspace_id
    number = p["number"]
    ids = p["message_ids"]
    rows: list[JSON] = []
    base = {
        "workspace_id": event.workspace_id,
        "session_id": event.stream_id,
        "turn_id": p["turn_id"],
        "turn_number": number,
        "created_at": event.recorded_at,
    }
    if p["input"]["text"] is not None:
        rows.append(
            base
            | {
                "id": ids["player"],
                "seq": 2 * number,
                "role": "player",
                "active": 0,
            }
            | sealing.message(ws, ids["player"], p["input"]["text"], [], [])
        )
    reply = p["reply"]
    rows.append(
        base
        | {
            "id": ids["narrator"],
            "seq": 2 * number + 1,
            "role": "narrator",
            "active": 0,
        }
        | sealing.message(ws, ids["narrator"], reply["text"], reply["choices"], [reply])
    )
    if conn.dialect.name == "sqlite":  # every turn runs this: one driver call
        await sqlite_fast.execute_many(
            conn,
            f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_MESSAGE_COLUMNS))})",
            (
                [
                    json.dumps(r[c])
                    if c in _JSON_COLUMNS
                    else sqlite_fast.stamp(r[c])
                    if c == "created_at"
                    else r[c]
                    for c in _MESSAGE_COLUMNS
                ]
                for r in rows
            ),
        )
    else:
        await conn.execute(messages.insert(), rows)


async def _replace_reply(conn: AsyncConnection, event: RecordedEvent, sealing: _Sealing) -> None:
    p = event.payload
    sid = event.stream_id
    ws = event.workspace_id
    number = p["number"]
    if event.type == EventType.TURN_EDITED:
        player_id = await conn.scalar(
            sa.select(messages.c.id).where(
                messages.c.session_id == sid, messages.c.seq == 2 * number
            )
        )
        if player_id is not None:
            await conn.execute(
                messages.update()
                .where(messages.c.id == player_id)
                .values(sealing.message(ws, player_id, p["input_text"], [], []))
            )
    found = await _narrator_tellings(conn, event, sealing)
    if found is not None:
        message_id, kept = found
        await _show_telling(conn, event, sealing, message_id, [*kept, p["reply"]], len(kept))


async def _select_reply(conn: AsyncConnection, event: RecordedEvent, sealing: _Sealing) -> None:
    found = await _narrator_tellings(conn, event, sealing)
    if found is not None:
        message_id, tellings = found
        await _show_telling(conn, event, sealing, message_id, tellings, event.payload["active"])


async def _narrator_tellings(
    conn: AsyncConnection, event: RecordedEvent, sealing: _Sealing
) -> tuple[str, list[JSON]] | None:
    """The id and every telling so far of turn `number`'s narrator message."""
    row = (
        await conn.execute(
            sa.select(
                messages.c.id, messages.c.content, messages.c.alternatives, messages.c.sealed
            ).where(
                messages.c.session_id == event.stream_id,
                messages.c.seq == 2 * event.payload["number"] + 1,
            )
        )
    ).first()
    if row is None:
        return None
    if row.sealed:
        _, _, kept = sealing.opener.open_message(event.workspace_id, row.id, row.content)
        return row.id, list(kept)
    return row.id, list(row.alternatives)


async def _show_telling(
    conn: AsyncConnection,
    event: RecordedEvent,
    sealing: _Sealing,
    message_id: str,
    tellings: list[JSON],
    active: int,
) -> None:
    """Store the narrator message showing telling `active`, keeping them all."""
    shown = tellings[active]
    sealed = sealing.message(
        event.workspace_id, message_id, shown["text"], shown["choices"], tellings
    )
    await conn.execute(
        messages.update().where(messages.c.id == message_id).values(sealed | {"active": active})
    )
