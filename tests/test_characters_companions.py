"""Companion sessions end to end on SQLite and PostgreSQL: the greeting as the first
message, the card in the prompt, and regenerate, edit and fork working on a
companion's history."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnAction
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.store.schema import sessions
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


# --- greetings ----------------------------------------------------------------------


async def test_the_greeting_is_the_first_narrator_message(companion: Engine) -> None:
    aria = await new_character(companion)

    session_id = await start(companion, aria, greeting=0)

    history = await messages(companion, session_id)
    assert [(m["turn_number"], m["role"]) for m in history] == [(1, "narrator")]
    assert history[0]["content"] == "Welcome in out of the rain, Player. I'm Aria."
    events = await companion.sessions.events(WS, session_id, after=0, limit=10)
    assert [e.type for e in events] == ["session.created", "turn.committed"]
    assert events[1].payload["greeting"] is True and events[1].payload["input"]["text"] is None
    session = await companion.sessions.get(WS, session_id)
    assert session["kind"] == SessionKind.COMPANION and session["turn_count"] == 1
    assert session["settings"]["character_ids"] == [aria]


async def test_user_is_the_players_display_name_and_a_sessions_persona_comes_first(
    companion: Engine,
) -> None:
    aria = await new_character(companion)
    await companion.accounts.set_display_name(ME, "Mira", actor=ME)

    named = await start(companion, aria, greeting=0)
    as_rook = await start(companion, aria, greeting=0, settings={"user_name": "Rook"})

    assert (await messages(companion, named))[0]["content"].startswith(
        "Welcome in out of the rain, Mira."
    )
    assert (await messages(companion, as_rook))[0]["content"].startswith(
        "Welcome in out of the rain, Rook."
    )


async def test_a_chat_export_names_the_player_by_display_name_or_persona(
    companion: Engine,
) -> None:
    aria = await new_character(companion)
    await companion.accounts.set_display_name(ME, "Mira", actor=ME)
    named = await start(companion, aria, greeting=0)
    await play(companion, named, "Hello")
    as_rook = await start(companion, aria, greeting=0, settings={"user_name": "Rook"})
    await play(companion, as_rook, "Hello")

    def speakers(chat: str) -> tuple[str, set[str]]:
        header, *lines = (json.loads(line) for line in chat.splitlines())
        return header["user_name"], {line["name"] for line in lines if line["is_user"]}

    assert speakers(await companion.interop.export_session(WS, named, "jsonl")) == (
        "Mira",
        {"Mira"},
    )
    assert speakers(await companion.interop.export_session(WS, as_rook, "jsonl")) == (
        "Rook",
        {"Rook"},
    )


async def test_an_alternate_greeting_can_be_chosen(companion: Engine) -> None:
    aria = await new_character(companion)

    session_id = await start(companion, aria, greeting=2)

    assert (await messages(companion, session_id))[0]["content"] == "Storm's bad, eh?"


async def test_without_an_index_the_greeting_is_one_of_the_cards(companion: Engine) -> None:
    aria = await new_character(companion)
    card = f.v3_card()
    options = {
        t.replace("{{user}}", "Player").replace("{{char}}", "Aria")
        for t in [card["data"]["first_mes"], *card["data"]["alternate_greetings"]]
    }

    seen = {
        (await messages(companion, await start(companion, aria)))[0]["content"] for _ in range(6)
    }

    assert seen <= options and len(seen) > 1


async def test_a_bad_greeting_or_character_creates_no_session(companion: Engine) -> None:
    aria = await new_character(companion)

    with pytest.raises(InvalidInput, match="greeting"):
        await start(companion, aria, greeting=9)
    with pytest.raises(NotFound):
        await start(companion, aria, "no-such-character")

    async with companion.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(sessions)) == 0


async def test_the_embedded_lorebook_is_linked_to_the_session(companion: Engine) -> None:
    aria = await new_character(companion, f.v3_card(character_book=f.book("lamp")))
    lorebook_id = (await companion.characters.get(WS, aria))["lorebook_id"]
    if lorebook_id is None:
        pytest.skip("engine.lorebooks.import_book is not wired yet (lorebooks, #4)")

    session_id = await start(companion, aria)

    settings = (await companion.sessions.get(WS, session_id))["settings"]
    assert settings["lorebook_ids"] == [lorebook_id]


# --- the card in the prompt ---------------------------------------------------------


async def test_the_card_reaches_the_prompt_with_macros_expanded(
    companion: Engine, model: ScriptedModel
) -> None:
    aria = await new_character(companion)
    session_id = await start(companion, aria, greeting=0)

    turn = await play(companion, session_id, "Hello there")

    call = model.calls[-1]
    system = system_text(call)
    assert "Write as Aria, in first person." in system
    assert "Aria is a lighthouse keeper who talks to Player about the sea." in system
    assert "personality: warm, wry, patient" in system
    assert "Scenario: A stormy night at the lighthouse." in system
    assert "relationship with Player" in system and "{{" not in system
    roles = [(m.role, m.content) for m in call[1:]]
    assert roles[0][0] == "system" and "Player: Hi\nAria: Mind the wet steps." in roles[0][1]
    assert roles[1] == ("assistant", "Welcome in out of the rain, Player. I'm Aria.")
    assert roles[-2] == ("system", "Keep replies under three sentences.")
    assert roles[-1] == ("user", "Hello there")
    events = await companion.sessions.events(WS, session_id, after=0, limit=10)
    refs = {c.get("ref") for c in events[-1].payload["context"] if c["source"] == "character"}
    assert {f"{aria}:description", f"{aria}:post_history_instructions"} <= refs
    assert turn["reply"]["text"] == "Reply 1."


async def test_a_nickname_stands_for_char(companion: Engine, model: ScriptedModel) -> None:
    aria = await new_character(companion, f.v3_card(nickname="Ari"))
    session_id = await start(companion, aria, greeting=1)

    await play(companion, session_id, "Hi")

    assert (await messages(companion, session_id))[0]["content"].endswith("Ari at your service.")
    assert "Ari is a lighthouse keeper" in system_text(model.calls[-1])


async def test_a_session_made_by_hand_with_character_ids_gets_the_card(
    companion: Engine, model: ScriptedModel
) -> None:
    aria = await new_character(companion)
    made = await companion.sessions.create(
        WS,
        kind=SessionKind.COMPANION,
        title="By hand",
        settings={"character_ids": [aria, "deleted-one"]},
        owner_id=ME,
        metadata=EventMetadata(actor=ME),
    )

    await play(companion, made["id"], "Thanks, that's lovely")

    assert "You are Aria. Stay in character." in system_text(model.calls[-1])
    assert "Aria is a lighthouse keeper" in system_text(model.calls[-1])
    state = await companion.characters.relationship(WS, aria, ME)
    assert state["turns"] == 1 and state["trust"] > 50


# --- regenerate, edit and fork in a companion session --------------------------------


async def test_regenerate_keeps_every_alternative(companion: Engine) -> None:
    aria = await new_character(companion)
    session_id = await start(companion, aria, greeting=0)
    await play(companion, session_id, "Hi")

    await play(companion, session_id, action=TurnAction.REGENERATE)
    await play(companion, session_id, action=TurnAction.REGENERATE)

    reply = (await messages(companion, session_id))[-1]
    assert [a["text"] for a in reply["alternatives"]] == ["Reply 1.", "Reply 2.", "Reply 3."]
    assert reply["active"] == 2 and reply["content"] == "Reply 3."


async def test_the_greeting_itself_can_be_regenerated(companion: Engine) -> None:
    aria = await new_character(companion)
    session_id = await start(companion, aria, greeting=0)

    await play(companion, session_id, action=TurnAction.REGENERATE)

    greeting = (await messages(companion, session_id))[0]
    assert greeting["alternatives"][0]["text"].startswith("Welcome in out of the rain")
    assert greeting["content"] == "Reply 1." and greeting["active"] == 1


async def test_edit_replaces_the_players_words_and_adds_a_reply(
    companion: Engine, model: ScriptedModel
) -> None:
    aria = await new_character(companion)
    session_id = await start(companion, aria)
    await play(companion, session_id, "Hi")

    await play(companion, session_id, "Good evening, Aria", action=TurnAction.EDIT)

    history = await messages(companion, session_id)
    assert [m["content"] for m in history[1:]] == ["Good evening, Aria", "Reply 2."]
    assert model.calls[-1][-1].content == "Good evening, Aria"


async def test_a_fork_keeps_the_greeting_and_goes_its_own_way(companion: Engine) -> None:
    aria = await new_character(companion)
    session_id = await start(companion, aria, greeting=0)
    await play(companion, session_id, "Hi")
    await play(companion, session_id, "Tell me about the lamp")

    fork = await companion.sessions.fork(
        WS, session_id, at_turn=2, title=None, owner_id=ME, metadata=EventMetadata(actor=ME)
    )
    await play(companion, fork["id"], "A different question")

    forked = await messages(companion, fork["id"])
    assert [m["content"] for m in forked] == [
        "Welcome in out of the rain, Player. I'm Aria.",
        "Hi",
        "Reply 1.",
        "A different question",
        "Reply 3.",
    ]
    assert len(await messages(companion, session_id)) == 5
    assert fork["settings"]["character_ids"] == [aria]
    # The fork's copied turns are not counted twice.
    assert (await companion.characters.relationship(WS, aria, ME))["turns"] == 3


async def test_the_embedded_lorebook_activates_in_the_companion_chat(
    companion: Engine, model: ScriptedModel
) -> None:
    aria = await new_character(companion, f.v3_card(character_book=f.book("lamp")))
    if (await companion.characters.get(WS, aria))["lorebook_id"] is None:
        pytest.skip("engine.lorebooks.import_book is not wired yet (lorebooks, #4)")
    session_id = await start(companion, aria)

    await play(companion, session_id, "Tell me about the lamp")

    prompt = "\n".join(m.content for m in model.calls[-1])
    assert "The lamp has burned for a hundred years." in prompt


async def test_a_long_description_goes_in_cut_to_size_and_the_trace_says_so(
    companion: Engine, model: ScriptedModel
) -> None:
    aria = await new_character(companion, f.v3_card(description="Salt and stone. " * 2000))
    session_id = await start(companion, aria)

    await play(companion, session_id, "Hello")

    system = system_text(model.calls[-1])
    assert "Aria's description:\nSalt and stone." in system and "…" in system
    assert "personality: warm, wry, patient" in system
    events = await companion.sessions.events(WS, session_id, after=0, limit=10)
    traced = next(c for c in events[-1].payload["context"] if c.get("ref") == f"{aria}:description")
    assert traced["detail"]["truncated_from"] > 6000 and "cut" not in traced
