"""Choosing a telling: after a retell, the player picks which telling of the last reply
the story goes on from. The narrator reads it next; reopening, forks, bundles and
SillyTavern exports carry it; only the last reply's tellings can be chosen."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from httpx_sse import EventSource

from taleweaver.auth import LOCAL_USER_ID
from taleweaver.config import Settings
from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.store.keys import KeyFile
from taleweaver.store.schema import messages
from tests.conftest import META

pytestmark = pytest.mark.dialects

WS = "local"
TELLINGS = ["The door creaks open.", "A guard answers the door.", "Nobody answers."]


@pytest.fixture
def settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    """A key file up front, so a sensitive workspace seals on PostgreSQL too."""
    key_file = tmp_path / "keys" / "taleweaver.keys"
    KeyFile(key_file).create()
    return Settings(
        data_dir=tmp_path / "data",
        model="scripted",
        scripted_token_delay_ms=0,
        key_file=key_file,
        encryption_keys=None,
    )


def model() -> ScriptedModel:
    return ScriptedModel([*TELLINGS, "You step inside."])


async def play(engine: Engine, ws: str, sid: str, action: TurnAction, text: str | None) -> None:
    request = TurnRequest.build(action=action, text=text, choice=None)
    await (await engine.turns.start(ws, sid, request, META)).wait()


async def retold_story(engine: Engine, ws: str = WS) -> tuple[str, str]:
    """A story whose one reply has three tellings, the last shown; (session, reply id)."""
    created = await engine.sessions.create(ws, kind=SessionKind.STORY, title="Door", metadata=META)
    sid: str = created["id"]
    await play(engine, ws, sid, TurnAction.SAY, "I knock")
    await play(engine, ws, sid, TurnAction.REGENERATE, None)
    await play(engine, ws, sid, TurnAction.REGENERATE, None)
    narrator = (await engine.sessions.messages(ws, sid, after_turn=0, limit=10))[1]
    return sid, str(narrator["id"])


async def reply(engine: Engine, ws: str, sid: str) -> dict[str, Any]:
    found: dict[str, Any] = (await engine.sessions.messages(ws, sid, after_turn=0, limit=10))[1]
    return found


async def test_the_chosen_telling_is_what_the_narrator_reads_next(
    make_engine: Callable[..., Any],
) -> None:
    narrator_model = model()
    engine: Engine = await make_engine(narrator_model)
    sid, reply_id = await retold_story(engine)
    assert (await reply(engine, WS, sid))["content"] == TELLINGS[2]

    shown = await engine.sessions.select_telling(WS, sid, reply_id, 0, metadata=META)

    assert (shown["content"], shown["active"]) == (TELLINGS[0], 0)
    assert [a["text"] for a in shown["alternatives"]] == TELLINGS  # none is lost
    assert await reply(engine, WS, sid) == shown
    # Another process opening the session from the log sees the same choice.
    other: Engine = await make_engine(model())
    last = (await other.repository.open(WS, sid)).last_turn
    assert last is not None and last.active == 0
    await play(engine, WS, sid, TurnAction.SAY, "I go in")
    prompt = json.dumps([m.content for m in narrator_model.calls[-1]])
    assert TELLINGS[0] in prompt
    assert TELLINGS[1] not in prompt and TELLINGS[2] not in prompt


async def test_only_the_last_replys_tellings_can_be_chosen(
    make_engine: Callable[..., Any],
) -> None:
    engine: Engine = await make_engine(model())
    sid, reply_id = await retold_story(engine)
    version = (await engine.sessions.get(WS, sid))["version"]

    with pytest.raises(InvalidInput, match="3 telling"):
        await engine.sessions.select_telling(WS, sid, reply_id, 3, metadata=META)
    # Choosing the telling already shown records nothing.
    await engine.sessions.select_telling(WS, sid, reply_id, 2, metadata=META)
    assert (await engine.sessions.get(WS, sid))["version"] == version

    await play(engine, WS, sid, TurnAction.SAY, "I go in")
    with pytest.raises(Conflict, match="not the last reply"):
        await engine.sessions.select_telling(WS, sid, reply_id, 0, metadata=META)
    player = (await engine.sessions.messages(WS, sid, after_turn=1, limit=10))[0]
    with pytest.raises(Conflict, match="not the last reply"):
        await engine.sessions.select_telling(WS, sid, player["id"], 0, metadata=META)
    assert (await reply(engine, WS, sid))["active"] == 2


async def test_forks_bundles_and_sillytavern_exports_carry_the_choice(
    make_engine: Callable[..., Any],
) -> None:
    engine: Engine = await make_engine(model())
    sid, reply_id = await retold_story(engine)
    await engine.sessions.select_telling(WS, sid, reply_id, 1, metadata=META)

    fork = await engine.sessions.fork(WS, sid, at_turn=1, title="Fork", metadata=META)
    assert (await reply(engine, WS, fork["id"]))["content"] == TELLINGS[1]

    lines = [
        json.loads(x) for x in (await engine.interop.export_session(WS, sid, "jsonl")).splitlines()
    ]
    assert (lines[-1]["mes"], lines[-1]["swipe_id"], lines[-1]["swipes"]) == (
        TELLINGS[1],
        1,
        TELLINGS,
    )

    bundle = await engine.interop.export_workspace(WS)
    copy = await engine.accounts.create_workspace(LOCAL_USER_ID, "Copy", sensitive=False)
    report = await engine.interop.import_workspace(copy["id"], bundle)
    copied = next(s for s in report.sessions if s not in (sid, fork["id"]))
    moved = await reply(engine, copy["id"], copied)
    assert (moved["content"], moved["active"]) == (TELLINGS[1], 1)


async def test_a_sensitive_workspace_keeps_the_choice_sealed(
    make_engine: Callable[..., Any],
) -> None:
    engine: Engine = await make_engine(model())
    hidden = await engine.accounts.create_workspace(LOCAL_USER_ID, "Private", sensitive=True)
    sid, reply_id = await retold_story(engine, hidden["id"])

    shown = await engine.sessions.select_telling(hidden["id"], sid, reply_id, 0, metadata=META)

    assert shown["content"] == (await reply(engine, hidden["id"], sid))["content"]
    async with engine.db.read() as conn:
        query = sa.select(messages.c.content, messages.c.sealed).where(messages.c.id == reply_id)
        stored = (await conn.execute(query)).one()
    assert stored.sealed and shown["content"] not in stored.content


# --- over HTTP ---------------------------------------------------------------------------

API = "/api/v1"
STREAM = {"Accept": "text/event-stream"}


def test_the_api_chooses_a_telling_and_says_why_it_cannot(
    serve: Callable[..., httpx.Client],
) -> None:
    client = serve(model())
    sid = client.post(f"{API}/sessions", json={"kind": "story", "title": "Door"}).json()["id"]
    for body in ({"text": "I knock"}, {"action": "regenerate"}, {"action": "regenerate"}):
        assert client.post(f"{API}/sessions/{sid}/turns", json=body).status_code == 201
    player, narrator = client.get(f"{API}/sessions/{sid}/messages").json()
    url = f"{API}/sessions/{sid}/messages/{narrator['id']}"

    chosen = client.patch(url, json={"active": 0})

    assert chosen.status_code == 200, chosen.text
    assert (chosen.json()["content"], chosen.json()["active"]) == (TELLINGS[0], 0)
    assert client.get(f"{API}/sessions/{sid}/messages").json()[1] == chosen.json()
    out_of_range = client.patch(url, json={"active": 5})
    assert out_of_range.status_code == 422
    assert "3 telling" in out_of_range.json()["detail"]
    assert client.patch(url, json={"active": -1}).status_code == 422
    not_a_reply = client.patch(f"{API}/sessions/{sid}/messages/{player['id']}", json={"active": 0})
    assert not_a_reply.status_code == 409
    assert "last reply" in not_a_reply.json()["detail"]
    missing = client.patch(f"{API}/sessions/nope/messages/{narrator['id']}", json={"active": 0})
    assert missing.status_code == 404
    assert client.get(f"{API}/sessions/{sid}/messages").json()[1]["active"] == 0


def test_a_telling_cannot_be_chosen_while_a_reply_is_written(
    serve: Callable[..., httpx.Client],
) -> None:
    slow = " ".join(f"word{i}" for i in range(300))
    client = serve(ScriptedModel(["First.", "Second.", slow], token_delay=0.02))
    sid = client.post(f"{API}/sessions", json={"kind": "story", "title": "Door"}).json()["id"]
    for body in ({"text": "I knock"}, {"action": "regenerate"}):
        assert client.post(f"{API}/sessions/{sid}/turns", json=body).status_code == 201
    narrator = client.get(f"{API}/sessions/{sid}/messages").json()[1]
    url = f"{API}/sessions/{sid}/turns"
    with client.stream("POST", url, json={"text": "I wait"}, headers=STREAM) as streaming:
        # The first event with data: the reply is being written.
        started = next(e for e in EventSource(streaming).iter_sse() if e.data)
        busy = client.patch(f"{API}/sessions/{sid}/messages/{narrator['id']}", json={"active": 0})
        client.post(f"{url}/{json.loads(started.data)['turn_id']}/cancel")
    assert busy.status_code == 409
    assert "being written" in busy.json()["detail"]
