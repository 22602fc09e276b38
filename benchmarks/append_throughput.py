"""Event append throughput against raw sqlite3 executemany into an equivalent table.

Both sides write the same rows (JSON payload and metadata serialised, one
transaction per batch) to a WAL database file with the same pragmas.
Target: the event store reaches at least 0.5x the raw rate.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.stats import verdict
from taleweaver.domain.events import EventMetadata, NewEvent
from taleweaver.store import migrate
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore

BATCH = 100
BATCHES = 200
PAYLOAD = {"turn_id": "t", "number": 1, "reply": {"text": "The hall is quiet. " * 8}}


def _raw(path: Path) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute(
        "CREATE TABLE events (position INTEGER PRIMARY KEY, stream_id TEXT NOT NULL, "
        "version INTEGER NOT NULL, workspace_id TEXT NOT NULL, type TEXT NOT NULL, "
        "schema_version INTEGER NOT NULL, payload JSON NOT NULL, metadata JSON NOT NULL, "
        "recorded_at TEXT NOT NULL, UNIQUE (stream_id, version))"
    )
    meta = json.dumps({"actor": "bench", "correlation_id": None})
    started = time.perf_counter()
    position = 0
    for _ in range(BATCHES):
        stream = uuid.uuid4().hex
        now = datetime.now(UTC).isoformat()
        rows = []
        for v in range(1, BATCH + 1):
            position += 1
            rows.append(
                (position, stream, v, "local", "turn.committed", 1, json.dumps(PAYLOAD), meta, now)
            )
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return BATCH * BATCHES / elapsed


async def _store(path: Path) -> float:
    db = Database(f"sqlite:///{path}")
    await migrate.upgrade(db.engine)
    store = EventStore(db)
    meta = EventMetadata("bench")
    events = [NewEvent("turn.committed", PAYLOAD) for _ in range(BATCH)]
    started = time.perf_counter()
    for _ in range(BATCHES):
        async with db.write() as conn:
            await store.append(
                conn,
                stream_id=uuid.uuid4().hex,
                workspace_id="local",
                expected_version=0,
                new_events=events,
                metadata=meta,
            )
    elapsed = time.perf_counter() - started
    await db.dispose()
    return BATCH * BATCHES / elapsed


def run() -> bool:
    print(f"== Event append throughput ({BATCHES} transactions of {BATCH} events, SQLite WAL)")
    with tempfile.TemporaryDirectory() as tmp:
        raw = _raw(Path(tmp) / "raw.db")
        ours = asyncio.run(_store(Path(tmp) / "store.db"))
    ratio = ours / raw
    print(f"  raw sqlite3 executemany : {raw:10,.0f} events/s")
    print(f"  EventStore.append       : {ours:10,.0f} events/s")
    print(f"  ratio                   : {ratio:.2f}x   target >= 0.5x -> {verdict(ratio >= 0.5)}")
    return ratio >= 0.5
