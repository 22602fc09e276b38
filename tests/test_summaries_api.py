"""The summaries routes over the real app (both backends): list, rebuild, not found."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from taleweaver.api import create_app
from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from tests.test_summaries import long_session, settings, story_and_summaries, summarise

__all__ = ["settings"]  # the key-file settings fixture, shared with the engine tests

MakeEngine = Callable[..., Any]
API = "/api/v1"


@asynccontextmanager
async def api(engine: Engine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app over the test engine, as the local single user."""
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c


async def test_listing_shows_each_summary_with_its_range_model_and_sources(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine(ScriptedModel(story_and_summaries))
    session_id = await long_session(engine, 200, special={7: ("I meet Ada Lark.", "Hi.")})
    await summarise(engine, session_id)

    async with api(engine, settings) as client:
        page = (await client.get(f"{API}/sessions/{session_id}/summaries")).json()
        level_two = (
            await client.get(f"{API}/sessions/{session_id}/summaries", params={"level": 2})
        ).json()

    assert page["total"] == 11 and page["in_progress"] is False
    first = page["items"][0]
    assert (first["ref"], first["text"], first["method"]) == (
        "L2 turns 1-200",
        "Names: Ada Lark.",
        "model",
    )
    assert first["model"] == "scripted" and first["stale"] is False
    assert [s["first_turn"] for s in first["sources"]] == list(range(1, 200, 20))
    second = page["items"][1]
    assert second["ref"] == "L1 turns 1-20"
    assert second["sources"][6]["number"] == 7 and len(second["sources"][6]["message_ids"]) == 2
    assert [i["ref"] for i in level_two["items"]] == ["L2 turns 1-200"]


async def test_rebuild_marks_everything_stale_and_redoes_it_in_the_background(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine(ScriptedModel(story_and_summaries))
    session_id = await long_session(engine, 40)
    await summarise(engine, session_id)

    async with api(engine, settings) as client:
        accepted = await client.post(f"{API}/sessions/{session_id}/summaries/rebuild")
        await engine.summaries.settle()
        page = (await client.get(f"{API}/sessions/{session_id}/summaries")).json()

    assert accepted.status_code == 202
    assert accepted.json()["marked_stale"] == 2
    assert [(i["ref"], i["stale"]) for i in page["items"]] == [
        ("L1 turns 1-20", False),
        ("L1 turns 21-40", False),
    ]


async def test_an_unknown_session_is_not_found(make_engine: MakeEngine, settings: Settings) -> None:
    engine: Engine = await make_engine(ScriptedModel())

    async with api(engine, settings) as client:
        listed = await client.get(f"{API}/sessions/nope/summaries")
        rebuilt = await client.post(f"{API}/sessions/nope/summaries/rebuild")

    assert (listed.status_code, rebuilt.status_code) == (404, 404)
    assert listed.headers["content-type"].startswith("application/problem+json")


async def test_bad_paging_is_refused_with_a_clear_error(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine(ScriptedModel())
    session_id = await long_session(engine, 1)

    async with api(engine, settings) as client:
        response = await client.get(
            f"{API}/sessions/{session_id}/summaries", params={"level": 0, "limit": 5000}
        )

    assert response.status_code == 422
