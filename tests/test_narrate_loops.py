"""A reply that repeats itself is stopped, written once more, and never kept looping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from taleweaver.cli.play import _turn as play_turn
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.stages.narrate import LOOP_RETRY_REASON
from taleweaver.llm import ScriptedModel
from taleweaver.llm.shape import ReplyShape, current_shape
from tests.conftest import META

WS = "local"
LOOP = "You find a map. " + "I'm going to make it into a waterproof map case. " * 30
CHOICES = "\n\nChoices:\n1. Open the map\n2. Walk to the shore\n"
GOOD = "Rain drums on the roof. A lamp flickers over the bench." + CHOICES


class ShapeRecorder:
    """A scripted model that notes the reply shape each call was made with."""

    def __init__(self, replies: Sequence[str]) -> None:
        self.model = ScriptedModel(replies)
        self.name = self.model.name
        self.shapes: list[ReplyShape] = []

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[str]:
        self.shapes.append(current_shape())
        async for piece in self.model.stream(messages, max_tokens=max_tokens):
            yield piece

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def play(engine: Engine) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    created = await engine.sessions.create(
        WS, kind=SessionKind.STORY, title="Shore", settings={"premise": "A map"}, metadata=META
    )
    request = TurnRequest.build(action=None, text="I open the chest", choice=None)
    handle = await engine.turns.start(WS, created["id"], request, META)
    events = [(e.name, e.data) async for e in handle.subscribe()]
    return await handle.wait(), events


async def test_a_looping_reply_is_stopped_and_written_again_with_stronger_penalties(
    make_engine: Callable[..., Any],
) -> None:
    model = ShapeRecorder([LOOP, GOOD])
    engine: Engine = await make_engine(model=model)
    turn, events = await play(engine)

    assert turn["status"] == "completed"
    assert turn["reply"]["text"] == "Rain drums on the roof. A lamp flickers over the bench."
    assert [c["text"] for c in turn["reply"]["choices"]] == ["Open the map", "Walk to the shore"]
    names = [name for name, _ in events]
    assert ("rewrite", {"reason": LOOP_RETRY_REASON}) in events
    # Of the looping first try, the stream showed less than two tellings of the sentence.
    before = "".join(d["text"] for n, d in events[: names.index("rewrite")] if n == "token")
    assert before.count("waterproof map case") <= 2
    assert [s.retry for s in model.shapes] == [False, True]
    assert all(s.choices and s.brief is not None for s in model.shapes)


async def test_when_the_retry_loops_too_the_reply_is_kept_up_to_the_repetition(
    make_engine: Callable[..., Any],
) -> None:
    model = ShapeRecorder([LOOP + CHOICES])
    engine: Engine = await make_engine(model=model)
    turn, events = await play(engine)

    assert turn["status"] == "completed"
    kept = "You find a map. I'm going to make it into a waterproof map case."
    assert turn["reply"]["text"] == kept
    # The choices after the loop still reach the player.
    assert [c["text"] for c in turn["reply"]["choices"]] == ["Open the map", "Walk to the shore"]
    assert len(model.shapes) == 2  # retried once, not again
    shown = "".join(d["text"] for n, d in events if n == "token")
    assert shown.count("waterproof map case") <= 4


async def test_play_says_a_looping_reply_is_written_again_for_repeating_itself(
    make_engine: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    engine: Engine = await make_engine(model=ShapeRecorder([LOOP, GOOD]))
    created = await engine.sessions.create(
        WS, kind=SessionKind.STORY, title="Shore", settings={}, metadata=META
    )
    request = TurnRequest.build(action=None, text="I open the chest", choice=None)

    await play_turn(engine, created["id"], request)

    shown = capsys.readouterr().out
    assert "\n[the reply started repeating itself and is written again]\n" in shown
    assert "content rule" not in shown  # nothing broke a rule
    assert shown.rstrip().endswith("2. Walk to the shore")
