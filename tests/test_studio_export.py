"""Exports over real HTTP: a seeded campaign's world as the JSON Foundry VTT imports
(entries as JournalEntry documents with a text page, NPCs as Actor stubs), checked
against the field names of Foundry's published document schema, and as a generic
JSON / Markdown bundle; and the refusals."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from taleweaver.llm import ScriptedModel

pytestmark = pytest.mark.dialects

Serve = Callable[..., httpx.Client]
API = "/api/v1"

# The fields of Foundry's documents (foundry.documents.BaseJournalEntry,
# BaseJournalEntryPage and BaseActor, `defineSchema`, v11 to v13): what an export may
# carry, and what an import needs of it.
JOURNAL_FIELDS = {
    "_id",
    "name",
    "pages",
    "folder",
    "categories",
    "sort",
    "ownership",
    "flags",
    "_stats",
}
PAGE_FIELDS = {
    "_id", "name", "type", "system", "title", "image", "text", "video", "src",
    "category", "sort", "ownership", "flags", "_stats",
}  # fmt: skip
PAGE_TEXT_FIELDS = {"content", "format", "markdown"}
PAGE_TITLE_FIELDS = {"show", "level"}
ACTOR_FIELDS = {
    "_id", "name", "img", "type", "system", "prototypeToken", "items", "effects",
    "folder", "sort", "ownership", "flags", "_stats",
}  # fmt: skip
FOUNDRY_ID = re.compile(r"^[A-Za-z0-9]{16}$")
HTML_FORMAT = 1  # CONST.JOURNAL_ENTRY_PAGE_FORMATS.HTML
OWNERSHIP_LEVELS = {-1, 0, 1, 2, 3}  # inherit, none, limited, observer, owner


def seed(client: httpx.Client) -> dict[str, str]:
    wid = client.post(f"{API}/worlds", json={"name": "Saltmarsh"}).json()["id"]

    def entity(**body: Any) -> str:
        made = client.post(f"{API}/worlds/{wid}/entities", json=body)
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    mara = entity(type="npc", name="Captain Mara", status="canon", summary="Harbour <master>.")
    client.post(
        f"{API}/worlds/{wid}/entities/{mara}/facts", json={"attribute": "hair", "value": "silver"}
    )
    tobbin = entity(type="npc", name="Old Tobbin", aliases=["Tob"])
    gone = entity(type="npc", name="Ghost of Esk", status="canon")
    client.patch(f"{API}/worlds/{wid}/entities/{gone}", json={"status": "deprecated"})
    entity(type="location", name="The Quay")
    body = "# The bell\n\nAt midnight **[[Captain Mara]]** rings it.\n\n- one <b>\n- [[Tob]] laughs"
    entry = client.post(
        f"{API}/worlds/{wid}/entries", json={"title": "Harbour notes", "body": body}
    )
    assert entry.status_code == 201, entry.text
    client.post(f"{API}/blueprints", json={"name": "The Drowned Crown", "world_id": wid})
    return {"world_id": wid, "mara": mara, "tobbin": tobbin, "entry": entry.json()["id"]}


def test_a_foundry_export_matches_foundrys_document_shapes(serve: Serve) -> None:
    client = serve(ScriptedModel())
    ids = seed(client)
    response = client.get(f"{API}/worlds/{ids['world_id']}/export/foundry")
    assert response.status_code == 200, response.text
    export = response.json()
    assert export["world"] == {"id": ids["world_id"], "name": "Saltmarsh"}

    [journal] = export["JournalEntry"]
    assert set(journal) <= JOURNAL_FIELDS and {"_id", "name", "pages"} <= set(journal)
    assert FOUNDRY_ID.match(journal["_id"]) and journal["name"] == "Harbour notes"
    assert journal["ownership"]["default"] in OWNERSHIP_LEVELS
    assert journal["flags"]["taleweaver"]["entry_id"] == ids["entry"]
    [page] = journal["pages"]
    assert set(page) <= PAGE_FIELDS and page["type"] == "text"
    assert FOUNDRY_ID.match(page["_id"]) and page["_id"] != journal["_id"]
    assert set(page["text"]) <= PAGE_TEXT_FIELDS and set(page["title"]) <= PAGE_TITLE_FIELDS
    assert page["text"]["format"] == HTML_FORMAT
    assert page["ownership"]["default"] in OWNERSHIP_LEVELS

    # NPCs (not the deprecated one, not the location) as Actor stubs.
    actors = {a["name"]: a for a in export["Actor"]}
    assert sorted(actors) == ["Captain Mara", "Old Tobbin"]
    for actor in actors.values():
        assert set(actor) <= ACTOR_FIELDS and {"_id", "name", "type"} <= set(actor)
        assert FOUNDRY_ID.match(actor["_id"]) and actor["type"] == "npc"
        assert actor["items"] == [] and actor["effects"] == []
        assert actor["prototypeToken"]["name"] == actor["name"]
    mara = actors["Captain Mara"]
    biography = mara["system"]["details"]["biography"]["value"]
    assert "Harbour &lt;master&gt;." in biography and "<strong>hair</strong>: silver" in biography
    assert mara["flags"]["taleweaver"]["entity_id"] == ids["mara"]

    # The entry's Markdown is HTML, escaped, its links Foundry content links to the actors.
    html = page["text"]["content"]
    assert html.startswith("<h1>The bell</h1>")
    assert f"@UUID[Actor.{mara['_id']}]{{Captain Mara}}" in html
    assert f"@UUID[Actor.{actors['Old Tobbin']['_id']}]{{Tob}}" in html
    assert "<li>one &lt;b&gt;</li>" in html and "<b>" not in html
    assert page["text"]["markdown"].startswith("# The bell")

    # The same world exports with the same ids (a re-import updates, not duplicates).
    again = client.get(f"{API}/worlds/{ids['world_id']}/export/foundry").json()
    assert again["JournalEntry"][0]["_id"] == journal["_id"]
    assert {a["_id"] for a in again["Actor"]} == {a["_id"] for a in export["Actor"]}


def test_a_generic_bundle_as_json_and_markdown(serve: Serve) -> None:
    client = serve(ScriptedModel())
    ids = seed(client)
    bundle = client.get(f"{API}/worlds/{ids['world_id']}/export/bundle").json()
    assert bundle["format"] == "taleweaver-studio-bundle" and bundle["version"] == 1
    assert [b["fields"]["name"] for b in bundle["blueprints"]] == ["The Drowned Crown"]
    assert {e["name"] for e in bundle["entities"]} == {
        "Captain Mara",
        "Old Tobbin",
        "Ghost of Esk",
        "The Quay",
    }
    assert [f["value"] for f in bundle["facts"]] == ["silver"]
    assert [e["id"] for e in bundle["entries"]] == [ids["entry"]]

    md = client.get(f"{API}/worlds/{ids['world_id']}/export/bundle", params={"format": "markdown"})
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert md.text.startswith("# Saltmarsh")
    assert "### Captain Mara (npc, canon)" in md.text and "- hair: silver" in md.text
    assert "### Harbour notes" in md.text and "## Blueprints" in md.text


def test_exports_refuse_what_is_not_there(serve: Serve) -> None:
    client = serve(ScriptedModel())
    assert client.get(f"{API}/worlds/nope/export/foundry").status_code == 404
    assert client.get(f"{API}/worlds/nope/export/bundle").status_code == 404
    ids = seed(client)
    bad = client.get(f"{API}/worlds/{ids['world_id']}/export/bundle", params={"format": "pdf"})
    assert bad.status_code == 422
    # An empty world exports empty lists, not an error.
    empty = client.post(f"{API}/worlds", json={"name": "Empty"}).json()["id"]
    assert client.get(f"{API}/worlds/{empty}/export/foundry").json()["JournalEntry"] == []
