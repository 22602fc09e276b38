"""The fault matrix: what the player sees when a backend misbehaves, for each protocol.

The narrator's route is a faulty primary (speaking OpenAI, Anthropic or Ollama)
and a healthy backup. Before the first token a failure is retried when that may
help (500, 429, a dropped connection) and otherwise handed to the backup: the
turn completes through the fallback. After the first token there is no going
back: the turn fails cleanly and nothing of it is kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taleweaver.domain.errors import ModelError
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.turns import TurnHandle
from tests.conftest import META
from tests.loopback_models import (
    FAST,
    GENERATE_PATH,
    STORY_TEXT,
    WIRES,
    ModelServer,
    Reply,
    make_settings,
    provider,
    refused,
    serving,
)

WS = "local"
BACKUP_TEXT = "The backup narrator takes over."

Open = Callable[..., Awaitable[Engine]]


@pytest.fixture(scope="module")
def running() -> Iterator[list[ModelServer]]:
    with serving(2) as apps:
        yield apps


@pytest.fixture
def servers(running: list[ModelServer]) -> tuple[ModelServer, ModelServer]:
    primary, backup = (app.reset() for app in running)
    # With its options, so that it is asked for nothing more (test_structured_choices).
    options = "\n\nChoices:\n1. Follow the river\n2. Wait for the boat\n"
    backup.then(Reply(pieces=("The ", "backup ", "narrator ", "takes ", "over.", options)))
    return primary, backup


@pytest.fixture
async def open_engine(tmp_path: Path) -> AsyncIterator[Open]:
    opened: list[Engine] = []

    async def open_(
        primary: ModelServer | str, wire: str, backup: ModelServer, **router: Any
    ) -> Engine:
        settings = make_settings(
            data_dir=tmp_path / "data",
            providers={
                "primary": provider(primary, wire),
                "backup": provider(backup, "openai"),
            },
            models={
                "primary": {"provider": "primary", "model": "loopback-model"},
                "backup": {"provider": "backup", "model": "backup-model"},
            },
            routes={"narrate": ["primary", "backup"]},
            router=FAST | router,
        )
        engine = await Engine.open(settings)
        opened.append(engine)
        return engine

    yield open_
    for engine in opened:
        await engine.close()


async def play(engine: Engine) -> tuple[str, TurnHandle]:
    created = await engine.sessions.create(WS, kind=SessionKind.STORY, title="T", metadata=META)
    request = TurnRequest.build(action=None, text="I wait by the river", choice=None)
    return created["id"], await engine.turns.start(WS, created["id"], request, META)


def generations(server: ModelServer, wire: str) -> int:
    return len(server.seen(GENERATE_PATH[wire]))


async def assert_completed_by_backup(engine: Engine, sid: str, handle: TurnHandle) -> None:
    turn = await handle.wait()
    assert turn["status"] == "completed"
    assert turn["model"] == "backup:backup-model"
    assert turn["reply"]["text"] == BACKUP_TEXT
    streamed = "".join(e.data["text"] for e in handle.events if e.name == "token")
    assert streamed.strip() == BACKUP_TEXT  # no word of the failed model reached the player
    [message] = [m for m in await messages(engine, sid) if m["role"] == "narrator"]
    assert message["content"] == BACKUP_TEXT


async def messages(engine: Engine, sid: str) -> list[dict[str, Any]]:
    return await engine.sessions.messages(WS, sid, after_turn=0, limit=10)


async def event_types(engine: Engine, sid: str) -> list[str]:
    return [e.type for e in await engine.sessions.events(WS, sid, after=0, limit=100)]


# --- failures before the first token: the backup tells the turn ----------------------------

PRE_TOKEN_FAULTS = {
    "500 twice": (Reply(status=500), 2),
    "stall before the first token": (Reply(stall_before=True), 1),
    "lists models but hangs": (Reply(hang=True), 1),
    "malformed first chunk": (Reply(malformed_after=0), 1),
    # Anthropic's error body says api_error: a server error, worth one more try.
    "200 with an error body": (Reply(error_body="model overloaded"), 1),
    "disconnect before the first token": (Reply(disconnect_after=0), 2),
    "ends without a stop reason or text": (Reply(pieces=(), no_stop=True), 2),
    "finishes without any text": (Reply(pieces=()), 1),
}


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("fault", list(PRE_TOKEN_FAULTS))
async def test_failure_before_the_first_token_completes_the_turn_through_the_fallback(
    servers: tuple[ModelServer, ModelServer], open_engine: Open, wire: str, fault: str
) -> None:
    primary, backup = servers
    reply, tries = PRE_TOKEN_FAULTS[fault]
    if fault == "200 with an error body" and wire == "anthropic":
        tries = 2
    primary.then(reply)
    engine = await open_engine(primary, wire, backup)
    sid, handle = await play(engine)

    await assert_completed_by_backup(engine, sid, handle)
    assert generations(primary, wire) == tries  # retried only when that could help
    assert generations(backup, "openai") == 1
    assert await event_types(engine, sid) == ["session.created", "turn.committed"]
    if reply.hang or reply.stall_before:  # given up on, the request was closed
        assert await asyncio.to_thread(primary.client_left.wait, 5)


@pytest.mark.parametrize("wire", WIRES)
async def test_connection_refused_completes_the_turn_through_the_fallback(
    servers: tuple[ModelServer, ModelServer], open_engine: Open, wire: str
) -> None:
    _, backup = servers
    engine = await open_engine(refused(wire), wire, backup)
    sid, handle = await play(engine)
    await assert_completed_by_backup(engine, sid, handle)


async def test_a_model_that_lists_but_hangs_passes_its_health_check_and_still_falls_back(
    servers: tuple[ModelServer, ModelServer], open_engine: Open
) -> None:
    primary, backup = servers
    primary.then(Reply(hang=True))
    engine = await open_engine(primary, "openai", backup)
    health = await engine.model_health()
    assert health["primary"]["status"] == "ok"
    sid, handle = await play(engine)
    started = time.perf_counter()
    await assert_completed_by_backup(engine, sid, handle)
    assert time.perf_counter() - started < 2  # the first-token deadline, not a hang


# --- rate limits: wait as asked, then go on ------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
async def test_429_is_retried_after_the_retry_after_delay_on_the_same_model(
    servers: tuple[ModelServer, ModelServer], open_engine: Open, wire: str
) -> None:
    primary, backup = servers
    primary.then(Reply(status=429, headers={"retry-after-ms": "300"}), Reply())
    engine = await open_engine(primary, wire, backup)
    _, handle = await play(engine)
    started = time.perf_counter()
    turn = await handle.wait()

    assert time.perf_counter() - started >= 0.3
    assert turn["status"] == "completed"
    assert turn["model"] == "primary:loopback-model"
    assert turn["reply"]["text"] == STORY_TEXT
    assert generations(primary, wire) == 2
    assert generations(backup, "openai") == 0


async def test_retry_after_in_seconds_is_honoured(
    servers: tuple[ModelServer, ModelServer], open_engine: Open
) -> None:
    primary, backup = servers
    primary.then(Reply(status=429, headers={"Retry-After": "1"}), Reply())
    engine = await open_engine(primary, "openai", backup)
    _, handle = await play(engine)
    started = time.perf_counter()
    turn = await handle.wait()
    assert time.perf_counter() - started >= 1.0
    assert turn["model"] == "primary:loopback-model"


async def test_a_retry_after_longer_than_allowed_moves_on_to_the_fallback_at_once(
    servers: tuple[ModelServer, ModelServer], open_engine: Open
) -> None:
    primary, backup = servers
    primary.then(Reply(status=429, headers={"Retry-After": "120"}))
    engine = await open_engine(primary, "openai", backup)
    sid, handle = await play(engine)
    started = time.perf_counter()
    await assert_completed_by_backup(engine, sid, handle)
    assert time.perf_counter() - started < 1.5
    assert generations(primary, "openai") == 1


# --- failures after the first token: a clean error, nothing kept ---------------------------

MID_STREAM_FAULTS = {
    "stall mid-stream": (Reply(stall_after=3), "stalled mid-reply"),
    "disconnect mid-stream": (Reply(disconnect_after=3), "dropped the connection"),
    "malformed chunk mid-stream": (Reply(malformed_after=3), "malformed"),
    "ends without a stop reason": (Reply(no_stop=True), "without a stop reason"),
}


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("fault", list(MID_STREAM_FAULTS))
async def test_failure_after_the_first_token_fails_the_turn_and_keeps_nothing(
    servers: tuple[ModelServer, ModelServer], open_engine: Open, wire: str, fault: str
) -> None:
    primary, backup = servers
    reply, message = MID_STREAM_FAULTS[fault]
    primary.then(reply)
    engine = await open_engine(primary, wire, backup)
    sid, handle = await play(engine)

    with pytest.raises(ModelError, match=message):
        await handle.wait()
    names = [e.name for e in handle.events]
    assert names[0] == "start" and names[-1] == "error" and "token" in names
    assert "done" not in names
    assert handle.events[-1].data["type"] == "ModelError"
    assert await event_types(engine, sid) == ["session.created", "turn.failed"]
    assert await messages(engine, sid) == []
    assert (await engine.sessions.get(WS, sid))["turn_count"] == 0
    assert generations(backup, "openai") == 0  # never two models' words in one reply


# --- thinking models ------------------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
async def test_empty_content_with_the_text_in_the_reasoning_field_is_the_reply(
    servers: tuple[ModelServer, ModelServer], open_engine: Open, wire: str
) -> None:
    primary, backup = servers
    primary.then(Reply(pieces=(), reasoning=("The lamp ", "gutters ", "out.")))
    engine = await open_engine(primary, wire, backup)
    _, handle = await play(engine)
    turn = await handle.wait()
    assert turn["status"] == "completed"
    assert turn["model"] == "primary:loopback-model"
    assert turn["reply"]["text"] == "The lamp gutters out."
    assert generations(backup, "openai") == 0


@pytest.mark.parametrize("wire", WIRES)
async def test_reasoning_before_the_content_is_not_shown(
    servers: tuple[ModelServer, ModelServer], open_engine: Open, wire: str
) -> None:
    primary, backup = servers
    primary.then(Reply(reasoning=("The player waits; ", "describe rain.")))
    engine = await open_engine(primary, wire, backup)
    _, handle = await play(engine)
    turn = await handle.wait()
    assert turn["reply"]["text"] == STORY_TEXT
    streamed = "".join(e.data["text"] for e in handle.events if e.name == "token")
    assert "describe rain" not in streamed


# --- cancellation ----------------------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
async def test_cancelling_a_turn_closes_the_upstream_connection(
    servers: tuple[ModelServer, ModelServer], open_engine: Open, wire: str
) -> None:
    primary, backup = servers
    primary.then(Reply(pieces=[f"word{i} " for i in range(200)], delay=0.02))
    engine = await open_engine(primary, wire, backup)
    sid, handle = await play(engine)
    async for event in handle.subscribe():
        if event.name == "token":
            break
    assert handle.cancel()
    turn = await handle.wait()

    assert turn["status"] == "cancelled"
    assert await asyncio.to_thread(primary.client_left.wait, 5)
    assert not primary.finished.is_set()
    assert primary.pieces_sent < 50
    assert await event_types(engine, sid) == ["session.created", "turn.cancelled"]
    assert generations(backup, "openai") == 0
