"""World recall at scale: common words, other worlds' words, the vector cache and
graph hops, on SQLite and PostgreSQL; and a lorebook imported into a world."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from taleweaver.cli.main import cli
from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.engine.pipeline import Capabilities
from taleweaver.llm import HashingEmbedder, ScriptedModel
from taleweaver.memory.world import keyword
from tests.test_world_bible import META, WS, MakeEngine, harbour_world, router_with_embedder

LOREBOOKS = Path(__file__).parent / "data" / "lorebooks"


async def _many(engine: Engine, world_id: str, count: int, summary: str) -> list[str]:
    made = []
    for i in range(count):
        entity = await engine.world.bible.create_entity(
            WS,
            world_id,
            {"type": "npc", "name": f"Keeper {i}", "status": "canon", "summary": summary},
            META,
        )
        made.append(str(entity["id"]))
    return made


async def test_words_common_in_the_world_are_skipped_and_reported(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword, "COMMON", 3)
    ids = await harbour_world(engine)
    await _many(engine, ids["world"], 3, "Keeps a lantern by the harbour.")
    hits = await engine.world.search_hits(WS, ids["world"], "the harbour where Mira waits")
    assert hits[0]["entity"]["id"] == ids["mira"]
    assert hits[0]["detail"]["keyword"]["skipped_common"] == ["harbour"]
    # Only common words: keyword search stays out rather than rank the whole world.
    only = await engine.world.search_hits(WS, ids["world"], "harbour", limit=10)
    assert only == []


async def test_a_word_rare_here_but_common_elsewhere_is_still_found(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword, "COMMON", 2)
    busy = (await engine.world.bible.create_world(WS, name="Busy", meta=META))["id"]
    await _many(engine, busy, 9, "A lighthouse keeper.")
    quiet = (await engine.world.bible.create_world(WS, name="Quiet", meta=META))["id"]
    [keeper] = await _many(engine, quiet, 1, "The only lighthouse keeper here.")
    hits = await engine.world.search_hits(WS, quiet, "Who keeps the lighthouse?")
    assert [h["entity"]["id"] for h in hits] == [keeper]
    # Counted per world: in the busy world the same word is common, and skipped.
    assert await engine.world.search_hits(WS, busy, "Who keeps the lighthouse?") == []


async def test_vector_search_follows_edits_and_deletions(make_engine: MakeEngine) -> None:
    model = ScriptedModel(["The tide turns."])
    base: Engine = await make_engine(model)
    engine: Engine = await make_engine(
        caps=Capabilities(model=router_with_embedder(model), queries=base.caps.queries)
    )
    ids = await harbour_world(engine)
    await engine.world.reindex(WS, ids["world"])

    async def by_vector(text: str) -> list[str]:
        hits = await engine.world.search.search(WS, ids["world"], text, methods=("vector",))
        return [h.entity["id"] for h in hits]

    assert (await by_vector("a boat on the ocean"))[0] == ids["ship"]
    # The edit re-embeds the entity and bumps the world's vector version: the cached
    # matrix is reloaded, so the new text is what matches.
    await engine.world.bible.update_entity(
        WS, ids["world"], ids["thorn"], {"summary": "Owns a boat, a ship, a vessel."}, META
    )
    assert (await by_vector("a boat on the ocean"))[0] == ids["thorn"]
    await engine.world.bible.delete_entity(WS, ids["world"], ids["thorn"], META)
    assert ids["thorn"] not in await by_vector("a boat on the ocean")
    await engine.world.bible.update_entity(
        WS, ids["world"], ids["ship"], {"status": "deprecated"}, META
    )
    assert ids["ship"] not in await by_vector("a boat on the ocean")


async def test_the_graph_walks_both_directions_and_further_hops(engine: Engine) -> None:
    ids = await harbour_world(engine)
    bible = engine.world.bible
    await bible.add_relation(
        WS, ids["world"], ids["ship"], {"type": "captained_by", "target_id": ids["thorn"]}, META
    )
    # Thorn is the target of both relations: the walk goes against their direction.
    near = await engine.world.search.search(WS, ids["world"], "Captain Thorn", methods=("graph",))
    assert {h.entity["id"] for h in near} == {ids["mira"], ids["ship"]}
    mira = await engine.world.search.search(WS, ids["world"], "Mira", methods=("graph",), hops=2)
    detail = {h.entity["id"]: h.detail["graph"] for h in mira}
    assert detail[ids["thorn"]]["hops"] == 1 and detail[ids["ship"]]["hops"] == 2
    one_hop = await engine.world.search.search(WS, ids["world"], "Mira", methods=("graph",))
    assert [h.entity["id"] for h in one_hop] == [ids["thorn"]]


def test_world_import_takes_a_lorebook_file(tmp_path: Path, settings: Settings) -> None:
    env = {"TALEWEAVER_DATA_DIR": str(settings.data_dir), "TALEWEAVER_MODEL": "scripted"}
    runner = CliRunner()
    book = LOREBOOKS / "sillytavern_aster.json"
    imported = runner.invoke(cli, ["world", "import", str(book)], env=env)
    assert imported.exit_code == 0, imported.output
    world_id = imported.output.split()[-1]

    async def check(engine: Engine) -> tuple[Any, Any]:
        return await engine.world.bible.world(WS, world_id), await engine.lorebooks.list_books(
            WS, world_id=world_id
        )

    world, books = _with_engine(settings, check)
    assert world["id"] == world_id
    [listed] = books
    assert listed["entries"] == len(json.loads(book.read_text())["entries"])
    # Not a lorebook and not a world export: refused, nothing written.
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    refused = runner.invoke(cli, ["world", "import", str(bad)], env=env)
    assert refused.exit_code != 0
    worlds = _with_engine(settings, lambda e: e.world.bible.worlds(WS))
    assert [w["id"] for w in worlds] == [world_id]


def _with_engine(settings: Settings, action: Any) -> Any:
    import asyncio

    async def go() -> Any:
        engine = await Engine.open(settings, model=ScriptedModel())
        try:
            return await action(engine)
        finally:
            await engine.close()

    return asyncio.run(go())


async def test_what_the_text_names_and_its_relations_reach_the_fused_top() -> None:
    # Twenty near vectors come back for any query; a relation of the entity the text
    # names ("Princess Lyra's father") must still make the top 10, and the named
    # entity itself must not be pushed out by many weak word matches.
    from benchmarks.world_meaning import measure

    dev = (await measure(HashingEmbedder())).splits["dev"]
    assert dev.by_kind["indirect"]["hybrid"] == 1.0
    assert dev.by_kind["indirect"]["hybrid"] > dev.by_kind["indirect"]["keyword"]
    assert dev.by_kind["mixed"]["hybrid"] >= dev.by_kind["mixed"]["keyword"]
    assert dev.overall["hybrid"] > max(dev.overall["keyword"], dev.overall["vector"])


async def test_a_fact_of_turn_10_is_told_when_the_story_comes_back_to_it() -> None:
    from benchmarks.world_long_session import measure

    told, _, _, why = await measure(HashingEmbedder(), turns=150)
    assert told, why
