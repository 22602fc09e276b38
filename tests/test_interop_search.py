"""Searching every session of a workspace: filters by character, kind and date, and
each hit in its context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from tests.conftest import META

WS = "local"
SERAPHINA = (Path(__file__).parent / "data" / "chats" / "seraphina.jsonl").read_bytes()


@pytest.fixture
async def world(make_engine: object) -> tuple[Engine, dict[str, str]]:
    engine: Engine = await make_engine(ScriptedModel(["The lantern flickers in the hall."]))  # type: ignore[operator]
    chat = await engine.interop.import_chat(WS, SERAPHINA, metadata=META)
    story = await engine.sessions.create(WS, kind=SessionKind.STORY, title="Hall", metadata=META)
    request = TurnRequest.build(action=TurnAction.SAY, text="I raise the lantern", choice=None)
    await (await engine.turns.start(WS, story["id"], request, META)).wait()
    linked = await engine.sessions.create(
        WS,
        kind=SessionKind.COMPANION,
        title="Linked",
        settings={"character_ids": ["char-42"], "character": {"name": "Bram"}},
        metadata=META,
    )
    await (await engine.turns.start(WS, linked["id"], request, META)).wait()
    return engine, {"chat": chat["id"], "story": story["id"], "linked": linked["id"]}


async def test_search_finds_words_across_every_session(
    world: tuple[Engine, dict[str, str]],
) -> None:
    engine, ids = world
    hits = await engine.interop.search(WS, "lantern", limit=100)
    assert {h["session_id"] for h in hits} == set(ids.values())


async def test_search_filters_by_character_name_or_id(world: tuple[Engine, dict[str, str]]) -> None:
    engine, ids = world
    by_name = await engine.interop.search(WS, "lantern", character="SERAPHINA", limit=100)
    assert {h["session_id"] for h in by_name} == {ids["chat"]}
    by_id = await engine.interop.search(WS, "lantern", character="char-42", limit=100)
    assert {h["session_id"] for h in by_id} == {ids["linked"]}
    assert await engine.interop.search(WS, "lantern", character="Nobody") == []


async def test_search_filters_by_kind_and_date(world: tuple[Engine, dict[str, str]]) -> None:
    engine, ids = world
    stories = await engine.interop.search(WS, "lantern", kind="story", limit=100)
    assert {h["session_id"] for h in stories} == {ids["story"]}
    now = datetime.now(UTC)
    assert await engine.interop.search(WS, "lantern", since=now + timedelta(minutes=1)) == []
    assert await engine.interop.search(WS, "lantern", until=now - timedelta(days=1)) == []
    recent = await engine.interop.search(
        WS, "lantern", since=now - timedelta(hours=1), until=now + timedelta(hours=1), limit=100
    )
    assert len(recent) == len(await engine.interop.search(WS, "lantern", limit=100))
    with pytest.raises(InvalidInput, match="since"):
        await engine.interop.search(WS, "lantern", since=now, until=now - timedelta(1))


async def test_each_hit_comes_with_its_neighbours(world: tuple[Engine, dict[str, str]]) -> None:
    engine, ids = world
    hits = await engine.interop.search(WS, "shadows", session_id=ids["chat"])
    (hit,) = hits
    assert hit["turn_number"] == 2 and hit["role"] == "narrator"
    around = [m["content"] for m in hit["context"]]
    assert "Where am I? What is this lantern?" in around  # the question it answers
    assert "Thank you." in around  # and what came next
    assert hit["id"] in {m["id"] for m in hit["context"]}
    assert hit["created_at"].tzinfo is not None


async def test_search_in_a_missing_session_is_not_found(
    world: tuple[Engine, dict[str, str]],
) -> None:
    engine, _ = world
    with pytest.raises(NotFound):
        await engine.interop.search(WS, "lantern", session_id="nope")
