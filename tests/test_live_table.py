"""A collaborative session over real WebSockets: a game master and players, each on
a live channel of their own, under each turn-taking policy (free, round robin,
game master approves); every input runs as a turn of the one pipeline that the
whole table sees; observers watch; only the game master seats people."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from taleweaver.auth import Role
from taleweaver.config import Settings
from taleweaver.engine import Engine
from tests.live_client import Frame, LiveClient, live
from tests.test_live import create_session
from tests.test_security import ADMIN, create_account, create_key, on_engine

Serve = Callable[..., httpx.Client]
API = "/api/v1"
PEOPLE = ("ann", "bob", "cy")  # beside the game master


@dataclass
class Table:
    base_url: str
    session_id: str
    ids: dict[str, str]  # name -> user id ("gm" and PEOPLE)
    keys: dict[str, str]

    def client(self, name: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.keys[name]}"}
        return httpx.Client(base_url=self.base_url, headers=auth, timeout=30)

    @asynccontextmanager
    async def channels(self, *names: str) -> AsyncIterator[dict[str, LiveClient]]:
        async with AsyncExitStack() as stack:
            opened = {}
            for name in names:
                auth = {"Authorization": f"Bearer {self.keys[name]}"}
                channel = await stack.enter_async_context(
                    live(self.base_url, self.session_id, headers=auth)
                )
                await channel.next("table")
                opened[name] = channel
            yield opened


@pytest.fixture
def table(serve: Serve, settings: Settings) -> Table:
    """A login-only server, its admin (the game master to be) and three more members
    of the workspace, each with an API key; a session the game master started."""
    ids = {"gm": create_account(settings, ADMIN, admin=True)}
    for name in PEOPLE:
        ids[name] = create_account(settings, f"{name}@example.org")

    async def seat_members(engine: Engine) -> None:
        for name in PEOPLE:
            await engine.accounts.set_member(
                "local", ids[name], Role.EDITOR, actor=ids["gm"], actor_role=Role.OWNER
            )

    on_engine(settings, seat_members)
    keys = {n: create_key(settings, user_id, ["write"], "local") for n, user_id in ids.items()}
    client = serve(require_login=True)
    client.headers["Authorization"] = f"Bearer {keys['gm']}"
    return Table(str(client.base_url), create_session(client), ids, keys)


async def current(table: Table, name: str = "gm") -> dict[str, Any]:
    """The table as a channel opened now is first told it."""
    async with table.channels(name) as ch:
        frame = ch[name].of_type("table")[0]
    state: dict[str, Any] = frame["table"]
    return state


def seats(frame: Frame) -> dict[str, str]:
    return {s["user_id"]: s["role"] for s in frame["table"]["seats"]}


async def set_table(table: Table, gm: LiveClient, policy: str, **roles: str) -> Frame:
    """Open the table under `policy` and seat people (name=role), in that order."""
    await gm.send({"type": "table.open", "policy": policy})
    for name, role in roles.items():
        character = name.capitalize() + "ra" if role == "player" else None
        seat = {"user_id": table.ids[name], "role": role, "character": character}
        await gm.send({"type": "table.seat"} | seat)
    return await gm.until(lambda f: f["type"] == "table" and len(seats(f)) == 1 + len(roles))


async def say(channel: LiveClient, text: str) -> Frame:
    """An input; the answer to it (`said`, `proposed` or `error`)."""
    await channel.send({"type": "say", "text": text})
    return await channel.next("said", "proposed", "error")


async def everyone_sees_done(channels: dict[str, LiveClient], turn_id: str) -> dict[str, Any]:
    done = [
        await c.seen(lambda f: f["type"] == "turn.done" and f["turn_id"] == turn_id)
        for c in channels.values()
    ]
    turn: dict[str, Any] = done[0]["data"]["turn"]
    assert all(d["data"]["turn"] == turn for d in done)  # one turn, the same for all
    return turn


def committed(table: Table) -> list[str]:
    with table.client("gm") as client:
        events = client.get(f"{API}/sessions/{table.session_id}/events").json()
    return [e["payload"]["turn_id"] for e in events if e["type"] == "turn.committed"]


# --- the policies -------------------------------------------------------------------------


async def test_free_table_every_player_acts_and_the_whole_table_sees_it(table: Table) -> None:
    async with table.channels("gm", "ann", "bob", "cy") as ch:
        seated = await set_table(table, ch["gm"], "free", ann="player", bob="player", cy="observer")
        assert seats(seated)[table.ids["cy"]] == "observer"
        first = await say(ch["ann"], "I open the door")
        assert first["type"] == "said", first
        turn = await everyone_sees_done(ch, first["turn_id"])
        # The narrator answers the table: the input is told as the player's character.
        assert turn["input"]["text"] == "Annra: I open the door"
        second = await say(ch["bob"], "I light a lantern")
        await everyone_sees_done(ch, second["turn_id"])
        watching = await say(ch["cy"], "I grab the lantern")
        assert (watching["type"], watching["status"]) == ("error", 403)
        assert "observers" in watching["detail"]
        by_gm = await say(ch["gm"], "Thunder rolls")
        await everyone_sees_done(ch, by_gm["turn_id"])
    assert committed(table) == [first["turn_id"], second["turn_id"], by_gm["turn_id"]]


async def test_round_robin_takes_players_in_seating_order(table: Table) -> None:
    async with table.channels("gm", "ann", "bob") as ch:
        await set_table(table, ch["gm"], "round_robin", ann="player", bob="player")
        early = await say(ch["bob"], "I go first")
        assert (early["type"], early["status"]) == ("error", 409)
        assert table.ids["ann"] in early["detail"]
        order = []
        for name in ("ann", "bob", "ann"):
            said = await say(ch[name], f"{name} acts")
            assert said["type"] == "said", said
            await everyone_sees_done(ch, said["turn_id"])
            order.append(said["turn_id"])
            again = await say(ch[name], "and again")
            assert (again["type"], again["status"]) == ("error", 409), again
        assert (await current(table))["next"] == table.ids["bob"]
    assert committed(table) == order


async def test_the_game_master_approves_or_turns_down_each_input(table: Table) -> None:
    async with table.channels("gm", "ann", "bob") as ch:
        await set_table(table, ch["gm"], "gm_approves", ann="player", bob="player")
        asked = await say(ch["ann"], "I pick the lock")
        assert asked["type"] == "proposed", asked
        proposal = asked["proposal"]
        for channel in ch.values():  # the whole table sees what waits
            await channel.seen(
                lambda f: f["type"] == "table" and f["table"]["pending"] == [proposal]
            )
        assert committed(table) == []  # nothing ran yet
        await ch["gm"].send({"type": "table.decide", "proposal": proposal["id"], "approved": True})
        approved = await ch["gm"].next("decided", "error")
        assert approved["approved"] is True, approved
        turn = await everyone_sees_done(ch, approved["turn_id"])
        assert turn["input"]["text"] == "Annra: I pick the lock"
        refused = await say(ch["bob"], "I set fire to the inn")
        await ch["bob"].send(
            {"type": "table.decide", "proposal": refused["proposal"]["id"], "approved": True}
        )
        not_gm = await ch["bob"].next("error")
        assert not_gm["status"] == 403
        await ch["gm"].send(
            {"type": "table.decide", "proposal": refused["proposal"]["id"], "approved": False}
        )
        turned_down = await ch["gm"].next("decided", "error")
        assert "turn_id" not in turned_down, turned_down
    assert (await current(table))["pending"] == []
    assert committed(table) == [approved["turn_id"]]


# --- seating ------------------------------------------------------------------------------


async def test_only_the_game_master_seats_people_and_sets_the_policy(table: Table) -> None:
    async with table.channels("gm", "ann", "bob") as ch:
        unseated = await say(ch["ann"], "hello?")
        assert (unseated["type"], unseated["status"]) == ("error", 404)  # no table yet
        await set_table(table, ch["gm"], "free", ann="player")
        stranger = await say(ch["bob"], "let me in")
        assert (stranger["type"], stranger["status"]) == ("error", 403)
        for frame in (
            {"type": "table.seat", "user_id": table.ids["bob"], "role": "player"},
            {"type": "table.policy", "policy": "round_robin"},
        ):
            await ch["ann"].send(frame)
            refused = await ch["ann"].next("error")
            assert refused["status"] == 403 and refused["request"] == frame["type"]
        # A player names their own character; the table shows it to everyone.
        await ch["ann"].send(
            {
                "type": "table.seat",
                "user_id": table.ids["ann"],
                "role": "player",
                "character": "Vex",
            }
        )
        renamed = await ch["bob"].seen(
            lambda f: (
                f["type"] == "table" and any(s["character"] == "Vex" for s in f["table"]["seats"])
            )
        )
        assert renamed["table"]["policy"] == "free"
        await ch["gm"].send({"type": "table.seat", "user_id": table.ids["ann"], "role": "chief"})
        bad = await ch["gm"].next("error")
        assert bad["status"] == 422 and "role must be one of" in bad["detail"]
        await ch["gm"].send({"type": "table.seat", "user_id": "nobody", "role": "player"})
        assert (await ch["gm"].next("error"))["status"] == 404  # not of this workspace
        await ch["bob"].send({"type": "table.open", "policy": "free"})
        taken = await ch["bob"].next("error")
        assert taken["status"] == 409  # one table, one game master


async def test_posting_a_turn_over_http_keeps_to_the_table(table: Table) -> None:
    async with table.channels("gm") as ch:
        await set_table(table, ch["gm"], "round_robin", ann="player", bob="player")
    turns = f"{API}/sessions/{table.session_id}/turns"
    with table.client("bob") as bob, table.client("ann") as ann:
        out_of_turn = bob.post(turns, json={"text": "me first"})
        assert out_of_turn.status_code == 409, out_of_turn.text
        in_turn = ann.post(turns, json={"text": "I wave"})
        assert in_turn.status_code == 201, in_turn.text
        assert in_turn.json()["input"]["text"] == "Annra: I wave"
        assert (await current(table))["next"] == table.ids["bob"]
        assert bob.post(turns, json={"text": "I wave back"}).status_code == 201
        async with table.channels("gm") as ch:
            await ch["gm"].send({"type": "table.policy", "policy": "gm_approves"})
            await ch["gm"].until(
                lambda f: f["type"] == "table" and f["table"]["policy"] == "gm_approves"
            )
        waits = ann.post(turns, json={"text": "I open the chest"})
        assert waits.status_code == 409 and "live channel" in waits.json()["detail"]
    assert len(committed(table)) == 2
