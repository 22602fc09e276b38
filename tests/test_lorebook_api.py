"""The lorebook routes over real HTTP: import, read, edit, export, dry-run activation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx

DATA = Path(__file__).parent / "data" / "lorebooks"
ASTER = json.loads((DATA / "sillytavern_aster.json").read_text())

Serve = Callable[..., httpx.Client]


def imported(client: httpx.Client, body: object = ASTER, **params: str) -> str:
    made = client.post("/api/v1/lorebooks/import", json=body, params=params)
    assert made.status_code == 201, made.text
    book_id: str = made.json()["id"]
    return book_id


def test_import_list_read_and_export(serve: Serve) -> None:
    client = serve()
    aster = client.post("/api/v1/worlds", json={"name": "Aster"}).json()["id"]
    made = client.post(
        "/api/v1/lorebooks/import", json=ASTER, params={"world_id": aster, "name": "Aster"}
    )
    assert made.status_code == 201
    summary = made.json()
    assert (summary["name"], summary["format"], summary["entries"]) == ("Aster", "sillytavern", 26)
    book_id = summary["id"]

    assert [
        b["id"] for b in client.get("/api/v1/lorebooks", params={"world_id": aster}).json()
    ] == [book_id]
    assert client.get("/api/v1/lorebooks", params={"world_id": "elsewhere"}).json() == []
    detail = client.get(f"/api/v1/lorebooks/{book_id}").json()
    assert detail["items"][0]["keys"] == ["dragon", "wyrm"]
    exported = client.get(f"/api/v1/lorebooks/{book_id}/export", params={"format": "sillytavern"})
    assert exported.json() == ASTER
    as_card_book = client.get(f"/api/v1/lorebooks/{book_id}/export?format=character_book").json()
    assert len(as_card_book["entries"]) == 26


def test_malformed_import_is_a_422_and_stores_nothing(serve: Serve) -> None:
    client = serve()
    bad = client.post("/api/v1/lorebooks/import", json={"entries": {"1": {"key": [1]}}})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "'key' must be a list of strings" in bad.json()["detail"]
    assert client.post("/api/v1/lorebooks/import", json={"hello": "world"}).status_code == 422
    assert client.get("/api/v1/lorebooks").json() == []


def test_entries_are_added_edited_and_deleted(serve: Serve) -> None:
    client = serve()
    book_id = imported(client)
    base = f"/api/v1/lorebooks/{book_id}/entries"
    added = client.post(base, json={"keys": ["griffin"], "content": "Griffins.", "sticky": 3})
    assert added.status_code == 201
    assert (added.json()["uid"], added.json()["sticky"]) == ("26", 3)
    patched = client.patch(f"{base}/26", json={"logic": "not_any", "secondary_keys": ["egg"]})
    assert patched.json()["logic"] == "not_any"
    assert client.patch(f"{base}/26", json={"probability": 400}).status_code == 422
    assert client.patch(f"{base}/99", json={"content": "x"}).status_code == 404
    assert client.delete(f"{base}/0").status_code == 204
    exported = client.get(f"/api/v1/lorebooks/{book_id}/export").json()["entries"]
    assert "0" not in exported
    assert exported["26"]["selectiveLogic"] == 2


def test_book_settings_can_be_changed(serve: Serve) -> None:
    client = serve()
    book_id = imported(client)
    # A World Info file has no recursion setting: off, as SillyTavern's global default.
    run = client.post(f"/api/v1/lorebooks/{book_id}/activate", json={"text": "a dragon"}).json()
    assert "1" not in {a["uid"] for a in run["activated"]}
    changed = client.patch(
        f"/api/v1/lorebooks/{book_id}",
        json={"name": "Renamed", "world_id": "w2", "settings": {"recursive": True}},
    )
    assert changed.status_code == 200
    body = changed.json()
    assert (body["name"], body["world_id"], body["settings"]["recursive"]) == (
        "Renamed",
        "w2",
        True,
    )
    run = client.post(f"/api/v1/lorebooks/{book_id}/activate", json={"text": "a dragon"}).json()
    assert "1" in {a["uid"] for a in run["activated"]}


def test_dry_run_says_what_activates_and_why(serve: Serve) -> None:
    client = serve()
    book_id = imported(client)
    client.patch(f"/api/v1/lorebooks/{book_id}", json={"settings": {"recursive": True}})
    run = client.post(
        f"/api/v1/lorebooks/{book_id}/activate",
        json={"messages": ["I walk in.", "A wyrm sleeps here."], "text": "What is the weather?"},
    )
    assert run.status_code == 200
    reasons = {a["uid"]: a["reason"] for a in run.json()["activated"]}
    assert reasons["0"] == "key 'wyrm' in narrator message (1 back)"
    assert reasons["11"] == "key 'weather' in player message"
    assert reasons["1"] == "recursion from entry 0 (key 'Ember Court')"
    rejected = {r["uid"]: r["why"] for r in run.json()["rejected"]}
    assert rejected["10"] == "lost group 'weather' to entry 11"


def test_an_unknown_book_or_format_is_refused(serve: Serve) -> None:
    client = serve()
    assert client.get("/api/v1/lorebooks/nope").status_code == 404
    assert client.delete("/api/v1/lorebooks/nope").status_code == 404
    book_id = imported(client)
    assert client.get(f"/api/v1/lorebooks/{book_id}/export?format=kobold").status_code == 422
    assert client.delete(f"/api/v1/lorebooks/{book_id}").status_code == 204
    assert client.get(f"/api/v1/lorebooks/{book_id}").status_code == 404
