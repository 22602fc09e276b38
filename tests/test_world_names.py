"""Extraction links a reply's "Malvek" to the world's "Lord Malvek" (titles, aliases,
words of a name, fuzzy spelling) instead of proposing a new entity, and a turn's JSON
and SSE stream carry the continuity findings, over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest

from taleweaver.config import Settings
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.world.names import match_name
from taleweaver.llm import ScriptedModel
from taleweaver.memory.world.extraction import INSTRUCTIONS
from tests.served import BACKENDS, client_for, on_backend
from tests.test_api import STREAM, read_events

API = "/api/v1"
JSONDict = dict[str, Any]


def extraction(name: str, status: str) -> str:
    return json.dumps(
        {
            "entities": [{"name": name, "type": "npc", "summary": "", "confidence": 0.9}],
            "facts": [
                {"entity": name, "attribute": "status", "value": status, "confidence": 0.9}
            ],
        }
    )


class Narrator:
    """Narrates one line; answers the extractor with what `said` holds."""

    def __init__(self) -> None:
        self.said = extraction("Malvek", "alive")
        self.model = ScriptedModel(self._reply)

    def _reply(self, messages: Sequence[ChatMessage]) -> str:
        if messages and messages[0].content == INSTRUCTIONS:
            return self.said
        return "Malvek strides into the hall, alive and smiling."


@pytest.fixture
def narrator() -> Narrator:
    return Narrator()


@pytest.fixture(params=BACKENDS)
def client(
    request: pytest.FixtureRequest, settings: Settings, narrator: Narrator
) -> Iterator[httpx.Client]:
    with on_backend(request.param, settings) as chosen, client_for(chosen, narrator.model) as c:
        yield c


def malveks_world(client: httpx.Client) -> tuple[str, str, str]:
    """(world, Lord Malvek's id, a story session in that world); canon: he is dead."""
    world = client.post(f"{API}/worlds", json={"name": "Greywater"}).json()["id"]
    lord = client.post(
        f"{API}/worlds/{world}/entities",
        json={"type": "npc", "name": "Lord Malvek", "status": "canon"},
    ).json()["id"]
    client.post(
        f"{API}/worlds/{world}/entities/{lord}/facts",
        json={"attribute": "status", "value": "dead"},
    ).raise_for_status()
    session = client.post(
        f"{API}/sessions", json={"kind": "story", "title": "T", "settings": {"world_id": world}}
    ).json()["id"]
    return world, lord, session


def test_malvek_is_linked_to_lord_malvek_not_proposed_anew(client: httpx.Client) -> None:
    world, lord, session = malveks_world(client)

    client.post(f"{API}/sessions/{session}/turns", json={"text": "Who comes?"}).raise_for_status()

    queue = client.get(f"{API}/worlds/{world}/review").json()
    entity = next(a for a in queue if a["kind"] == "entity")
    assert entity["payload"]["entity_id"] == lord
    assert entity["payload"]["linked"] == {
        "entity_id": lord,
        "name": "Lord Malvek",
        "how": "title",
        "score": 100.0,
    }
    review = f"{API}/worlds/{world}/review/{entity['id']}"
    decided = client.post(review, json={"decision": "accept"})
    assert decided.status_code == 200, decided.text
    [only] = client.get(f"{API}/worlds/{world}/entities").json()
    assert only["id"] == lord and "Malvek" in only["aliases"]


def test_the_turn_json_carries_the_continuity_findings(client: httpx.Client) -> None:
    _, lord, session = malveks_world(client)

    turn = client.post(f"{API}/sessions/{session}/turns", json={"text": "Who comes?"}).json()

    kinds = {f["kind"] for f in turn["continuity"]}
    assert "contradiction" in kinds
    contradiction = next(f for f in turn["continuity"] if f["kind"] == "contradiction")
    assert contradiction["entity_ids"] == [lord]
    assert "Lord Malvek" in contradiction["summary"] and "'dead'" in contradiction["summary"]


def test_the_stream_carries_the_findings_before_done(client: httpx.Client) -> None:
    _, lord, session = malveks_world(client)

    url = f"{API}/sessions/{session}/turns"
    with client.stream("POST", url, json={"text": "Who comes?"}, headers=STREAM) as response:
        events = list(read_events(response))

    names = [e.name for e in events]
    assert names.index("continuity") < names.index("done")
    found = events[names.index("continuity")].data["findings"]
    assert any(f["kind"] == "contradiction" and f["entity_ids"] == [lord] for f in found)
    assert events[-1].data["turn"]["continuity"] == found


def test_a_turn_without_findings_says_so(client: httpx.Client, narrator: Narrator) -> None:
    _, _, session = malveks_world(client)
    narrator.said = extraction("Malvek", "dead")

    turn = client.post(f"{API}/sessions/{session}/turns", json={"text": "Who comes?"}).json()

    assert turn["continuity"] == []


# --- the matcher's rules ------------------------------------------------------------------


def entity(entity_id: str, name: str, *aliases: str) -> JSONDict:
    return {"id": entity_id, "name": name, "aliases": list(aliases)}


@pytest.mark.parametrize(
    ("said", "how"),
    [
        ("Malvek", "title"),
        ("the Lord Malvek", "title"),
        ("Malvec", "fuzzy"),
        ("Greyhand", "title"),
    ],
)
def test_forms_of_a_name_find_the_entity(said: str, how: str) -> None:
    found = match_name(said, [entity("m", "Lord Malvek", "Greyhand"), entity("s", "Sera Vance")])

    assert found is not None and found.entity["id"] == "m" and found.how == how


def test_a_name_within_a_longer_one_is_linked_when_only_one_has_it() -> None:
    found = match_name("Vance", [entity("s", "Sera Vance"), entity("m", "Lord Malvek")])

    assert found is not None and found.entity["id"] == "s" and found.how == "words"


@pytest.mark.parametrize(
    ("said", "entities"),
    [
        ("Vance", [entity("s", "Sera Vance"), entity("t", "Tom Vance")]),
        ("Orrin", [entity("m", "Lord Malvek")]),
        ("Mara", [entity("v", "Vera")]),
        ("Lord", [entity("m", "Lord Malvek"), entity("a", "Lord Ashby")]),
    ],
)
def test_an_ambiguous_or_unknown_name_links_nothing(said: str, entities: list[JSONDict]) -> None:
    assert match_name(said, entities) is None
