"""The messages read model of a freshly imported session, written in bulk.

The core projection applies events one at a time (a regenerated reply is a read
and an update of its message); for a 10,000-message chat with swipes that is
tens of thousands of driver calls. An import writes a new stream whose final
rows are known up front, so they are folded here and inserted in one batch, in
the events' own transaction. The rows are the ones the core projection would
write (a test holds the two to that); sensitive workspaces, whose rows are
sealed, take the core projection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.events import JSON, RecordedEvent
from taleweaver.domain.sessions import EventType
from taleweaver.store import sqlite_fast
from taleweaver.store.projections import project
from taleweaver.store.schema import messages, sessions
from taleweaver.store.sealing import Sealer

_BATCH = 2000
_COLUMNS = [c.name for c in messages.columns]
_SQLITE_INSERT = (
    f"INSERT INTO messages ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)


def _sqlite_row(row: JSON) -> list[object]:
    return [
        json.dumps(row[c])
        if c in ("choices", "alternatives")
        else sqlite_fast.stamp(row[c])
        if c == "created_at"
        else row[c]
        for c in _COLUMNS
    ]


async def project_new_stream(
    conn: AsyncConnection, recorded: Sequence[RecordedEvent], sealer: Sealer | None
) -> None:
    """Read models for a stream that did not exist before these events."""
    if not recorded or recorded[0].type != EventType.SESSION_CREATED:
        await project(conn, recorded, sealer)
        return
    if sealer is not None and await sealer.sensitive(conn, recorded[0].workspace_id):
        await project(conn, recorded, sealer)
        return
    await project(conn, recorded[:1], sealer)  # the sessions row
    # Folding and serialising a long chat's rows takes a good part of a second:
    # in a thread, so the event loop keeps serving other requests meanwhile.
    folded = await asyncio.to_thread(_fold, recorded[1:], conn.dialect.name == "sqlite")
    if folded is None:
        await project(conn, recorded[1:], sealer)  # a deleted session: not what an import writes
        return
    rows, turn_count, others = folded
    if conn.dialect.name == "sqlite":  # one driver call, as the core's turn insert does
        await sqlite_fast.execute_many(conn, _SQLITE_INSERT, rows)
    else:
        for start in range(0, len(rows), _BATCH):
            await conn.execute(messages.insert(), rows[start : start + _BATCH])
    last = recorded[-1]
    await conn.execute(
        sessions.update()
        .where(sessions.c.id == last.stream_id)
        .values(version=last.version, updated_at=last.recorded_at, turn_count=turn_count)
    )
    if others:  # events the read models ignore today; let the core decide
        await project(conn, others, sealer)


def _fold(
    events: Sequence[RecordedEvent], sqlite: bool
) -> tuple[list[Any], int, list[RecordedEvent]] | None:
    """(message rows in order, as SQLite's driver or SQLAlchemy takes them; the
    turn count; events left to the core projection), or None for a deleted session."""
    rows: dict[int, JSON] = {}  # seq -> row
    turn_count = 0
    others: list[RecordedEvent] = []
    for event in events:
        p = event.payload
        if event.type == EventType.TURN_COMMITTED:
            turn_count = max(turn_count, p["number"])
            _commit_rows(rows, event)
        elif event.type in (EventType.TURN_REGENERATED, EventType.TURN_EDITED):
            _alternative(rows, event)
        elif event.type == EventType.TURN_SELECTED:
            row = rows.get(2 * p["number"] + 1)
            if row is not None:
                _show(row, p["active"])
        elif event.type == EventType.SESSION_DELETED:
            return None
        else:
            others.append(event)
    ordered = [rows[seq] for seq in sorted(rows)]
    return [_sqlite_row(r) for r in ordered] if sqlite else ordered, turn_count, others


def _commit_rows(rows: dict[int, JSON], event: RecordedEvent) -> None:
    p = event.payload
    number = p["number"]
    ids = p["message_ids"]
    base: JSON = {
        "workspace_id": event.workspace_id,
        "session_id": event.stream_id,
        "turn_id": p["turn_id"],
        "turn_number": number,
        "created_at": event.recorded_at,
        "sealed": False,
        "active": 0,
    }
    if p["input"]["text"] is not None:
        rows[2 * number] = base | {
            "id": ids["player"],
            "seq": 2 * number,
            "role": "player",
            "content": p["input"]["text"],
            "choices": [],
            "alternatives": [],
        }
    reply = p["reply"]
    rows[2 * number + 1] = base | {
        "id": ids["narrator"],
        "seq": 2 * number + 1,
        "role": "narrator",
        "content": reply["text"],
        "choices": reply["choices"],
        "alternatives": [reply],
    }


def _alternative(rows: dict[int, JSON], event: RecordedEvent) -> None:
    p = event.payload
    number = p["number"]
    if event.type == EventType.TURN_EDITED and 2 * number in rows:
        rows[2 * number]["content"] = p["input_text"]
    row = rows.get(2 * number + 1)
    if row is None:
        return
    row["alternatives"] = [*row["alternatives"], p["reply"]]
    _show(row, len(row["alternatives"]) - 1)


def _show(row: JSON, active: int) -> None:
    """Make telling `active` the narrator row's shown one."""
    shown = row["alternatives"][active]
    row["content"] = shown["text"]
    row["choices"] = shown["choices"]
    row["active"] = active
