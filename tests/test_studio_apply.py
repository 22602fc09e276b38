"""Chat to structure over real HTTP: one scripted studio reply read into a proposal
with per-field confidence, and the reviewed proposal, with the user's corrections,
saved as a blueprint, a world entry and a prompt recipe in one call, every applied
field naming the reply. The one-minute path is walked and its calls timed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from taleweaver.domain.events import EventMetadata
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel

pytestmark = pytest.mark.dialects

Serve = Callable[..., httpx.Client]
API = "/api/v1"
WS = "local"
META = EventMetadata(actor="tester")

REPLY = """## The Drowned Crown

Here is a first plan for your campaign.

- **Project name:** The Drowned Crown
- **Game system:** D&D 5e
- **VTT:** Foundry
- **Campaign scope:** campaign
- **Session length:** 3 hours
- **Genres:** nautical fantasy, horror
- **Grit:** 7/10
- **Wonder:** 4/10
- **Power level:** mythic
- **Lines:** spiders
- **Veils:** torture
- **Starting region:** Saltmarsh
- **Signature faction:** The Tidewardens
- **Premise:** A crown lies under the harbour, and everyone owes someone for it.

For your art tool:

- **Image prompt:** portrait of [[Captain Mara]], {mood} lighting
- **Medium:** oil painting
- **Negative prompt:** modern clothing, guns"""


def _timed(calls: list[float], send: Callable[[], httpx.Response]) -> httpx.Response:
    started = time.perf_counter()
    response = send()
    calls.append(time.perf_counter() - started)
    return response


def _studio_turn(client: httpx.Client) -> dict[str, str]:
    wid = client.post(f"{API}/worlds", json={"name": "Saltmarsh"}).json()["id"]
    mara = client.post(
        f"{API}/worlds/{wid}/entities",
        json={"type": "npc", "name": "Captain Mara", "status": "canon"},
    ).json()["id"]
    hair = client.post(
        f"{API}/worlds/{wid}/entities/{mara}/facts",
        json={"attribute": "hair", "value": "a silver braid"},
    ).json()["id"]
    sid = client.post(
        f"{API}/sessions",
        json={"kind": "studio", "title": "Prep", "settings": {"world_id": wid}},
    ).json()["id"]
    turn = client.post(f"{API}/sessions/{sid}/turns", json={"text": "Plan my campaign"})
    assert turn.status_code == 201, turn.text
    return {
        "world_id": wid,
        "mara": mara,
        "hair": hair,
        "session_id": sid,
        "turn_id": turn.json()["id"],
    }


def test_the_one_minute_path_from_one_reply_to_a_blueprint_an_entry_and_a_recipe(
    serve: Serve,
) -> None:
    client = serve(ScriptedModel([REPLY]))
    ids = _studio_turn(client)
    ref = {"session_id": ids["session_id"], "turn_id": ids["turn_id"]}
    url = f"{API}/sessions/{ids['session_id']}/turns/{ids['turn_id']}/structure"
    calls: list[float] = []

    # 1. Read the reply: a proposal for each target, each field with its confidence.
    proposal = _timed(calls, lambda: client.get(url))
    assert proposal.status_code == 200, proposal.text
    found = proposal.json()
    assert found["source"] == ref
    blueprint = found["blueprint"]
    assert blueprint["fields"]["name"] == "The Drowned Crown"
    assert blueprint["fields"]["game_system"] == "dnd-5e"
    assert blueprint["fields"]["tone"] == {"grit": 7, "wonder": 4}
    assert blueprint["fields"]["lines"] == ["spiders"]
    assert blueprint["confidence"]["game_system"] == 0.95
    assert blueprint["confidence"]["tone.grit"] == 0.9
    # What could not be read is shown, with why, and not proposed.
    assert [r["field"] for r in blueprint["rejected"]] == ["power_level"]
    assert "power_level" not in blueprint["fields"]
    assert found["entries"] == [{"title": "The Drowned Crown", "body": REPLY, "confidence": 1.0}]
    recipe = found["recipe"]
    assert recipe["fields"]["template"] == "portrait of [[Captain Mara]], {mood} lighting"
    assert recipe["fields"]["slots"] == [{"name": "mood", "required": True}]
    assert recipe["fields"]["negative"] == {"terms": ["modern clothing", "guns"]}

    # 2. The user corrects two fields and applies everything in one call.
    body = {
        "world_id": ids["world_id"],
        "blueprint": blueprint
        | {"corrections": {"power_level": "epic", "game_system": "pathfinder-2e"}},
        "entries": [found["entries"][0] | {"corrections": {"title": "Campaign pitch"}}],
        "recipe": recipe | {"corrections": {"name": "Mara portrait", "tags": ["npc"]}},
    }
    applied = _timed(calls, lambda: client.post(url, json=body))
    assert applied.status_code == 201, applied.text
    saved = applied.json()
    assert saved["source"] == ref

    fields = saved["blueprint"]["fields"]
    assert fields["game_system"] == "pathfinder-2e" and fields["power_level"] == "epic"
    assert fields["world_id"] == ids["world_id"] and fields["session_length_hours"] == 3
    sources = saved["blueprint"]["field_sources"]
    assert sources["premise"] == ref | {"confidence": 0.95, "corrected": False}
    assert sources["tone"] == ref | {"confidence": 0.9, "corrected": False}
    assert sources["game_system"] == ref | {"confidence": None, "corrected": True}
    applied_fields = {a["field"]: a for a in saved["blueprint"]["applied"]}
    assert applied_fields["power_level"]["value"] == "epic"
    assert applied_fields["power_level"]["corrected"] is True

    [entry] = saved["entries"]
    assert entry["title"] == "Campaign pitch" and entry["body"] == REPLY
    assert entry["entity_ids"] == [ids["mara"]] and entry["source_refs"] == [ref]

    made = saved["recipe"]
    assert made["name"] == "Mara portrait" and made["tags"] == ["npc"]
    assert made["style"]["medium"] == "oil painting"
    assert made["field_sources"]["template"] == ref | {"confidence": 0.95, "corrected": False}
    assert made["field_sources"]["name"] == ref | {"confidence": None, "corrected": True}

    # 3. Everything is there, through the API, and the recipe renders with Mara's facts.
    saved_blueprint = _timed(
        calls, lambda: client.get(f"{API}/blueprints/{saved['blueprint']['id']}")
    ).json()
    assert saved_blueprint["version"] == 1
    entries = client.get(f"{API}/worlds/{ids['world_id']}/entries").json()
    assert [e["title"] for e in entries] == ["Campaign pitch"]
    rendered = _timed(
        calls,
        lambda: client.post(
            f"{API}/recipes/{made['id']}/render", json={"slots": {"mood": "storm"}}
        ),
    ).json()
    assert rendered["text"].startswith(
        "portrait of Captain Mara (hair: a silver braid), storm lighting, oil painting"
    )
    assert rendered["citations"][0]["fact_id"] == ids["hair"]
    # The lines and veils went to the world the blueprint plans.
    rules = client.get(f"{API}/safety/worlds/{ids['world_id']}/content").json()
    assert rules["forbidden"] == ["spiders"] and rules["content_warnings"] == ["torture"]

    # The minute is the user's: the calls themselves take well under a second each.
    assert max(calls) < 2.0, calls
    assert sum(calls) < 5.0, calls


def test_applying_to_an_existing_blueprint_adds_a_version_linked_to_the_reply(
    serve: Serve,
) -> None:
    client = serve(ScriptedModel([REPLY]))
    ids = _studio_turn(client)
    existing = client.post(
        f"{API}/blueprints", json={"name": "The Drowned Crown", "vtt": "roll20"}
    ).json()
    url = f"{API}/sessions/{ids['session_id']}/turns/{ids['turn_id']}/structure"
    body = {
        "blueprint": {
            "id": existing["id"],
            "fields": {"vtt": "foundry", "premise": "Under the harbour."},
            "confidence": {"vtt": 0.95, "premise": 0.95},
        }
    }
    saved = client.post(url, json=body)
    assert saved.status_code == 201, saved.text
    blueprint = saved.json()["blueprint"]
    assert blueprint["version"] == 2 and blueprint["fields"]["vtt"] == "foundry"
    ref = {"session_id": ids["session_id"], "turn_id": ids["turn_id"]}
    assert blueprint["field_sources"]["vtt"] == ref | {"confidence": 0.95, "corrected": False}
    # The name was not touched by the reply: it still points at the first save.
    assert blueprint["field_sources"]["name"]["version"] == 1
    versions = client.get(f"{API}/blueprints/{existing['id']}/versions").json()
    assert versions[-1]["changed"] == ["vtt", "premise"]
    assert versions[-1]["sources"]["vtt"]["turn_id"] == ids["turn_id"]


def _counts(client: httpx.Client, world_id: str) -> tuple[int, int, int]:
    return (
        len(client.get(f"{API}/blueprints").json()),
        len(client.get(f"{API}/worlds/{world_id}/entries").json()),
        len(client.get(f"{API}/recipes").json()),
    )


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"blueprint": {"fields": {"name": "X"}, "corrections": {"vtt": "paper"}}}, 422, "vtt"),
        ({"blueprint": {"fields": {"tone": {"grit": 12}}}}, 422, "blueprint.tone.grit"),
        ({"blueprint": {"fields": {"name": "X"}, "confidence": {"name": 3}}}, 422, "confidence"),
        ({"blueprint": {"id": "nope", "fields": {"premise": "x"}}}, 404, "blueprint nope"),
        ({"recipe": {"fields": {"name": "R", "template": "a {thing}"}}}, 422, "{thing}"),
        ({"recipe": {"id": "nope", "fields": {}}}, 404, "recipe nope"),
        ({"world_id": None, "entries": [{"title": "T"}]}, 422, "world_id"),
        ({"world_id": "elsewhere"}, 422, "world_id"),
        ({"entries": [{"title": "T", "entry_id": "nope"}]}, 404, "entry nope"),
        ({"entries": [], "blueprint": None, "recipe": None}, 422, "nothing to apply"),
        ({"entries": [{"title": "T", "colour": "red"}]}, 422, "colour"),
    ],
)
def test_a_bad_part_refuses_the_whole_apply_and_nothing_is_written(
    serve: Serve, change: dict[str, Any], status: int, says: str
) -> None:
    client = serve(ScriptedModel([REPLY]))
    ids = _studio_turn(client)
    url = f"{API}/sessions/{ids['session_id']}/turns/{ids['turn_id']}/structure"
    good: dict[str, Any] = {
        "world_id": ids["world_id"],
        "blueprint": {"fields": {"name": "Crown", "lines": ["spiders"]}},
        "entries": [{"title": "Pitch"}],
        "recipe": {
            "fields": {"name": "Scene", "template": "the {place}", "slots": [{"name": "place"}]}
        },
    }
    before = _counts(client, ids["world_id"])
    response = client.post(url, json=good | change)
    assert response.status_code == status, response.text
    assert says in response.text
    assert _counts(client, ids["world_id"]) == before
    rules = client.get(f"{API}/safety/worlds/{ids['world_id']}/content").json()
    assert rules["forbidden"] == []


def test_an_unknown_turn_is_404_and_another_workspaces_world_is_refused(serve: Serve) -> None:
    client = serve(ScriptedModel([REPLY]))
    ids = _studio_turn(client)
    body = {"world_id": ids["world_id"], "entries": [{"title": "Pitch"}]}
    session = f"{API}/sessions/{ids['session_id']}"
    assert client.get(f"{session}/turns/nope/structure").status_code == 404
    assert client.post(f"{session}/turns/nope/structure", json=body).status_code == 404
    assert client.get(f"{API}/sessions/nope/turns/{ids['turn_id']}/structure").status_code == 404
    # A session route acts in the session's own workspace (strangers get 404: see the
    # authorization matrix); a world of another workspace is not there.
    other = {"X-Workspace": client.post(f"{API}/workspaces", json={"name": "B"}).json()["id"]}
    elsewhere = client.post(f"{API}/worlds", json={"name": "B world"}, headers=other).json()
    url = f"{session}/turns/{ids['turn_id']}/structure"
    refused = client.post(url, json=body | {"world_id": elsewhere["id"]})
    assert refused.status_code == 422 and "not in this workspace" in refused.text
    blueprint = {"fields": {"name": "Crown", "world_id": elsewhere["id"]}}
    refused = client.post(url, json={"blueprint": blueprint})
    assert refused.status_code == 422 and "blueprint.world_id" in refused.text
    assert client.get(f"{API}/worlds/{elsewhere['id']}/entries", headers=other).json() == []
    assert client.get(f"{API}/blueprints").json() == []


def test_the_existing_apply_route_keeps_its_contract(serve: Serve) -> None:
    """`POST .../apply` still puts a reply into a world as one entry."""
    client = serve(ScriptedModel([REPLY]))
    ids = _studio_turn(client)
    url = f"{API}/sessions/{ids['session_id']}/turns/{ids['turn_id']}/apply"
    made = client.post(url, json={"world_id": ids["world_id"], "target": "blueprint"})
    assert made.status_code == 201, made.text
    assert made.json()["kind"] == "blueprint" and made.json()["body"] == REPLY


# --- the store, on SQLite and PostgreSQL ------------------------------------------------


async def test_one_apply_commits_the_blueprint_and_recipe_streams_together(
    engine: Engine,
) -> None:
    world = await engine.world.bible.create_world(WS, name="Saltmarsh", meta=META)
    ref = {"session_id": "s1", "turn_id": "t1"}
    result = await engine.studio.structure.apply(
        WS,
        ref,
        REPLY,
        {
            "world_id": world["id"],
            "blueprint": {"fields": {"name": "Crown"}, "confidence": {"name": 0.9}},
            "entries": [{"title": "Pitch"}],
            "recipe": {
                "fields": {"name": "Scene", "template": "the {place}", "slots": [{"name": "place"}]}
            },
        },
        META,
    )
    store = engine.repository.store
    blueprint = await store.read_stream(f"blueprint:{result['blueprint']['id']}")
    recipe = await store.read_stream(f"recipe:{result['recipe']['id']}")
    assert [e.type for e in blueprint] == ["blueprint.saved"]
    assert [e.type for e in recipe] == ["recipe.saved"]
    assert blueprint[0].payload["sources"]["name"] == ref | {"confidence": 0.9, "corrected": False}
    # Written in one transaction: their global positions follow each other.
    assert recipe[0].position == blueprint[0].position + 1
    [entry] = await engine.world.bible.entries(WS, world["id"])
    assert entry["source_refs"] == [ref] and entry["body"] == REPLY
