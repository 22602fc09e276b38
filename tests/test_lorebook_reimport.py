"""Lorebook imports through the HTTP API and the CLI, on SQLite and PostgreSQL: a
book is named after its own name field or its file, and importing the same book
again says so and offers update, copy or skip instead of quietly duplicating it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from taleweaver.cli.main import cli
from taleweaver.config import Settings
from tests.served import BACKENDS, cli_env, client_for, on_backend

API = "/api/v1"
JSONDict = dict[str, Any]


@pytest.fixture(params=BACKENDS)
def chosen(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Settings]:
    with on_backend(request.param, settings) as picked:
        yield picked


@pytest.fixture
def client(chosen: Settings) -> Iterator[httpx.Client]:
    with client_for(chosen) as c:
        yield c


def world_info(*contents: str, name: str | None = None) -> JSONDict:
    book: JSONDict = {
        "entries": {
            str(i): {"uid": i, "key": [f"k{i}"], "content": text} for i, text in enumerate(contents)
        }
    }
    if name is not None:
        book["name"] = name
    return book


def post(client: httpx.Client, book: JSONDict, **params: str) -> httpx.Response:
    return client.post(f"{API}/lorebooks/import", json=book, params=params)


def names(client: httpx.Client) -> list[str]:
    return sorted(b["name"] for b in client.get(f"{API}/lorebooks").json())


def test_a_book_is_named_by_its_name_field_else_after_its_file(client: httpx.Client) -> None:
    own = post(client, world_info("Salt.", name="Saltmarsh lore"), filename="ignored.json")
    from_file = post(client, world_info("Gulls."), filename="Eldoria.json")
    bare = post(client, world_info("Tides."))

    assert own.json()["name"] == "Saltmarsh lore"
    assert from_file.json()["name"] == "Eldoria"
    assert bare.status_code == 201 and bare.json()["name"] == "Imported lorebook"
    other = post(client, world_info("Other tides."))
    assert other.status_code == 201, "two unnamed books are not the same book"


def test_importing_the_same_book_again_is_a_409_with_the_choices(client: httpx.Client) -> None:
    first = post(client, world_info("Salt.", name="Saltmarsh")).json()

    again = post(client, world_info("Salt.", name="Saltmarsh"))

    assert again.status_code == 409
    problem = again.json()
    assert problem["choices"] == ["update", "copy", "skip"]
    assert problem["existing"] == {
        "id": first["id"],
        "name": "Saltmarsh",
        "entries": 1,
        "match": "same content",
    }
    assert "already imported" in problem["detail"]
    assert names(client) == ["Saltmarsh"]


def test_the_same_content_under_another_file_name_is_recognised(client: httpx.Client) -> None:
    post(client, world_info("Salt.", "Gulls."), filename="marsh.json")

    again = post(client, world_info("Salt.", "Gulls."), filename="marsh (1).json")

    assert again.status_code == 409 and again.json()["existing"]["name"] == "marsh"


def test_skip_imports_nothing_and_names_the_existing_book(client: httpx.Client) -> None:
    first = post(client, world_info("Salt.", name="Saltmarsh")).json()

    skipped = post(client, world_info("Salt.", name="Saltmarsh"), on_duplicate="skip")

    assert skipped.status_code == 201
    assert skipped.json()["id"] == first["id"]
    assert skipped.json()["duplicate"] == {
        "of": first["id"],
        "match": "same content",
        "outcome": "skip",
    }
    assert names(client) == ["Saltmarsh"]


def test_copy_keeps_both(client: httpx.Client) -> None:
    post(client, world_info("Salt.", name="Saltmarsh"))

    copied = post(client, world_info("Salt.", name="Saltmarsh"), on_duplicate="copy")

    assert copied.status_code == 201 and copied.json()["duplicate"]["outcome"] == "copy"
    assert names(client) == ["Saltmarsh", "Saltmarsh (copy)"]


def test_update_replaces_the_entries_of_the_book_of_that_name(client: httpx.Client) -> None:
    first = post(client, world_info("Salt.", name="Saltmarsh")).json()
    newer = world_info("Salt, and more salt.", "Gulls.", name="Saltmarsh")
    assert post(client, newer).json()["existing"]["match"] == "same name"

    updated = post(client, newer, on_duplicate="update")

    assert updated.status_code == 201, updated.text
    assert updated.json()["id"] == first["id"] and updated.json()["entries"] == 2
    book = client.get(f"{API}/lorebooks/{first['id']}").json()
    assert [e["content"] for e in book["items"]] == ["Salt, and more salt.", "Gulls."]
    assert book["version"] == 2
    assert names(client) == ["Saltmarsh"]


def test_a_bad_choice_is_a_422_and_writes_nothing(client: httpx.Client) -> None:
    response = post(client, world_info("Salt."), on_duplicate="merge")

    assert response.status_code == 422
    assert names(client) == []


def test_the_cli_names_a_book_after_its_file_and_asks_before_duplicating(
    chosen: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "Eldoria.json"
    path.write_text(json.dumps(world_info("Two moons.")), encoding="utf-8")
    env = cli_env(chosen)

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["import", str(path), *args], env=env)

    first = run()
    assert first.exit_code == 0, first.output
    assert first.output.startswith(f"{path}: lorebook: ") and " Eldoria" in first.output
    book_id = first.output.split()[2]

    asked = run()
    assert asked.exit_code == 1
    assert asked.output == (
        f"{path}: error: already imported (same content as 'Eldoria', id {book_id}): "
        "run again with --on-duplicate update, copy or skip\n"
    )
    skipped = run("--on-duplicate", "skip")
    assert skipped.exit_code == 0
    assert skipped.output == (
        f"{path}: lorebook: {book_id} Eldoria (skipped: same content as {book_id})\n"
    )
