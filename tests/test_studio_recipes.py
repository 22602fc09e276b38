"""Prompt recipes over real HTTP: templates with required and optional slots, a
style profile and a negative-prompt policy, renderers per tool, the vault's search
and tags, versions, and slots that pull a world entity's canon appearance facts,
citing them. The store parts run on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import EventMetadata
from taleweaver.engine import Engine

pytestmark = pytest.mark.dialects

Serve = Callable[..., httpx.Client]
API = "/api/v1"
WS = "local"
META = EventMetadata(actor="tester")

PORTRAIT: dict[str, Any] = {
    "name": "Character portrait",
    "description": "Head and shoulders, for handouts.",
    "kind": "image",
    "template": "portrait of {subject}, {mood} lighting, {extra}",
    "slots": [
        {"name": "subject", "description": "Who, e.g. [[Captain Mara]]"},
        {"name": "mood", "required": False, "default": "candle"},
        {"name": "extra", "required": False},
    ],
    "style": {"medium": "oil painting", "keywords": ["dramatic"], "aspect_ratio": "16:9"},
    "negative": {"terms": ["modern clothing"], "use_defaults": True},
    "tags": ["npc", "portrait"],
}


def _recipe(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{API}/recipes", json=body)
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def _mara_world(client: httpx.Client, status: str = "canon") -> dict[str, str]:
    wid = client.post(f"{API}/worlds", json={"name": "Saltmarsh"}).json()["id"]
    mara = client.post(
        f"{API}/worlds/{wid}/entities",
        json={"type": "npc", "name": "Captain Mara", "aliases": ["Mara"], "status": status},
    ).json()["id"]
    facts = {}
    for attribute, value in (
        ("hair", "a silver braid"),
        ("distinguishing scar", "across the left cheek"),
        ("rank", "harbour captain"),
    ):
        made = client.post(
            f"{API}/worlds/{wid}/entities/{mara}/facts",
            json={"attribute": attribute, "value": value},
        )
        assert made.status_code == 201, made.text
        facts[attribute] = made.json()["id"]
    return {"world_id": wid, "mara": mara, **facts}


def test_a_slot_naming_an_entity_pulls_its_canon_appearance_facts_and_cites_them(
    serve: Serve,
) -> None:
    client = serve()
    ids = _mara_world(client)
    recipe = _recipe(client, PORTRAIT | {"world_id": ids["world_id"]})
    url = f"{API}/recipes/{recipe['id']}/render"

    generic = client.post(url, json={"slots": {"subject": "[[Captain Mara]]"}})
    assert generic.status_code == 200, generic.text
    body = generic.json()
    assert body["tool"] == "generic" and body["version"] == 1
    assert body["text"] == (
        "portrait of Captain Mara (hair: a silver braid; distinguishing scar: across the "
        "left cheek), candle lighting, oil painting, dramatic. Aspect ratio 16:9. Avoid: "
        "blurry, low quality, watermark, text, deformed hands, modern clothing."
    )
    # Appearance facts only: her rank says nothing about how she looks.
    assert body["citations"] == [
        {
            "entity_id": ids["mara"],
            "entity": "Captain Mara",
            "fact_id": ids["hair"],
            "attribute": "hair",
            "value": "a silver braid",
        },
        {
            "entity_id": ids["mara"],
            "entity": "Captain Mara",
            "fact_id": ids["distinguishing scar"],
            "attribute": "distinguishing scar",
            "value": "across the left cheek",
        },
    ]

    sd = client.post(
        url,
        json={
            "slots": {"subject": "[[Mara|the captain]]", "mood": "storm"},
            "tool": "stable-diffusion",
        },
    ).json()
    assert sd["positive"].startswith("portrait of the captain (hair: a silver braid;")
    assert sd["positive"].endswith("storm lighting, oil painting, dramatic")
    assert sd["negative"] == "blurry, low quality, watermark, text, deformed hands, modern clothing"
    assert sd["parameters"] == {"width": 1024, "height": 576}
    assert [c["fact_id"] for c in sd["citations"]] == [ids["hair"], ids["distinguishing scar"]]


def test_an_entity_not_yet_canon_lends_its_name_but_no_facts(serve: Serve) -> None:
    client = serve()
    ids = _mara_world(client, status="draft")
    recipe = _recipe(client, PORTRAIT)
    rendered = client.post(
        f"{API}/recipes/{recipe['id']}/render",
        json={"slots": {"subject": "[[Captain Mara]]"}, "world_id": ids["world_id"]},
    ).json()
    assert rendered["text"].startswith("portrait of Captain Mara, candle lighting")
    assert rendered["citations"] == []
    assert rendered["warnings"] == ["Captain Mara is draft, not canon: no facts used"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"slots": {}}, "slots.subject: a required slot needs a value"),
        ({"slots": {"subject": "  "}}, "slots.subject"),
        ({"slots": {"subject": "Mara", "hat": "tricorn"}}, "hat is not a slot"),
        ({"slots": {"subject": "[[Captain Vex]]"}}, "[[Captain Vex]] is not an entity"),
        ({"slots": {"subject": "[[Mara]]"}, "world_id": "elsewhere"}, "world_id"),
        ({"slots": {"subject": "Mara"}, "tool": "midjourney"}, "tool"),
        ({"slots": {"subject": 3}}, "subject"),
    ],
)
def test_a_render_that_cannot_be_filled_is_a_clear_422(
    serve: Serve, body: dict[str, Any], says: str
) -> None:
    client = serve()
    ids = _mara_world(client)
    recipe = _recipe(client, PORTRAIT | {"world_id": ids["world_id"]})
    response = client.post(f"{API}/recipes/{recipe['id']}/render", json=body)
    assert response.status_code == 422, response.text
    assert says in response.text


def test_an_entity_slot_without_a_world_is_a_clear_422(serve: Serve) -> None:
    client = serve()
    recipe = _recipe(client, PORTRAIT)
    response = client.post(
        f"{API}/recipes/{recipe['id']}/render", json={"slots": {"subject": "[[Mara]]"}}
    )
    assert response.status_code == 422 and "give world_id" in response.text


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"template": "portrait of {subject} in {place}"}, "{place} is not declared"),
        ({"template": "portrait of {subject}"}, "'mood' is declared but"),
        ({"template": "portrait of {Subject}, {mood}, {extra}"}, "slots are written"),
        ({"slots": [{"name": "subject", "default": "Mara"}]}, "a required slot has no default"),
        ({"slots": [{"name": "sub ject"}]}, "lower-case"),
        ({"style": {"aspect_ratio": "wide"}}, "aspect_ratio"),
        ({"negative": {"terms": "blurry"}}, "negative"),
        ({"kind": "music"}, "kind"),
        ({"tags": ["not a tag!"]}, "tags"),
        ({"world_id": "nowhere"}, "world_id"),
        ({"name": ""}, "name"),
    ],
)
def test_a_bad_recipe_is_refused_and_nothing_is_saved(
    serve: Serve, change: dict[str, Any], says: str
) -> None:
    client = serve()
    response = client.post(f"{API}/recipes", json=PORTRAIT | change)
    assert response.status_code == 422, response.text
    assert says in response.text
    assert client.get(f"{API}/recipes").json() == []


def test_the_vault_finds_recipes_by_words_tags_and_kind(serve: Serve) -> None:
    client = serve()
    portrait = _recipe(client, PORTRAIT)
    tavern = _recipe(
        client,
        {
            "name": "Tavern scene",
            "template": "a crowded tavern in {town}",
            "slots": [{"name": "town"}],
            "tags": ["location"],
        },
    )
    blurb = _recipe(
        client,
        {
            "name": "NPC blurb",
            "kind": "text",
            "template": "Write a two-line blurb for {who}.",
            "slots": [{"name": "who"}],
            "tags": ["npc"],
        },
    )

    def found(**params: Any) -> list[str]:
        response = client.get(f"{API}/recipes", params=params)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()]

    assert found() == [portrait["id"], blurb["id"], tavern["id"]]
    assert found(q="portrait") == [portrait["id"]]
    assert found(q="TAVERN crowded") == [tavern["id"]]
    assert found(q="handouts") == [portrait["id"]]  # the description is searched too
    assert found(q="100%") == []
    assert found(tag="npc") == [portrait["id"], blurb["id"]]
    assert found(tag=["npc", "portrait"]) == [portrait["id"]]
    assert found(kind="text") == [blurb["id"]]
    assert found(q="blurb", tag="location") == []


def test_recipes_are_versioned_with_diffs_and_restore(serve: Serve) -> None:
    client = serve()
    made = _recipe(client, PORTRAIT)
    url = f"{API}/recipes/{made['id']}"
    changed = client.patch(url, json={"style": {"medium": "charcoal"}, "tags": ["npc"]})
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert [v["changed"] for v in client.get(f"{url}/versions").json()] == [
        ["name", "description", "kind", "template", "slots", "style", "negative", "tags"],
        ["style", "tags"],
    ]
    diff = client.get(f"{url}/diff", params={"from": 1, "to": 2}).json()["changes"]
    assert [c["field"] for c in diff] == ["style", "tags"]
    assert diff[1] == {"field": "tags", "from": ["npc", "portrait"], "to": ["npc"]}
    restored = client.post(f"{url}/restore", json={"version": 1}).json()
    assert restored["version"] == 3 and restored["style"]["medium"] == "oil painting"
    # Unknown versions, and a recipe of another workspace.
    assert client.get(f"{url}/diff", params={"from": 1, "to": 5}).status_code == 404
    assert client.post(f"{url}/restore", json={"version": 5}).status_code == 404
    other = {"X-Workspace": client.post(f"{API}/workspaces", json={"name": "B"}).json()["id"]}
    assert client.get(url, headers=other).status_code == 404
    assert client.post(f"{url}/render", json={}, headers=other).status_code == 404
    assert client.get(f"{API}/recipes", headers=other).json() == []
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404


# --- the store, on SQLite and PostgreSQL ------------------------------------------------


async def test_recipe_saves_are_events_and_the_vault_search_runs_on_each_database(
    engine: Engine,
) -> None:
    vault = engine.studio.recipes
    made = await vault.create(WS, PORTRAIT, META)
    await vault.update(WS, made["id"], {"tags": ["npc", "gallery"]}, META)
    events = await engine.repository.store.read_stream(f"recipe:{made['id']}")
    assert [(e.version, e.type) for e in events] == [(1, "recipe.saved"), (2, "recipe.saved")]
    assert events[1].payload["changed"] == ["tags"]
    assert [r["id"] for r in await vault.search(WS, text="Oil_Painting")] == []
    assert [r["id"] for r in await vault.search(WS, text="shoulders", tags=["gallery"])] == [
        made["id"]
    ]
    with pytest.raises(InvalidInput):
        await vault.update(WS, made["id"], {"template": "{nobody}"}, META)
    assert len(await engine.repository.store.read_stream(f"recipe:{made['id']}")) == 2
