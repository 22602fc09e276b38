"""The world bible, its recall source and its trace, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.pipeline import Capabilities
from taleweaver.llm import ModelRouter, ScriptedModel, as_backend
from taleweaver.llm.routing import Provider, RoutedModel
from taleweaver.llm.types import Embeddings

WS = "local"
META = EventMetadata(actor="tester")
MakeEngine = Callable[..., Any]


class HashEmbedder:
    """A tiny deterministic embedding model: words hashed into 64 buckets, plus a
    few hand-made synonyms so that meaning (not spelling) can match."""

    name = "hash-embed"
    SYNONYMS = {
        "ship": "vessel",
        "boat": "vessel",
        "vessel": "vessel",
        "sea": "ocean",
        "ocean": "ocean",
        "smuggler": "smuggler",
        "contraband": "smuggler",
    }

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        return Embeddings([self.vector(t) for t in texts])

    def vector(self, text: str) -> list[float]:
        out = [0.0] * 64
        for word in re.findall(r"\w+", text.lower()):
            word = self.SYNONYMS.get(word, word)
            out[int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1.0
        norm = math.sqrt(sum(x * x for x in out)) or 1.0
        return [x / norm for x in out]


def router_with_embedder(model: ScriptedModel) -> ModelRouter:
    async def nothing() -> None:
        return None

    provider = Provider("test", "direct", check=nothing, close=nothing)
    chat = RoutedModel("chat", "test:chat", provider, "chat", chat=as_backend(model))
    embed = RoutedModel("embed", "test:embed", provider, "embed", embedder=HashEmbedder())
    routes = {t: ["chat"] for t in ("narrate", "extract", "safety", "summarize")}
    return ModelRouter({"chat": chat, "embed": embed}, routes | {"embed": ["embed"]})


async def run_turn(engine: Engine, session_id: str, text: str, workspace: str = WS) -> Any:
    handle = await engine.turns.start(
        workspace,
        session_id,
        TurnRequest.build(action=TurnAction.SAY, text=text, choice=None),
        META,
    )
    return await handle.wait()


async def story(engine: Engine, world_id: str, workspace: str = WS) -> str:
    created = await engine.sessions.create(
        workspace,
        kind=SessionKind.STORY,
        title="T",
        settings={"world_id": world_id},
        owner_id=None,
        metadata=META,
    )
    return str(created["id"])


async def harbour_world(engine: Engine, workspace: str = WS) -> dict[str, str]:
    bible = engine.world.bible
    world = await bible.create_world(workspace, name="Saltmarsh", meta=META)
    wid = world["id"]
    mira = await bible.create_entity(
        workspace,
        wid,
        {
            "type": "npc",
            "name": "Mira Vance",
            "aliases": ["the Gull"],
            "status": "canon",
            "summary": "A harbour smuggler with a scar over one eye.",
        },
        META,
    )
    thorn = await bible.create_entity(
        workspace,
        wid,
        {
            "type": "npc",
            "name": "Captain Thorn",
            "status": "canon",
            "summary": "Commander of the watch tower garrison.",
        },
        META,
    )
    ship = await bible.create_entity(
        workspace,
        wid,
        {
            "type": "item",
            "name": "The Grey Widow",
            "status": "canon",
            "summary": "A fast black-sailed vessel that runs contraband by night.",
        },
        META,
    )
    await bible.add_relation(
        workspace, wid, mira["id"], {"type": "ally_of", "target_id": thorn["id"]}, META
    )
    await bible.add_fact(workspace, wid, mira["id"], {"attribute": "age", "value": 34}, META)
    return {"world": wid, "mira": mira["id"], "thorn": thorn["id"], "ship": ship["id"]}


async def test_every_change_is_an_event_with_who_and_when(engine: Engine) -> None:
    ids = await harbour_world(engine)
    await engine.world.bible.update_entity(
        WS,
        ids["world"],
        ids["mira"],
        {"summary": "Retired smuggler."},
        EventMetadata(actor="editor-1"),
    )
    history = await engine.world.bible.history(WS, ids["world"], ids["mira"])
    assert [h["type"] for h in history] == [
        "entity.created",
        "relation.added",
        "fact.added",
        "entity.updated",
    ]
    assert history[-1]["actor"] == "editor-1" and history[-1]["at"] is not None
    entity = await engine.world.bible.entity(WS, ids["world"], ids["mira"])
    assert entity["summary"] == "Retired smuggler."
    assert entity["facts"][0]["value"] == 34
    assert entity["relations"][0]["type"] == "ally_of"


async def test_bad_input_is_refused_and_nothing_is_written(engine: Engine) -> None:
    ids = await harbour_world(engine)
    before = await engine.world.bible.world(WS, ids["world"])
    with pytest.raises(InvalidInput):
        await engine.world.bible.create_entity(
            WS, ids["world"], {"type": "NPC!", "name": "X"}, META
        )
    with pytest.raises(InvalidInput):
        await engine.world.bible.update_entity(
            WS, ids["world"], ids["mira"], {"status": "nonsense"}, META
        )
    with pytest.raises(InvalidInput):
        await engine.world.bible.add_relation(
            WS, ids["world"], ids["mira"], {"type": "knows", "target_id": "nobody"}, META
        )
    after = await engine.world.bible.world(WS, ids["world"])
    assert after["version"] == before["version"]


async def test_another_workspace_never_sees_the_world(engine: Engine) -> None:
    ids = await harbour_world(engine)
    other = (
        await engine.accounts.create_workspace(None, "Other", sensitive=False) if False else None
    )
    del other
    with pytest.raises(NotFound):
        await engine.world.bible.world("elsewhere", ids["world"])
    with pytest.raises(NotFound):
        await engine.world.bible.entity("elsewhere", ids["world"], ids["mira"])
    with pytest.raises(NotFound):
        await engine.world.search_hits("elsewhere", ids["world"], "Mira")


async def test_entries_resolve_wiki_links_and_tags(engine: Engine) -> None:
    ids = await harbour_world(engine)
    entry = await engine.world.bible.create_entry(
        WS,
        ids["world"],
        {"title": "Harbour notes", "body": "[[the Gull]] owes [[Captain Thorn]] money. #debts"},
        META,
    )
    assert entry["entity_ids"] == [ids["mira"], ids["thorn"]]
    assert entry["tags"] == ["debts"]


async def test_search_says_which_retrieval_found_each_hit(engine: Engine) -> None:
    ids = await harbour_world(engine)
    hits = await engine.world.search_hits(WS, ids["world"], "Where is Mira hiding?")
    assert hits[0]["entity"]["id"] == ids["mira"]
    assert "keyword 'Mira' (rank 1)" in hits[0]["reasons"]
    graph = next(h for h in hits if h["entity"]["id"] == ids["thorn"])
    assert graph["reasons"] == ["related to Mira Vance via ally_of"]


async def test_canon_outranks_drafts_and_deprecated_never_appears(engine: Engine) -> None:
    bible = engine.world.bible
    wid = (await bible.create_world(WS, name="W", meta=META))["id"]
    draft = await bible.create_entity(
        WS,
        wid,
        {"type": "location", "name": "Lantern Quay", "summary": "A quay of lanterns."},
        META,
    )
    canon = await bible.create_entity(
        WS,
        wid,
        {
            "type": "location",
            "name": "Lantern Market",
            "status": "canon",
            "summary": "A market of lanterns.",
        },
        META,
    )
    old = await bible.create_entity(
        WS,
        wid,
        {
            "type": "location",
            "name": "Lantern Hall",
            "status": "deprecated",
            "summary": "Lanterns.",
        },
        META,
    )
    hits = await engine.world.search_hits(WS, wid, "lantern")
    found = [h["entity"]["id"] for h in hits]
    assert found.index(canon["id"]) < found.index(draft["id"])
    assert old["id"] not in found


async def test_the_narrator_sees_canon_found_by_keyword_graph_and_vector(
    make_engine: MakeEngine,
) -> None:
    model = ScriptedModel(["The tide turns."])
    base: Engine = await make_engine(model)
    engine: Engine = await make_engine(
        caps=Capabilities(model=router_with_embedder(model), queries=base.caps.queries)
    )
    ids = await harbour_world(engine)
    await engine.world.reindex(WS, ids["world"])
    sid = await story(engine, ids["world"])
    turn = await run_turn(engine, sid, "I ask Mira about a boat for the ocean crossing.")
    prompt = "\n".join(m.content for m in model.calls[0] if isinstance(m, ChatMessage))
    assert "Mira Vance" in prompt and "Captain Thorn" in prompt and "The Grey Widow" in prompt
    [event] = [
        e
        for e in await engine.sessions.events(WS, sid, after=0, limit=10)
        if e.type == "turn.committed"
    ]
    trace = {t["ref"]: t for t in event.payload["context"] if t.get("source") == "world"}
    assert "keyword 'Mira'" in trace[f"entity:{ids['mira']}"]["reason"]
    assert trace[f"entity:{ids['thorn']}"]["reason"].startswith("related to Mira Vance via")
    assert "vector" in trace[f"entity:{ids['ship']}"]["reason"]
    assert trace[f"entity:{ids['ship']}"]["detail"]["vector"]["rank"] >= 1
    assert turn["status"] == "completed"


async def test_recall_never_leaks_another_workspaces_world(engine: Engine) -> None:
    ids = await harbour_world(engine)
    owner = await engine.accounts.create_user("o@example.com", password="correct horse battery")
    other = await engine.accounts.create_workspace(owner["id"], "Other", sensitive=False)
    sid = await story(engine, ids["world"], workspace=other["id"])
    model = engine.caps.model
    await run_turn(engine, sid, "Tell me about Mira Vance.", workspace=other["id"])
    events = await engine.sessions.events(other["id"], sid, after=0, limit=10)
    context = events[-1].payload["context"]
    assert not [t for t in context if t.get("source") == "world"]
    del model


async def test_hybrid_recall_is_at_least_as_good_as_each_retrieval_alone(database: Any) -> None:
    from benchmarks.world_recall import quality

    scores = await quality(database)
    assert scores["hybrid"] >= scores["keyword"] and scores["hybrid"] >= scores["vector"]
    assert scores["hybrid"] > min(scores["keyword"], scores["vector"])
