"""Helpers for companion-session tests: characters, sessions and turns on an engine."""

from __future__ import annotations

from typing import Any

from tests.data.cards import factory as f

from taleweaver.domain.events import EventMetadata
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine

WS = "local"
ME = "local"
JSONDict = dict[str, Any]


async def new_character(engine: Engine, card: JSONDict | None = None) -> str:
    found = await engine.characters.import_card(
        WS, f.dumps(card or f.v3_card()), filename=None, actor=ME
    )
    character_id: str = found["id"]
    return character_id


async def start(engine: Engine, *character_ids: str, **kwargs: Any) -> str:
    return await engine.characters.start_session(
        WS, list(character_ids), owner_id=ME, metadata=EventMetadata(actor=ME), **kwargs
    )


async def play(
    engine: Engine, session_id: str, text: str | None = None, *, action: TurnAction | None = None
) -> JSONDict:
    request = TurnRequest.build(action=action, text=text, choice=None)
    handle = await engine.turns.start(WS, session_id, request, EventMetadata(actor=ME))
    return await handle.wait()


async def messages(engine: Engine, session_id: str) -> list[JSONDict]:
    return await engine.sessions.messages(WS, session_id, after_turn=0, limit=100)


def system_text(call: list[ChatMessage]) -> str:
    return call[0].content
