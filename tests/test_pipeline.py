"""The one turn pipeline: every action, cancel, failure and conflict behaviour."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from taleweaver.domain.errors import (
    ConcurrencyConflict,
    Conflict,
    InvalidInput,
    ModelError,
    TaleweaverError,
)
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import SafetyVerdict, TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.pipeline import Capabilities
from taleweaver.llm import ScriptedModel
from taleweaver.safety import SafetySubject
from tests.conftest import META

WS = "local"
STORY = "The hall is quiet.\n\nChoices:\n1. Go left\n2. Go right\n"


def say(text: str) -> TurnRequest:
    return TurnRequest.build(action=None, text=text, choice=None)


def act(action: TurnAction, text: str | None = None) -> TurnRequest:
    return TurnRequest.build(action=action, text=text, choice=None)


async def new_story(engine: Engine) -> str:
    created = await engine.sessions.create(WS, kind=SessionKind.STORY, title="T", metadata=META)
    session_id: str = created["id"]
    return session_id


async def run_turn(engine: Engine, session_id: str, request: TurnRequest) -> dict[str, Any]:
    handle = await engine.turns.start(WS, session_id, request, META)
    return await handle.wait()


async def event_types(engine: Engine, session_id: str) -> list[str]:
    return [e.type for e in await engine.sessions.events(WS, session_id, after=0, limit=1000)]


async def test_story_turn_commits_reply_and_parsed_choices(engine: Engine) -> None:
    engine.caps.model = ScriptedModel([STORY])
    sid = await new_story(engine)
    turn = await run_turn(engine, sid, say("I enter"))
    assert turn["status"] == "completed"
    assert turn["reply"]["text"] == "The hall is quiet."
    assert [c["text"] for c in turn["reply"]["choices"]] == ["Go left", "Go right"]
    messages = await engine.sessions.messages(WS, sid, after_turn=0, limit=10)
    assert [(m["role"], m["content"]) for m in messages] == [
        ("player", "I enter"),
        ("narrator", "The hall is quiet."),
    ]


async def test_choice_resolves_to_the_offered_text(engine: Engine) -> None:
    engine.caps.model = ScriptedModel([STORY])
    sid = await new_story(engine)
    await run_turn(engine, sid, say("I enter"))
    turn = await run_turn(engine, sid, TurnRequest.build(action=None, text=None, choice=2))
    assert turn["input"] == {"text": "Go right", "choice": 2}


async def test_choice_out_of_range_is_refused_before_anything_runs(engine: Engine) -> None:
    engine.caps.model = ScriptedModel([STORY])
    sid = await new_story(engine)
    await run_turn(engine, sid, say("I enter"))
    before = await event_types(engine, sid)
    with pytest.raises(InvalidInput, match="choice 5 does not exist"):
        await engine.turns.start(WS, sid, TurnRequest.build(action=None, text=None, choice=5), META)
    assert await event_types(engine, sid) == before


async def test_regenerate_keeps_every_alternative(engine: Engine) -> None:
    engine.caps.model = ScriptedModel(["First telling.", "Second telling."])
    sid = await new_story(engine)
    await run_turn(engine, sid, say("Knock"))
    turn = await run_turn(engine, sid, act(TurnAction.REGENERATE))
    assert turn["number"] == 1 and turn["reply"]["text"] == "Second telling."
    [_, narrator] = await engine.sessions.messages(WS, sid, after_turn=0, limit=10)
    assert narrator["content"] == "Second telling."
    assert [a["text"] for a in narrator["alternatives"]] == ["First telling.", "Second telling."]
    assert narrator["active"] == 1


async def test_a_choice_after_regenerate_picks_from_the_new_telling(engine: Engine) -> None:
    engine.caps.model = ScriptedModel(
        [STORY, "The hall is loud.\n\nChoices:\n1. Shout back\n2. Hide\n", "Then..."]
    )
    sid = await new_story(engine)
    await run_turn(engine, sid, say("I enter"))
    await run_turn(engine, sid, act(TurnAction.REGENERATE))
    turn = await run_turn(engine, sid, TurnRequest.build(action=None, text=None, choice=2))
    assert turn["input"] == {"text": "Hide", "choice": 2}


async def test_regenerate_prompt_excludes_the_reply_it_replaces(engine: Engine) -> None:
    model = ScriptedModel(["First telling.", "Second telling."])
    engine.caps.model = model
    sid = await new_story(engine)
    await run_turn(engine, sid, say("Knock"))
    await run_turn(engine, sid, act(TurnAction.REGENERATE))
    prompt = model.calls[-1]
    assert [m.content for m in prompt[1:]] == ["Knock"]


async def test_edit_then_regenerate_replaces_the_last_input(engine: Engine) -> None:
    model = ScriptedModel(["Reply one.", "Reply two."])
    engine.caps.model = model
    sid = await new_story(engine)
    await run_turn(engine, sid, say("Knokc"))
    turn = await run_turn(engine, sid, act(TurnAction.EDIT, "Knock twice"))
    assert turn["input"]["text"] == "Knock twice"
    assert model.calls[-1][-1].content == "Knock twice"
    player, narrator = await engine.sessions.messages(WS, sid, after_turn=0, limit=10)
    assert player["content"] == "Knock twice" and narrator["content"] == "Reply two."


async def test_continue_adds_a_turn_without_player_words(engine: Engine) -> None:
    engine.caps.model = ScriptedModel(["It begins.", "It goes on."])
    sid = await new_story(engine)
    await run_turn(engine, sid, say("Begin"))
    turn = await run_turn(engine, sid, act(TurnAction.CONTINUE))
    assert turn["number"] == 2 and turn["input"]["text"] is None
    roles = [m["role"] for m in await engine.sessions.messages(WS, sid, after_turn=0, limit=10)]
    assert roles == ["player", "narrator", "narrator"]


async def test_history_reaches_the_narrator_in_order(engine: Engine) -> None:
    model = ScriptedModel(["A.", "B.", "C."])
    engine.caps.model = model
    sid = await new_story(engine)
    for text in ("one", "two", "three"):
        await run_turn(engine, sid, say(text))
    contents = [m.content for m in model.calls[-1][1:]]
    assert contents == ["one", "A.", "two", "B.", "three"]


async def test_cancel_mid_stream_stops_generation_and_leaves_no_partial_turn(
    engine: Engine,
) -> None:
    model = ScriptedModel(["word " * 200], token_delay=0.01)
    engine.caps.model = model
    sid = await new_story(engine)
    handle = await engine.turns.start(WS, sid, say("Talk"), META)
    async for event in handle.subscribe():
        if event.name == "token" and event.seq >= 5:
            assert handle.cancel()
            break
    turn = await handle.wait()
    assert turn["status"] == "cancelled" and turn["reply"] is None
    await asyncio.sleep(0.05)
    assert model.tokens_sent < 50  # the stream stopped, it did not run to the end
    assert await engine.sessions.messages(WS, sid, after_turn=0, limit=10) == []
    assert await event_types(engine, sid) == ["session.created", "turn.cancelled"]
    session = await engine.sessions.get(WS, sid)
    assert session["turn_count"] == 0


async def test_model_error_yields_error_event_and_no_partial_turn(engine: Engine) -> None:
    engine.caps.model = ScriptedModel(["Half a sentence and then"], fail_after=3)
    sid = await new_story(engine)
    handle = await engine.turns.start(WS, sid, say("Go"), META)
    names = [e.name async for e in handle.subscribe()]
    assert names[0] == "start" and names[-1] == "error" and "done" not in names
    with pytest.raises(ModelError):
        await handle.wait()
    assert await engine.sessions.messages(WS, sid, after_turn=0, limit=10) == []
    assert await event_types(engine, sid) == ["session.created", "turn.failed"]


async def test_a_bug_in_a_stage_ends_the_turn_with_an_error_and_records_it(
    engine: Engine,
) -> None:
    def broken(_: object) -> str:
        raise RuntimeError("a bug, not a model failure")

    engine.caps.model = ScriptedModel(broken)
    sid = await new_story(engine)
    handle = await engine.turns.start(WS, sid, say("Go"), META)
    events = [e async for e in handle.subscribe()]
    assert events[0].name == "start" and events[-1].name == "error"
    assert events[-1].data["type"] == "TurnCrashed"
    assert "a bug" not in events[-1].data["detail"]  # internals stay in the log
    with pytest.raises(TaleweaverError):
        await handle.wait()
    assert await event_types(engine, sid) == ["session.created", "turn.failed"]
    # The session is free again: the next turn runs.
    engine.caps.model = ScriptedModel(["The door opens."])
    assert (await (await engine.turns.start(WS, sid, say("Again"), META)).wait())[
        "status"
    ] == "completed"


async def test_a_second_turn_while_one_runs_is_a_clear_conflict(engine: Engine) -> None:
    engine.caps.model = ScriptedModel(["slow " * 50], token_delay=0.01)
    sid = await new_story(engine)
    first = await engine.turns.start(WS, sid, say("One"), META)
    with pytest.raises(Conflict, match="already running"):
        await engine.turns.start(WS, sid, say("Two"), META)
    assert (await first.wait())["status"] == "completed"


async def test_concurrent_turns_on_two_replicas_one_wins_one_conflicts(
    make_engine: Callable[..., Any],
) -> None:
    a: Engine = await make_engine(ScriptedModel(["From A."], token_delay=0.005))
    b: Engine = await make_engine(ScriptedModel(["From B."], token_delay=0.005))
    sid = await new_story(a)
    ha = await a.turns.start(WS, sid, say("A speaks"), META)
    hb = await b.turns.start(WS, sid, say("B speaks"), META)
    results = await asyncio.gather(ha.wait(), hb.wait(), return_exceptions=True)
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(wins) == 1 and len(losses) == 1
    messages = await a.sessions.messages(WS, sid, after_turn=0, limit=10)
    assert [m["content"] for m in messages][1] in ("From A.", "From B.")
    assert len(messages) == 2  # the loser left nothing behind
    # Nothing is lost: the loser can retry on the new version and succeed.
    retry = await run_turn(b if losses[0] is results[1] else a, sid, say("again"))
    assert retry["number"] == 2


class RecordingChecker:
    def __init__(self, block: str | None = None) -> None:
        self.seen: list[tuple[str, str]] = []
        self.block = block

    async def check(self, subject: SafetySubject) -> SafetyVerdict:
        self.seen.append((subject.direction, subject.text))
        if self.block is not None and self.block in subject.text:
            return SafetyVerdict(
                level="blocked",
                categories=("test",),
                action="replaced",
                response="Let's pause here.",
            )
        return SafetyVerdict()


@pytest.mark.parametrize(
    "action",
    [
        TurnAction.SAY,
        TurnAction.CHOOSE,
        TurnAction.CONTINUE,
        TurnAction.REGENERATE,
        TurnAction.EDIT,
    ],
)
async def test_every_kind_of_turn_passes_both_safety_checks(
    engine: Engine, action: TurnAction
) -> None:
    checker = RecordingChecker()
    engine.caps.safety = checker
    engine.caps.model = ScriptedModel([STORY])
    sid = await new_story(engine)
    await run_turn(engine, sid, say("Start"))
    checker.seen.clear()
    request = {
        TurnAction.SAY: say("Look"),
        TurnAction.CHOOSE: TurnRequest.build(action=None, text=None, choice=1),
        TurnAction.CONTINUE: act(TurnAction.CONTINUE),
        TurnAction.REGENERATE: act(TurnAction.REGENERATE),
        TurnAction.EDIT: act(TurnAction.EDIT, "Start again"),
    }[action]
    await run_turn(engine, sid, request)
    directions = [d for d, _ in checker.seen]
    assert directions[-1] == "output"
    if action != TurnAction.CONTINUE:  # continue has no player words to check
        assert directions[0] == "input"


async def test_blocked_input_never_reaches_the_narrator(engine: Engine) -> None:
    engine.caps.safety = RecordingChecker(block="forbidden")
    model = ScriptedModel([STORY])
    engine.caps.model = model
    sid = await new_story(engine)
    handle = await engine.turns.start(WS, sid, say("something forbidden"), META)
    names = [e.name async for e in handle.subscribe()]
    turn = await handle.wait()
    assert model.calls == []
    assert "safety" in names
    assert turn["safety"]["level"] == "blocked"
    assert turn["reply"]["text"] == "Let's pause here."


async def test_blocked_output_is_replaced_before_commit(engine: Engine) -> None:
    engine.caps.safety = RecordingChecker(block="gore")
    engine.caps.model = ScriptedModel(["Too much gore here."])
    sid = await new_story(engine)
    turn = await run_turn(engine, sid, say("Fight"))
    assert turn["reply"]["text"] == "Let's pause here."
    [_, narrator] = await engine.sessions.messages(WS, sid, after_turn=0, limit=10)
    assert "gore" not in narrator["content"]


async def test_extract_and_continuity_see_the_reply_and_are_stored(
    make_engine: Callable[..., Any],
) -> None:
    seen: list[str] = []

    class Extractor:
        async def extract(self, reply: Any) -> list[dict[str, Any]]:
            seen.append(reply.reply_text)
            return [{"kind": "entity", "name": "Mara", "confidence": 0.9}]

    class Continuity:
        async def check(self, reply: Any, artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{"kind": "duplicate", "of": artifacts[0]["name"]}]

    base: Engine = await make_engine(ScriptedModel(["Mara waves."]))
    engine: Engine = await make_engine(
        caps=Capabilities(
            model=ScriptedModel(["Mara waves."]),
            queries=base.caps.queries,
            extractor=Extractor(),
            continuity=Continuity(),
        )
    )
    sid = await new_story(engine)
    await run_turn(engine, sid, say("Hello"))
    assert seen == ["Mara waves."]
    [_, committed] = await engine.sessions.events(WS, sid, after=0, limit=10)
    assert committed.payload["artifacts"][0]["name"] == "Mara"
    assert committed.payload["findings"] == [{"kind": "duplicate", "of": "Mara"}]


async def test_context_trace_is_stored_with_the_turn(engine: Engine) -> None:
    engine.caps.model = ScriptedModel(["A."])
    sid = await new_story(engine)
    await run_turn(engine, sid, say("one"))
    await run_turn(engine, sid, say("two"))
    events = await engine.sessions.events(WS, sid, after=0, limit=10)
    trace = events[-1].payload["context"]
    assert {"source": "history", "ref": "turn 1 player", "reason": "recent"} in trace


async def test_companion_and_studio_replies_keep_lists_as_prose(engine: Engine) -> None:
    reply = "Here are ideas:\n1. A guild\n2. A river city"
    engine.caps.model = ScriptedModel([reply])
    for kind in (SessionKind.COMPANION, SessionKind.STUDIO):
        created = await engine.sessions.create(WS, kind=kind, title="K", metadata=META)
        turn = await run_turn(engine, created["id"], say("Ideas?"))
        assert turn["reply"]["text"] == reply and turn["reply"]["choices"] == []


async def test_deleted_session_takes_no_turns(engine: Engine) -> None:
    sid = await new_story(engine)
    await engine.sessions.delete(WS, sid, metadata=META)
    with pytest.raises(Exception, match="not found"):
        await engine.turns.start(WS, sid, say("Hello?"), META)
