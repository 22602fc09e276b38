"""Rolling summaries on a real database (SQLite and PostgreSQL): written in the
background, layered, redone when turns are replaced, sealed in sensitive
workspaces, and carried into the narrator's prompt by recall."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command as alembic_command
from pydantic_settings import SettingsError

from taleweaver.config import Settings, SummarySettings
from taleweaver.domain.errors import EncryptionError, NotFound
from taleweaver.domain.events import EventMetadata, NewEvent
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import EventType, SessionKind
from taleweaver.domain.summaries import SummaryRow
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ModelRouter, ScriptedModel, as_backend
from taleweaver.llm.routing import Provider, RoutedModel
from taleweaver.llm.scripted import story_script
from taleweaver.memory.summaries import Summarizer, SummaryConfig
from taleweaver.store import migrate
from taleweaver.store.database import Database
from taleweaver.store.keys import KeyFile
from taleweaver.store.summaries_schema import summaries

MakeEngine = Callable[..., Any]
META = EventMetadata(actor="test", correlation_id="summaries")
FACT = "I hand the brass key to Mirela Vantablack."
NAMES = re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)+\b")
QUIET = "A quiet stretch."


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A key file made up front: PostgreSQL, unlike a laptop's SQLite, never mints one."""
    key_file = tmp_path / "keys" / "taleweaver.keys"
    KeyFile(key_file).create()
    return Settings(
        data_dir=tmp_path / "data",
        model="scripted",
        scripted_token_delay_ms=0,
        key_file=key_file,
        encryption_keys=None,
    )


def condense(messages: Sequence[ChatMessage]) -> str:
    """A deterministic summarizer: keeps the capitalised names (two words or more)."""
    names = list(dict.fromkeys(NAMES.findall(messages[-1].content)))
    return f"Names: {', '.join(names)}." if names else QUIET


def is_summary_request(messages: Sequence[ChatMessage]) -> bool:
    return messages[0].content.startswith("You keep the memory")


def story_and_summaries(messages: Sequence[ChatMessage]) -> str:
    """One bare model for every task, as tests run the engine: it tells the story,
    and condenses when the summarizer's instructions come."""
    return condense(messages) if is_summary_request(messages) else story_script(messages)


def prompt_for(model: ScriptedModel, said: str) -> list[ChatMessage]:
    """The narrator's prompt for the turn where the player said `said` (other tasks
    may call the same scripted model too)."""
    return next(c for c in reversed(model.calls) if c[-1].content == said)


def story_so_far(prompt: list[ChatMessage]) -> list[str]:
    return [m.content for m in prompt if m.content.startswith("Story so far")]


