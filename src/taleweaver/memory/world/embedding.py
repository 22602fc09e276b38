"""Keeping entity vectors in step with entities, through the router's `embed` task.

Embedding happens after the change commits (a model call never holds the write
lock); a failed call leaves the old vector and is retried by the next change or
by `reindex`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from taleweaver.domain.errors import ModelError
from taleweaver.llm import CallScope, ModelRouter
from taleweaver.memory.world import rows
from taleweaver.memory.world.vectors import TextEmbedder, VectorIndex, digest, entity_text
from taleweaver.store.database import Database

log = logging.getLogger(__name__)

BATCH = 64


class RouterEmbedder:
    """The router's embed route as a `TextEmbedder`."""

    def __init__(self, router: ModelRouter, workspace_id: str = "local") -> None:
        self.router = router
        chain = router.chain("embed")
        self.name = chain[0].name if chain else "none"
        self.scope = CallScope(workspace_id=workspace_id)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self.router.embed(texts, scope=self.scope)


def router_embedder(router: ModelRouter | None) -> RouterEmbedder | None:
    """An embedder when the router has an embed route; None without one."""
    if router is None or not router.chain("embed"):
        return None
    return RouterEmbedder(router)


class VectorSync:
    def __init__(self, db: Database, index: VectorIndex, embedder: TextEmbedder) -> None:
        self.db = db
        self.index = index
        self.embedder = embedder

    async def __call__(self, workspace_id: str, world_id: str, touched: set[str]) -> None:
        try:
            await self.sync(workspace_id, world_id, sorted(touched))
        except ModelError as exc:
            log.warning("entity vectors not updated in world %s: %s", world_id, exc.detail)

    async def sync(self, workspace_id: str, world_id: str, ids: Sequence[str] | None) -> int:
        """Embed the given entities (all of the world's when None) whose text changed;
        drop vectors of deleted and deprecated ones. Returns how many were embedded."""
        async with self.db.read() as conn:
            entities = await rows.entities(conn, world_id, ids)
        live = {k: v for k, v in entities.items() if v["status"] != "deprecated"}
        gone = [i for i in (ids or []) if i not in live]
        if gone:
            await self.index.remove(world_id, gone)
        texts = {entity_id: entity_text(e) for entity_id, e in live.items()}
        done = 0
        ordered = sorted(texts)
        for start in range(0, len(ordered), BATCH * 8):
            chunk = ordered[start : start + BATCH * 8]
            stored = await self.index.stored_hashes(world_id, chunk)
            stale = [i for i in chunk if stored.get(i) != digest(texts[i])]
            for at in range(0, len(stale), BATCH):
                batch = stale[at : at + BATCH]
                vectors = await self.embedder.embed([texts[i] for i in batch])
                await self.index.upsert(
                    workspace_id,
                    world_id,
                    self.embedder.name,
                    [(i, v, digest(texts[i])) for i, v in zip(batch, vectors, strict=True)],
                )
                done += len(batch)
        return done
