"""Feature flags per workspace: set by admins over HTTP, audited, read once per turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from taleweaver.auth import Role
from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.flags import DEFAULT_FLAGS, FLAGS, LOOP_RETRY, WORLD_EXTRACTION
from taleweaver.domain.prompt import ChatMessage
from taleweaver.engine import Engine
from taleweaver.engine.stages.narrate import LOOP_RETRY_REASON
from taleweaver.llm import ScriptedModel
from tests.test_narrate_loops import GOOD, LOOP, play
from tests.test_world_review import GOOD as EXTRACTED
from tests.test_world_review import extracting

WS = "local"
KEPT = "You find a map. I'm going to make it into a waterproof map case."


@dataclass
class People:
    workspace: str
    users: dict[str, str]
    keys: dict[str, str]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}", "X-Workspace": self.workspace}


async def _people(settings: Settings) -> People:
    """A workspace with an owner, an admin and a player, each with an API key."""
    engine = await Engine.open(settings, model=ScriptedModel())
    try:
        users, keys = {}, {}
        for name in ("owner", "admin", "player"):
            user = await engine.accounts.create_user(
                f"{name}@example.com", password="correct horse battery"
            )
            users[name] = user["id"]
            keys[name], _ = await engine.credentials.create_api_key(
                user["id"], "flags", ["admin"], None
            )
        workspace = (await engine.accounts.create_workspace(users["owner"], "A", sensitive=False))[
            "id"
        ]
        for name in ("admin", "player"):
            await engine.accounts.set_member(
                workspace, users[name], Role(name), actor="test", actor_role=Role.OWNER
            )
    finally:
        await engine.close()
    return People(workspace, users, keys)


def _flags(client: httpx.Client, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    response = client.get("/api/v1/flags", headers=headers)
    assert response.status_code == 200, response.text
    return {f["name"]: f for f in response.json()}


def test_an_admin_turns_world_extraction_off_over_http_and_the_next_turn_extracts_nothing(
    serve: Callable[..., httpx.Client], settings: Settings
) -> None:
    people = asyncio.run(_people(settings))
    script = extracting("Thessaly Crane lights the lamps.", [EXTRACTED])
    client = serve(ScriptedModel(script), require_login=True, rate_limit="100000/minute")
    admin = people.headers("admin")

    listed = _flags(client, people.headers("player"))
    assert set(listed) == set(FLAGS)
    assert listed[WORLD_EXTRACTION] | {"description": ""} == {
        "name": WORLD_EXTRACTION,
        "description": "",
        "default": True,
        "enabled": True,
        "updated_at": None,
        "updated_by": None,
    }
    wid = client.post("/api/v1/worlds", json={"name": "Saltmarsh"}, headers=admin).json()["id"]
    sid = client.post(
        "/api/v1/sessions",
        json={"kind": "story", "title": "T", "settings": {"world_id": wid}},
        headers=admin,
    ).json()["id"]

    def turn() -> list[dict[str, Any]]:
        played = client.post(f"/api/v1/sessions/{sid}/turns", json={"text": "Go"}, headers=admin)
        assert played.status_code == 201, played.text
        queue = client.get(f"/api/v1/worlds/{wid}/review", headers=admin)
        assert queue.status_code == 200, queue.text
        result: list[dict[str, Any]] = queue.json()
        return result

    proposed = turn()
    assert proposed and script.calls["extract"] == 1  # type: ignore[attr-defined]

    off = client.put(f"/api/v1/flags/{WORLD_EXTRACTION}", json={"enabled": False}, headers=admin)
    assert off.status_code == 200, off.text
    assert off.json()["enabled"] is False and off.json()["updated_by"] == people.users["admin"]
    assert off.json()["updated_at"] is not None
    # Every member sees what the workspace runs with.
    assert _flags(client, people.headers("player"))[WORLD_EXTRACTION]["enabled"] is False

    assert turn() == proposed  # nothing new proposed for review
    assert script.calls["extract"] == 1  # type: ignore[attr-defined]  # no model call either

    back = client.delete(f"/api/v1/flags/{WORLD_EXTRACTION}", headers=admin)
    assert back.status_code == 200, back.text
    assert back.json()["enabled"] is True and back.json()["updated_by"] is None
    turn()
    assert script.calls["extract"] == 2  # type: ignore[attr-defined]

    audit = client.get(f"/api/v1/workspaces/{people.workspace}/audit", headers=admin).json()
    changes = [
        (e["action"], e["target"], e["actor"], e["details"])
        for e in audit
        if e["action"].startswith("flag.")
    ]
    assert changes == [
        ("flag.set", WORLD_EXTRACTION, people.users["admin"], {"enabled": False, "was": True}),
        ("flag.cleared", WORLD_EXTRACTION, people.users["admin"], {"enabled": True, "was": False}),
    ]


def test_only_admins_set_flags_and_unknown_flags_are_refused(
    serve: Callable[..., httpx.Client], settings: Settings
) -> None:
    people = asyncio.run(_people(settings))
    client = serve(ScriptedModel(), require_login=True, rate_limit="100000/minute")
    player = people.headers("player")

    refused = client.put(f"/api/v1/flags/{LOOP_RETRY}", json={"enabled": False}, headers=player)
    assert refused.status_code == 403, refused.text
    assert client.delete(f"/api/v1/flags/{LOOP_RETRY}", headers=player).status_code == 403
    assert _flags(client, player)[LOOP_RETRY]["updated_by"] is None  # nothing was written

    owner = people.headers("owner")
    unknown = client.put("/api/v1/flags/warp_drive", json={"enabled": True}, headers=owner)
    assert unknown.status_code == 422, unknown.text
    assert "warp_drive" in unknown.json()["detail"] and LOOP_RETRY in unknown.json()["detail"]
    assert client.delete("/api/v1/flags/warp_drive", headers=owner).status_code == 422
    not_a_bool = client.put(f"/api/v1/flags/{LOOP_RETRY}", json={"enabled": "no"}, headers=owner)
    assert not_a_bool.status_code == 422
    assert client.get("/api/v1/flags").status_code == 401
    assert _flags(client, owner)[LOOP_RETRY]["updated_by"] is None

    set_by_owner = client.put(f"/api/v1/flags/{LOOP_RETRY}", json={"enabled": False}, headers=owner)
    assert set_by_owner.status_code == 200 and set_by_owner.json()["enabled"] is False


@pytest.mark.dialects
async def test_with_loop_retry_off_a_looping_reply_is_kept_not_rewritten(
    make_engine: Callable[..., Any],
) -> None:
    looping = LOOP + "\n\nChoices:\n1. Go\n"
    model = ScriptedModel([looping, looping, GOOD])
    engine: Engine = await make_engine(model=model)
    await engine.flags.set(WS, LOOP_RETRY, False, actor="admin-1")

    turn, events = await play(engine)
    assert turn["status"] == "completed"
    assert turn["reply"]["text"] == KEPT
    assert "rewrite" not in [name for name, _ in events]
    assert len(model.calls) == 1

    [state] = [s for s in await engine.flags.list(WS) if s.name == LOOP_RETRY]
    assert (state.enabled, state.default, state.updated_by) == (False, True, "admin-1")
    await engine.flags.clear(WS, LOOP_RETRY, actor="admin-1")
    assert await engine.flags.read(WS) == DEFAULT_FLAGS
    # Back to the default: the same looping reply is stopped and written again.
    _, events = await play(engine)
    assert ("rewrite", {"reason": LOOP_RETRY_REASON}) in events

    entries = [e for e in await engine.audit.entries(workspace_id=WS) if e["target"] == LOOP_RETRY]
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("flag.set", "admin-1"),
        ("flag.cleared", "admin-1"),
    ]


class GatedModel:
    """A scripted model whose first reply waits at a gate, so a test can act mid-turn."""

    def __init__(self, replies: Sequence[str]) -> None:
        self.model = ScriptedModel(replies)
        self.name = self.model.name
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[str]:
        self.entered.set()
        await self.gate.wait()
        async for piece in self.model.stream(messages, max_tokens=max_tokens):
            yield piece

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.mark.dialects
async def test_a_flag_flipped_while_a_turn_runs_waits_for_the_next_turn(
    make_engine: Callable[..., Any],
) -> None:
    model = GatedModel([LOOP, GOOD, LOOP])
    engine: Engine = await make_engine(model=model)
    running = asyncio.create_task(play(engine))
    await asyncio.wait_for(model.entered.wait(), timeout=10)
    await engine.flags.set(WS, LOOP_RETRY, False, actor="admin-1")
    model.gate.set()
    turn, events = await asyncio.wait_for(running, timeout=30)

    # The running turn kept the flags it started with: its looping reply was rewritten.
    assert ("rewrite", {"reason": LOOP_RETRY_REASON}) in events
    assert turn["reply"]["text"].startswith("Rain drums on the roof.")
    # The next turn reads the flag as set: the loop is kept, not rewritten.
    turn, events = await play(engine)
    assert "rewrite" not in [name for name, _ in events]
    assert turn["reply"]["text"] == KEPT


def test_the_registry_refuses_names_it_does_not_know() -> None:
    assert all(f.description and f.name == name for name, f in FLAGS.items())
    with pytest.raises(InvalidInput, match="unknown feature flag 'nope'"):
        DEFAULT_FLAGS.enabled("nope")
