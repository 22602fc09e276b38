"""A hostile-input corpus (tests/hostile/http_cases.json) through the real app, on
SQLite and PostgreSQL: each case gets its 4xx (or its normalised 2xx), never a 5xx,
and a refused request writes nothing anyone can list. The live channel's frames are
held to the same rules over a real WebSocket."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from taleweaver.api import create_app
from taleweaver.config import Settings
from taleweaver.engine import Engine
from tests.conftest import free_port
from tests.live_client import live
from tests.test_summaries import settings

__all__ = ["settings"]  # the key-file settings fixture PostgreSQL needs

pytestmark = pytest.mark.dialects
API = "/api/v1"
CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "hostile" / "http_cases.json").read_text()
)
# What a refused request must leave as it was: everything a client can list.
LISTINGS = ["/sessions", "/worlds", "/lorebooks", "/characters", "/workspaces"]


@asynccontextmanager
async def api(engine: Engine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c


async def _created(client: httpx.AsyncClient, path: str, body: Any, **kw: Any) -> str:
    answer = await client.post(f"{API}{path}", json=body, **kw)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


async def _world(client: httpx.AsyncClient) -> dict[str, str]:
    """A played story, a world with an entity, a lorebook with an entry, a character,
    and another workspace's world: the ids the cases' paths name."""
    session = await _created(client, "/sessions", {"kind": "story", "title": "S"})
    turn = await client.post(f"{API}/sessions/{session}/turns", json={"text": "Look"})
    assert turn.status_code == 201, turn.text
    world = await _created(client, "/worlds", {"name": "Aster"})
    await _created(client, f"/worlds/{world}/entities", {"type": "npc", "name": "Ada"})
    book = {"entries": {"0": {"key": ["dragon"], "content": "Dragons sleep."}}}
    book_id = await _created(client, "/lorebooks/import", book)
    entries = (await client.get(f"{API}/lorebooks/{book_id}")).json()["items"]
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Ada"}}
    character = await _created(client, "/characters/import", card)
    other = await _created(client, "/workspaces", {"name": "Other"})
    theirs = {"X-Workspace": other}
    other_world = await _created(client, "/worlds", {"name": "Theirs"}, headers=theirs)
    return {
        "session": session,
        "world": world,
        "other_world": other_world,
        "book": book_id,
        "entry": str(entries[0]["uid"]),
        "character": character,
        "long": "a" * 129,
    }


async def _listed(client: httpx.AsyncClient, ids: dict[str, str]) -> list[Any]:
    paths = [
        *LISTINGS,
        f"/sessions/{ids['session']}/events",
        f"/worlds/{ids['world']}/entities",
        f"/lorebooks/{ids['book']}",
        f"/characters/{ids['character']}",
    ]
    return [(await client.get(f"{API}{p}")).json() for p in paths]


def _body(case: dict[str, Any]) -> dict[str, Any]:
    if "json" in case:  # escaped as clients send it: surrogates as \\udXXX
        raw = json.dumps(case["json"])
        return {"content": raw.encode(), "headers": {"content-type": "application/json"}}
    raw = re.sub(
        r"\{\{deep:(\d+)\}\}", lambda m: "[" * int(m[1]) + "]" * int(m[1]), case.get("raw", "")
    )
    if not raw:
        return {}
    headers = {"content-type": case.get("content_type", "application/json")}
    return {"content": raw.encode("utf-8", "surrogatepass"), "headers": headers}


def server_errors(records: list[logging.LogRecord]) -> list[str]:
    """What the server logged as an error (an unhandled exception is logged so)."""
    return [r.getMessage() for r in records if r.levelno >= logging.ERROR]


async def test_every_hostile_request_is_refused_cleanly_and_writes_nothing(
    engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[str] = []
    async with api(engine, settings) as client:
        ids = await _world(client)
        for case in CASES:
            before = await _listed(client, ids)
            caplog.clear()
            request = _body(case)
            headers = {**request.pop("headers", {}), **case.get("headers", {})}
            url = API + case["path"].removeprefix(API).format(**ids)
            answer = await client.request(case["method"], url, headers=headers, **request)
            if logged := server_errors(caplog.records):
                failures.append(f"{case['name']}: the server logged {logged}")
            expected = case["expect"] if isinstance(case["expect"], list) else [case["expect"]]
            if answer.status_code not in expected:
                failures.append(f"{case['name']}: {answer.status_code} {answer.text[:200]}")
                continue
            if answer.status_code >= 400:
                problem = answer.json()
                assert problem["status"] == answer.status_code and problem["detail"]
            if "stripped" in case:
                assert answer.json()["imported"]["stripped"] == case["stripped"], case["name"]
                assert "\\u0000" not in answer.text and "\\ud800" not in answer.text
            if not case.get("writes") and await _listed(client, ids) != before:
                failures.append(f"{case['name']}: refused ({answer.status_code}) but wrote")
    assert not failures, "\n".join(failures)


# --- the live channel ---------------------------------------------------------------------


@asynccontextmanager
async def served(engine: Engine, settings: Settings) -> AsyncIterator[str]:
    """The app on `engine` under uvicorn on loopback, in this test's event loop (where
    the engine's database connections live); its base URL."""
    port = free_port()
    app = create_app(settings, engine=engine)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:  # polling a start-up, not synchronising a test
            assert not serving.done(), "the server did not start"
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


