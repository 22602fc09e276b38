"""The live channel of a session over a real WebSocket on loopback, one server with
the in-process hub: replay after a position then live events, the turn in flight
for a client that joins mid-stream, presence and typing, heartbeats, and access."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.exceptions import ConnectionClosed, InvalidStatus

from taleweaver.config import Settings
from taleweaver.llm import ScriptedModel
from tests.live_client import Frame, LiveClient, live
from tests.test_security import ADMIN, PASSWORD, create_account, create_key

Serve = Callable[..., httpx.Client]
API = "/api/v1"
STREAM = {"Accept": "text/event-stream"}
# Long enough that, a token every 15 ms, the turn is still running when a client joins.
LONG_STORY = " ".join(f"step{i}" for i in range(80)) + "\n\nChoices:\n1. Stop\n2. Go on\n"


def create_session(client: httpx.Client) -> str:
    response = client.post(f"{API}/sessions", json={"kind": "story", "title": "Live"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def play(client: httpx.Client, session_id: str, text: str) -> dict[str, Any]:
    response = client.post(f"{API}/sessions/{session_id}/turns", json={"text": text})
    assert response.status_code == 201, response.text
    turn: dict[str, Any] = response.json()
    return turn


def positions(client: httpx.Client, session_id: str) -> list[int]:
    response = client.get(f"{API}/sessions/{session_id}/events")
    assert response.status_code == 200, response.text
    return [e["position"] for e in response.json()]


def turns_url(session_id: str) -> str:
    return f"{API}/sessions/{session_id}/turns"


async def sse_turn(base_url: str, session_id: str, text: str) -> AsyncIterator[Frame]:
    """A turn started over SSE, its events as they stream (the one pipeline)."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        aconnect_sse(
            client, "POST", turns_url(session_id), json={"text": text}, headers=STREAM
        ) as source,
    ):
        async for sse in source.aiter_sse():
            if sse.data:
                yield {"id": sse.id, "name": sse.event, "data": sse.json()}


# --- replay, then live --------------------------------------------------------------------


async def test_replay_after_a_position_then_live_events_in_order(serve: Serve) -> None:
    client = serve()
    session_id = create_session(client)
    play(client, session_id, "I open the door")
    before = positions(client, session_id)
    async with live(str(client.base_url), session_id, after=before[0]) as channel:
        hello = await channel.next("hello")
        assert hello["session_id"] == session_id
        replayed = await channel.next("replayed")
        assert replayed["position"] == before[-1]
        assert [f["position"] for f in channel.of_type("event")] == before[1:]
        turn = play(client, session_id, "I light a lantern")
        done = await channel.next("turn.done")
        assert done["turn_id"] == turn["id"]
        head = max(positions(client, session_id))
        await channel.seen(lambda f: f["type"] == "event" and f["position"] == head)
    events = channel.of_type("event")
    seen = [f["position"] for f in events]
    assert seen == sorted(set(seen)) == positions(client, session_id)[1:]
    assert all(f["event"]["stream_id"] == session_id for f in events)
    assert "workspace_id" not in events[0]["event"]


async def test_a_client_with_nothing_gets_the_whole_session(serve: Serve) -> None:
    client = serve()
    session_id = create_session(client)
    play(client, session_id, "I listen")
    async with live(str(client.base_url), session_id) as channel:
        await channel.next("replayed")
    assert [f["position"] for f in channel.of_type("event")] == positions(client, session_id)


# --- the turn in flight -------------------------------------------------------------------


def sse_frames(events: list[Frame]) -> list[tuple[int, str, Any]]:
    return [(int(e["id"].rpartition(":")[2]), e["name"], e["data"]) for e in events]


def live_frames(channel: LiveClient) -> list[tuple[int, str, Any]]:
    turn = channel.of_type("turn.")
    return [(f["seq"], f["type"].removeprefix("turn."), f["data"]) for f in turn]


