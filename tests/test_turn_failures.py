"""An SSE turn that fails, for any reason, ends with `error` and a recorded
`turn.failed`, on SQLite and PostgreSQL; a reply that can be stored ends with
`done` and reads back. Neither leaves the session unreadable."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource

from taleweaver.config import Settings
from taleweaver.domain.prompt import ChatMessage
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from tests.test_hostile_input import api
from tests.test_summaries import settings

__all__ = ["settings"]  # the key-file settings fixture PostgreSQL needs
pytestmark = pytest.mark.dialects
API = "/api/v1"
# A model's reply with a NUL or a lone surrogate (no database keeps either) is
# cleaned as it streams; a commit the store still refuses is recorded as failed.


def _broken(_: Sequence[ChatMessage]) -> str:
    raise RuntimeError("a bug, not a model failure")


async def _stream(client: httpx.AsyncClient, session: str) -> list[tuple[str, Any]]:
    url = f"{API}/sessions/{session}/turns"
    headers = {"Accept": "text/event-stream"}
    async with client.stream("POST", url, json={"text": "I go in"}, headers=headers) as answer:
        assert answer.status_code == 201
        return [
            (sse.event, json.loads(sse.data))
            async for sse in EventSource(answer).aiter_sse()
            if sse.data
        ]


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(ScriptedModel(_broken), id="bug-in-a-stage"),
        pytest.param(ScriptedModel(["The door \x00 opens."]), id="nul-in-the-reply"),
        pytest.param(
            ScriptedModel(["The door \ud800 opens."]),
            id="surrogate-in-the-reply",
        ),
    ],
)
async def test_a_turn_ends_with_error_and_turn_failed_or_done_and_reads_back(
    engine: Engine, settings: Settings, model: ScriptedModel
) -> None:
    engine.caps.model = model
    async with api(engine, settings) as client:
        made = await client.post(f"{API}/sessions", json={"kind": "story", "title": "T"})
        session = made.json()["id"]
        frames = await _stream(client, session)
        names = [name for name, _ in frames]
        assert names[0] == "start" and names[-1] in ("done", "error"), names
        logged = await client.get(f"{API}/sessions/{session}/events")
        assert logged.status_code == 200, logged.text
        types = [e["type"] for e in logged.json()]
        if names[-1] == "error":
            assert frames[-1][1]["detail"]
            assert types[-1] == "turn.failed", types
        else:
            listed = await client.get(f"{API}/sessions/{session}/messages")
            assert listed.status_code == 200, listed.text
            assert "\x00" not in listed.text and "\\u0000" not in listed.text
        for path in (f"/sessions/{session}", f"/sessions/{session}/messages"):
            read = await client.get(f"{API}{path}")
            assert read.status_code == 200, (path, read.text)
