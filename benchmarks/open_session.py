"""Opening a session with 10,000 events until it is ready to take a turn.

Cold opens (a fresh repository, nothing cached) through the snapshot and the
events after it; the baseline beside it is a replay from zero without the
snapshot. Target: <= 50 ms.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.stats import percentile, summary, verdict
from taleweaver.domain.events import EventMetadata, NewEvent
from taleweaver.domain.sessions import EventType, SessionState
from taleweaver.store import migrate
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore
from taleweaver.store.queries import Queries
from taleweaver.store.repository import SessionRepository

EVENTS = 10_000
PER_COMMIT = 100
OPENS = 30


def _turn(number: int) -> NewEvent:
    return NewEvent(
        EventType.TURN_COMMITTED,
        {
            "turn_id": uuid.uuid4().hex,
            "number": number,
            "action": "say",
            "input": {"text": f"step {number}", "choice": None},
            "reply": {"text": "The corridor goes on. " * 6, "choices": ["On", "Back"]},
            "message_ids": {"player": uuid.uuid4().hex, "narrator": uuid.uuid4().hex},
        },
    )


async def _bench(path: Path) -> tuple[list[float], list[float]]:
    db = Database(f"sqlite:///{path}")
    await migrate.upgrade(db.engine)
    meta = EventMetadata("bench")
    repo = SessionRepository(EventStore(db), Queries(db))
    state = SessionState(id=uuid.uuid4().hex)
    created = NewEvent(
        EventType.SESSION_CREATED,
        {"workspace_id": "local", "kind": "story", "title": "Long", "settings": {}},
    )
    state, _ = await repo.commit(state, [created], meta, workspace_id="local")
    number = 0
    while state.version < EVENTS:
        batch = []
        for _ in range(min(PER_COMMIT, EVENTS - state.version)):
            number += 1
            batch.append(_turn(number))
        state, _ = await repo.commit(state, batch, meta)
    cold: list[float] = []
    for _ in range(OPENS):
        fresh = SessionRepository(EventStore(db), Queries(db))
        started = time.perf_counter()
        opened = await fresh.open("local", state.id)
        cold.append((time.perf_counter() - started) * 1000)
        assert opened.version == EVENTS
    from_zero: list[float] = []
    store = EventStore(db)
    for _ in range(5):
        started = time.perf_counter()
        replayed = SessionState(id=state.id)
        for event in await store.read_stream(state.id):
            replayed.apply(event)
        from_zero.append((time.perf_counter() - started) * 1000)
        assert replayed.version == EVENTS
    await db.dispose()
    return cold, from_zero


def run() -> bool:
    print(f"== Open a session with {EVENTS:,} events (cold, ready to take a turn)")
    with tempfile.TemporaryDirectory() as tmp:
        cold, from_zero = asyncio.run(_bench(Path(tmp) / "open.db"))
    p95 = percentile(cold, 95)
    print(f"  snapshot + tail : {summary(cold)}")
    print(f"  replay from zero: {summary(from_zero)}")
    print(f"  ratio           : {percentile(from_zero, 50) / percentile(cold, 50):.1f}x faster")
    print(f"  target          : p95 <= 50 ms -> {verdict(p95 <= 50)}")
    return p95 <= 50
