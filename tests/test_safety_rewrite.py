"""Output safety's rewrite is the narrate stage run again: it streams, splits the
choices and their tags, and is checked again like any reply."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taleweaver.domain.events import EventMetadata
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel

WS = "local"
META = EventMetadata(actor="test")

BLOCKED = (
    "Spiders crawl over the harbour wall.\n\nChoices:\n"
    "1. [avoidance:escape] Run from the spiders\n"
    "2. [narrative] Watch them\n"
)
REWRITTEN = (
    "The harbour is quiet and the tide is low.\n\nChoices:\n"
    "1. [grounding:notice] Name three things you can see\n"
    "2. [narrative] Walk along the pier\n"
)


async def _engine(make_engine: Callable[..., Any], *replies: str) -> tuple[Engine, ScriptedModel]:
    model = ScriptedModel(list(replies))
    engine: Engine = await make_engine(model)
    engine.safety.checker.narrator = model
    await engine.safety.content.set_rules(
        WS, "workspace", content_warnings=[], forbidden=["spiders"], locale=None
    )
    return engine, model


async def _therapy_turn(engine: Engine) -> tuple[str, dict[str, Any], list[tuple[str, Any]]]:
    created = await engine.sessions.create(
        WS, kind=SessionKind.THERAPY, title="Harbour", settings={}, owner_id=None, metadata=META
    )
    sid = str(created["id"])
    request = TurnRequest.build(action=None, text="I sit down", choice=None)
    handle = await engine.turns.start(WS, sid, request, META)
    turn = await handle.wait()
    return sid, turn, [(e.name, e.data) for e in handle.events]


async def test_a_rewritten_therapy_reply_shows_no_raw_tag_and_keeps_the_rewrites_tags(
    make_engine: Callable[..., Any],
) -> None:
    engine, model = await _engine(make_engine, BLOCKED, REWRITTEN)
    sid, turn, streamed = await _therapy_turn(engine)

    assert turn["safety"]["action"] == "regenerated"
    shown = [c["text"] for c in turn["reply"]["choices"]]
    assert shown == ["Name three things you can see", "Walk along the pier"]
    assert "[" not in turn["reply"]["text"] + "".join(shown)
    # The rewrite streamed after a rewrite marker, with its choices split and untagged.
    names = [name for name, _ in streamed]
    after = names[names.index("rewrite") :]
    assert "token" in after and "choices" in after
    tokens = "".join(d["text"] for n, d in streamed[names.index("rewrite") :] if n == "token")
    assert "quiet" in tokens and "Choices:" not in tokens and "[" not in tokens
    choices_events = [d for n, d in streamed if n == "choices"]
    assert [c["text"] for c in choices_events[-1]["choices"]] == shown
    # The stored choice tags are the rewrite's, never the discarded reply's.
    state = await engine.repository.open(WS, sid)
    assert state.last_turn is not None
    assert state.last_turn.reply.choice_tags == ["grounding:notice", "narrative"]
    assert len(model.calls) == 2


async def test_a_rewrite_that_breaks_the_rules_again_is_replaced_without_its_tags(
    make_engine: Callable[..., Any],
) -> None:
    engine, _ = await _engine(make_engine, BLOCKED, BLOCKED)
    sid, turn, _ = await _therapy_turn(engine)

    assert turn["safety"]["action"] == "replaced"
    assert "spiders" not in turn["reply"]["text"].lower() and turn["reply"]["choices"] == []
    state = await engine.repository.open(WS, sid)
    assert state.last_turn is not None
    assert state.last_turn.reply.choices == [] and state.last_turn.reply.choice_tags == []
