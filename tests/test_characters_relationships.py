"""Relationship state and group chats in companion sessions, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from tests.data.cards import factory as f
from tests.data.cards.companions import (
    ME,
    WS,
    messages,
    new_character,
    play,
    start,
    system_text,
)


@pytest.fixture
def model() -> ScriptedModel:
    replies = iter(range(1, 1000))
    return ScriptedModel(lambda _: f"Reply {next(replies)}.")


@pytest.fixture
async def companion(make_engine: Callable[..., Any], model: ScriptedModel) -> Engine:
    engine: Engine = await make_engine(model=model)
    return engine


# --- relationship state -------------------------------------------------------------


async def test_warm_words_raise_and_hostile_words_lower_the_relationship(
    companion: Engine,
) -> None:
    aria = await new_character(companion)
    session_id = await start(companion, aria)

    await play(companion, session_id, "Thank you, I really love talking with you")
    warm = await companion.characters.relationship(WS, aria, ME)
    await play(companion, session_id, "You are stupid and useless. I hate this.")
    await play(companion, session_id, "Shut up, idiot.")
    cold = await companion.characters.relationship(WS, aria, ME)

    assert warm["affinity"] > 50 and warm["trust"] > 50 and warm["mood"] == "affectionate"
    assert cold["affinity"] < warm["affinity"] and cold["trust"] < warm["trust"]
    assert cold["mood"] in ("wary", "upset") and cold["turns"] == 3


async def test_reading_the_state_twice_counts_each_turn_once(companion: Engine) -> None:
    aria = await new_character(companion)
    session_id = await start(companion, aria)
    await play(companion, session_id, "thanks!")

    first = await companion.characters.relationship(WS, aria, ME)
    second = await companion.characters.relationship(WS, aria, ME)

    assert first == second and first["turns"] == 1


async def test_the_state_is_fed_to_the_prompt(companion: Engine, model: ScriptedModel) -> None:
    aria = await new_character(companion)
    session_id = await start(companion, aria)
    for _ in range(3):
        await play(companion, session_id, "I hate you, you are useless")

    await play(companion, session_id, "hello")

    assert "current mood: upset" in system_text(model.calls[-1])


async def test_each_user_has_their_own_state(companion: Engine) -> None:
    aria = await new_character(companion)
    session_id = await start(companion, aria)
    await play(companion, session_id, "Thank you, thank you!")

    other = await companion.characters.relationship(WS, aria, "someone-else")

    assert (other["affinity"], other["trust"], other["turns"]) == (50, 50, 0)


# --- group chats --------------------------------------------------------------------


async def test_the_named_character_replies_in_a_group_chat(
    companion: Engine, model: ScriptedModel
) -> None:
    aria = await new_character(companion)
    bram = await new_character(companion, f.v3_card("Bram", description="{{char}} fixes boats."))
    session_id = await start(companion, aria, bram)

    await play(companion, session_id, "Bram, can you fix my boat?")

    call = model.calls[-1]
    assert "Bram fixes boats." in system_text(call)
    assert "Also present:\n- Aria: Aria is a lighthouse keeper" in system_text(call)
    assert call[-2].content.startswith("Reply as Bram only")
    events = await companion.sessions.events(WS, session_id, after=0, limit=10)
    turn = next(c for c in events[-1].payload["context"] if c.get("ref") == f"{bram}:turn")
    assert turn["reason"] == "Bram is named in the player's message"


async def test_without_a_name_the_group_takes_turns(
    companion: Engine, model: ScriptedModel
) -> None:
    aria = await new_character(companion)
    bram = await new_character(companion, f.v3_card("Bram"))
    session_id = await start(companion, aria, bram)

    speakers = []
    for _ in range(3):
        await play(companion, session_id, "And then?")
        speakers.append(model.calls[-1][-2].content.split(" ")[2])

    assert speakers == ["Aria", "Bram", "Aria"]  # turns 2, 3, 4


async def test_a_group_chat_may_open_with_a_group_only_greeting(companion: Engine) -> None:
    aria = await new_character(companion)
    bram = await new_character(companion, f.v3_card("Bram"))

    session_id = await start(companion, aria, bram, greeting=3)

    assert (await messages(companion, session_id))[0]["content"] == "Hello, everyone."
    title = (await companion.sessions.get(WS, session_id))["title"]
    assert title == "Chat with Aria, Bram"


async def test_relationship_state_can_go_out_with_the_card_but_never_comes_back(
    companion: Engine,
) -> None:
    aria = await new_character(companion)
    session_id = await start(companion, aria)
    await play(companion, session_id, "thank you, dear friend")

    plain = json.loads(await companion.characters.export_card(WS, aria, "json"))
    shared = json.loads(
        await companion.characters.export_card(WS, aria, "json", relationships_for=[ME])
    )

    assert "taleweaver" not in plain["data"]["extensions"]
    (state,) = shared["data"]["extensions"]["taleweaver"]["relationships"]
    assert state["user_id"] == ME and state["trust"] > 50 and state["turns"] == 1
    again = await companion.characters.import_card(
        WS, json.dumps(shared).encode(), filename=None, actor=ME
    )
    assert again["taleweaver"]["extra"] == {}
    assert (await companion.characters.relationship(WS, again["id"], ME))["turns"] == 0


async def test_catching_up_twice_at_once_counts_each_turn_once(companion: Engine) -> None:
    aria = await new_character(companion)
    session_id = await start(companion, aria)
    await play(companion, session_id, "thanks!")
    await play(companion, session_id, "you're wonderful")

    both = await asyncio.gather(
        *(companion.characters.relationship(WS, aria, ME) for _ in range(4))
    )

    assert {s["turns"] for s in both} == {2}
    assert (await companion.characters.relationship(WS, aria, ME))["turns"] == 2
