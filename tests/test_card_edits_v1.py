"""An edited card keeps its V1 top-level fields in step with `data` on export (the
fields SillyTavern writes at the top level, and the only ones a V1 reader sees)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.data.cards import factory as f

API = "/api/v1"
JSONDict = dict[str, Any]


@pytest.fixture
def client(serve: Callable[..., httpx.Client]) -> httpx.Client:
    return serve()


def sillytavern_card() -> JSONDict:
    """A V2 card as SillyTavern saves it: the V1 fields at the top level as well."""
    card = f.v2_card()
    card.update({k: card["data"][k] for k in ("name", "description", "first_mes")})
    return card


def edited_export(client: httpx.Client, card: JSONDict, changes: JSONDict) -> JSONDict:
    created = client.post(
        f"{API}/characters/import",
        content=f.dumps(card),
        headers={"Content-Type": "application/json"},
    ).json()
    patched = client.patch(f"{API}/characters/{created['id']}", json=changes)
    assert patched.status_code == 200, patched.text
    exported = client.get(f"{API}/characters/{created['id']}/export", params={"format": "json"})
    assert exported.status_code == 200, exported.text
    found: JSONDict = exported.json()
    return found


@pytest.mark.parametrize("card", [sillytavern_card(), f.v1_card()], ids=["v2", "v1"])
def test_an_edited_first_mes_is_exported_at_the_top_level_too(
    client: httpx.Client, card: JSONDict
) -> None:
    exported = edited_export(client, card, {"first_mes": "Come in, {{user}}."})

    assert exported["data"]["first_mes"] == "Come in, {{user}}."
    assert exported["first_mes"] == "Come in, {{user}}."


def test_a_card_without_top_level_fields_gets_none_added(client: httpx.Client) -> None:
    exported = edited_export(client, f.v3_card(), {"first_mes": "Come in."})

    assert exported["data"]["first_mes"] == "Come in."
    assert "first_mes" not in exported


def test_fields_not_edited_stay_as_they_were_at_the_top_level(client: httpx.Client) -> None:
    exported = edited_export(client, sillytavern_card(), {"description": "A new keeper."})

    assert exported["description"] == "A new keeper." == exported["data"]["description"]
    assert exported["first_mes"] == f.v2_card()["data"]["first_mes"]
