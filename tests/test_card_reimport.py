"""Re-importing a character card through the HTTP API and the CLI, on SQLite and
PostgreSQL: the same card again is a 409 offering update, copy or skip."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from taleweaver.cli.main import cli
from taleweaver.config import Settings
from tests.data.cards import factory as f
from tests.served import BACKENDS, cli_env, client_for, on_backend

API = "/api/v1"
JSON_BODY = {"Content-Type": "application/json"}
JSONDict = dict[str, Any]


@pytest.fixture(params=BACKENDS)
def chosen(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Settings]:
    with on_backend(request.param, settings) as picked:
        yield picked


@pytest.fixture
def client(chosen: Settings) -> Iterator[httpx.Client]:
    with client_for(chosen) as c:
        yield c


def post(client: httpx.Client, card: JSONDict, **params: str) -> httpx.Response:
    return client.post(
        f"{API}/characters/import", content=f.dumps(card), headers=JSON_BODY, params=params
    )


def names(client: httpx.Client) -> list[str]:
    return sorted(c["name"] for c in client.get(f"{API}/characters").json()["items"])


def test_the_same_card_again_is_a_409_with_the_choices(client: httpx.Client) -> None:
    first = post(client, f.v3_card()).json()

    again = post(client, f.v3_card())

    assert again.status_code == 409
    assert again.json()["choices"] == ["update", "copy", "skip"]
    assert again.json()["existing"] == {"id": first["id"], "name": "Aria", "match": "same content"}
    assert names(client) == ["Aria"]


def test_skip_and_copy(client: httpx.Client) -> None:
    first = post(client, f.v3_card()).json()

    skipped = post(client, f.v3_card(), on_duplicate="skip")
    copied = post(client, f.v3_card(), on_duplicate="copy")

    assert skipped.status_code == 201 and skipped.json()["id"] == first["id"]
    assert skipped.json()["duplicate"] == {
        "of": first["id"],
        "match": "same content",
        "outcome": "skip",
    }
    assert copied.status_code == 201 and copied.json()["id"] != first["id"]
    assert names(client) == ["Aria", "Aria"]


def test_update_replaces_the_card_of_the_character_of_that_name(client: httpx.Client) -> None:
    first = post(client, f.v3_card()).json()
    newer = f.v3_card(first_mes="Back again, {{user}}?")
    assert post(client, newer).json()["existing"]["match"] == "same name"

    updated = post(client, newer, on_duplicate="update")

    assert updated.status_code == 201, updated.text
    assert updated.json()["id"] == first["id"]
    card = client.get(f"{API}/characters/{first['id']}").json()["card"]
    assert card["data"]["first_mes"] == "Back again, {{user}}?"
    assert names(client) == ["Aria"]


def test_the_cli_asks_before_importing_a_card_twice(chosen: Settings, tmp_path: Path) -> None:
    path = tmp_path / "aria.json"
    path.write_bytes(f.dumps(f.v3_card()))

    def run(*args: str) -> Any:
        return CliRunner().invoke(
            cli, ["characters", "import", str(path), *args], env=cli_env(chosen)
        )

    first = run()
    assert first.exit_code == 0, first.output
    character_id = first.output.split()[1]

    asked = run()
    assert asked.exit_code == 1
    assert f"already imported (same content as 'Aria', id {character_id})" in asked.output
    skipped = run("--on-duplicate", "skip")
    assert skipped.output == f"aria.json: {character_id}  Aria (skip: same content)\n"
