"""Server processes on loopback sharing the real PostgreSQL and Redis: a client on
one replica sees turns made on another, a cancel sent to either stops a turn, a
client whose replica is killed mid-stream resumes on another with no event or token
lost or doubled, and a replica killed during hundreds of concurrent turns loses
no turn a client saw done and leaves no half turn behind."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.realtime.redis_hub import OWNER_TTL_S
from tests.conftest import (
    POSTGRES_URL,
    REDIS_URL,
    DatabaseSpec,
    _postgres,
    free_port,
    need_postgres,
    need_redis,
)
from tests.live_client import Frame, LiveClient, live
from tests.test_live import create_session, play, positions, sse_turn

pytestmark = pytest.mark.postgres

REPLICA = Path(__file__).with_name("live_replica.py")
API = "/api/v1"
# The scripted story echoes the player's action: a long action makes a long turn.
LONG_ACTION = "walk " + " ".join(f"step{i}" for i in range(60))


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    base_url: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def _wait_ready(replica: Replica) -> None:
    with httpx.Client(base_url=replica.base_url, timeout=5) as client:
        for _ in range(1200):
            if replica.process.poll() is not None:
                raise RuntimeError(f"replica exited with {replica.process.returncode}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            _pause()
    raise RuntimeError("replica did not start")


def _pause() -> None:
    """A short pause between start-up probes (polling a process, not synchronising)."""
    threading.Event().wait(0.05)


class Cluster:
    """Replicas of one deployment: one PostgreSQL schema and one Redis key prefix of
    their own. A replica process takes seconds to import the app, so the module's
    tests share them (each test in sessions of its own), started side by side: two
    that stay up, and a third that one test kills."""

    def __init__(self, schema: str, env: dict[str, str]) -> None:
        self.schema = schema
        self.env = env
        self.started: list[Replica] = []

    def start(self, count: int = 1, **env: str) -> list[Replica]:
        launched = []
        for _ in range(count):
            port = free_port()
            process = subprocess.Popen(
                [sys.executable, str(REPLICA), str(port), self.schema],
                env=self.env | {"TALEWEAVER_AUTO_MIGRATE": "false"} | env,
                stdout=subprocess.DEVNULL,
            )
            launched.append(Replica(process, f"http://127.0.0.1:{port}"))
        self.started += launched
        for replica in launched:
            _wait_ready(replica)
        return launched

    def stop(self) -> None:
        for replica in self.started:
            if replica.process.poll() is None:
                replica.process.terminate()
        for replica in self.started:
            replica.process.wait(timeout=15)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    need_postgres()
    need_redis()
    schema = f"tw_{uuid.uuid4().hex[:12]}"
    key = base64.b64encode(os.urandom(32)).decode()
    env = os.environ | {
        "TALEWEAVER_DATABASE_URL": POSTGRES_URL,
        "TALEWEAVER_REDIS_URL": REDIS_URL,
        "TALEWEAVER_REDIS_KEY_PREFIX": f"test-{schema}",
        "TALEWEAVER_ENCRYPTION_KEYS": f"k1:{key}",
        "TALEWEAVER_MODEL": "scripted",
        "TALEWEAVER_SCRIPTED_TOKEN_DELAY_MS": "8",
        "TALEWEAVER_DATA_DIR": str(tmp_path_factory.mktemp("replicas") / "data"),
        "TALEWEAVER_LIVE_POLL_SECONDS": "5",  # wake-ups must come through Redis
    }
    asyncio.run(_postgres(f"CREATE SCHEMA {schema}"))
    # One process migrates (and makes the local user) before any replica starts.
    asyncio.run(_prepare(DatabaseSpec("postgresql", POSTGRES_URL, _search_path(schema)), env))
    cluster = Cluster(schema, env)
    try:
        cluster.start(3)
        yield cluster
    finally:
        cluster.stop()
        asyncio.run(_postgres(f"DROP SCHEMA {schema} CASCADE"))
        flush = redis.Redis.from_url(REDIS_URL)
        for name in flush.scan_iter(match=f"test-{schema}:*"):
            flush.delete(name)


@pytest.fixture
def pair(cluster: Cluster) -> tuple[Replica, Replica]:
    """The module's two replicas, both up."""
    a, b = cluster.started[:2]
    assert a.process.poll() is None and b.process.poll() is None
    return a, b


def _search_path(schema: str) -> dict[str, Any]:
    return {"server_settings": {"search_path": schema}}


async def _prepare(spec: DatabaseSpec, env: dict[str, str]) -> None:
    settings = Settings(
        database_url=POSTGRES_URL,
        encryption_keys=env["TALEWEAVER_ENCRYPTION_KEYS"],  # type: ignore[arg-type]
        data_dir=Path(env["TALEWEAVER_DATA_DIR"]),
        model="scripted",
    )
    engine = await Engine.open(settings, model=ScriptedModel(), database=spec.open())
    await engine.close()


def turn_frames(channel: LiveClient, turn_id: str) -> list[tuple[int, str, Any]]:
    return [
        (f["seq"], f["type"].removeprefix("turn."), f["data"])
        for f in channel.of_type("turn.")
        if f["turn_id"] == turn_id
    ]