class GatedModel:
    """A summarizer that waits for `gate` before it answers (a slow model, without timing)."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[str]:
        self.started.set()
        await self.gate.wait()
        yield condense(messages)

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def turn_event(number: int, player: str | None = None, narrator: str | None = None) -> NewEvent:
    return NewEvent(
        EventType.TURN_COMMITTED,
        {
            "turn_id": uuid.uuid4().hex,
            "number": number,
            "action": "say",
            "input": {"text": player or f"i walk on, step {number}.", "choice": None},
            "reply": {"text": narrator or "the corridor goes on. rain ticks.", "choices": []},
            "message_ids": {"player": uuid.uuid4().hex, "narrator": uuid.uuid4().hex},
        },
    )


async def long_session(
    engine: Engine,
    turns: int,
    *,
    workspace_id: str = "local",
    special: dict[int, tuple[str, str]] | None = None,
) -> str:
    """A session with `turns` committed turns, appended in bulk through the repository
    (the same events and read models a played turn writes, without the pipeline)."""
    created = await engine.sessions.create(
        workspace_id, kind=SessionKind.STORY, title="Long road", metadata=META
    )
    session_id: str = created["id"]
    await add_turns(engine, session_id, turns, workspace_id=workspace_id, special=special)
    return session_id


async def add_turns(
    engine: Engine,
    session_id: str,
    turns: int,
    *,
    workspace_id: str = "local",
    special: dict[int, tuple[str, str]] | None = None,
) -> None:
    state = await engine.repository.open(workspace_id, session_id)
    special = special or {}
    last = state.turn_count + turns
    for start in range(state.turn_count + 1, last + 1, 500):
        batch = [
            turn_event(n, *special.get(n, (None, None)))
            for n in range(start, min(last, start + 499) + 1)
        ]
        state, _ = await engine.repository.commit(state, batch, META)


async def play(engine: Engine, session_id: str, text: str | None = None, **kw: Any) -> Any:
    request = TurnRequest.build(action=kw.get("action"), text=text, choice=None)
    handle = await engine.turns.start("local", session_id, request, META)
    return await handle.wait()


async def summarise(engine: Engine, session_id: str, workspace_id: str = "local") -> None:
    engine.summaries.schedule(workspace_id, session_id)
    await engine.summaries.settle()


async def all_summaries(
    engine: Engine, session_id: str, workspace_id: str = "local"
) -> dict[str, SummaryRow]:
    rows, _ = await engine.summaries.page(
        workspace_id, session_id, level=None, limit=1000, offset=0
    )
    return {r.entry.span.ref: r for r in rows}


# --- turn 10,000 remembers turn 10 ------------------------------------------------------


async def test_a_fact_from_turn_10_reaches_the_narrator_at_turn_10000(
    make_engine: MakeEngine,
) -> None:
    model = ScriptedModel(story_and_summaries)
    engine: Engine = await make_engine(model)
    special = {10: (FACT, "Mirela Vantablack hides the key in the Sunken Chapel.")}
    session_id = await long_session(engine, 9_999, special=special)
    await summarise(engine, session_id)

    found = await all_summaries(engine, session_id)
    assert found["L3 turns 1-2000"].text == "Names: Mirela Vantablack, Sunken Chapel."
    assert found["L1 turns 1-20"].entry.model == "scripted"
    assert [r.entry.span.level for r in found.values()].count(3) == 4

    turn = await play(engine, session_id, "I try to remember who has the key.")

    assert turn["number"] == 10_000
    prompt = prompt_for(model, "I try to remember who has the key.")
    carried = [m.content for m in prompt if "Mirela Vantablack" in m.content]
    assert carried == ["Story so far, turns 1-2000: Names: Mirela Vantablack, Sunken Chapel."]
    events = await engine.repository.store.read_stream(session_id, after=10_000)
    trace = events[-1].payload["context"]
    carrier = [e for e in trace if e.get("source") == "summary" and e["ref"] == "L3 turns 1-2000"]
    assert carrier[0]["reason"] == "covers turns 1-2000 (older than recent history)"
    assert carrier[0]["detail"]["summary_id"] == found["L3 turns 1-2000"].entry.id
    refs = [e["ref"] for e in trace if e.get("source") == "summary"]
    assert refs[:5] == [f"L3 turns {a}-{a + 1999}" for a in (1, 2001, 4001, 6001)] + [
        "L2 turns 8001-8200"
    ]
    assert refs[-1] == "L1 turns 9961-9980"


async def test_summaries_join_the_prompt_once_recent_history_no_longer_reaches_turn_1(
    make_engine: MakeEngine,
) -> None:
    model = ScriptedModel(story_and_summaries)
    engine: Engine = await make_engine(model)
    session_id = await long_session(engine, 20, special={1: ("I meet Ada Lark.", "She waves.")})
    await summarise(engine, session_id)

    await play(engine, session_id, "I look around.")  # history: 40 messages, turns 1-20
    assert story_so_far(prompt_for(model, "I look around.")) == []
    await play(engine, session_id, "I look again.")  # history: turns 2-21

    pieces = story_so_far(prompt_for(model, "I look again."))
    assert pieces == ["Story so far, turns 1-20: Names: Ada Lark."]


async def test_long_summaries_are_shortened_so_the_distant_past_stays_in_the_prompt(
    make_engine: MakeEngine,
) -> None:
    def wordy(messages: Sequence[ChatMessage]) -> str:
        if not is_summary_request(messages):
            return story_script(messages)
        return condense(messages) + " The road went on through rain and wind." * 30

    model = ScriptedModel(wordy)
    engine: Engine = await make_engine(model)
    special = {10: (FACT, "Mirela Vantablack nods.")}
    session_id = await long_session(engine, 2_499, special=special)
    await summarise(engine, session_id)

    await play(engine, session_id, "I ask about the key.")

    pieces = story_so_far(prompt_for(model, "I ask about the key."))
    assert len(pieces) == 7  # L3 1-2000, L2 2001-2400, L1 2401-2420 ... 2461-2480
    assert pieces[0].startswith("Story so far, turns 1-2000: Names: Mirela Vantablack.")
    assert sum(map(len, pieces)) <= 3000 + 7 * len("Story so far, turns 2461-2480: ")


# --- in the background -------------------------------------------------------------------


async def test_a_turn_completes_before_the_summary_it_triggered_exists(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine(ScriptedModel())
    gated = GatedModel()
    engine.summaries.summarizer = Summarizer(gated)
    session_id = await long_session(engine, 20)

    turn = await play(engine, session_id, "I keep walking.")

    assert turn["status"] == "completed"
    await gated.started.wait()  # the summary is being written right now...
    assert engine.summaries.running(session_id)
    assert await all_summaries(engine, session_id) == {}  # ...and is not there yet
    gated.gate.set()
    await engine.summaries.settle(session_id)
    assert list(await all_summaries(engine, session_id)) == ["L1 turns 1-20"]


async def test_closing_the_engine_stops_a_pass_in_flight(make_engine: MakeEngine) -> None:
    engine: Engine = await make_engine(ScriptedModel())
    gated = GatedModel()
    engine.summaries.summarizer = Summarizer(gated)
    session_id = await long_session(engine, 20)
    engine.summaries.schedule("local", session_id)
    await gated.started.wait()

    await engine.summaries.aclose(grace=0.05)

    assert not engine.summaries.running(session_id)
    engine.summaries.schedule("local", session_id)  # refused once closed
    assert not engine.summaries.running(session_id)


# --- failures ------------------------------------------------------------------------------


async def test_a_failing_model_leaves_an_extractive_summary_and_the_turn_unharmed(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine(ScriptedModel())
    engine.summaries.summarizer = Summarizer(ScriptedModel(["never"], fail_after=0))
    special = {1: ("I light the lamp. It hisses.", "The lamp flares. Shadows jump back.")}
    session_id = await long_session(engine, 20, special=special)

    turn = await play(engine, session_id, "I go on.")
    await engine.summaries.settle()

    assert turn["status"] == "completed"
    summary = (await all_summaries(engine, session_id))["L1 turns 1-20"]
    assert summary.entry.method == "extractive"
    assert summary.text.startswith("[1] I light the lamp. → The lamp flares. [2]")
    assert summary.fallback_reason == "model failed: ModelError: scripted failure"
    assert summary.entry.attempts == 1
    assert summary.entry.retry_at is not None


async def test_a_fallback_is_written_by_the_model_once_its_retry_is_due(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine(ScriptedModel())
    engine.summaries.summarizer = Summarizer(ScriptedModel(["never"], fail_after=0))
    session_id = await long_session(engine, 20, special={5: ("I meet Old Tobias.", "He nods.")})
    await summarise(engine, session_id)
    engine.summaries.summarizer = Summarizer(ScriptedModel(condense))

    await summarise(engine, session_id)  # not yet due: the fallback stays
    waiting = (await all_summaries(engine, session_id))["L1 turns 1-20"]
    assert waiting.entry.method == "extractive"
    async with engine.db.write() as conn:
        await conn.execute(summaries.update().values(retry_at=sa.func.current_timestamp()))
    await summarise(engine, session_id)

    summary = (await all_summaries(engine, session_id))["L1 turns 1-20"]
    assert (summary.entry.method, summary.text) == ("model", "Names: Old Tobias.")
    assert summary.fallback_reason is None and summary.entry.retry_at is None


async def test_an_empty_answer_from_the_model_is_replaced_by_an_extractive_summary(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine(ScriptedModel())
    engine.summaries.summarizer = Summarizer(ScriptedModel(["  ...  "]))
    session_id = await long_session(engine, 20)

    await summarise(engine, session_id)

    summary = (await all_summaries(engine, session_id))["L1 turns 1-20"]
    assert summary.entry.method == "extractive"
    assert summary.fallback_reason == "the model's output was empty or unusable"
    assert summary.text.startswith("[1] i walk on, step 1. → the corridor goes on.")


async def test_a_model_that_keeps_failing_is_not_asked_forever(make_engine: MakeEngine) -> None:
    engine: Engine = await make_engine(ScriptedModel())
    failing = ScriptedModel(["never"], fail_after=0)
    engine.summaries.summarizer = Summarizer(failing)
    session_id = await long_session(engine, 20)
    for _ in range(8):
        await summarise(engine, session_id)
        async with engine.db.write() as conn:
            await conn.execute(
                summaries.update()
                .where(summaries.c.retry_at.is_not(None))
                .values(retry_at=sa.func.current_timestamp())
            )

    summary = (await all_summaries(engine, session_id))["L1 turns 1-20"]
    assert summary.entry.attempts == 5
    assert summary.entry.retry_at is None
    assert len(failing.calls) == 5


async def test_a_pass_that_breaks_is_logged_and_tried_again_later(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine: Engine = await make_engine(ScriptedModel(story_and_summaries))
    session_id = await long_session(engine, 20)
    save = engine.summaries.store.save

    async def broken(*args: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(engine.summaries.store, "save", broken)
    await summarise(engine, session_id)
    assert "disk on fire" in caplog.text
    monkeypatch.setattr(engine.summaries.store, "save", save)

    await play(engine, session_id, "I go on.")  # the next turn notices the missing summary
    await engine.summaries.settle()

    assert list(await all_summaries(engine, session_id)) == ["L1 turns 1-20"]


# --- replaced turns --------------------------------------------------------------------------


async def test_a_regenerated_turn_marks_its_summaries_stale_and_they_are_redone(
    make_engine: MakeEngine,
) -> None:
    replies = iter(["Captain Orsolya Brandt arrives.", "The storm passes."])

    def script(messages: Sequence[ChatMessage]) -> str:
        return condense(messages) if is_summary_request(messages) else next(replies)

    engine: Engine = await make_engine(ScriptedModel(script))
    special = {200: ("I wait by the gate.", "Nobody comes.")}
    session_id = await long_session(engine, 200, special=special)
    await summarise(engine, session_id)
    before = await all_summaries(engine, session_id)
    assert before["L1 turns 181-200"].text == QUIET
    assert before["L2 turns 1-200"].text == QUIET

    await play(engine, session_id, action=TurnAction.REGENERATE)
    await engine.summaries.settle()
    await play(engine, session_id, "I greet her.")
    await engine.summaries.settle()

    after = await all_summaries(engine, session_id)
    assert after["L1 turns 181-200"].text == "Names: Captain Orsolya Brandt."
    assert after["L2 turns 1-200"].text == "Names: Captain Orsolya Brandt."
    assert not any(r.entry.stale for r in after.values())
    assert after["L1 turns 1-20"].entry.id == before["L1 turns 1-20"].entry.id  # untouched
    assert after["L2 turns 1-200"].sources[-1]["id"] == after["L1 turns 181-200"].entry.id


async def test_an_edited_turn_is_redone_even_when_the_edit_is_the_first_thing_noticed(
    make_engine: MakeEngine,
) -> None:
    def script(messages: Sequence[ChatMessage]) -> str:
        return condense(messages) if is_summary_request(messages) else "Silence."

    engine: Engine = await make_engine(ScriptedModel(script))
    session_id = await long_session(engine, 20)
    await summarise(engine, session_id)
    engine.summaries._seen.clear()  # as a freshly started replica would be

    await play(engine, session_id, "I call for Brother Anselm.", action=TurnAction.EDIT)
    await play(engine, session_id, "I wait.")
    await engine.summaries.settle()

    summary = (await all_summaries(engine, session_id))["L1 turns 1-20"]
    assert summary.text == "Names: Brother Anselm."
    assert summary.sources[-1]["number"] == 20


async def test_rebuild_redoes_every_summary(make_engine: MakeEngine) -> None:
    model = ScriptedModel(story_and_summaries)
    engine: Engine = await make_engine(model)
    session_id = await long_session(engine, 200)
    await summarise(engine, session_id)
    before = await all_summaries(engine, session_id)

    marked = await engine.summaries.rebuild("local", session_id)
    await engine.summaries.settle()

    after = await all_summaries(engine, session_id)
    assert marked == 11
    assert sorted(after) == sorted(before)
    assert all(after[ref].entry.id != before[ref].entry.id for ref in before)
    assert not any(r.entry.stale for r in after.values())


async def test_summaries_far_apart_are_each_written_from_their_own_turns(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine(ScriptedModel(story_and_summaries))
    session_id = await long_session(engine, 220, special={5: ("I find Iris Vale.", "Hello.")})
    await summarise(engine, session_id)
    version = (await engine.repository.open("local", session_id)).version
    await engine.summaries.store.mark_replaced("local", session_id, [(version + 1, 5)], version)
    await add_turns(engine, session_id, 20, special={230: ("I see Juno Hart.", "Bye.")})

    await summarise(engine, session_id)

    found = await all_summaries(engine, session_id)
    assert found["L1 turns 1-20"].text == "Names: Iris Vale."
    assert found["L1 turns 221-240"].text == "Names: Juno Hart."
    assert [t["number"] for t in found["L1 turns 221-240"].sources] == list(range(221, 241))
    assert not found["L2 turns 1-200"].entry.stale


async def test_a_parent_whose_child_was_rewritten_meanwhile_waits_for_the_next_pass(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine: Engine = await make_engine(ScriptedModel(story_and_summaries))
    session_id = await long_session(engine, 200)
    store = engine.summaries.store
    read = store.texts

    async def one_gone(workspace_id: str, ids: Sequence[str]) -> dict[str, str]:
        return await read(workspace_id, list(ids)[1:])  # as if another replica replaced it

    monkeypatch.setattr(store, "texts", one_gone)
    await engine.summaries.run_pass("local", session_id)
    assert "L2 turns 1-200" not in await all_summaries(engine, session_id)
    monkeypatch.setattr(store, "texts", read)

    await engine.summaries.run_pass("local", session_id)

    assert "L2 turns 1-200" in await all_summaries(engine, session_id)


# --- sealed workspaces -------------------------------------------------------------------------


async def test_summaries_of_a_sensitive_workspace_are_stored_encrypted(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine(ScriptedModel(story_and_summaries))
    workspace = await engine.accounts.create_workspace("local", "Private", sensitive=True)
    special = {3: ("I tell Doctor Halvard Quist my secret.", "He listens.")}
    session_id = await long_session(engine, 20, workspace_id=workspace["id"], special=special)

    await summarise(engine, session_id, workspace["id"])

    async with engine.db.read() as conn:
        row = (await conn.execute(sa.select(summaries))).one()
    assert row.sealed is True
    assert "Halvard" not in row.text
    summary = (await all_summaries(engine, session_id, workspace["id"]))["L1 turns 1-20"]
    assert summary.text == "Names: Doctor Halvard Quist."
    assert summary.sealed is True


async def test_a_rebuild_seals_summaries_written_before_the_workspace_became_sensitive(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine(ScriptedModel(story_and_summaries))
    workspace = await engine.accounts.create_workspace("local", "Later", sensitive=False)
    session_id = await long_session(engine, 20, workspace_id=workspace["id"])
    await summarise(engine, session_id, workspace["id"])
    await engine.accounts.update_workspace(workspace["id"], name=None, sensitive=True, actor="t")

    await engine.summaries.rebuild(workspace["id"], session_id)
    await engine.summaries.settle()

    async with engine.db.read() as conn:
        assert (await conn.execute(sa.select(summaries.c.sealed))).scalars().all() == [True]
    summary = (await all_summaries(engine, session_id, workspace["id"]))["L1 turns 1-20"]
    assert summary.text == QUIET


async def test_a_sealed_summary_moved_to_another_row_does_not_open_and_the_turn_goes_on(
    make_engine: MakeEngine,
) -> None:
    model = ScriptedModel(story_and_summaries)
    engine: Engine = await make_engine(model)
    workspace = await engine.accounts.create_workspace("local", "Private", sensitive=True)
    session_id = await long_session(engine, 40, workspace_id=workspace["id"])
    await summarise(engine, session_id, workspace["id"])
    async with engine.db.write() as conn:
        rows = (await conn.execute(sa.select(summaries.c.id, summaries.c.text))).all()
        await conn.execute(
            summaries.update().where(summaries.c.id == rows[0].id).values(text=rows[1].text)
        )

    with pytest.raises(EncryptionError):
        await engine.summaries.store.texts(workspace["id"], [rows[0].id])
    handle = await engine.turns.start(
        workspace["id"], session_id, TurnRequest.build(action=None, text="On.", choice=None), META
    )
    turn = await handle.wait()

    assert turn["status"] == "completed"
    assert story_so_far(prompt_for(model, "On.")) == []


# --- workspaces and sessions ---------------------------------------------------------------------


async def test_summaries_of_a_deleted_session_are_dropped(make_engine: MakeEngine) -> None:
    engine: Engine = await make_engine(ScriptedModel(story_and_summaries))
    session_id = await long_session(engine, 20)
    await summarise(engine, session_id)

    await engine.sessions.delete("local", session_id, metadata=META)
    await summarise(engine, session_id)

    async with engine.db.read() as conn:
        assert (await conn.execute(sa.select(summaries))).all() == []


async def test_a_session_is_not_found_from_another_workspace(make_engine: MakeEngine) -> None:
    engine: Engine = await make_engine(ScriptedModel(story_and_summaries))
    other = await engine.accounts.create_workspace("local", "Other", sensitive=False)
    session_id = await long_session(engine, 20)
    await summarise(engine, session_id)

    with pytest.raises(NotFound):
        await engine.summaries.page(other["id"], session_id, level=None, limit=10, offset=0)
    with pytest.raises(NotFound):
        await engine.summaries.rebuild(other["id"], session_id)
    assert await engine.summaries.run_pass(other["id"], session_id) == 0


async def test_summaries_are_accounted_to_the_session_as_the_summarize_task(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine(ScriptedModel(story_and_summaries))
    assert engine.router is not None  # the bare model is served through the router
    session_id = await long_session(engine, 20)

    await summarise(engine, session_id)

    by_task = await engine.usage.breakdown("local", "task", session_id=session_id)
    assert [row["task"] for row in by_task] == ["summarize"]
    assert by_task[0]["calls"] == 1


async def test_a_session_choosing_its_own_summarize_model_gets_it(make_engine: MakeEngine) -> None:
    async def nothing() -> None:
        return None

    provider = Provider("test", "direct", check=nothing, close=nothing)
    models = {
        alias: RoutedModel(alias, f"test:{alias}", provider, alias, chat=as_backend(model))
        for alias, model in (("story", ScriptedModel()), ("cheap", ScriptedModel(condense)))
    }
    router = ModelRouter(models, {t: ["story"] for t in ("narrate", "extract", "safety")})
    router.routes["summarize"] = ["story"]
    engine: Engine = await make_engine()
    engine.caps.model = router
    created = await engine.sessions.create(
        "local",
        kind=SessionKind.STORY,
        title="Own models",
        settings={"models": {"summarize": "cheap"}},
        metadata=META,
    )
    await add_turns(engine, created["id"], 20, special={4: ("I meet Lina Sorrel.", "Hi.")})

    await summarise(engine, created["id"])

    summary = (await all_summaries(engine, created["id"]))["L1 turns 1-20"]
    assert (summary.entry.model, summary.text) == ("test:cheap", "Names: Lina Sorrel.")


async def test_a_session_choosing_an_unknown_model_gets_extractive_summaries(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine(ScriptedModel(story_and_summaries))
    created = await engine.sessions.create(
        "local",
        kind=SessionKind.STORY,
        title="Odd models",
        settings={"models": {"summarize": "nonesuch"}},
        metadata=META,
    )
    await add_turns(engine, created["id"], 20)

    await summarise(engine, created["id"])

    summary = (await all_summaries(engine, created["id"]))["L1 turns 1-20"]
    assert summary.entry.method == "extractive"
    assert summary.fallback_reason is not None and "nonesuch" in summary.fallback_reason


# --- settings ----------------------------------------------------------------------------------


def test_settings_come_from_the_environment_and_mistakes_say_what_to_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def configured() -> SummaryConfig:
        return SummaryConfig.from_settings(SummarySettings.read())

    for name in SUMMARY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert configured() == SummaryConfig(True, concurrency=2, recall_chars=3000)
    monkeypatch.setenv("TALEWEAVER_SUMMARIES", "off")
    monkeypatch.setenv("TALEWEAVER_SUMMARY_CONCURRENCY", "4")
    monkeypatch.setenv("TALEWEAVER_SUMMARY_RECALL_CHARS", "1500")
    assert configured() == SummaryConfig(False, concurrency=4, recall_chars=1500)
    monkeypatch.setenv("TALEWEAVER_SUMMARY_CONCURRENCY", "0")
    with pytest.raises(SettingsError, match="TALEWEAVER_SUMMARY_CONCURRENCY='0'"):
        configured()
    monkeypatch.setenv("TALEWEAVER_SUMMARY_CONCURRENCY", "2")
    monkeypatch.setenv("TALEWEAVER_SUMMARIES", "maybe")
    with pytest.raises(SettingsError, match=r"TALEWEAVER_SUMMARIES='maybe'.*boolean"):
        configured()


SUMMARY_VARIABLES = (
    "TALEWEAVER_SUMMARIES",
    "TALEWEAVER_SUMMARY_CONCURRENCY",
    "TALEWEAVER_SUMMARY_RECALL_CHARS",
)


async def test_switched_off_no_summaries_are_written(make_engine: MakeEngine) -> None:
    engine: Engine = await make_engine(ScriptedModel(story_and_summaries))
    engine.summaries.config = SummaryConfig(enabled=False)
    session_id = await long_session(engine, 40)

    await play(engine, session_id, "I go on.")
    await summarise(engine, session_id)

    assert await all_summaries(engine, session_id) == {}


# --- migration ---------------------------------------------------------------------------------


async def test_the_migration_adds_the_tables_and_takes_them_away_again(database: Database) -> None:
    def tables() -> Callable[[sa.Connection], set[str]]:
        return lambda sync: set(sa.inspect(sync).get_table_names())

    async def step(command: Callable[..., None], revision: str) -> None:
        async with database.engine.begin() as conn:
            await conn.run_sync(lambda sync: command(migrate._config(sync), revision))

    async with database.engine.connect() as conn:
        assert {"summaries", "summary_progress"} <= await conn.run_sync(tables())
    await step(alembic_command.downgrade, "0010")
    async with database.engine.connect() as conn:
        assert not {"summaries", "summary_progress"} & await conn.run_sync(tables())
    await step(alembic_command.upgrade, "head")
    assert await migrate.current_revision(database.engine) == migrate.head_revision()