async def test_joining_mid_turn_gets_the_tokens_so_far_then_the_rest(serve: Serve) -> None:
    client = serve(model=ScriptedModel([LONG_STORY], token_delay=0.015))
    session_id = create_session(client)
    stream = sse_turn(str(client.base_url), session_id, "I wait")
    seen = [await anext(stream)]
    while sum(e["name"] == "token" for e in seen) < 5:
        seen.append(await anext(stream))
    async with live(str(client.base_url), session_id) as channel:
        done = await channel.next("turn.done")
    seen += [event async for event in stream]
    assert done["turn_id"] == seen[0]["data"]["turn_id"]
    assert live_frames(channel) == sse_frames(seen)  # every token once, in order
    tokens = "".join(f["data"]["text"] for f in channel.of_type("turn.token"))
    assert tokens.startswith("step0 step1") and "step79" in tokens


async def test_reconnecting_with_the_turn_and_seq_resumes_exactly(serve: Serve) -> None:
    client = serve(model=ScriptedModel([LONG_STORY], token_delay=0.015))
    session_id = create_session(client)
    stream = sse_turn(str(client.base_url), session_id, "I wait")
    start = await anext(stream)
    async with live(str(client.base_url), session_id) as first:
        await first.until(lambda f: f["type"] == "turn.token" and f["seq"] >= 6)
    last = first.of_type("turn.")[-1]
    resume = f"{last['turn_id']}:{last['seq']}"
    async with live(str(client.base_url), session_id, turn=resume) as second:
        await second.next("turn.done")
    rest = [start] + [event async for event in stream]
    assert second.of_type("turn.")[0]["seq"] == last["seq"] + 1
    assert live_frames(first) + live_frames(second) == sse_frames(rest)


async def test_reconnecting_after_the_turn_ended_still_gets_its_rest(serve: Serve) -> None:
    client = serve(model=ScriptedModel([LONG_STORY], token_delay=0.015))
    session_id = create_session(client)
    stream = sse_turn(str(client.base_url), session_id, "I wait")
    start = await anext(stream)
    async with live(str(client.base_url), session_id) as first:
        await first.until(lambda f: f["type"] == "turn.token" and f["seq"] >= 6)
    rest = [start] + [event async for event in stream]  # the turn is over now
    last = first.of_type("turn.")[-1]
    resume = f"{last['turn_id']}:{last['seq']}"
    async with live(str(client.base_url), session_id, turn=resume) as second:
        await second.next("turn.done")
    assert live_frames(first) + live_frames(second) == sse_frames(rest)


# --- presence and heartbeats --------------------------------------------------------------


def here(frame: Frame) -> int:
    return len(frame["here"]) if frame["type"] == "presence" else -1


async def test_presence_shows_who_is_here_and_who_is_typing(serve: Serve) -> None:
    client = serve()
    session_id = create_session(client)
    base = str(client.base_url)
    async with live(base, session_id) as a:
        await a.until(lambda f: here(f) == 1)
        async with live(base, session_id) as b:
            hello = await b.next("hello")
            await a.until(lambda f: here(f) == 2)
            await b.send({"type": "typing", "typing": True})
            typing = await a.until(lambda f: f["type"] == "presence" and f["typing"] == ["local"])
            assert {p["connection"]: p["typing"] for p in typing["here"]}[hello["connection"]]
            await b.send({"type": "typing", "typing": False})
            await a.until(lambda f: f["type"] == "presence" and f["typing"] == [] and here(f) == 2)
        left = await a.until(lambda f: here(f) == 1)
    assert hello["connection"] not in {p["connection"] for p in left["here"]}


async def test_presence_names_each_person_by_their_display_name(serve: Serve) -> None:
    client = serve()
    session_id = create_session(client)
    me = client.get(f"{API}/auth/me").json()
    async with live(str(client.base_url), session_id) as channel:
        frame = await channel.until(lambda f: here(f) == 1)
    assert [(p["user_id"], p["name"]) for p in frame["here"]] == [
        (me["user_id"], me["display_name"])
    ]
    assert me["display_name"]


async def test_a_client_that_stops_answering_pings_is_dropped(serve: Serve) -> None:
    # Margins a loaded CI machine keeps: the live client answers within 2 s, always.
    client = serve(live_ping_seconds=0.2, live_dead_after_seconds=2.0)
    session_id = create_session(client)
    base = str(client.base_url)
    async with live(base, session_id) as alive:
        await alive.until(lambda f: here(f) == 1)
        async with live(base, session_id, answer_pings=False) as silent:
            hello = await silent.next("hello")
            await alive.until(lambda f: here(f) == 2)

            async def dropped() -> ConnectionClosed:
                with pytest.raises(ConnectionClosed) as closed:
                    await silent.next("no such frame")
                return closed.value

            # The live client keeps reading (and answering pings) meanwhile.
            closed, left = await asyncio.gather(dropped(), alive.until(lambda f: here(f) == 1))
        assert closed.rcvd is not None and closed.rcvd.code == 4000
        assert hello["connection"] not in {p["connection"] for p in left["here"]}
    assert alive.of_type("ping"), "the live client was pinged too"


