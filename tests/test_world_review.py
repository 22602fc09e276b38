"""Extraction -> review -> canon (over HTTP), continuity findings and resolutions, CLI."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from taleweaver.cli.main import cli
from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.prompt import ChatMessage
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.memory.world.extraction import INSTRUCTIONS, heuristic
from tests.test_world_bible import META, WS, harbour_world, run_turn, story

GOOD = json.dumps(
    {
        "entities": [
            {
                "name": "Thessaly Crane",
                "type": "npc",
                "summary": "A lamplighter.",
                "confidence": {"name": 0.95, "type": 0.9, "summary": 0.8},
            }
        ],
        "facts": [{"entity": "Mira Vance", "attribute": "age", "value": 51, "confidence": 0.9}],
    }
)


def extracting(reply: str, extraction: list[str]) -> Callable[[Sequence[ChatMessage]], str]:
    """A narrator that answers extraction prompts from a list (the last repeats)."""
    answers = list(extraction)
    calls = {"extract": 0}

    def script(messages: Sequence[ChatMessage]) -> str:
        if messages and messages[0].content == INSTRUCTIONS:
            calls["extract"] += 1
            return answers.pop(0) if len(answers) > 1 else answers[0]
        return reply

    script.calls = calls  # type: ignore[attr-defined]
    return script


def client_for(serve: Callable[..., httpx.Client], model: ScriptedModel) -> httpx.Client:
    return serve(model)


def test_extraction_review_canon_over_http(serve: Callable[..., httpx.Client]) -> None:
    script = extracting("Thessaly Crane lights the lamps.", [GOOD])
    client = serve(ScriptedModel(script))
    wid = client.post("/api/v1/worlds", json={"name": "Saltmarsh"}).json()["id"]
    mira = client.post(
        f"/api/v1/worlds/{wid}/entities",
        json={"type": "npc", "name": "Mira Vance", "status": "canon"},
    ).json()["id"]
    client.post(
        f"/api/v1/worlds/{wid}/entities/{mira}/facts", json={"attribute": "age", "value": 34}
    ).raise_for_status()
    sid = client.post(
        "/api/v1/sessions", json={"kind": "story", "title": "T", "settings": {"world_id": wid}}
    ).json()["id"]
    turn = client.post(f"/api/v1/sessions/{sid}/turns", json={"text": "I look around"}).json()
    # Continuity saw the contradiction before the turn committed.
    events = client.get(f"/api/v1/sessions/{sid}/events").json()
    [finding] = events[-1]["payload"]["findings"]
    assert finding["kind"] == "contradiction" and finding["citations"][0]["value"] == 34
    trace = client.get(f"/api/v1/sessions/{sid}/turns/{turn['id']}/context").json()
    assert trace["kept"] and trace["turn_id"] == turn["id"]

    queue = client.get(f"/api/v1/worlds/{wid}/review").json()
    assert {a["kind"] for a in queue} == {"entity", "fact"}
    entity = next(a for a in queue if a["kind"] == "entity")
    assert entity["confidence"]["name"] == 0.95 and entity["extraction_version"] == "model-1"
    decided = client.post(
        f"/api/v1/worlds/{wid}/review/{entity['id']}",
        json={
            "decision": "accept",
            "fields": {"type": "reject"},
            "edits": {"summary": "The old lamplighter."},
        },
    ).json()
    assert decided["status"] == "accepted"
    fact = next(a for a in queue if a["kind"] == "fact")
    rejected = client.post(f"/api/v1/worlds/{wid}/review/{fact['id']}", json={"decision": "reject"})
    assert rejected.json()["status"] == "rejected"
    again = client.post(f"/api/v1/worlds/{wid}/review/{fact['id']}", json={"decision": "accept"})
    assert again.status_code == 409
    canon = client.get(f"/api/v1/worlds/{wid}/entities", params={"status": "canon"}).json()
    crane = next(e for e in canon if e["name"] == "Thessaly Crane")
    assert crane["summary"] == "The old lamplighter." and crane["type"] == "npc"
    assert crane["source_refs"][0]["session_id"] == sid
    assert client.get(f"/api/v1/worlds/{wid}/review").json() == []
    history = client.get(f"/api/v1/worlds/{wid}/entities/{crane['id']}/history").json()
    assert history[0]["type"] == "entity.created"
    # Another workspace's world does not exist.
    assert client.get(f"/api/v1/worlds/{wid}", headers={"X-Workspace": "nope"}).status_code == 404


def test_a_failed_turn_leaves_nothing_in_the_queue(serve: Callable[..., httpx.Client]) -> None:
    client = serve(ScriptedModel(extracting("Thessaly Crane waits.", [GOOD]), fail_after=1))
    wid = client.post("/api/v1/worlds", json={"name": "W"}).json()["id"]
    sid = client.post(
        "/api/v1/sessions", json={"kind": "story", "title": "T", "settings": {"world_id": wid}}
    ).json()["id"]
    failed = client.post(f"/api/v1/sessions/{sid}/turns", json={"text": "Go"})
    assert failed.status_code >= 500
    assert client.get(f"/api/v1/worlds/{wid}/review").json() == []


async def test_invalid_model_json_is_retried_then_the_heuristic_answers(
    make_engine: Callable[..., Any],
) -> None:
    script = extracting("Mira Vance is a smuggler. Oswin Hale died.", ["not json", '{"x": 1}'])
    engine: Engine = await make_engine(ScriptedModel(script))
    ids = await harbour_world(engine)
    sid = await story(engine, ids["world"])
    await run_turn(engine, sid, "Hello")
    assert script.calls["extract"] == 3  # type: ignore[attr-defined]
    queue = await engine.world.review.items(WS, ids["world"])
    assert queue and {a["extraction_version"] for a in queue} == {"heuristic-1"}
    assert any(a["kind"] == "fact" and a["payload"]["value"] == "dead" for a in queue)


async def test_a_valid_second_answer_is_used(make_engine: Callable[..., Any]) -> None:
    script = extracting("Thessaly Crane waits.", ["```json\n{oops", GOOD])
    engine: Engine = await make_engine(ScriptedModel(script))
    ids = await harbour_world(engine)
    await run_turn(engine, await story(engine, ids["world"]), "Hello")
    queue = await engine.world.review.items(WS, ids["world"])
    assert {a["extraction_version"] for a in queue} == {"model-1"}


async def test_auto_accept_above_the_worlds_threshold(make_engine: Callable[..., Any]) -> None:
    engine: Engine = await make_engine(ScriptedModel(extracting("Crane.", [GOOD])))
    ids = await harbour_world(engine)
    await engine.world.bible.update_world(
        WS, ids["world"], {"settings": {"auto_accept_threshold": 0.8}}, META
    )
    await run_turn(engine, await story(engine, ids["world"]), "Hello")
    accepted = await engine.world.review.items(WS, ids["world"], status="accepted")
    # The fact is 0.9 sure of every field; the entity's aliases only 0.5 (unsaid).
    assert [a["kind"] for a in accepted] == ["fact"]
    assert accepted[0]["reviewed_by"] == "policy:auto-accept"
    [waiting] = await engine.world.review.items(WS, ids["world"])
    assert waiting["kind"] == "entity"


async def planted(engine: Engine) -> dict[str, str]:
    bible = engine.world.bible
    wid = (await bible.create_world(WS, name="Planted", meta=META))["id"]

    async def npc(name: str, **extra: Any) -> str:
        made = await bible.create_entity(
            WS, wid, {"type": "npc", "name": name, "status": "canon", **extra}, META
        )
        return str(made["id"])

    aldric = await npc("Aldric", aliases=["the Grey Knight"])
    grey = await npc("Grey Knight")
    mira, mirra = await npc("Mira Vance"), await npc("Mirra Vance")
    ref = [{"session_id": "s1", "turn_id": "t1"}]
    await bible.add_fact(
        WS,
        wid,
        mira,
        {"attribute": "home", "value": "Harrowgate", "valid_from": 10, "source_refs": ref},
        META,
    )
    await bible.add_fact(
        WS,
        wid,
        mira,
        {"attribute": "home", "value": "Saltmarsh", "valid_from": 12, "valid_to": 20},
        META,
    )
    await bible.add_fact(
        WS, wid, aldric, {"attribute": "status", "value": "dead", "valid_from": 5}, META
    )
    await bible.add_fact(
        WS, wid, aldric, {"attribute": "title", "value": "Marshal", "valid_from": 9}, META
    )
    return {"world": wid, "aldric": aldric, "grey": grey, "mira": mira, "mirra": mirra}


async def test_continuity_catches_planted_problems_with_citations(engine: Engine) -> None:
    ids = await planted(engine)
    findings = await engine.world.continuity.run(WS, ids["world"], META)
    kinds = sorted(f["kind"] for f in findings)
    assert kinds == ["contradiction", "duplicate", "duplicate", "timeline_drift"]
    contradiction = next(f for f in findings if f["kind"] == "contradiction")
    assert [c["value"] for c in contradiction["citations"]] == ["Harrowgate", "Saltmarsh"]
    assert contradiction["citations"][0]["source_refs"] == [{"session_id": "s1", "turn_id": "t1"}]
    pairs = [set(f["entity_ids"]) for f in findings if f["kind"] == "duplicate"]
    assert {ids["aldric"], ids["grey"]} in pairs and {ids["mira"], ids["mirra"]} in pairs
    drift = next(f for f in findings if f["kind"] == "timeline_drift")
    assert drift["entity_ids"] == [ids["aldric"]]


async def test_resolutions_are_events(engine: Engine) -> None:
    ids = await planted(engine)
    findings = await engine.world.continuity.run(WS, ids["world"], META)
    duplicate = next(f for f in findings if set(f["entity_ids"]) == {ids["mira"], ids["mirra"]})
    await engine.world.continuity.resolve(
        WS, ids["world"], duplicate["id"], "merge", META, keep=ids["mira"]
    )
    contradiction = next(f for f in findings if f["kind"] == "contradiction")
    done = await engine.world.continuity.resolve(
        WS, ids["world"], contradiction["id"], "supersede", META
    )
    assert done["status"] == "resolved"
    drift = next(f for f in findings if f["kind"] == "timeline_drift")
    await engine.world.continuity.resolve(WS, ids["world"], drift["id"], "ignore", META)
    merged = await engine.world.bible.entity(WS, ids["world"], ids["mira"])
    assert "Mirra Vance" in merged["aliases"]
    again = await engine.world.continuity.run(WS, ids["world"], META)
    assert [f["kind"] for f in again] == ["duplicate"]  # only Aldric / Grey Knight is left
    history = await engine.world.bible.history(WS, ids["world"], ids["mira"])
    assert "entities.merged" in [h["type"] for h in history]
    events = await engine.repository.store.read_stream(f"world:{ids['world']}")
    assert [e.type for e in events].count("finding.resolved") == 3


async def test_a_reply_where_the_dead_act_is_flagged(make_engine: Callable[..., Any]) -> None:
    engine: Engine = await make_engine(
        ScriptedModel(extracting("Aldric draws his sword and laughs.", ["{}"]))
    )
    ids = await planted(engine)
    sid = await story(engine, ids["world"])
    await run_turn(engine, sid, "Who is there?")
    events = await engine.sessions.events(WS, sid, after=0, limit=10)
    drift = [f for f in events[-1].payload["findings"] if f["kind"] == "timeline_drift"]
    assert drift and drift[0]["citations"][0]["attribute"] == "status"
    assert drift[0]["citations"][1]["text"].startswith("Aldric draws")


def test_cli_check_export_and_reimport(tmp_path: Path, settings: Settings) -> None:
    import asyncio

    async def build() -> str:
        engine = await Engine.open(settings, model=ScriptedModel())
        try:
            return (await planted(engine))["world"]
        finally:
            await engine.close()

    wid = asyncio.run(build())
    env = {"TALEWEAVER_DATA_DIR": str(settings.data_dir), "TALEWEAVER_MODEL": "scripted"}
    runner = CliRunner()
    checked = runner.invoke(cli, ["world", "check", wid], env=env)
    assert checked.exit_code == 1, checked.output
    assert "[contradiction]" in checked.output and "Harrowgate" in checked.output
    out = tmp_path / "w.json"
    assert runner.invoke(cli, ["world", "export", wid, "-o", str(out)], env=env).exit_code == 0
    imported = runner.invoke(cli, ["world", "import", str(out)], env=env)
    assert imported.exit_code == 0, imported.output
    new_id = imported.output.split()[-1]
    again = tmp_path / "again.json"
    runner.invoke(cli, ["world", "export", new_id, "-o", str(again)], env=env)
    first, second = json.loads(out.read_text()), json.loads(again.read_text())
    first["world"].pop("id"), second["world"].pop("id")
    assert first == second


async def test_fork_moves_the_losing_claim_to_a_forked_entity(engine: Engine) -> None:
    ids = await planted(engine)
    findings = await engine.world.continuity.run(WS, ids["world"], META)
    contradiction = next(f for f in findings if f["kind"] == "contradiction")
    harrowgate, saltmarsh = (c["fact_id"] for c in contradiction["citations"])
    stream = f"world:{ids['world']}"
    before = len(await engine.repository.store.read_stream(stream))
    with pytest.raises(InvalidInput):  # keep must be one of the cited facts
        await engine.world.continuity.resolve(
            WS, ids["world"], contradiction["id"], "fork", META, keep="no-such-fact"
        )
    assert len(await engine.repository.store.read_stream(stream)) == before
    done = await engine.world.continuity.resolve(
        WS, ids["world"], contradiction["id"], "fork", META, keep=saltmarsh
    )
    assert done["status"] == "resolved"
    facts = {f["id"]: f for f in await engine.world.bible.facts(WS, ids["world"])}
    assert facts[saltmarsh]["entity_id"] == ids["mira"]
    fork_id = facts[harrowgate]["entity_id"]
    fork = await engine.world.bible.entity(WS, ids["world"], fork_id)
    assert fork["name"] == "Mira Vance (fork)" and fork["status"] == "draft"
    assert await _related(engine, ids["world"], fork_id, ids["mira"])
    again = await engine.world.continuity.run(WS, ids["world"], META)
    assert "contradiction" not in [f["kind"] for f in again]
    with pytest.raises(InvalidInput):  # a resolved finding is not resolved twice
        await engine.world.continuity.resolve(WS, ids["world"], contradiction["id"], "fork", META)


async def _related(engine: Engine, world_id: str, source: str, target: str) -> bool:
    exported = await engine.world.export(WS, world_id)
    return any(
        r["source_id"] == source and r["target_id"] == target and r["type"] == "forked_from"
        for r in exported["relations"]
    )


def test_the_heuristic_reads_residences_descriptions_and_deaths() -> None:
    out = heuristic(
        "Mira Vance lives in Lantern Quay. Oswin Hale is a cartographer. Captain Thorn died."
    )
    assert [(r.source, r.type, r.target) for r in out.relations] == [
        ("Mira Vance", "lives_in", "Lantern Quay")
    ]
    types = {e.name: e.type for e in out.entities}
    assert types["Lantern Quay"] == "location" and types["Mira Vance"] == "npc"
    assert ("Oswin Hale", "is", "cartographer") in [
        (f.entity, f.attribute, f.value) for f in out.facts
    ]
    assert ("Captain Thorn", "status", "dead") in [
        (f.entity, f.attribute, f.value) for f in out.facts
    ]
    assert heuristic("The rain falls. It is late.").relations == []


async def test_an_extracted_residence_becomes_a_canon_relation(
    make_engine: Callable[..., Any],
) -> None:
    script = extracting("Thessaly Crane lives in Lantern Quay.", ["not json"])
    engine: Engine = await make_engine(ScriptedModel(script))
    ids = await harbour_world(engine)
    await run_turn(engine, await story(engine, ids["world"]), "Hello")
    queue = await engine.world.review.items(WS, ids["world"])
    [relation] = [a for a in queue if a["kind"] == "relation"]
    assert relation["payload"] | {"confidence": None} == relation["payload"] | {
        "source": "Thessaly Crane",
        "type": "lives_in",
        "target": "Lantern Quay",
        "confidence": None,
    }
    await engine.world.review.review(WS, ids["world"], relation["id"], accept=True, meta=META)
    exported = await engine.world.export(WS, ids["world"])
    names = {e["id"]: e["name"] for e in exported["entities"]}
    assert [
        (names[r["source_id"]], r["type"], names[r["target_id"]])
        for r in exported["relations"]
        if r["type"] == "lives_in"
    ] == [("Thessaly Crane", "lives_in", "Lantern Quay")]


def test_a_reply_is_applied_to_a_world_as_an_entry_blueprint_or_recipe(
    serve: Callable[..., httpx.Client],
) -> None:
    client = serve(ScriptedModel(["A map of the [[Drowned Vault]] and its #traps."]))
    wid = client.post("/api/v1/worlds", json={"name": "Studio"}).json()["id"]
    vault = client.post(
        f"/api/v1/worlds/{wid}/entities", json={"type": "location", "name": "Drowned Vault"}
    ).json()["id"]
    sid = client.post("/api/v1/sessions", json={"kind": "story", "title": "T"}).json()["id"]
    turn = client.post(f"/api/v1/sessions/{sid}/turns", json={"text": "Draw it"}).json()
    url = f"/api/v1/sessions/{sid}/turns/{turn['id']}/apply"
    entry = client.post(url, json={"world_id": wid, "title": "Vault map"})
    assert entry.status_code == 201, entry.text
    body = entry.json()
    assert body["kind"] == "note" and body["body"].startswith("A map of the [[Drowned Vault]]")
    assert body["entity_ids"] == [vault] and body["tags"] == ["traps"]
    assert body["source_refs"] == [{"session_id": sid, "turn_id": turn["id"]}]
    recipe = client.post(url, json={"world_id": wid, "target": "recipe"}).json()
    assert recipe["kind"] == "recipe"
    # Replacing an entry's body keeps its title.
    client.patch(f"/api/v1/worlds/{wid}/entries/{body['id']}", json={"body": "old"})
    replaced = client.post(url, json={"world_id": wid, "entry_id": body["id"]}).json()
    assert replaced["title"] == "Vault map" and replaced["body"].startswith("A map")
    # Bad input: nothing is written.
    count = len(client.get(f"/api/v1/worlds/{wid}/entries").json())
    assert client.post(url, json={"world_id": wid, "target": "poem"}).status_code == 422
    assert client.post(url, json={"world_id": "nope"}).status_code == 404
    missing = f"/api/v1/sessions/{sid}/turns/nope/apply"
    assert client.post(missing, json={"world_id": wid}).status_code == 404
    assert len(client.get(f"/api/v1/worlds/{wid}/entries").json()) == count
