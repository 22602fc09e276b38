"""Every turn path passes both safety checks: each action, in every kind of session,
in the engine, over HTTP (JSON and SSE) and in `taleweaver play`; and a crisis in any
kind of session runs the whole protocol over HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from taleweaver.config import Settings
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.sessions import SessionFilter, SessionKind
from taleweaver.domain.turns import SafetyVerdict, TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.safety import SafetySubject
from tests.conftest import LoopbackServer
from tests.test_safety_crisis import Receiver, serve_receiver

WS = "local"
STORY = "The hall is quiet.\n\nChoices:\n1. Go left\n2. Go right\n"
CRISIS = "I want to go to sleep and not wake up"
KINDS = [SessionKind.STORY, SessionKind.COMPANION, SessionKind.STUDIO]


class Recorder:
    """A safety checker that lets everything through and remembers what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    async def check(self, subject: SafetySubject) -> SafetyVerdict:
        with self.lock:
            self.seen.append((subject.direction, subject.text))
        return SafetyVerdict()

    def take(self) -> list[str]:
        with self.lock:
            directions = [d for d, _ in self.seen]
            self.seen.clear()
        return directions


def requests_for(kind: SessionKind) -> list[tuple[str, dict[str, Any]]]:
    """Every action a session of this kind can take after a first turn, as request bodies."""
    steps: list[tuple[str, dict[str, Any]]] = [("say", {"text": "I look around"})]
    if kind == SessionKind.STORY:
        steps.append(("choose", {"choice": 1}))
    steps += [
        ("continue", {"action": "continue"}),
        ("regenerate", {"action": "regenerate"}),
        ("edit", {"action": "edit", "text": "I look up instead"}),
    ]
    return steps


@pytest.mark.parametrize("kind", KINDS)
async def test_every_action_in_every_kind_runs_input_then_output_safety(
    engine: Engine, kind: SessionKind
) -> None:
    recorder = Recorder()
    engine.caps.safety = recorder
    engine.caps.model = ScriptedModel([STORY])
    sid = (await engine.sessions.create(WS, kind=kind, title="P", metadata=EventMetadata()))["id"]
    meta = EventMetadata(actor="test")
    await (
        await engine.turns.start(
            WS, sid, TurnRequest.build(action=None, text="Hi", choice=None), meta
        )
    ).wait()
    recorder.take()
    for name, body in requests_for(kind):
        action = TurnAction(body.get("action", name))
        request = TurnRequest.build(action=action, text=body.get("text"), choice=body.get("choice"))
        await (await engine.turns.start(WS, sid, request, meta)).wait()
        assert recorder.take() == ["input", "output"], name


# --- over HTTP, JSON and SSE ------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve_receiver()


@pytest.fixture
def server(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackServer]:
    monkeypatch.setenv("TALEWEAVER_SAFETY_WEBHOOK_BACKOFF_S", "0.01")
    monkeypatch.setenv("TALEWEAVER_SAFETY_WEBHOOK_ATTEMPTS", "3")
    running = LoopbackServer(settings, ScriptedModel())
    with running:
        yield running


def engine_of(server: LoopbackServer) -> Engine:
    app: Any = server.server.config.app
    engine: Engine = app.state.engine
    return engine


