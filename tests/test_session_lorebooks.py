"""A session's lorebooks through the HTTP API, on SQLite and PostgreSQL: the caller's
books kept beside a card's, the card's World Info link honoured, a world's books
consulted in companion chats, settings changed by PATCH, and books attached,
detached and reordered, with the activation in the turn's context trace."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from taleweaver.cli.main import cli
from taleweaver.config import Settings
from taleweaver.domain.prompt import ChatMessage
from taleweaver.llm import ScriptedModel
from tests.data.cards import factory as f
from tests.served import BACKENDS, cli_env, client_for, on_backend

API = "/api/v1"
JSONDict = dict[str, Any]


class Prompts:
    """A scripted narrator that remembers every prompt it was sent."""

    def __init__(self) -> None:
        self.calls: list[Sequence[ChatMessage]] = []
        self.model = ScriptedModel(self._reply)

    def _reply(self, call: Sequence[ChatMessage]) -> str:
        # In a world's sessions the extractor asks too; only the narrator's prompts count.
        if not call[0].content.startswith("You extract"):
            self.calls.append(call)
        return "The wind howls."

    def last_text(self) -> str:
        return "\n".join(m.content for m in self.calls[-1])


@pytest.fixture
def prompts() -> Prompts:
    return Prompts()


@pytest.fixture(params=BACKENDS)
def client(
    request: pytest.FixtureRequest, settings: Settings, prompts: Prompts
) -> Iterator[httpx.Client]:
    with on_backend(request.param, settings) as chosen, client_for(chosen, prompts.model) as c:
        yield c


def world_info(content: str, key: str, name: str | None = None) -> JSONDict:
    book: JSONDict = {"entries": {"0": {"uid": 0, "key": [key], "content": content}}}
    if name is not None:
        book["name"] = name
    return book


def import_book(client: httpx.Client, book: JSONDict, **params: str) -> str:
    response = client.post(f"{API}/lorebooks/import", json=book, params=params)
    assert response.status_code == 201, response.text
    book_id: str = response.json()["id"]
    return book_id


def import_card(client: httpx.Client, card: JSONDict) -> JSONDict:
    response = client.post(
        f"{API}/characters/import",
        content=f.dumps(card),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    found: JSONDict = response.json()
    return found


def companion(client: httpx.Client, character_id: str, **settings: Any) -> JSONDict:
    response = client.post(
        f"{API}/characters/{character_id}/sessions", json={"greeting": 0, "settings": settings}
    )
    assert response.status_code == 201, response.text
    found: JSONDict = response.json()
    return found


def story(client: httpx.Client, **settings: Any) -> str:
    response = client.post(
        f"{API}/sessions", json={"kind": "story", "title": "T", "settings": settings}
    )
    assert response.status_code == 201, response.text
    session_id: str = response.json()["id"]
    return session_id


def books_of(client: httpx.Client, session_id: str) -> list[tuple[str, str]]:
    response = client.get(f"{API}/sessions/{session_id}/lorebooks")
    assert response.status_code == 200, response.text
    return [(b["id"], b["attached"]) for b in response.json()]


def lorebook_trace(client: httpx.Client, session_id: str, text: str) -> list[JSONDict]:
    turn = client.post(f"{API}/sessions/{session_id}/turns", json={"text": text})
    assert turn.status_code == 201, turn.text
    trace = client.get(f"{API}/sessions/{session_id}/turns/{turn.json()['id']}/context").json()
    return [t for t in trace["kept"] if t["source"] == "lorebook"]


def test_a_companion_session_keeps_the_callers_books_beside_the_cards(
    client: httpx.Client, prompts: Prompts
) -> None:
    mine = import_book(client, world_info("Gulls nest on the cliffs.", "gull"))
    aria = import_card(client, f.v3_card(character_book=f.book("lamp")))

    session = companion(client, aria["id"], lorebook_ids=[mine, aria["lorebook_id"]])

    assert session["settings"]["lorebook_ids"] == [mine, aria["lorebook_id"]]
    trace = lorebook_trace(client, session["id"], "the gull by the lamp")
    assert {t["ref"].split("/")[0] for t in trace} == {mine, aria["lorebook_id"]}
    assert "Gulls nest on the cliffs." in prompts.last_text()


def test_a_companion_session_refuses_a_book_that_does_not_exist(client: httpx.Client) -> None:
    aria = import_card(client, f.v3_card())

    response = client.post(
        f"{API}/characters/{aria['id']}/sessions", json={"settings": {"lorebook_ids": ["nope"]}}
    )

    assert response.status_code == 422
    assert "lorebook nope not found" in response.json()["detail"]
    assert client.get(f"{API}/sessions").json()["total"] == 0


def test_a_world_book_is_consulted_in_a_companion_session_of_that_world(
    client: httpx.Client, prompts: Prompts
) -> None:
    world = client.post(f"{API}/worlds", json={"name": "Saltmarsh"}).json()["id"]
    book = import_book(client, world_info("The dragon sleeps under the bay.", "dragon"))
    client.patch(f"{API}/lorebooks/{book}", json={"world_id": world}).raise_for_status()
    aria = import_card(client, f.v3_card())

    session = companion(client, aria["id"], world_id=world)

    assert books_of(client, session["id"]) == [(book, "world")]
    [entry] = lorebook_trace(client, session["id"], "is there a dragon here?")
    assert entry["ref"] == f"{book}/0" and entry["detail"]["matched"] == ["dragon"]
    assert "The dragon sleeps under the bay." in prompts.last_text()


def test_the_cards_world_link_attaches_the_book_of_that_name(client: httpx.Client) -> None:
    eldoria = import_book(client, world_info("Eldoria has two moons.", "moon", name="Eldoria"))
    import_book(client, world_info("Unrelated.", "x", name="Elsewhere"))
    card = f.v3_card()
    card["data"]["extensions"]["world"] = "Eldoria"
    aria = import_card(client, card)

    session = companion(client, aria["id"])

    assert session["settings"]["lorebook_ids"] == [eldoria]
    [entry] = lorebook_trace(client, session["id"], "look at the moon")
    assert entry["detail"]["book"] == "Eldoria"


def test_patch_changes_a_sessions_settings(client: httpx.Client) -> None:
    session_id = story(client, premise="A lighthouse.", mood="grim")

    response = client.patch(
        f"{API}/sessions/{session_id}", json={"settings": {"premise": "A shipwreck.", "mood": None}}
    )

    assert response.status_code == 200, response.text
    assert response.json()["settings"] == {"premise": "A shipwreck."}
    assert client.get(f"{API}/sessions/{session_id}").json()["settings"] == {
        "premise": "A shipwreck."
    }
    events = client.get(f"{API}/sessions/{session_id}/events").json()
    assert events[-1]["type"] == "session.settings_changed"


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"lorebook_ids": ["missing"]}, "lorebook missing not found"),
        ({"lorebook_ids": "one"}, "must be a list of lorebook ids"),
        ({"world_id": 7}, "settings.world_id must be a world id"),
        ({"premise": "x" * 20_000}, "settings must be at most"),
    ],
)
def test_patch_refuses_bad_settings_and_changes_nothing(
    client: httpx.Client, bad: JSONDict, says: str
) -> None:
    session_id = story(client, premise="A lighthouse.")

    response = client.patch(f"{API}/sessions/{session_id}", json={"settings": bad})

    assert response.status_code == 422, response.text
    assert says in response.text
    assert client.get(f"{API}/sessions/{session_id}").json()["settings"] == {
        "premise": "A lighthouse."
    }


def test_books_are_attached_reordered_and_detached(client: httpx.Client) -> None:
    first = import_book(client, world_info("Ravens speak.", "raven", name="Birds"))
    second = import_book(client, world_info("The tide is red.", "tide", name="Sea"))
    session_id = story(client)

    client.post(f"{API}/sessions/{session_id}/lorebooks", json={"lorebook_id": first})
    attached = client.post(f"{API}/sessions/{session_id}/lorebooks", json={"lorebook_id": second})
    assert attached.status_code == 201
    assert [b["name"] for b in attached.json()] == ["Birds", "Sea"]

    reordered = client.put(
        f"{API}/sessions/{session_id}/lorebooks", json={"lorebook_ids": [second, first]}
    )
    assert reordered.status_code == 200
    assert books_of(client, session_id) == [(second, "session"), (first, "session")]
    moved = client.post(
        f"{API}/sessions/{session_id}/lorebooks", json={"lorebook_id": first, "position": 0}
    )
    assert [b["id"] for b in moved.json()] == [first, second]

    detached = client.delete(f"{API}/sessions/{session_id}/lorebooks/{first}")
    assert detached.status_code == 200
    assert books_of(client, session_id) == [(second, "session")]
    refs = [t["ref"] for t in lorebook_trace(client, session_id, "the raven and the tide")]
    assert refs == [f"{second}/0"]


def test_attaching_changes_what_the_next_turn_consults(
    client: httpx.Client, prompts: Prompts
) -> None:
    book = import_book(client, world_info("Ravens speak.", "raven", name="Birds"))
    session_id = story(client)
    assert lorebook_trace(client, session_id, "a raven lands") == []

    client.post(f"{API}/sessions/{session_id}/lorebooks", json={"lorebook_id": book})

    [entry] = lorebook_trace(client, session_id, "a raven lands")
    assert entry["detail"]["book"] == "Birds" and entry["reason"]
    assert "Ravens speak." in prompts.last_text()


def test_session_lorebook_changes_refuse_what_cannot_be_done(client: httpx.Client) -> None:
    world = client.post(f"{API}/worlds", json={"name": "Saltmarsh"}).json()["id"]
    in_world = import_book(client, world_info("Salt.", "salt"), world_id=world)
    own = import_book(client, world_info("Ravens speak.", "raven"))
    session_id = story(client, world_id=world, lorebook_ids=[own])
    url = f"{API}/sessions/{session_id}/lorebooks"

    assert client.post(url, json={"lorebook_id": "nope"}).status_code == 404
    assert client.post(url, json={"lorebook_id": own, "position": 5}).status_code == 422
    assert client.delete(f"{url}/nope").status_code == 404
    world_detach = client.delete(f"{url}/{in_world}")
    assert world_detach.status_code == 422 and "world" in world_detach.json()["detail"]
    assert client.put(url, json={"lorebook_ids": [own, own]}).status_code == 422
    assert client.put(url, json={"lorebook_ids": []}).status_code == 422

    assert books_of(client, session_id) == [(own, "session"), (in_world, "world")]


# --- the CLI ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_cli_attaches_orders_lists_and_detaches_a_sessions_books(
    backend: str, settings: Settings
) -> None:
    with on_backend(backend, settings) as chosen:
        with client_for(chosen) as client:
            birds = import_book(client, world_info("Ravens speak.", "raven", name="Birds"))
            sea = import_book(client, world_info("The tide is red.", "tide", name="Sea"))
            session_id = story(client)
        env = cli_env(chosen)

        def run(*args: str) -> Result:
            return CliRunner().invoke(cli, ["sessions", "lorebooks", *args], env=env)

        assert run("attach", session_id, birds).exit_code == 0
        assert run("attach", session_id, sea, "--position", "0").exit_code == 0
        listed = run("list", session_id)
        assert listed.output == (
            f"1. {sea}  Sea  (1 entry, session)\n2. {birds}  Birds  (1 entry, session)\n"
        )
        assert run("order", session_id, birds, sea).output.startswith(f"1. {birds}  Birds")
        detached = run("detach", session_id, birds)
        assert detached.exit_code == 0 and detached.output == f"1. {sea}  Sea  (1 entry, session)\n"

        refused = run("detach", session_id, birds)
        assert refused.exit_code == 1
        assert f"lorebook {birds} is not attached to session {session_id}" in refused.output
        assert run("list", session_id).output == f"1. {sea}  Sea  (1 entry, session)\n"
