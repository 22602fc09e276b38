"""The event store's contract, run unchanged against SQLite and real PostgreSQL.

Every test takes the `database` fixture, parametrised over both backends: what an
append writes, how a stale one fails, global positions, tailing, upcasting,
snapshots, read models sharing the events' transaction, and migrations.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from taleweaver.domain.errors import ConcurrencyConflict
from taleweaver.domain.events import JSON, EventMetadata, NewEvent, RecordedEvent
from taleweaver.domain.sessions import EventType, SessionState
from taleweaver.store import migrate
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore
from taleweaver.store.projections import project
from taleweaver.store.queries import Queries
from taleweaver.store.repository import SNAPSHOT_EVERY, SessionRepository
from taleweaver.store.schema import DEFAULT_WORKSPACE_ID, workspaces
from taleweaver.store.tailing import Tailer
from taleweaver.store.upcasting import Upcasters
from tests.conftest import DatabaseSpec, empty_database

WS = DEFAULT_WORKSPACE_ID
META = EventMetadata(actor="tester", correlation_id="corr-1")


@pytest.fixture
def store(database: Database) -> EventStore:
    return EventStore(database)


def happened(n: int, **extra: object) -> NewEvent:
    return NewEvent("thing.happened", {"n": n, **extra})


async def append(
    store: EventStore,
    stream_id: str,
    expected_version: int,
    new_events: Sequence[NewEvent],
    *,
    workspace_id: str = WS,
) -> list[RecordedEvent]:
    """One append in a write transaction of its own."""
    async with store.db.write() as conn:
        return await store.append(
            conn,
            stream_id=stream_id,
            workspace_id=workspace_id,
            expected_version=expected_version,
            new_events=new_events,
            metadata=META,
        )


async def everything(store: EventStore) -> list[RecordedEvent]:
    return await store.read_all(after=0, limit=100_000)


def positions(recorded: Sequence[RecordedEvent]) -> list[int]:
    return [e.position for e in recorded]


# --- appending and reading -------------------------------------------------------


async def test_appended_events_read_back_in_version_order_with_every_field(
    store: EventStore,
) -> None:
    payload: JSON = {"text": "Ünïcode ✓", "nested": {"list": [1, 2.5, None, True]}}
    before = datetime.now(UTC)
    await append(
        store,
        "s1",
        0,
        [NewEvent("a.first", payload), NewEvent("b.second", {}, schema_version=3)],
    )
    after = datetime.now(UTC)

    read = await store.read_stream("s1")

    assert [(e.version, e.type, e.schema_version) for e in read] == [
        (1, "a.first", 1),
        (2, "b.second", 3),
    ]
    assert [e.payload for e in read] == [payload, {}]
    assert all(e.stream_id == "s1" and e.workspace_id == WS for e in read)
    assert all(e.metadata == {"actor": "tester", "correlation_id": "corr-1"} for e in read)
    for e in read:
        assert e.recorded_at.utcoffset() == timedelta(0)
        assert before <= e.recorded_at <= after


async def test_append_returns_the_events_exactly_as_a_read_finds_them(store: EventStore) -> None:
    returned = await append(store, "s1", 0, [happened(1), happened(2, tag="x")])
    assert returned == await store.read_stream("s1")


async def test_a_later_append_continues_the_stream_versions(store: EventStore) -> None:
    await append(store, "s1", 0, [happened(1), happened(2)])
    await append(store, "s1", 2, [happened(3)])
    assert [e.version for e in await store.read_stream("s1")] == [1, 2, 3]


async def test_read_stream_after_and_limit_select_a_window(store: EventStore) -> None:
    await append(store, "s1", 0, [happened(n) for n in range(1, 6)])
    window = await store.read_stream("s1", after=2, limit=2)
    assert [e.payload["n"] for e in window] == [3, 4]


async def test_an_unknown_stream_reads_as_empty(store: EventStore) -> None:
    assert await store.read_stream("nobody") == []


async def test_appending_no_events_writes_nothing(store: EventStore) -> None:
    assert await append(store, "s1", 0, []) == []
    assert await store.head_position() == 0


# --- optimistic concurrency --------------------------------------------------------


async def test_a_stale_expected_version_raises_a_concurrency_conflict(store: EventStore) -> None:
    await append(store, "s1", 0, [happened(1)])
    with pytest.raises(ConcurrencyConflict) as raised:
        await append(store, "s1", 0, [happened(99)])
    assert (raised.value.stream_id, raised.value.expected_version) == ("s1", 0)


async def test_a_conflicting_batch_writes_none_of_its_events(store: EventStore) -> None:
    await append(store, "s1", 0, [happened(1), happened(2)])
    with pytest.raises(ConcurrencyConflict):
        await append(store, "s1", 1, [happened(20), happened(30), happened(40)])
    assert [e.payload["n"] for e in await store.read_stream("s1")] == [1, 2]
    assert await store.head_position() == 2


async def test_a_conflict_rolls_back_every_append_in_its_transaction(
    database: Database, store: EventStore
) -> None:
    await append(store, "taken", 0, [happened(1)])
    with pytest.raises(ConcurrencyConflict):
        async with database.write() as conn:
            for stream_id in ("fresh", "taken"):
                await store.append(
                    conn,
                    stream_id=stream_id,
                    workspace_id=WS,
                    expected_version=0,
                    new_events=[happened(2), happened(3)],
                    metadata=META,
                )
    assert await store.read_stream("fresh") == []
    assert positions(await everything(store)) == [1]


async def test_positions_stay_gap_free_after_a_rolled_back_append(store: EventStore) -> None:
    await append(store, "s1", 0, [happened(1)])
    with pytest.raises(ConcurrencyConflict):
        await append(store, "s1", 0, [happened(2), happened(3)])
    await append(store, "s2", 0, [happened(4)])
    assert positions(await everything(store)) == [1, 2]


async def test_an_integrity_error_that_is_not_a_version_clash_is_no_conflict(
    store: EventStore,
) -> None:
    # pytest.raises(IntegrityError) fails on a ConcurrencyConflict, which is no subclass.
    with pytest.raises(sa.exc.IntegrityError, match=r"(?i)foreign key"):
        await append(store, "s1", 0, [happened(1)], workspace_id="no-such-workspace")
    assert await store.read_stream("s1") == []


# --- the global log ----------------------------------------------------------------


async def test_global_positions_follow_append_order_across_streams(store: EventStore) -> None:
    appended: list[RecordedEvent] = []
    appended += await append(store, "a", 0, [happened(1), happened(2)])
    appended += await append(store, "b", 0, [happened(3)])
    appended += await append(store, "a", 2, [happened(4)])
    appended += await append(store, "c", 0, [happened(5), happened(6)])

    logged = await everything(store)

    assert positions(logged) == [1, 2, 3, 4, 5, 6]
    assert [(e.stream_id, e.payload["n"]) for e in logged] == [
        (e.stream_id, e.payload["n"]) for e in appended
    ]


async def test_read_all_pages_through_every_event_in_position_order(store: EventStore) -> None:
    for n in range(1, 26):
        stream_id = f"s{n % 3}"
        await append(store, stream_id, len(await store.read_stream(stream_id)), [happened(n)])

    pages: list[list[RecordedEvent]] = []
    after = 0
    while page := await store.read_all(after=after, limit=7):
        pages.append(page)
        after = page[-1].position

    assert [len(p) for p in pages] == [7, 7, 7, 4]
    assert positions([e for p in pages for e in p]) == list(range(1, 26))
    assert [e.payload["n"] for p in pages for e in p] == list(range(1, 26))
    assert await store.head_position() == 25


async def test_concurrent_appenders_leave_gap_free_positions_and_stream_versions(
    store: EventStore,
) -> None:
    streams = ["s0", "s1", "s2", "s3"]
    appenders = [(f"w{i}", streams[i % 4], 1 + i % 3) for i in range(20)]
    # Everyone reads its stream's version before anyone writes, so every stream's
    # first round has one winner and the rest conflict, retrying from the new head.
    everyone_has_read = asyncio.Barrier(len(appenders))
    conflicts = 0

    async def appender(name: str, stream_id: str, size: int) -> None:
        nonlocal conflicts
        batch = [NewEvent("thing.happened", {"by": name, "i": i}) for i in range(size)]
        first_round = True
        while True:
            version = len(await store.read_stream(stream_id))
            if first_round:
                await everyone_has_read.wait()
                first_round = False
            try:
                await append(store, stream_id, version, batch)
                return
            except ConcurrencyConflict:
                conflicts += 1

    await asyncio.gather(*(appender(*a) for a in appenders))

    logged = await everything(store)
    assert conflicts >= len(appenders) - len(streams)
    assert positions(logged) == list(range(1, sum(size for *_, size in appenders) + 1))
    by_stream: defaultdict[str, list[RecordedEvent]] = defaultdict(list)
    by_appender: defaultdict[str, list[RecordedEvent]] = defaultdict(list)
    for e in logged:
        by_stream[e.stream_id].append(e)
        by_appender[e.payload["by"]].append(e)
    for stream_id in streams:
        expected = sum(size for _, s, size in appenders if s == stream_id)
        assert [e.version for e in by_stream[stream_id]] == list(range(1, expected + 1))
    for name, _, size in appenders:  # each batch landed whole, in one contiguous run
        batch = by_appender[name]
        assert [e.payload["i"] for e in batch] == list(range(size))
        assert positions(batch) == list(range(batch[0].position, batch[0].position + size))


async def test_an_append_cannot_become_visible_before_an_earlier_uncommitted_one(
    database: Database, store: EventStore
) -> None:
    # A reader that has seen position p resumes after p; were a later transaction to
    # commit position p + 1 while p was still uncommitted, that reader would skip p.
    first_appended = asyncio.Event()
    release_first = asyncio.Event()

    async def slow_first() -> None:
        async with database.write() as conn:
            await store.append(
                conn,
                stream_id="a",
                workspace_id=WS,
                expected_version=0,
                new_events=[happened(1)],
                metadata=META,
            )
            first_appended.set()
            await release_first.wait()

    first = asyncio.create_task(slow_first())
    await first_appended.wait()
    second = asyncio.create_task(append(store, "b", 0, [happened(2)]))
    await asyncio.sleep(0.3)
    seen_while_first_open = await everything(store)
    second_done_early = second.done()
    release_first.set()
    await asyncio.gather(first, second)

    assert seen_while_first_open == []
    assert not second_done_early
    assert [(e.position, e.stream_id) for e in await everything(store)] == [(1, "a"), (2, "b")]


async def test_a_reader_tailing_during_concurrent_appends_misses_no_event(
    store: EventStore,
) -> None:
    writers_done = asyncio.Event()
    seen: list[int] = []

    async def tail() -> None:
        while True:
            finished = writers_done.is_set()
            batch = await store.read_all(after=seen[-1] if seen else 0, limit=1000)
            seen.extend(positions(batch))
            if finished and not batch:
                return
            await asyncio.sleep(0)

    async def writer(stream_id: str) -> None:
        for n in range(5):
            await append(store, stream_id, n, [happened(n)])

    reader = asyncio.create_task(tail())
    await asyncio.gather(*(writer(f"s{i}") for i in range(4)))
    writers_done.set()
    await reader

    assert seen == list(range(1, 21))


# --- tailing -----------------------------------------------------------------------


async def test_a_restarted_tailer_resumes_after_its_checkpoint(
    db_spec: DatabaseSpec, store: EventStore
) -> None:
    await append(store, "s1", 0, [happened(1), happened(2), happened(3)])
    delivered: list[int] = []

    async def handler(event: RecordedEvent) -> None:
        delivered.append(event.position)

    assert await Tailer(store, "search").poll(handler) == 3
    await append(store, "s2", 0, [happened(4), happened(5)])

    restarted = db_spec.open()  # a new process: its own engine, store and tailer
    try:
        tailer = Tailer(EventStore(restarted), "search")
        assert await tailer.position() == 3
        assert await tailer.poll(handler) == 2
        assert await tailer.poll(handler) == 0
    finally:
        await restarted.dispose()
    assert delivered == [1, 2, 3, 4, 5]


async def test_a_tailer_redelivers_from_the_event_its_handler_failed_on(
    db_spec: DatabaseSpec, store: EventStore
) -> None:
    await append(store, "s1", 0, [happened(n) for n in range(1, 5)])
    delivered: list[int] = []

    async def fails_on_third(event: RecordedEvent) -> None:
        if event.position == 3:
            raise RuntimeError("handler crashed")
        delivered.append(event.position)

    async def handler(event: RecordedEvent) -> None:
        delivered.append(event.position)

    with pytest.raises(RuntimeError, match="handler crashed"):
        await Tailer(store, "search").poll(fails_on_third)
    restarted = db_spec.open()
    try:
        await Tailer(EventStore(restarted), "search").poll(handler)
    finally:
        await restarted.dispose()
    assert delivered == [1, 2, 3, 4]


async def test_tailers_with_different_names_keep_separate_checkpoints(
    store: EventStore,
) -> None:
    await append(store, "s1", 0, [happened(1), happened(2)])

    async def ignore(_: RecordedEvent) -> None:
        return None

    await Tailer(store, "search").poll(ignore)
    assert await Tailer(store, "search").position() == 2
    assert await Tailer(store, "fanout").position() == 0


# --- upcasting ---------------------------------------------------------------------


def _split_name(payload: JSON) -> JSON:
    first, _, last = payload["name"].partition(" ")
    return {"first": first, "last": last}


def _add_title(payload: JSON) -> JSON:
    return payload | {"title": None}


async def test_an_event_in_an_old_schema_is_read_in_the_current_shape(
    database: Database, store: EventStore
) -> None:
    await append(store, "s1", 0, [NewEvent("hero.named", {"name": "Ada Lovelace"})])
    upcasters = Upcasters()
    upcasters.register("hero.named", 1, _split_name)
    current = EventStore(database, upcasters)

    [from_stream] = await current.read_stream("s1")
    [from_log] = await current.read_all()

    for event in (from_stream, from_log):
        assert event.schema_version == 2
        assert event.payload == {"first": "Ada", "last": "Lovelace"}


async def test_upcasters_chain_from_the_stored_version_to_the_newest(
    database: Database, store: EventStore
) -> None:
    await append(store, "s1", 0, [NewEvent("hero.named", {"name": "Ada Lovelace"})])
    await append(store, "s1", 1, [NewEvent("hero.named", {"first": "Alan", "last": "Turing"}, 2)])
    upcasters = Upcasters()
    upcasters.register("hero.named", 1, _split_name)
    upcasters.register("hero.named", 2, _add_title)

    read = await EventStore(database, upcasters).read_stream("s1")

    assert [(e.schema_version, e.payload) for e in read] == [
        (3, {"first": "Ada", "last": "Lovelace", "title": None}),
        (3, {"first": "Alan", "last": "Turing", "title": None}),
    ]


async def test_upcasting_leaves_the_stored_event_and_other_types_untouched(
    database: Database, store: EventStore
) -> None:
    await append(store, "s1", 0, [NewEvent("hero.named", {"name": "Ada Lovelace"}), happened(2)])
    upcasters = Upcasters()
    upcasters.register("hero.named", 1, _split_name)
    upcast = await EventStore(database, upcasters).read_stream("s1")

    assert (upcast[1].schema_version, upcast[1].payload) == (1, {"n": 2})
    [stored, _] = await store.read_stream("s1")  # a store without upcasters
    assert (stored.schema_version, stored.payload) == (1, {"name": "Ada Lovelace"})


def test_registering_a_second_upcaster_for_the_same_step_is_refused() -> None:
    upcasters = Upcasters()
    upcasters.register("hero.named", 1, _split_name)
    with pytest.raises(ValueError, match="exists already"):
        upcasters.register("hero.named", 1, _add_title)


# --- sessions: snapshots and read models -------------------------------------------


def created(title: str = "The Long Road") -> NewEvent:
    return NewEvent(
        EventType.SESSION_CREATED,
        {"workspace_id": WS, "kind": "story", "title": title, "settings": {"tone": "grim"}},
    )


def turn(session_id: str, number: int) -> NewEvent:
    return NewEvent(
        EventType.TURN_COMMITTED,
        {
            "turn_id": f"{session_id}-t{number}",
            "number": number,
            "input": {"text": f"I walk on ({number})", "choice": None},
            "message_ids": {
                "player": f"{session_id}-p{number}",
                "narrator": f"{session_id}-n{number}",
            },
            "reply": {"text": f"The lantern flickers ({number}).", "choices": ["On", "Back"]},
        },
    )


def regenerated(session_id: str, number: int) -> NewEvent:
    return NewEvent(
        EventType.TURN_REGENERATED,
        {
            "turn_id": f"{session_id}-t{number}",
            "number": number,
            "reply": {"text": "The lantern dies.", "choices": []},
        },
    )


def repository(database: Database, store: EventStore | None = None) -> SessionRepository:
    return SessionRepository(store or EventStore(database), Queries(database))


async def play_past_the_snapshot_interval(repo: SessionRepository, session_id: str) -> int:
    """Commit a session in batches until a commit crosses SNAPSHOT_EVERY, then a little
    more; return the version that crossing commit ended at."""
    state, _ = await repo.commit(SessionState(id=session_id), [created()], META, workspace_id=WS)
    number = 0
    while state.version < SNAPSHOT_EVERY:
        batch = [turn(session_id, number + i) for i in range(1, 31)]
        number += len(batch)
        state, _ = await repo.commit(state, batch, META)
    crossed_at = state.version
    rename = NewEvent(EventType.SESSION_RENAMED, {"title": "After the snapshot"})
    pin = NewEvent(EventType.SESSION_PINNED, {"pinned": True})
    state, _ = await repo.commit(state, [rename, pin, turn(session_id, number + 1)], META)
    await repo.commit(state, [regenerated(session_id, number + 1)], META)
    return crossed_at


async def fold_from_zero(store: EventStore, session_id: str) -> SessionState:
    state = SessionState(id=session_id)
    for event in await store.read_stream(session_id):
        state.apply(event)
    return state


async def test_a_commit_below_the_snapshot_interval_takes_no_snapshot(
    database: Database, store: EventStore
) -> None:
    repo = repository(database, store)
    state, _ = await repo.commit(SessionState(id="s1"), [created()], META, workspace_id=WS)
    await repo.commit(state, [turn("s1", n) for n in range(1, SNAPSHOT_EVERY - 1)], META)
    assert await store.load_snapshot("s1") is None


async def test_a_commit_crossing_the_snapshot_interval_saves_the_state_it_reached(
    database: Database, store: EventStore
) -> None:
    crossed_at = await play_past_the_snapshot_interval(repository(database, store), "s1")

    snapshot = await store.load_snapshot("s1")

    assert snapshot is not None
    version, state = snapshot
    assert version == crossed_at >= SNAPSHOT_EVERY
    events = await store.read_stream("s1", limit=version)
    expected = SessionState(id="s1")
    for event in events:
        expected.apply(event)
    assert state == expected.to_snapshot()


async def test_replay_from_a_snapshot_equals_folding_every_event(
    database: Database, store: EventStore
) -> None:
    await play_past_the_snapshot_interval(repository(database, store), "s1")

    replayed = await repository(database).replay("s1")

    folded = await fold_from_zero(store, "s1")
    assert replayed.to_snapshot() == folded.to_snapshot()
    assert (replayed.title, replayed.pinned, replayed.version) == (
        "After the snapshot",
        True,
        folded.version,
    )


class RecordingStore(EventStore):
    """A real store that notes the versions each stream read handed out."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.versions_read: list[int] = []

    async def read_stream(
        self, stream_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        events = await super().read_stream(stream_id, after=after, limit=limit)
        self.versions_read += [e.version for e in events]
        return events


async def test_replay_reads_only_the_events_after_the_snapshot(
    database: Database, store: EventStore
) -> None:
    crossed_at = await play_past_the_snapshot_interval(repository(database, store), "s1")
    head = len(await store.read_stream("s1"))
    recording = RecordingStore(database)

    await repository(database, recording).replay("s1")

    assert recording.versions_read == list(range(crossed_at + 1, head + 1))


async def test_read_models_are_written_with_the_events_they_project(
    database: Database, store: EventStore
) -> None:
    async with database.write() as conn:
        recorded = await store.append(
            conn,
            stream_id="s1",
            workspace_id=WS,
            expected_version=0,
            new_events=[created(), turn("s1", 1)],
            metadata=META,
        )
        await project(conn, recorded)
    queries = Queries(database)

    session = await queries.session(WS, "s1")
    assert session is not None
    assert (session["title"], session["version"], session["turn_count"]) == ("The Long Road", 2, 1)
    assert [m["role"] for m in await queries.messages("s1")] == ["player", "narrator"]
    assert [hit["id"] for hit in await queries.search(WS, "lantern")] == ["s1-n1"]


async def test_read_models_roll_back_with_the_events_when_the_transaction_fails(
    database: Database, store: EventStore
) -> None:
    with pytest.raises(RuntimeError, match="after projecting"):
        async with database.write() as conn:
            recorded = await store.append(
                conn,
                stream_id="s1",
                workspace_id=WS,
                expected_version=0,
                new_events=[created(), turn("s1", 1)],
                metadata=META,
            )
            await project(conn, recorded)
            raise RuntimeError("after projecting")
    queries = Queries(database)

    assert await store.read_stream("s1") == []
    assert await queries.session(WS, "s1") is None
    assert await queries.messages("s1") == []
    assert await queries.search(WS, "lantern") == []


# --- migrations --------------------------------------------------------------------


async def test_an_empty_database_upgrades_to_the_head_revision(
    db_spec: DatabaseSpec, tmp_path: Path
) -> None:
    # Every other test starts from a copy of one database migrated this way.
    async with empty_database(db_spec.backend, tmp_path) as empty:
        assert await migrate.current_revision(empty.engine) is None
        await migrate.upgrade(empty.engine)
        assert await migrate.current_revision(empty.engine) == migrate.head_revision()


def test_the_head_known_without_alembic_is_alembics_head() -> None:
    # Engine.open compares the database with migrate.HEAD; a new migration must move it.
    assert migrate.head_revision() == migrate.HEAD


async def test_a_fresh_database_is_migrated_when_behind(
    db_spec: DatabaseSpec, tmp_path: Path
) -> None:
    async with empty_database(db_spec.backend, tmp_path) as empty:
        assert await migrate.upgrade_if_behind(empty.engine) is True
        assert await migrate.current_revision(empty.engine) == migrate.head_revision()


async def test_an_outdated_database_is_migrated_when_behind(database: Database) -> None:
    async with database.engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(migrate._config(sync), "-1"))

    assert await migrate.upgrade_if_behind(database.engine) is True
    assert await migrate.current_revision(database.engine) == migrate.head_revision()


async def test_an_up_to_date_database_is_left_alone(database: Database) -> None:
    assert await migrate.upgrade_if_behind(database.engine) is False


async def test_upgrading_again_changes_nothing(database: Database, store: EventStore) -> None:
    await append(store, "s1", 0, [happened(1)])

    await migrate.upgrade(database.engine)

    assert await migrate.current_revision(database.engine) == migrate.head_revision()
    assert positions(await everything(store)) == [1]
    async with database.read() as conn:
        assert (await conn.execute(sa.select(workspaces.c.id))).scalars().all() == [WS]