def post_turn(client: httpx.Client, sid: str, body: dict[str, Any], sse: bool) -> dict[str, Any]:
    """A turn over JSON or SSE; for SSE, the `done` turn plus every event seen."""
    path = f"/api/v1/sessions/{sid}/turns"
    if not sse:
        response = client.post(path, json=body)
        assert response.status_code == 201, response.text
        turn: dict[str, Any] = response.json()
        return turn
    events: list[tuple[str, Any]] = []
    with client.stream("POST", path, json=body, headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 201
        name = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    done = [data for n, data in events if n == "done"]
    assert done, events
    return dict(done[0]["turn"]) | {"_events": events}


@pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_action_over_http_runs_both_checks(
    server: LoopbackServer, kind: SessionKind, sse: bool
) -> None:
    recorder = Recorder()
    engine_of(server).caps.safety = recorder
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        sid = client.post("/api/v1/sessions", json={"kind": kind, "title": "H"}).json()["id"]
        post_turn(client, sid, {"text": "Hello"}, sse)
        recorder.take()
        for name, body in requests_for(kind):
            turn = post_turn(client, sid, body, sse)
            assert turn["safety"]["level"] == "safe"
            assert recorder.take() == ["input", "output"], name


def _wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_crisis_in_any_kind_of_session_runs_the_whole_protocol(
    server: LoopbackServer,
    receiver: Receiver,
    kind: SessionKind,
    sse: bool,
) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        hook = client.put("/api/v1/safety/webhook", json={"url": receiver.url})
        assert hook.status_code == 200, hook.text
        receiver.secret = hook.json()["secret"]
        client.put("/api/v1/safety/preferences/local", json={"locale": "fr"}).raise_for_status()
        sid = client.post("/api/v1/sessions", json={"kind": kind, "title": "C"}).json()["id"]

        turn = post_turn(client, sid, {"text": CRISIS}, sse)

        verdict = turn["safety"]
        assert verdict["crisis"] is True and verdict["level"] == "blocked"
        assert verdict["categories"] == ["suicidal_ideation"]
        assert "3114" in turn["reply"]["text"]  # the player's locale: French resources
        if sse:
            events = turn["_events"]
            assert ("safety", verdict) in events
            streamed = "".join(d["text"] for n, d in events if n == "token")
            assert "3114" in streamed
        paused = post_turn(client, sid, {"action": "continue"}, sse)
        assert paused["safety"]["action"] == "paused"
        [flag] = client.get("/api/v1/safety/flags", params={"session_id": sid}).json()
        assert flag["paused"] is True and flag["level"] == "moderate"
        audit = client.get(f"/api/v1/workspaces/{WS}/audit").json()
        entries = audit["items"] if isinstance(audit, dict) else audit
        assert any(e["action"] == "safety.crisis" and e["target"] == sid for e in entries)
        _wait_for(lambda: any(d["session_id"] == sid for d in receiver.valid()))
        stored = client.get(f"/api/v1/sessions/{sid}/events").json()
        crisis_event = next(e for e in stored if e["type"] == "turn.committed")
        assert crisis_event["payload"]["safety"]["input"]["crisis"] is True

        resumed = client.post(f"/api/v1/sessions/{sid}/safety/resume")
        assert resumed.status_code == 200, resumed.text
        assert post_turn(client, sid, {"text": "I look around"}, sse)["safety"]["level"] == "safe"


# --- the CLI play path -------------------------------------------------------------------


def test_play_in_the_terminal_pauses_on_a_crisis_and_shows_support(tmp_path: Path) -> None:
    from tests.test_cli import PROMPT, cli_env, finish, play

    child = play(tmp_path)
    child.sendline(CRISIS)
    child.expect("you don't have to face it alone")
    child.expect(PROMPT)
    child.sendline("/continue")
    child.expect("pause our story")
    child.expect(PROMPT)
    child.sendline("/quit")
    assert finish(child) == 0

    async def flags() -> list[dict[str, Any]]:
        settings = Settings(data_dir=tmp_path, model="scripted")
        engine = await Engine.open(settings, model=ScriptedModel())
        try:
            return await engine.safety.flags.list(WS, users=None, status="open")
        finally:
            await engine.close()

    assert cli_env(tmp_path)["TALEWEAVER_DATA_DIR"] == str(tmp_path)
    [flag] = asyncio.run(flags())
    assert flag["paused"] is True and flag["categories"] == ["suicidal_ideation"]


def test_play_in_the_terminal_checks_the_narrators_output_too(tmp_path: Path) -> None:
    from tests.test_cli import PROMPT, finish, play

    settings = Settings(data_dir=tmp_path, model="scripted")

    async def forbid_lanterns() -> None:
        engine = await Engine.open(settings, model=ScriptedModel())
        try:
            await engine.safety.content.set_rules(
                WS, "workspace", content_warnings=[], forbidden=["lantern"], locale=None
            )
        finally:
            await engine.close()

    async def narrated() -> list[str]:
        engine = await Engine.open(settings, model=ScriptedModel())
        try:
            [session] = (await engine.sessions.list_page(WS, SessionFilter(), limit=5, offset=0))[0]
            messages = await engine.sessions.messages(WS, session["id"], after_turn=0, limit=10)
            return [m["content"] for m in messages if m["role"] == "narrator"]
        finally:
            await engine.close()

    asyncio.run(forbid_lanterns())
    child = play(tmp_path)
    child.sendline("I look around")  # the scripted narrator always mentions its lantern
    child.expect(PROMPT)
    child.sendline("/quit")
    assert finish(child) == 0
    [reply] = asyncio.run(narrated())
    assert "lantern" not in reply.lower()
