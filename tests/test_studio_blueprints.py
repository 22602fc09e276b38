"""Project blueprints over real HTTP: every field, validation with clear 422s,
versions (each save an event in the blueprint's own stream), field-by-field diffs,
restore, Markdown, and the table's lines and veils reaching the narrator through
the world's content rules. The store parts run on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.prompt import ChatMessage
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel

pytestmark = pytest.mark.dialects

Serve = Callable[..., httpx.Client]
API = "/api/v1"
WS = "local"
META = EventMetadata(actor="tester")

FULL: dict[str, Any] = {
    "name": "The Drowned Crown",
    "game_system": "dnd-5e",
    "vtt": "foundry",
    "play_style": "sandbox",
    "campaign_scope": "campaign",
    "session_length_hours": 3.5,
    "genres": ["nautical fantasy", "horror"],
    "themes": ["debt", "loyalty"],
    "tone": {"grit": 7, "wonder": 4, "intrigue": 8},
    "power_level": "standard",
    "threat_horizon": "regional",
    "npc_density": "dense",
    "exploration_density": "moderate",
    "safety_tools": ["x-card", "open-door"],
    "lines": ["spiders"],
    "veils": ["torture"],
    "session_zero_focus": "Agree on how dark the sea gets.",
    "starting_region": "Saltmarsh",
    "signature_faction": "The Tidewardens",
    "premise": "A crown lies under the harbour, and everyone owes someone for it.",
}


def _created(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{API}/blueprints", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_a_blueprint_keeps_every_field_and_renders_as_markdown(serve: Serve) -> None:
    client = serve()
    made = _created(client, FULL)
    assert made["version"] == 1 and made["name"] == "The Drowned Crown"
    fields = made["fields"]
    # Every field as given; the table's lines and veils put Lines & Veils among the tools.
    assert {k: fields[k] for k in FULL if k != "safety_tools"} == {
        k: v for k, v in FULL.items() if k != "safety_tools"
    }
    assert fields["safety_tools"] == ["lines-and-veils", "x-card", "open-door"]
    assert client.get(f"{API}/blueprints/{made['id']}").json()["fields"] == fields
    assert [b["id"] for b in client.get(f"{API}/blueprints").json()] == [made["id"]]

    page = client.get(f"{API}/blueprints/{made['id']}/markdown")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/markdown")
    text = page.text
    assert text.startswith("# The Drowned Crown\n")
    for shown in (
        "**Game system:** D&D 5e",
        "**VTT:** Foundry VTT",
        "**Session length:** 3.5 hours",
        "**Grit:** 7/10",
        "**Intrigue:** 8/10",
        "**Tools:** Lines & Veils, X-Card, Open Door",
        "**Lines (never in play):** spiders",
        "**Veils (off-screen only):** torture",
        "**Signature faction:** The Tidewardens",
        "A crown lies under the harbour",
    ):
        assert shown in text


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "X", "game_system": "dnd"}, "game_system"),
        ({"name": "X", "vtt": "tabletop simulator"}, "vtt"),
        ({"name": "X", "campaign_scope": "forever"}, "campaign_scope"),
        ({"name": "X", "tone": {"grit": 11}}, "grit"),
        ({"name": "X", "tone": {"menace": 3}}, "menace"),
        ({"name": "X", "session_length_hours": 20}, "session_length_hours"),
        ({"name": "X", "safety_tools": ["bell"]}, "safety_tools"),
        ({"name": "X", "game_system": "custom"}, "custom_system"),
        ({"name": "X", "game_system": "mothership", "custom_system": "Mine"}, "custom_system"),
        ({"name": "X", "lines": ["gore"], "veils": ["Gore"]}, "both a line and a veil"),
        ({"name": "X", "lines": [""]}, "lines"),
        ({"name": "X", "world_id": "no-such-world"}, "world_id"),
        ({"name": "X", "mood": "grim"}, "mood"),
        ({"premise": "No name"}, "name"),
        ({"name": "   "}, "name"),
    ],
)
def test_bad_field_values_are_refused_with_a_clear_422_and_nothing_is_saved(
    serve: Serve, body: dict[str, Any], says: str
) -> None:
    client = serve()
    response = client.post(f"{API}/blueprints", json=body)
    assert response.status_code == 422, response.text
    assert says in response.text
    assert client.get(f"{API}/blueprints").json() == []


def test_every_save_is_a_version_that_can_be_diffed_and_restored(serve: Serve) -> None:
    client = serve()
    made = _created(client, {"name": "Crown", "game_system": "mothership", "genres": ["horror"]})
    url = f"{API}/blueprints/{made['id']}"
    second = client.patch(url, json={"game_system": "pathfinder-2e", "tone": {"grit": 3}})
    assert second.status_code == 200 and second.json()["version"] == 2
    third = client.patch(url, json={"genres": None, "premise": "Under the sea."}).json()
    assert third["version"] == 3 and third["fields"]["genres"] == []
    # Saving what is already there adds no version.
    assert client.patch(url, json={"premise": "Under the sea."}).json()["version"] == 3

    versions = client.get(f"{url}/versions").json()
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert versions[1]["changed"] == ["game_system", "tone"]
    assert versions[2]["changed"] == ["genres", "premise"]
    assert versions[0]["actor"]
    assert client.get(f"{url}/versions/2").json()["fields"]["game_system"] == "pathfinder-2e"

    diff = client.get(f"{url}/diff", params={"from": 1, "to": 3}).json()
    assert diff["changes"] == [
        {"field": "game_system", "from": "mothership", "to": "pathfinder-2e"},
        {"field": "genres", "from": ["horror"], "to": []},
        {"field": "tone", "from": None, "to": {"grit": 3}},
        {"field": "premise", "from": None, "to": "Under the sea."},
    ]
    assert client.get(f"{url}/diff", params={"from": 2, "to": 2}).json()["changes"] == []

    restored = client.post(f"{url}/restore", json={"version": 1})
    assert restored.status_code == 200, restored.text
    assert restored.json()["version"] == 4
    assert restored.json()["fields"] == client.get(f"{url}/versions/1").json()["fields"]
    assert client.get(f"{url}/versions").json()[-1]["restored_from"] == 1
    assert "Version 4" in client.get(f"{url}/markdown").text.replace("version", "Version")
    assert "**Game system:** Pathfinder 2e" in client.get(f"{url}/markdown?version=2").text

    # A save against a version that is no longer current is refused.
    stale = client.patch(url, json={"premise": "Late", "expected_version": 2})
    assert stale.status_code == 409
    assert client.get(url).json()["version"] == 4


def test_unknown_versions_are_404_for_diff_restore_and_markdown(serve: Serve) -> None:
    client = serve()
    url = f"{API}/blueprints/{_created(client, {'name': 'Crown'})['id']}"
    assert client.get(f"{url}/diff", params={"from": 1, "to": 9}).status_code == 404
    assert client.get(f"{url}/diff", params={"from": 7, "to": 1}).status_code == 404
    assert client.get(f"{url}/diff", params={"from": 0, "to": 1}).status_code == 422
    assert client.get(f"{url}/diff", params={"from": 1}).status_code == 422
    assert client.post(f"{url}/restore", json={"version": 9}).status_code == 404
    assert client.post(f"{url}/restore", json={"version": "1"}).status_code == 422
    assert client.get(f"{url}/versions/9").status_code == 404
    assert client.get(f"{url}/markdown", params={"version": 9}).status_code == 404
    assert [v["version"] for v in client.get(f"{url}/versions").json()] == [1]
    missing = f"{API}/blueprints/nope"
    assert client.get(missing).status_code == 404
    assert client.patch(missing, json={"premise": "x"}).status_code == 404
    assert client.post(f"{missing}/restore", json={"version": 1}).status_code == 404


def test_another_workspace_has_no_such_blueprint(serve: Serve) -> None:
    client = serve()
    made = _created(client, {"name": "Crown"})
    other = client.post(f"{API}/workspaces", json={"name": "Other"}).json()["id"]
    there = {"X-Workspace": other}
    url = f"{API}/blueprints/{made['id']}"
    assert client.get(url, headers=there).status_code == 404
    assert client.get(f"{url}/versions", headers=there).status_code == 404
    assert client.get(f"{url}/diff?from=1&to=1", headers=there).status_code == 404
    assert client.patch(url, json={"premise": "x"}, headers=there).status_code == 404
    assert client.post(f"{url}/restore", json={"version": 1}, headers=there).status_code == 404
    assert client.delete(url, headers=there).status_code == 404
    assert client.get(f"{API}/blueprints", headers=there).json() == []
    assert client.get(url).json()["version"] == 1


def test_the_tables_lines_and_veils_reach_the_narrator_through_the_worlds_content_rules(
    serve: Serve,
) -> None:
    seen: list[Sequence[ChatMessage]] = []

    def narrate(messages: Sequence[ChatMessage]) -> str:
        seen.append(messages)
        return "The harbour is quiet tonight."

    client = serve(ScriptedModel(narrate))
    wid = client.post(f"{API}/worlds", json={"name": "Saltmarsh"}).json()["id"]
    rules_url = f"{API}/safety/worlds/{wid}/content"
    # A rule someone set by hand stays whatever the blueprint does.
    client.put(rules_url, json={"forbidden": ["gore"]}).raise_for_status()
    made = _created(
        client, {"name": "Crown", "world_id": wid, "lines": ["spiders"], "veils": ["torture"]}
    )
    rules = client.get(rules_url).json()
    assert rules["forbidden"] == ["gore", "spiders"]
    assert rules["content_warnings"] == ["torture"]

    sid = client.post(
        f"{API}/sessions", json={"kind": "story", "title": "T", "settings": {"world_id": wid}}
    ).json()["id"]
    turn = client.post(f"{API}/sessions/{sid}/turns", json={"text": "We sail in."})
    assert turn.status_code == 201, turn.text
    # The first model call is the narrator's (world extraction follows it).
    system = "\n".join(m.content for m in seen[0] if m.role == "system")
    assert "never depict or describe gore, spiders" in system
    assert "This story may include: torture" in system
    trace = client.get(f"{API}/sessions/{sid}/turns/{turn.json()['id']}/context").json()
    refs = {piece["ref"] for piece in trace["kept"] if piece["source"] == "safety"}
    assert {f"world:{wid}:forbidden", f"world:{wid}:content_warnings"} <= refs

    # A line moved to the veils moves in the rules too; deleting the blueprint takes
    # its lines and veils away and leaves the hand-set rule.
    url = f"{API}/blueprints/{made['id']}"
    client.patch(url, json={"lines": [], "veils": ["torture", "spiders"]}).raise_for_status()
    rules = client.get(rules_url).json()
    assert rules["forbidden"] == ["gore"]
    assert rules["content_warnings"] == ["torture", "spiders"]
    assert client.delete(url).status_code == 204
    rules = client.get(rules_url).json()
    assert rules["forbidden"] == ["gore"] and rules["content_warnings"] == []
    assert client.get(url).status_code == 404


# --- the store, on SQLite and PostgreSQL ------------------------------------------------


async def test_each_save_is_an_event_in_the_blueprints_own_stream(engine: Engine) -> None:
    blueprints = engine.studio.blueprints
    made = await blueprints.create(WS, {"name": "Crown", "game_system": "mothership"}, META)
    await blueprints.update(WS, made["id"], {"vtt": "roll20"}, META)
    await blueprints.restore(WS, made["id"], 1, META)
    events = await engine.repository.store.read_stream(f"blueprint:{made['id']}")
    assert [(e.version, e.type) for e in events] == [
        (1, "blueprint.saved"),
        (2, "blueprint.saved"),
        (3, "blueprint.saved"),
    ]
    assert events[1].payload["changed"] == ["vtt"]
    assert events[2].payload["restored_from"] == 1
    assert events[2].payload["blueprint"] == events[0].payload["blueprint"]
    assert all(e.workspace_id == WS and e.metadata["actor"] == "tester" for e in events)
    current = await blueprints.get(WS, made["id"])
    assert current["version"] == 3 and current["fields"]["vtt"] is None
    assert current["field_sources"]["vtt"] == {"version": 3, "actor": "tester"}


async def test_a_stale_save_is_a_conflict_and_bad_input_writes_no_event(engine: Engine) -> None:
    blueprints = engine.studio.blueprints
    made = await blueprints.create(WS, {"name": "Crown"}, META)
    await blueprints.update(WS, made["id"], {"premise": "One"}, META, expected_version=1)
    with pytest.raises(Conflict):
        await blueprints.update(WS, made["id"], {"premise": "Two"}, META, expected_version=1)
    with pytest.raises(InvalidInput):
        await blueprints.update(WS, made["id"], {"tone": {"grit": -1}}, META)
    events = await engine.repository.store.read_stream(f"blueprint:{made['id']}")
    assert [e.version for e in events] == [1, 2]
    await blueprints.delete(WS, made["id"], META)
    events = await engine.repository.store.read_stream(f"blueprint:{made['id']}")
    assert events[-1].type == "blueprint.deleted"
    assert await blueprints.all(WS) == []