def sse_frames(events: list[Frame]) -> list[tuple[int, str, Any]]:
    return [(int(e["id"].rpartition(":")[2]), e["name"], e["data"]) for e in events]


async def first_tokens(stream: AsyncIterator[Frame], count: int) -> list[Frame]:
    seen = [await anext(stream)]
    while sum(e["name"] == "token" for e in seen) < count:
        seen.append(await anext(stream))
    return seen


async def test_a_client_on_one_replica_sees_turns_made_on_the_other_in_order(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    with b.client() as on_b:
        session_id = create_session(on_b)
        async with live(a.base_url, session_id) as channel:
            await channel.next("replayed")
            first = play(on_b, session_id, "I open the door")
            await channel.until(lambda f: f["type"] == "turn.done")
            stream = sse_turn(b.base_url, session_id, "I light a lantern")
            second = [event async for event in stream]
            second_id = second[0]["data"]["turn_id"]
            await channel.until(lambda f: f["type"] == "turn.done" and f["turn_id"] == second_id)
            head = max(positions(on_b, session_id))
            await channel.seen(lambda f: f["type"] == "event" and f["position"] == head)
        assert [f["position"] for f in channel.of_type("event")] == positions(on_b, session_id)
    done = channel.of_type("turn.done")
    assert [f["turn_id"] for f in done] == [first["id"], second_id]
    assert turn_frames(channel, second_id) == sse_frames(second)


@pytest.mark.parametrize("cancel_on", ["running replica", "other replica"])
async def test_a_cancel_sent_to_either_replica_stops_the_turn(
    pair: tuple[Replica, Replica], cancel_on: str
) -> None:
    a, b = pair
    target = b if cancel_on == "running replica" else a
    with b.client() as on_b, target.client() as canceller:
        session_id = create_session(on_b)
        stream = sse_turn(b.base_url, session_id, LONG_ACTION)
        seen = await first_tokens(stream, 3)
        turn_id = seen[0]["data"]["turn_id"]
        response = await asyncio.to_thread(
            canceller.post, f"{API}/sessions/{session_id}/turns/{turn_id}/cancel"
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        seen += [event async for event in stream]
        assert seen[-1]["name"] == "done" and seen[-1]["data"]["turn"]["status"] == "cancelled"
        events = on_b.get(f"{API}/sessions/{session_id}/events").json()
        assert events[-1]["type"] == "turn.cancelled"
        again = canceller.post(f"{API}/sessions/{session_id}/turns/{turn_id}/cancel")
        assert again.status_code == 409, again.text
        unknown = canceller.post(f"{API}/sessions/{session_id}/turns/no-such-turn/cancel")
        assert unknown.status_code == 404, unknown.text


async def test_a_client_resumes_on_the_other_replica_when_its_own_dies(
    cluster: Cluster, pair: tuple[Replica, Replica]
) -> None:
    # The turn runs on b; the client watches it from c, which dies, and resumes on a,
    # which has the turn's tokens from Redis only.
    a, b = pair
    c = cluster.started[2]
    with b.client() as on_b:
        session_id = create_session(on_b)
        play(on_b, session_id, "I open the door")
        stream = sse_turn(b.base_url, session_id, LONG_ACTION)
        reference = await first_tokens(stream, 1)
        turn_id = reference[0]["data"]["turn_id"]
        async with live(c.base_url, session_id) as before:
            await before.next("replayed")  # the turn's frames may come before the replay
            await before.until(lambda f: f["type"] == "turn.token" and f["seq"] >= 8)
            c.kill()
        last_event = before.of_type("event")[-1]["position"]
        last_seq = before.of_type("turn.")[-1]["seq"]
        async with live(
            a.base_url, session_id, after=last_event, turn=f"{turn_id}:{last_seq}"
        ) as after:
            await after.until(lambda f: f["type"] == "turn.done")
            reference += [event async for event in stream]
            head = max(positions(on_b, session_id))
            # The last event may come before or after turn.done (two paths).
            await after.seen(lambda f: f["type"] == "event" and f["position"] == head)
        seen = [f["position"] for f in before.of_type("event") + after.of_type("event")]
        assert seen == positions(on_b, session_id)  # every committed event exactly once
    tokens = turn_frames(before, turn_id) + turn_frames(after, turn_id)
    assert tokens == sse_frames(reference)  # every stream event exactly once, in order


async def test_one_turn_at_a_time_in_a_session_whichever_replica_is_asked(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    with a.client() as on_a, b.client() as on_b:
        session_id = create_session(on_a)
        url = f"{API}/sessions/{session_id}/turns"
        first, second = await asyncio.gather(
            asyncio.to_thread(on_a.post, url, json={"text": LONG_ACTION}),
            asyncio.to_thread(on_b.post, url, json={"text": LONG_ACTION}),
        )
        # One runs; the other is refused up front, not failed at its commit after
        # generating a whole turn (that would be a 409 "concurrent modification").
        assert sorted([first.status_code, second.status_code]) == [201, 409], (
            first.text,
            second.text,
        )
        refused = first if first.status_code == 409 else second
        assert "already running" in refused.json()["detail"], refused.text
        events = on_a.get(f"{API}/sessions/{session_id}/events").json()
        assert [e["type"] for e in events if e["type"].startswith("turn.")] == ["turn.committed"]
        again = on_b.post(url, json={"text": "I rest"})  # the session is free again
        assert again.status_code == 201, again.text


async def test_a_table_opened_on_one_replica_is_played_from_the_other(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    with b.client() as on_b:
        session_id = create_session(on_b)
    async with live(a.base_url, session_id) as on_a, live(b.base_url, session_id) as at_b:
        await at_b.next("table")
        await on_a.send({"type": "table.open", "policy": "gm_approves"})
        opened = await at_b.until(lambda f: f["type"] == "table" and f["table"]["open"])
        assert opened["table"]["policy"] == "gm_approves"
        await at_b.send({"type": "say", "text": "The bells ring"})  # the game master's
        said = await at_b.next("said", "error")
        assert said["type"] == "said", said
        await on_a.until(lambda f: f["type"] == "turn.done" and f["turn_id"] == said["turn_id"])
        # The committed event may come before or after turn.done: from another replica
        # the two travel different ways.
        await on_a.seen(
            lambda f: (
                f["type"] == "event" and f["event"]["payload"].get("turn_id") == said["turn_id"]
            )
        )


# --- kill -9 during concurrent turns ------------------------------------------------------

# The figure is 500; the suite runs fewer to stay quick on a small machine.
CRASH_TURNS = int(os.environ.get("TALEWEAVER_TEST_CRASH_TURNS", "48"))


def turns_of(session_id: str) -> str:
    return f"{API}/sessions/{session_id}/turns"


async def _schema_positions(schema: str) -> list[int]:
    conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
    try:
        return [r["position"] for r in await conn.fetch("SELECT position FROM events ORDER BY 1")]
    finally:
        await conn.close()


async def test_a_replica_killed_during_concurrent_turns_loses_no_turn_a_client_saw_done(
    cluster: Cluster,
) -> None:
    (victim,) = cluster.start(TALEWEAVER_RATE_LIMIT="1000000/minute")
    limits = httpx.Limits(max_connections=CRASH_TURNS, max_keepalive_connections=CRASH_TURNS)
    async with httpx.AsyncClient(base_url=victim.base_url, timeout=60, limits=limits) as client:

        async def new_session() -> str:
            response = await client.post(f"{API}/sessions", json={"kind": "story"})
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        sessions = await asyncio.gather(*(new_session() for _ in range(CRASH_TURNS)))
        done: dict[str, str] = {}  # session -> the turn its client saw completed
        finished = asyncio.Event()

        async def turn(session_id: str, steps: int) -> None:
            try:
                response = await client.post(
                    f"{API}/sessions/{session_id}/turns", json={"text": "climb" + " up" * steps}
                )
            except httpx.TransportError:
                return  # the replica died under it: this client never saw done
            assert response.status_code == 201, response.text
            done[session_id] = response.json()["id"]
            if len(done) >= CRASH_TURNS // 4:
                finished.set()

        # Turns of every length (the scripted story echoes the action), so that the
        # longer ones are surely in flight when a quarter of them are done.
        turns = [asyncio.ensure_future(turn(s, i % 40)) for i, s in enumerate(sessions)]
        await asyncio.wait_for(finished.wait(), 60)
        victim.kill()
        await asyncio.gather(*turns)
    assert CRASH_TURNS // 4 <= len(done) < CRASH_TURNS, "the kill came mid-way"
    (survivor,) = cluster.start(TALEWEAVER_RATE_LIMIT="1000000/minute")
    async with httpx.AsyncClient(base_url=survivor.base_url, timeout=60) as client:

        async def check(session_id: str) -> None:
            events = (await client.get(f"{API}/sessions/{session_id}/events")).json()
            committed = [e["payload"]["turn_id"] for e in events if e["type"] == "turn.committed"]
            assert len(committed) <= 1, "one turn each, never doubled"
            if session_id in done:
                assert committed == [done[session_id]], "a turn its client saw done is there"
            session = (await client.get(f"{API}/sessions/{session_id}")).json()
            assert session["turn_count"] == len(committed)  # no half turn in the read model
            messages = (await client.get(f"{API}/sessions/{session_id}/messages")).json()
            assert len(messages) == 2 * len(committed), messages  # the player's, the narrator's
            if session_id not in done:  # cut off by the kill: it plays on, once the
                # dead replica's hold on it lapses (OWNER_TTL_S; no replica renews it)
                deadline = time.monotonic() + OWNER_TTL_S + 5
                while True:
                    again = await client.post(turns_of(session_id), json={"text": "go"})
                    if again.status_code != 409 or time.monotonic() > deadline:
                        break
                    assert "already running" in again.json()["detail"], again.text
                    await asyncio.sleep(0.5)  # polling a lapse of time, nothing to wait on
                assert again.status_code == 201, again.text

        await asyncio.gather(*(check(s) for s in sessions))
    positions = await _schema_positions(cluster.schema)
    assert positions == list(range(1, len(positions) + 1))  # the global log has no gap
