"""The character routes over real loopback HTTP: import as a raw body, read, filter,
edit, export, avatar, relationship, companion sessions, and errors as problem+json."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from taleweaver.interop.cards.png import read_png_card
from tests.data.cards import factory as f

Serve = Callable[..., httpx.Client]
JSONDict = dict[str, Any]
API = "/api/v1"
PNG = {"Content-Type": "image/png"}


@pytest.fixture
def client(serve: Serve) -> httpx.Client:
    return serve()


def import_card(client: httpx.Client, data: bytes, content_type: str = "image/png") -> JSONDict:
    # These tests import one character more than once on purpose: keep every copy.
    response = client.post(
        f"{API}/characters/import",
        content=data,
        headers={"Content-Type": content_type},
        params={"on_duplicate": "copy"},
    )
    assert response.status_code == 201, response.text
    body: JSONDict = response.json()
    return body


def test_a_png_card_uploaded_as_the_body_becomes_a_character(client: httpx.Client) -> None:
    created = import_card(client, f.png_card(chara=f.v2_card(), ccv3=f.v3_card()))

    fetched = client.get(f"{API}/characters/{created['id']}").json()

    assert fetched["name"] == "Aria" and fetched["format"] == "png" and fetched["has_avatar"]
    assert fetched["card"]["data"]["scenario"] == "A stormy night at the lighthouse."
    avatar = client.get(f"{API}/characters/{created['id']}/avatar")
    assert avatar.headers["content-type"] == "image/png"
    assert avatar.content == f.image()


def test_the_content_decides_the_format_not_the_content_type(client: httpx.Client) -> None:
    created = import_card(client, f.dumps(f.v2_card()), content_type="application/octet-stream")
    assert created["format"] == "json"
    _, charx = f.charx_card()
    assert import_card(client, charx, content_type="application/zip")["format"] == "charx"


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [("png", "image/png"), ("json", "application/json"), ("charx", "application/zip")],
)
def test_export_answers_each_format_as_a_download(
    client: httpx.Client, fmt: str, media_type: str
) -> None:
    created = import_card(client, f.png_card(ccv3=f.v3_card("Aria Vale")))

    response = client.get(f"{API}/characters/{created['id']}/export", params={"format": fmt})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="Aria_Vale.{fmt}"'
    again = import_card(client, response.content)
    # Going out as CHARX, the PNG's picture becomes an icon asset the card names.
    assert again["card"]["data"].pop("assets", None) == (
        [
            {
                "type": "icon",
                "uri": "embeded://assets/icon/images/main.png",
                "name": "main",
                "ext": "png",
            }
        ]
        if fmt == "charx"
        else None
    )
    assert again["card"] == created["card"]


def test_characters_are_listed_with_filters(client: httpx.Client) -> None:
    import_card(client, f.dumps(f.v2_card("Aria", tags=["sea"])), "application/json")
    import_card(client, f.dumps(f.v2_card("Bram", tags=["forest"])), "application/json")

    by_tag = client.get(f"{API}/characters", params={"tag": "forest"}).json()
    by_name = client.get(f"{API}/characters", params={"name": "ARI"}).json()
    page = client.get(f"{API}/characters", params={"limit": 1}).json()

    assert [c["name"] for c in by_tag["items"]] == ["Bram"]
    assert [c["name"] for c in by_name["items"]] == ["Aria"]
    assert page["total"] == 2 and page["next_offset"] == 1 and len(page["items"]) == 1


def test_patch_edits_the_card_and_export_shows_it(client: httpx.Client) -> None:
    created = import_card(client, f.dumps(f.v2_card()), "application/json")

    patched = client.patch(
        f"{API}/characters/{created['id']}",
        json={"personality": "stern", "model_url": "https://example.org/aria.vrm"},
    )
    exported = client.get(f"{API}/characters/{created['id']}/export", params={"format": "json"})

    assert patched.status_code == 200, patched.text
    assert patched.json()["card"]["data"]["personality"] == "stern"
    card = exported.json()
    assert card["data"]["personality"] == "stern"
    assert card["data"]["extensions"]["taleweaver"] == {"model_url": "https://example.org/aria.vrm"}


def test_delete_removes_the_character(client: httpx.Client) -> None:
    created = import_card(client, f.dumps(f.v2_card()), "application/json")

    assert client.delete(f"{API}/characters/{created['id']}").status_code == 204
    assert client.get(f"{API}/characters/{created['id']}").status_code == 404


def test_a_companion_session_opens_with_the_greeting(client: httpx.Client) -> None:
    created = import_card(client, f.png_card(ccv3=f.v3_card()))

    response = client.post(
        f"{API}/characters/{created['id']}/sessions", json={"greeting": 1, "title": "Evening"}
    )

    assert response.status_code == 201, response.text
    session = response.json()
    assert session["kind"] == "companion" and session["title"] == "Evening"
    history = client.get(f"{API}/sessions/{session['id']}/messages").json()
    assert [m["content"] for m in history] == ["Oh! A visitor. Aria at your service."]
    turn = client.post(f"{API}/sessions/{session['id']}/turns", json={"text": "Thanks, friend!"})
    assert turn.status_code == 201, turn.text
    state = client.get(f"{API}/characters/{created['id']}/relationship").json()
    assert state["turns"] == 1 and state["trust"] > 50 and state["user_id"] == "local"


def test_a_group_session_names_more_characters(client: httpx.Client) -> None:
    aria = import_card(client, f.dumps(f.v3_card()), "application/json")["id"]
    bram = import_card(client, f.dumps(f.v3_card("Bram")), "application/json")["id"]

    response = client.post(
        f"{API}/characters/{aria}/sessions", json={"with_characters": [bram], "greeting": 0}
    )

    assert response.status_code == 201, response.text
    assert response.json()["settings"]["character_ids"] == [aria, bram]


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (f.png_card(chara=f.v2_card())[:-25], 422),
        (f.image()[:-12] + f.text_chunk("chara", b"%%%") + f.image()[-12:], 422),
        (b'{"spec": "chara_card_v2", "data": {"name": "x"', 422),
        (f.charx(f.v3_card(), {"../escape.txt": b"x"}), 422),
        (b"", 422),
    ],
    ids=["truncated-png", "base64-garbage", "invalid-json", "path-traversal", "empty"],
)
def test_bad_uploads_are_problems_and_leave_nothing(
    client: httpx.Client, data: bytes, status: int
) -> None:
    response = client.post(f"{API}/characters/import", content=data, headers=PNG)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get(f"{API}/characters").json()["total"] == 0


def test_a_card_over_the_size_limit_is_a_413_and_leaves_nothing(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALEWEAVER_CARD_MAX_BYTES", "100000")
    client = serve(max_body_bytes=10 * 2**20)  # the server's own limit out of the way
    huge = f.png_card(ccv3=f.v3_card(description="x" * 200_000))

    response = client.post(f"{API}/characters/import", content=huge, headers=PNG)

    assert response.status_code == 413
    assert "at most 100000" in response.json()["detail"]
    assert client.get(f"{API}/characters").json()["total"] == 0


def test_another_workspaces_character_is_not_found(client: httpx.Client) -> None:
    created = import_card(client, f.dumps(f.v2_card()), "application/json")
    other = client.post(f"{API}/workspaces", json={"name": "Other"}).json()["id"]
    elsewhere = {"X-Workspace": other}

    for method, suffix in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("GET", "/export"),
        ("GET", "/avatar"),
        ("GET", "/relationship"),
        ("POST", "/sessions"),
    ]:
        response = client.request(
            method,
            f"{API}/characters/{created['id']}{suffix}",
            headers=elsewhere,
            json={} if method in ("PATCH", "POST") else None,
        )
        assert response.status_code == 404, (method, suffix, response.text)


def test_a_character_without_a_picture_has_no_avatar(client: httpx.Client) -> None:
    created = import_card(client, f.dumps(f.v2_card()), "application/json")

    response = client.get(f"{API}/characters/{created['id']}/avatar")

    assert response.status_code == 404
    png = client.get(f"{API}/characters/{created['id']}/export").content
    assert json.loads(read_png_card(png).text)["data"]["name"] == "Aria"


def test_an_unknown_export_format_is_a_422(client: httpx.Client) -> None:
    created = import_card(client, f.dumps(f.v2_card()), "application/json")

    response = client.get(f"{API}/characters/{created['id']}/export", params={"format": "gif"})

    assert response.status_code == 422


def test_a_bad_greeting_index_is_a_422(client: httpx.Client) -> None:
    created = import_card(client, f.dumps(f.v2_card()), "application/json")

    response = client.post(f"{API}/characters/{created['id']}/sessions", json={"greeting": 7})

    assert response.status_code == 422
    assert client.get(f"{API}/sessions").json()["total"] == 0


def test_export_may_carry_the_callers_relationship_state(client: httpx.Client) -> None:
    created = import_card(client, f.dumps(f.v2_card()), "application/json")

    exported = client.get(
        f"{API}/characters/{created['id']}/export",
        params={"format": "json", "relationship": "true"},
    ).json()

    (state,) = exported["data"]["extensions"]["taleweaver"]["relationships"]
    assert state["user_id"] == "local" and state["affinity"] == 50


def test_an_edit_with_text_no_database_can_store_is_a_422(client: httpx.Client) -> None:
    created = import_card(client, f.dumps(f.v2_card()), "application/json")

    response = client.patch(
        f"{API}/characters/{created['id']}",
        content=b'{"description": "bad \\ud800 half"}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    fetched = client.get(f"{API}/characters/{created['id']}").json()
    assert fetched["card"]["data"]["description"] == created["card"]["data"]["description"]
