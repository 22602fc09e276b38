"""A turn's record (its reply and context trace) is found by the turn's id: the latest
of its committed, regenerated or edited events, read by version, never by reading
the session's stream from the start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taleweaver.auth import LOCAL_USER_ID
from taleweaver.config import Settings
from taleweaver.domain.errors import NotFound
from taleweaver.domain.events import RecordedEvent
from taleweaver.domain.sessions import EventType, SessionKind
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.store.keys import KeyFile
from tests.conftest import META

WS = "local"

# The lookup filters on a JSON field in SQL: each dialect says it its own way.
pytestmark = pytest.mark.dialects


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A key file made up front (PostgreSQL never mints one), for sensitive workspaces."""
    key_file = tmp_path / "keys" / "taleweaver.keys"
    KeyFile(key_file).create()
    return Settings(
        data_dir=tmp_path / "data",
        model="scripted",
        scripted_token_delay_ms=0,
        key_file=key_file,
        encryption_keys=None,
    )


async def new_story(engine: Engine, workspace: str = WS) -> str:
    created = await engine.sessions.create(
        workspace, kind=SessionKind.STORY, title="T", metadata=META
    )
    session_id: str = created["id"]
    return session_id


async def run_turn(
    engine: Engine, session_id: str, request: TurnRequest, workspace: str = WS
) -> dict[str, Any]:
    handle = await engine.turns.start(workspace, session_id, request, META)
    return await handle.wait()


def say(text: str) -> TurnRequest:
    return TurnRequest.build(action=None, text=text, choice=None)


def reads_of(engine: Engine) -> list[tuple[int, int | None]]:
    """Record every (after, limit) the event store's stream reads are asked for."""
    store = engine.repository.store
    read = store.read_stream
    calls: list[tuple[int, int | None]] = []

    async def spy(stream_id: str, *, after: int = 0, limit: int | None = None) -> Any:
        calls.append((after, limit))
        return await read(stream_id, after=after, limit=limit)

    store.read_stream = spy  # type: ignore[method-assign]
    return calls


async def test_a_turns_event_is_its_latest_record(engine: Engine) -> None:
    engine.caps.model = ScriptedModel(["The hall.", "The stair.", "Another stair."])
    sid = await new_story(engine)
    first = await run_turn(engine, sid, say("I enter"))
    second = await run_turn(engine, sid, say("I climb"))
    again = await run_turn(
        engine, sid, TurnRequest.build(action=TurnAction.REGENERATE, text=None, choice=None)
    )

    found = await engine.sessions.turn_event(WS, sid, first["id"])
    assert (found.type, found.payload["reply"]["text"]) == (EventType.TURN_COMMITTED, "The hall.")
    latest = await engine.sessions.turn_event(WS, sid, again["id"])
    assert latest.type == EventType.TURN_REGENERATED
    assert latest.payload["reply"]["text"] == "Another stair."
    assert "context" in latest.payload
    # The telling it replaced stays findable by its own turn's id.
    replaced = await engine.sessions.turn_event(WS, sid, second["id"])
    assert replaced.payload["reply"]["text"] == "The stair."


async def test_a_turn_is_found_without_reading_the_stream(engine: Engine) -> None:
    engine.caps.model = ScriptedModel(["Reply."])
    sid = await new_story(engine)
    turns = [await run_turn(engine, sid, say(f"Step {n}")) for n in range(5)]
    calls = reads_of(engine)
    event: RecordedEvent = await engine.sessions.turn_event(WS, sid, turns[1]["id"])
    assert event.payload["turn_id"] == turns[1]["id"]
    # The session's state is cached after its turns: the one read is the turn's event.
    assert calls == [(event.version - 1, 1)]


async def test_an_unknown_turn_or_another_sessions_turn_is_not_found(engine: Engine) -> None:
    engine.caps.model = ScriptedModel(["Reply."])
    sid = await new_story(engine)
    other = await new_story(engine)
    turn = await run_turn(engine, other, say("Hello"))
    with pytest.raises(NotFound):
        await engine.sessions.turn_event(WS, sid, "no-such-turn")
    with pytest.raises(NotFound):
        await engine.sessions.turn_event(WS, sid, turn["id"])


async def test_a_turn_of_a_sensitive_workspace_is_found_and_opened(engine: Engine) -> None:
    engine.caps.model = ScriptedModel(["A secret reply."])
    workspace = await engine.accounts.create_workspace(LOCAL_USER_ID, "Clinic", sensitive=True)
    ws = workspace["id"]
    sid = await new_story(engine, ws)
    turn = await run_turn(engine, sid, say("Tell me"), ws)
    event = await engine.sessions.turn_event(ws, sid, turn["id"])
    assert event.payload["reply"]["text"] == "A secret reply."
