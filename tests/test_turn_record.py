"""Every writer of turn events builds a `TurnRecord`, so their payloads agree."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from taleweaver.characters.companions import greeting_event
from taleweaver.domain.events import EventMetadata, NewEvent, RecordedEvent
from taleweaver.domain.sessions import EventType, Reply, SessionKind, SessionState
from taleweaver.domain.turn_record import NOT_CHECKED, MessageIds, TurnInput, TurnRecord
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.interop import sillytavern
from taleweaver.llm import ScriptedModel

WS = "local"
META = EventMetadata(actor="test")
AT = datetime(2026, 1, 1, tzinfo=UTC)
STORY = "The hall is quiet.\n\nChoices:\n1. Go left\n2. Go right\n"


def _ids() -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"id{next(counter)}"


async def _pipeline_payload(make_engine: Callable[..., Any]) -> dict[str, Any]:
    engine: Engine = await make_engine(ScriptedModel([STORY]))
    created = await engine.sessions.create(
        WS, kind=SessionKind.STORY, title="Hall", settings={}, owner_id=None, metadata=META
    )
    request = TurnRequest.build(action=None, text="I enter", choice=None)
    handle = await engine.turns.start(WS, str(created["id"]), request, META)
    await handle.wait()
    events = await engine.repository.store.read_stream(str(created["id"]))
    [committed] = [e for e in events if e.type == EventType.TURN_COMMITTED]
    return committed.payload


async def test_every_writer_stores_the_same_turn_committed_fields(
    make_engine: Callable[..., Any],
) -> None:
    pipeline = await _pipeline_payload(make_engine)
    greeting = greeting_event("c1", 0, "Hello there.").payload
    turn = sillytavern.ChatTurn({"mes": "Hi", "is_user": True}, {"mes": "Hello.", "name": "A"})
    [imported] = sillytavern.turn_events(turn, 1, _ids())
    core = set(pipeline)
    assert core <= set(greeting.keys()) and core <= set(imported.payload.keys())
    assert imported.payload["safety"]["output"]["action"] == "not_checked"
    assert imported.payload["context"] == [] and imported.payload["findings"] == []


def test_an_imported_swipe_is_a_regenerated_record_with_the_same_fields() -> None:
    line = {"mes": "B", "swipes": ["A", "B"], "swipe_id": 1, "name": "A"}
    committed, regenerated = sillytavern.turn_events(sillytavern.ChatTurn(None, line), 1, _ids())
    assert regenerated.type == EventType.TURN_REGENERATED
    shared = set(committed.payload) - {"input", "message_ids"}
    assert shared <= set(regenerated.payload)


def test_a_record_keeps_tags_only_when_a_choice_has_one() -> None:
    def record(tags: list[str | None]) -> TurnRecord:
        reply = Reply("Text", ["a", "b"], tags)
        return TurnRecord("t", 1, "say", reply, message_ids=MessageIds("p", "n"))

    assert "choice_tags" not in record([None, None]).to_event().payload["reply"]
    tagged = record(["x", None]).to_event().payload["reply"]
    assert tagged["choice_tags"] == ["x", None]
    assert record([]).safety_output == NOT_CHECKED


def test_no_module_but_the_turn_record_spells_out_a_turn_event() -> None:
    import re
    from pathlib import Path

    import taleweaver

    root = Path(taleweaver.__file__).parent
    spelled = re.compile(
        r"NewEvent\(\s*(EventType\.TURN_(COMMITTED|REGENERATED|EDITED)"
        r"|[\"']turn\.(committed|regenerated|edited))"
    )
    found = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if spelled.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []


# --- every writer folds to the same state ---------------------------------------------

_text = st.text(alphabet="abc xyz", min_size=1, max_size=8)
_chat_turn = st.tuples(st.one_of(st.none(), _text), st.lists(_text, min_size=1, max_size=3))


def _fold(events: list[NewEvent]) -> tuple[object, ...]:
    state = SessionState(id="s")
    for version, new in enumerate(events, start=1):
        state.apply(RecordedEvent("s", WS, version, version, new.type, 1, new.payload, {}, AT))
    last = state.last_turn
    assert last is not None
    return (
        state.turn_count,
        last.number,
        last.input_text,
        [r.text for r in last.replies],
        last.reply.text,
    )


@given(st.lists(_chat_turn, min_size=1, max_size=5))
def test_an_imported_chat_and_the_same_turns_played_fold_to_the_same_state(
    turns: list[tuple[str | None, list[str]]],
) -> None:
    ids = _ids()
    imported: list[NewEvent] = []
    played: list[NewEvent] = []
    for number, (said, swipes) in enumerate(turns, start=1):
        user = {"mes": said, "is_user": True} if said is not None else None
        line = {"mes": swipes[-1], "swipes": swipes, "swipe_id": len(swipes) - 1}
        imported += sillytavern.turn_events(sillytavern.ChatTurn(user, line), number, ids)
        first = TurnRecord(
            ids(),
            number,
            "say" if said else "continue",
            Reply(swipes[0]),
            input=TurnInput(said),
            message_ids=MessageIds(ids(), ids()),
        )
        played.append(first.to_event())
        for text in swipes[1:]:
            played.append(TurnRecord(ids(), number, "regenerate", Reply(text)).to_event())
    assert _fold(imported) == _fold(played)
