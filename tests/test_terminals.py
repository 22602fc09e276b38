"""Terminal sessions over real HTTP, on real pseudo-terminals: a shell's input and
output, attach (replay, then live), resize, signals, close, the retention window
under a `yes` flood, and who may use them (admins, with terminals switched on, and
on a bind other than loopback only when allowed there)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel

Serve = Callable[..., httpx.Client]
API = "/api/v1"
ON = {"terminal_enabled": True, "terminal_command": ["/bin/sh"]}


def _sse(lines: list[str]) -> list[dict[str, Any]]:
    """The events of an SSE body's lines, as {event, id, data}."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "event" in current:
                events.append(current)
            current = {}
        elif line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("id: "):
            current["id"] = line[4:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
    return events


def _screen(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["data"] for e in events if e["event"] == "output")


class Attached:
    """A client attached to a terminal's stream in a thread of its own."""

    def __init__(self, base_url: str, terminal_id: str, headers: dict[str, str] | None = None):
        self.events: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.url = f"{base_url}{API}/terminals/{terminal_id}/stream"
        self.headers = headers or {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        lines: list[str] = []
        with (
            httpx.Client(timeout=30) as client,
            client.stream("GET", self.url, headers=self.headers) as response,
        ):
            for line in response.iter_lines():
                lines.append(line)
                if line == "":
                    with self.changed:
                        self.events = _sse(lines)
                        self.changed.notify_all()
                        if self.events and self.events[-1]["event"] == "exit":
                            return

    def wait(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 15) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: done(self.events), timeout), _screen(self.events)

    def screen(self) -> str:
        with self.changed:
            return _screen(self.events)


def _open(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/terminals", json=body)
    assert response.status_code == 201, response.text
    opened: dict[str, Any] = response.json()
    return opened


def _type(client: httpx.Client, terminal_id: str, text: str) -> None:
    response = client.post(f"{API}/terminals/{terminal_id}/input", json={"data": text})
    assert response.status_code == 204, response.text


def _replay(client: httpx.Client, terminal_id: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(
        f"{API}/terminals/{terminal_id}/stream", params={"follow": "false", **params}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    return _sse(response.text.split("\n"))


def _until(check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _types(client: httpx.Client, terminal_id: str) -> list[str]:
    events = client.get(f"{API}/terminals/{terminal_id}/events").json()
    return [e["type"] for e in events]


def test_a_shell_runs_echo_and_cat_and_its_output_streams_live(serve: Serve) -> None:
    client = serve(**ON)
    terminal = _open(client, cols=80, rows=24)
    assert terminal["status"] == "running" and terminal["command"] == ["/bin/sh"]
    attached = Attached(str(client.base_url), terminal["id"])
    _type(client, terminal["id"], "echo hello-$((6*7))\n")
    attached.wait(lambda events: "hello-42" in _screen(events))
    _type(client, terminal["id"], "cat\n")
    _type(client, terminal["id"], "ping-from-cat\n")
    # The terminal echoes the line, and cat prints it back.
    attached.wait(lambda events: _screen(events).count("ping-from-cat") >= 2)
    types = _types(client, terminal["id"])
    assert types == ["terminal.opened"] + ["terminal.input"] * 3
    inputs = client.get(f"{API}/terminals/{terminal['id']}/events").json()[1:]
    assert [e["payload"]["data"] for e in inputs] == [
        "echo hello-$((6*7))\n",
        "cat\n",
        "ping-from-cat\n",
    ]
    client.delete(f"{API}/terminals/{terminal['id']}")


def test_the_shell_starts_in_the_workspaces_folder_under_the_data_directory(
    serve: Serve, settings: Settings
) -> None:
    client = serve(**ON)
    terminal = _open(client)
    folder = settings.data_dir / "workspaces" / "local" / "files"
    assert terminal["cwd"] == str(folder)
    _type(client, terminal["id"], "pwd; echo made > from-shell.txt; echo ok-$((1+1))\n")
    _until(lambda: "ok-2" in _screen(_replay(client, terminal["id"])))
    assert str(folder) in _screen(_replay(client, terminal["id"]))
    assert (folder / "from-shell.txt").read_text() == "made\n"
    client.delete(f"{API}/terminals/{terminal['id']}")


def test_re_attaching_replays_the_screen_then_follows(serve: Serve) -> None:
    client = serve(**ON)
    terminal = _open(client)
    _type(client, terminal["id"], "echo first-$((2*2))\n")
    _until(lambda: "first-4" in _screen(_replay(client, terminal["id"])))
    replay = _replay(client, terminal["id"])
    assert [e["event"] for e in replay] == ["output"] * len(replay)  # running: no exit
    seqs = [e["data"]["seq"] for e in replay]
    assert seqs == list(range(1, len(seqs) + 1)) and [e["id"] for e in replay] == [
        str(s) for s in seqs
    ]
    # A second client attaches: the screen so far first, then what comes.
    attached = Attached(str(client.base_url), terminal["id"])
    attached.wait(lambda events: "first-4" in _screen(events))
    _type(client, terminal["id"], "echo second-$((3*3))\n")
    attached.wait(lambda events: "second-9" in _screen(events))
    # Resuming after the last chunk seen (Last-Event-ID) sends nothing older.
    last = _replay(client, terminal["id"])[-1]["id"]
    response = client.get(
        f"{API}/terminals/{terminal['id']}/stream",
        params={"follow": "false"},
        headers={"Last-Event-ID": last},
    )
    assert _sse(response.text.split("\n")) == []
    client.delete(f"{API}/terminals/{terminal['id']}")


def test_resize_reaches_the_program(serve: Serve) -> None:
    client = serve(**ON)
    terminal = _open(client, cols=80, rows=24)
    resized = client.post(
        f"{API}/terminals/{terminal['id']}/resize", json={"cols": 132, "rows": 41}
    )
    assert resized.status_code == 200, resized.text
    assert (resized.json()["cols"], resized.json()["rows"]) == (132, 41)
    _type(client, terminal["id"], "stty size\n")
    _until(lambda: "41 132" in _screen(_replay(client, terminal["id"])))
    events = client.get(f"{API}/terminals/{terminal['id']}/events").json()
    assert {"cols": 132, "rows": 41} in [
        e["payload"] for e in events if e["type"] == "terminal.resized"
    ]
    client.delete(f"{API}/terminals/{terminal['id']}")


def test_an_interrupt_stops_the_program_in_the_foreground(serve: Serve) -> None:
    client = serve(**ON)
    terminal = _open(client)
    _type(client, terminal["id"], "sleep 60; echo slept\n")
    time.sleep(0.3)
    started = time.monotonic()
    sent = client.post(f"{API}/terminals/{terminal['id']}/signal", json={"signal": "interrupt"})
    assert sent.status_code == 204, sent.text
    _type(client, terminal["id"], "echo after-$((1+1))\n")
    _until(lambda: "after-2" in _screen(_replay(client, terminal["id"])), timeout=10)
    assert time.monotonic() - started < 10
    assert "\nslept" not in _screen(_replay(client, terminal["id"]))  # only as typed
    assert "terminal.signalled" in _types(client, terminal["id"])
    assert client.get(f"{API}/terminals/{terminal['id']}").json()["status"] == "running"
    client.delete(f"{API}/terminals/{terminal['id']}")


def test_terminate_ends_the_command(serve: Serve) -> None:
    client = serve(terminal_enabled=True, terminal_command=["/bin/sh", "-c", "sleep 60"])
    terminal = _open(client)
    attached = Attached(str(client.base_url), terminal["id"])
    sent = client.post(f"{API}/terminals/{terminal['id']}/signal", json={"signal": "terminate"})
    assert sent.status_code == 204, sent.text
    attached.wait(lambda events: bool(events) and events[-1]["event"] == "exit")
    final = client.get(f"{API}/terminals/{terminal['id']}").json()
    assert final["status"] == "closed" and final["close_reason"] == "exited"
    assert final["exit_code"] == -15  # ended by SIGTERM


def test_closing_ends_the_process_and_the_stream(serve: Serve) -> None:
    client = serve(**ON)
    terminal = _open(client)
    attached = Attached(str(client.base_url), terminal["id"])
    opened = client.get(f"{API}/terminals/{terminal['id']}/events").json()[0]
    pid = opened["payload"]["pid"]
    closed = client.delete(f"{API}/terminals/{terminal['id']}")
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed" and closed.json()["close_reason"] == "closed"
    attached.wait(lambda events: bool(events) and events[-1]["event"] == "exit")
    assert attached.events[-1]["data"]["reason"] == "closed"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert _types(client, terminal["id"])[-1] == "terminal.closed"
    # A closed terminal replays its screen and its end; it takes no more input.
    assert _replay(client, terminal["id"])[-1]["event"] == "exit"
    refused = client.post(f"{API}/terminals/{terminal['id']}/input", json={"data": "ls\n"})
    assert refused.status_code == 409
    for path, body in (("resize", {"cols": 90, "rows": 30}), ("signal", {"signal": "kill"})):
        assert client.post(f"{API}/terminals/{terminal['id']}/{path}", json=body).status_code == 409
    again = client.delete(f"{API}/terminals/{terminal['id']}")
    assert again.status_code == 200 and again.json()["status"] == "closed"
    assert _types(client, terminal["id"]).count("terminal.closed") == 1


def test_a_shell_that_exits_records_its_exit_code(serve: Serve) -> None:
    client = serve(**ON)
    terminal = _open(client)
    attached = Attached(str(client.base_url), terminal["id"])
    _type(client, terminal["id"], "exit 3\n")
    attached.wait(lambda events: bool(events) and events[-1]["event"] == "exit")
    assert attached.events[-1]["data"] == {
        "seq": attached.events[-1]["data"]["seq"],
        "exit_code": 3,
        "reason": "exited",
    }
    final = client.get(f"{API}/terminals/{terminal['id']}").json()
    assert (final["status"], final["exit_code"], final["close_reason"]) == ("closed", 3, "exited")
    listed = client.get(f"{API}/terminals").json()
    assert terminal["id"] in [t["id"] for t in listed]


def test_a_yes_flood_stays_within_the_retention_window(serve: Serve) -> None:
    retention = 16 * 1024
    client = serve(
        terminal_enabled=True, terminal_command=["yes"], terminal_retention_bytes=retention
    )
    terminal = _open(client)

    def produced() -> int:
        state = client.get(f"{API}/terminals/{terminal['id']}").json()
        assert state["kept_bytes"] <= retention
        return int(state["output_bytes"])

    _until(lambda: produced() > 20 * retention, timeout=30)
    state = client.get(f"{API}/terminals/{terminal['id']}").json()
    assert state["kept_bytes"] <= retention and state["kept_chunks"] <= retention // 512
    # The replay says that earlier output was dropped, and holds the window only.
    replay = _replay(client, terminal["id"])
    assert replay[0]["event"] == "truncated" and replay[0]["data"]["seq"] > 1
    assert sum(len(e["data"]["data"]) for e in replay if e["event"] == "output") <= retention
    assert set(_screen(replay)) == {"y", "\r", "\n"}
    # The log holds what people did, not the flood.
    assert _types(client, terminal["id"]) == ["terminal.opened"]
    closed = client.delete(f"{API}/terminals/{terminal['id']}")
    assert closed.json()["status"] == "closed"
    assert _types(client, terminal["id"]) == ["terminal.opened", "terminal.closed"]


def test_requests_a_terminal_cannot_take_are_refused(serve: Serve) -> None:
    client = serve(**ON)
    assert client.get(f"{API}/terminals/nope").status_code == 404
    assert client.post(f"{API}/terminals/nope/input", json={"data": "x"}).status_code == 404
    assert client.delete(f"{API}/terminals/nope").status_code == 404
    assert client.get(f"{API}/terminals/nope/stream").status_code == 404
    assert client.post(f"{API}/terminals", json={"cols": 1}).status_code == 422
    terminal = _open(client)
    tid = terminal["id"]
    assert client.post(f"{API}/terminals/{tid}/signal", json={"signal": "stop"}).status_code == 422
    resize = client.post(f"{API}/terminals/{tid}/resize", json={"cols": 0, "rows": 10})
    assert resize.status_code == 422
    assert client.post(f"{API}/terminals/{tid}/input", json={"data": ""}).status_code == 422
    assert _types(client, tid) == ["terminal.opened"]  # nothing refused was recorded
    client.delete(f"{API}/terminals/{tid}")


def test_a_command_that_cannot_start_is_refused(serve: Serve) -> None:
    client = serve(terminal_enabled=True, terminal_command=["/nonexistent/shell"])
    response = client.post(f"{API}/terminals", json={})
    assert response.status_code == 422
    assert "/nonexistent/shell" in response.json()["detail"]
    assert client.get(f"{API}/terminals").json() == []


def test_no_more_than_the_configured_terminals_run_at_once(serve: Serve) -> None:
    client = serve(**ON, terminal_max_open=1)
    first = _open(client)
    assert client.post(f"{API}/terminals", json={}).status_code == 409
    client.delete(f"{API}/terminals/{first['id']}")
    second = _open(client)
    client.delete(f"{API}/terminals/{second['id']}")


# --- who may --------------------------------------------------------------------------


def test_terminals_are_off_by_default(serve: Serve) -> None:
    client = serve()
    refused = client.post(f"{API}/terminals", json={})
    assert refused.status_code == 403
    assert "TALEWEAVER_TERMINAL_ENABLED" in refused.json()["detail"]
    assert client.get(f"{API}/terminals").status_code == 403


def _accounts(settings: Settings) -> dict[str, str]:
    """An instance administrator (owner of workspace W), a workspace owner, admin and
    editor who are not: name -> API key, and "workspace" -> W's id."""

    async def build() -> dict[str, str]:
        engine = await Engine.open(settings, model=ScriptedModel())
        try:
            made: dict[str, str] = {}
            users: dict[str, str] = {}
            for name in ("root", "owner", "admin", "editor"):
                user = await engine.accounts.create_user(
                    f"{name}@example.com",
                    password="correct horse battery",
                    instance_admin=name == "root",
                )
                users[name] = user["id"]
                made[name], _ = await engine.credentials.create_api_key(
                    user["id"], "terminals", ["admin"], None
                )
            workspace = await engine.accounts.create_workspace(users["owner"], "W", sensitive=False)
            from taleweaver.auth import Role

            for name, role in (
                ("root", Role.ADMIN),
                ("admin", Role.ADMIN),
                ("editor", Role.EDITOR),
            ):
                await engine.accounts.set_member(
                    workspace["id"], users[name], role, actor="test", actor_role=Role.OWNER
                )
            made["workspace"] = workspace["id"]
            return made
        finally:
            await engine.close()

    return asyncio.run(build())


def _as(keys: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[who]}", "X-Workspace": keys["workspace"]}


def test_only_instance_administrators_use_terminals_by_default(
    serve: Serve, settings: Settings
) -> None:
    keys = _accounts(settings)
    client = serve(**ON, require_login=True)
    assert client.post(f"{API}/terminals", json={}).status_code == 401
    for who in ("editor", "admin", "owner"):
        refused = client.post(f"{API}/terminals", json={}, headers=_as(keys, who))
        assert refused.status_code == 403, (who, refused.text)
    opened = client.post(f"{API}/terminals", json={}, headers=_as(keys, "root"))
    assert opened.status_code == 201, opened.text
    tid = opened.json()["id"]
    for who in ("editor", "owner"):
        assert client.get(f"{API}/terminals/{tid}", headers=_as(keys, who)).status_code == 403
        typed = client.post(
            f"{API}/terminals/{tid}/input", json={"data": "id\n"}, headers=_as(keys, who)
        )
        assert typed.status_code == 403
    closed = client.delete(f"{API}/terminals/{tid}", headers=_as(keys, "root"))
    assert closed.status_code == 200


def test_workspace_admins_use_terminals_when_configured_and_editors_never(
    serve: Serve, settings: Settings
) -> None:
    keys = _accounts(settings)
    client = serve(**ON, require_login=True, terminal_workspace_admins=True)
    refused = client.post(f"{API}/terminals", json={}, headers=_as(keys, "editor"))
    assert refused.status_code == 403
    for who in ("admin", "owner"):
        opened = client.post(f"{API}/terminals", json={}, headers=_as(keys, who))
        assert opened.status_code == 201, (who, opened.text)
        client.delete(f"{API}/terminals/{opened.json()['id']}", headers=_as(keys, who))


def test_a_non_loopback_bind_refuses_terminals_unless_allowed_there(
    serve: Serve, settings: Settings
) -> None:
    keys = _accounts(settings)
    exposed = serve(**ON, bind_host="0.0.0.0")
    refused = exposed.post(f"{API}/terminals", json={}, headers=_as(keys, "root"))
    assert refused.status_code == 403
    assert "TALEWEAVER_TERMINAL_ALLOW_REMOTE" in refused.json()["detail"]
    allowed = serve(**ON, bind_host="0.0.0.0", terminal_allow_remote=True)
    opened = allowed.post(f"{API}/terminals", json={}, headers=_as(keys, "root"))
    assert opened.status_code == 201, opened.text
    allowed.delete(f"{API}/terminals/{opened.json()['id']}", headers=_as(keys, "root"))


# --- over the live channel (a real WebSocket on loopback) ---------------------------------


def _terminal_ws(client: httpx.Client, terminal_id: str) -> str:
    return (
        f"{str(client.base_url).replace('http://', 'ws://', 1)}/api/v1/terminals/{terminal_id}/live"
    )


async def _frames_until(ws: Any, wanted: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(15):
        while True:
            frame = json.loads(await ws.recv())
            seen.append(frame)
            if frame["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            if wanted(frame):
                return seen


def _text(frames: list[dict[str, Any]]) -> str:
    return "".join(f["data"] for f in frames if f["type"] == "output")


def test_the_live_channel_replays_streams_and_takes_input_resize_and_signals(
    serve: Serve,
) -> None:
    from websockets.asyncio.client import connect

    client = serve(**ON, live_ping_seconds=0.2)
    terminal = client.post(f"{API}/terminals", json={}).json()
    assert (
        client.post(
            f"{API}/terminals/{terminal['id']}/input", json={"data": "echo before-$((20+3))\n"}
        ).status_code
        == 204
    )

    async def play() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        url = _terminal_ws(client, terminal["id"])
        async with connect(url, open_timeout=15) as ws:
            first = await _frames_until(ws, lambda f: "before-23" in f.get("data", ""))
            assert first[0]["type"] == "hello" and first[0]["terminal"]["id"] == terminal["id"]
            await ws.send(json.dumps({"type": "resize", "cols": 91, "rows": 33}))
            first += await _frames_until(ws, lambda f: f["type"] == "resized")
            await ws.send(json.dumps({"type": "input", "data": "stty size; echo live-$((40+2))\n"}))
            first += await _frames_until(ws, lambda f: "live-42" in _text([f]))
            await ws.send(json.dumps({"type": "launch", "data": 1}))
            first += await _frames_until(ws, lambda f: f["type"] == "error")
            await ws.send(json.dumps({"type": "input", "data": "sleep 30\n"}))
            await asyncio.sleep(0.3)
            await ws.send(json.dumps({"type": "signal", "signal": "interrupt"}))
            await ws.send(json.dumps({"type": "input", "data": "exit 7\n"}))
            first += await _frames_until(ws, lambda f: f["type"] == "exit")
        # Re-attaching replays the kept screen, and the end.
        async with connect(url, open_timeout=15) as ws:
            again = await _frames_until(ws, lambda f: f["type"] == "exit")
        return first, again

    seen, again = asyncio.run(play())
    assert "live-42" in _text(seen) and "33 91" in _text(seen)
    assert any(f["type"] == "ping" for f in seen)
    assert next(f for f in seen if f["type"] == "error")["request"] == "launch"
    assert seen[-1]["exit_code"] == 7
    assert "before-23" in _text(again) and "live-42" in _text(again)
    assert again[-1]["exit_code"] == 7
    logged = [e["type"] for e in client.get(f"{API}/terminals/{terminal['id']}/events").json()]
    assert {"terminal.resized", "terminal.signalled", "terminal.input"} <= set(logged)


def test_the_live_channel_is_refused_where_terminals_are(serve: Serve) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    off = serve()
    on = serve(**ON)
    terminal = on.post(f"{API}/terminals", json={}).json()

    async def refused(client: httpx.Client, terminal_id: str) -> int:
        try:
            async with connect(_terminal_ws(client, terminal_id), open_timeout=15):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(refused(off, terminal["id"])) == 403  # off by default
    assert asyncio.run(refused(on, "no-such-terminal")) == 404
    on.delete(f"{API}/terminals/{terminal['id']}")