# Frames as a client's socket sends them (JSON text): what an HTTP body may not hold
# may not come in a frame either.
HOSTILE_FRAMES = {
    "NUL in the input": '{"type": "say", "text": "a\\u0000b"}',
    "lone surrogate in the input": '{"type": "say", "text": "a\\ud800b"}',
    "NUL in a key": '{"type": "typing", "typing": true, "k\\u0000": 1}',
    "NaN": '{"type": "say", "text": "hi", "n": NaN}',
    "Infinity": '{"type": "say", "text": "hi", "n": -Infinity}',
    "nested 900 deep": '{"type": "say", "text": "hi", "x": ' + "[" * 900 + "]" * 900 + "}",
    "nested 30,000 deep": "[" * 30_000 + "]" * 30_000,
    "nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "larger than a body": json.dumps({"type": "say", "text": "a" * 70_000}),
}


async def test_a_hostile_frame_gets_an_error_writes_nothing_and_the_channel_stays_open(
    engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        served(engine, settings) as base_url,
        httpx.AsyncClient(base_url=f"{base_url}{API}") as client,
    ):
        session = (await client.post("/sessions", json={"kind": "story"})).json()["id"]
        async with live(base_url, session) as channel:
            await channel.send({"type": "table.open", "policy": "free"})
            await channel.until(lambda f: f["type"] == "table" and f["table"]["open"])
            before = (await client.get(f"/sessions/{session}/events")).json()
            for name, text in HOSTILE_FRAMES.items():
                await channel.ws.send(text)
                error = await channel.next("error")
                assert (error["status"], error["title"]) == (422, "Invalid input"), name
                assert error["detail"].startswith(("the frame", "a frame")), error
            assert (await client.get(f"/sessions/{session}/events")).json() == before
            # Still open, and an input without the hostile part plays.
            await channel.send({"type": "say", "text": "ab"})
            said = await channel.next("said", "error")
            assert said["type"] == "said", said
            await channel.seen(lambda f: f["type"] == "turn.done")  # before or after "said"
        events = (await client.get(f"/sessions/{session}/events")).json()
    committed = [e for e in events if e["type"] == "turn.committed"]
    assert [e["payload"]["turn_id"] for e in committed] == [said["turn_id"]]
    assert "\\u0000" not in json.dumps(events) and "\\ud800" not in json.dumps(events)
    loud = [r for r in caplog.records if r.levelname in {"WARNING", "ERROR", "CRITICAL"}]
    assert loud == [], [r.getMessage() for r in loud]