async def test_a_bad_frame_gets_an_error_and_the_channel_stays_open(serve: Serve) -> None:
    client = serve()
    session_id = create_session(client)
    async with live(str(client.base_url), session_id) as channel:
        await channel.ws.send("not json")
        error = await channel.next("error")
        assert "typing" in error["detail"]
        await channel.send({"type": "typing", "typing": True})
        await channel.until(lambda f: f["type"] == "presence" and f["typing"] == ["local"])


async def test_a_client_that_drops_its_connection_leaves_quietly(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    client = serve()
    session_id = create_session(client)
    base = str(client.base_url)
    async with live(base, session_id) as staying:
        await staying.until(lambda f: here(f) == 1)
        async with live(base, session_id) as dropping:
            await staying.until(lambda f: here(f) == 2)
            dropping.ws.transport.abort()  # gone without a closing handshake
            await staying.until(lambda f: here(f) == 1)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [], [r.getMessage() for r in errors]


# --- access -------------------------------------------------------------------------------


@pytest.fixture
def locked(serve: Serve, settings: Settings) -> tuple[httpx.Client, str]:
    """A server that asks for a login, an admin's session on it, and the admin's key."""
    admin_id = create_account(settings, ADMIN, admin=True)
    key = create_key(settings, admin_id, ["write"])
    client = serve(require_login=True)
    client.headers["Authorization"] = f"Bearer {key}"
    session_id = create_session(client)
    return client, session_id


def refusal(error: pytest.ExceptionInfo[InvalidStatus]) -> tuple[int, str]:
    response = error.value.response
    return response.status_code, response.headers.get("content-type", "")


async def test_a_client_without_credentials_is_refused(locked: tuple[httpx.Client, str]) -> None:
    client, session_id = locked
    with pytest.raises(InvalidStatus) as refused:
        async with live(str(client.base_url), session_id):
            pass
    assert refusal(refused) == (401, "application/problem+json")


async def test_a_script_connects_with_its_api_key(locked: tuple[httpx.Client, str]) -> None:
    client, session_id = locked
    key = {"Authorization": client.headers["Authorization"]}
    async with live(str(client.base_url), session_id, headers=key) as channel:
        assert (await channel.next("hello"))["session_id"] == session_id
    with pytest.raises(InvalidStatus) as refused:
        async with live(str(client.base_url), session_id, headers={"Authorization": "Bearer x"}):
            pass
    assert refusal(refused)[0] == 401


async def test_a_browser_connects_with_its_cookie_from_its_own_origin_only(
    locked: tuple[httpx.Client, str],
) -> None:
    client, session_id = locked
    base = str(client.base_url)
    async with httpx.AsyncClient(base_url=base) as browser:
        login = await browser.post(f"{API}/auth/login", json={"email": ADMIN, "password": PASSWORD})
        assert login.status_code == 200, login.text
        cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    async with live(base, session_id, headers={"Cookie": cookie}, origin=base) as channel:
        assert (await channel.next("hello"))["session_id"] == session_id
    with pytest.raises(InvalidStatus) as refused:
        async with live(base, session_id, headers={"Cookie": cookie}, origin="https://evil.test"):
            pass
    assert refusal(refused)[0] == 403


async def test_a_session_one_cannot_see_does_not_exist(serve: Serve) -> None:
    client = serve()
    with pytest.raises(InvalidStatus) as refused:
        async with live(str(client.base_url), "no-such-session"):
            pass
    assert refusal(refused)[0] == 404


async def test_a_bad_position_is_refused_with_a_clear_error(serve: Serve) -> None:
    client = serve()
    session_id = create_session(client)
    for query in ({"after": "-1"}, {"turn": "no-seq"}):
        with pytest.raises(InvalidStatus) as refused:
            async with live(str(client.base_url), session_id, **query):  # type: ignore[arg-type]
                pass
        assert refusal(refused)[0] == 422
