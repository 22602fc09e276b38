"""World memory's services, built once per engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from taleweaver.domain.errors import NotFound
from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.llm import ChatModel, ModelRouter
from taleweaver.memory.world.bible import WorldBible
from taleweaver.memory.world.continuity import WorldContinuity
from taleweaver.memory.world.embedding import BackgroundReembed, VectorSync, default_embedder
from taleweaver.memory.world.extraction import WorldExtractor
from taleweaver.memory.world.recall import WorldRecall
from taleweaver.memory.world.review import ReviewQueue
from taleweaver.memory.world.search import HybridSearch
from taleweaver.memory.world.transfer import export_world, import_world
from taleweaver.memory.world.vectors import TextEmbedder, VectorIndex
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore

log = logging.getLogger(__name__)


class WorldMemory:
    def __init__(
        self,
        db: Database,
        store: EventStore,
        model: ChatModel | None,
        *,
        embedder: TextEmbedder | None = None,
    ) -> None:
        self.db = db
        self.bible = WorldBible(db, store)
        self.vectors = VectorIndex(db)
        if embedder is None:
            embedder = default_embedder(model)
        self.embedder = embedder
        self.sync = VectorSync(db, self.vectors, embedder) if embedder is not None else None
        self.reembed = BackgroundReembed(self.sync) if self.sync is not None else None
        if self.sync is not None:
            self.bible.listeners.append(self.sync)
        self.search = HybridSearch(db, self.vectors, embedder, on_stale=self.reembed)
        self.recall = WorldRecall(db, self.search)
        self.extractor = WorldExtractor(db, model, use_model=_can_extract(model))
        self.continuity = WorldContinuity(db, self.bible)
        self.review = ReviewQueue(db, store, self.bible)
        self._warming: asyncio.Task[None] | None = None

    def warm(self) -> asyncio.Task[None]:
        """Choose the vector backend (logged) and restore or build big worlds' ANN
        indexes, in the background."""
        if self._warming is None:
            self._warming = asyncio.get_running_loop().create_task(
                self._warm(), name="world vectors"
            )
        return self._warming

    async def _warm(self) -> None:
        try:
            await self.vectors.warm()
        except Exception:  # reported; searches choose the backend again on first use
            log.exception("world vectors not warmed")

    async def vector_state(self) -> dict[str, object]:
        """Which vector search serves (pgvector, ann or exact), for readiness."""
        try:
            await self.vectors.detect()
        except Exception as exc:  # reported, never raised: the database part says why
            return {"status": "error", "detail": type(exc).__name__}
        return self.vectors.describe()

    async def aclose(self) -> None:
        """Stop re-embeddings under way (a world left half rebuilt finishes on its
        next search, as after a crash) before the database goes; save ANN indexes."""
        if self.reembed is not None:
            self.reembed.cancel()
            await self.reembed.wait()
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
        await self.vectors.aclose()

    async def export(self, workspace_id: str, world_id: str) -> JSON:
        return await export_world(self.bible, workspace_id, world_id)

    async def import_(
        self, workspace_id: str, data: JSON, meta: EventMetadata, *, world_id: str | None = None
    ) -> JSON:
        return await import_world(self.bible, workspace_id, data, meta, world_id=world_id)

    async def reindex(
        self,
        workspace_id: str,
        world_id: str,
        *,
        progress: Callable[[int, int], Awaitable[None]] | None = None,
    ) -> int:
        """Embed every entity whose vector is missing or stale; 0 without an embedder.
        `progress` hears (entities checked, of how many) as it goes."""
        await self.bible.world(workspace_id, world_id)
        if self.sync is None:
            return 0
        return await self.sync.sync(workspace_id, world_id, None, progress=progress)

    async def search_hits(
        self, workspace_id: str, world_id: str, text: str, *, limit: int = 10
    ) -> list[JSON]:
        hits = await self.search.search(workspace_id, world_id, text, limit=limit)
        return [
            {
                "entity": h.entity,
                "score": round(h.score, 6),
                "reasons": h.reasons,
                "detail": h.detail,
            }
            for h in hits
        ]


def _can_extract(model: ChatModel | None) -> bool:
    """Whether the extract task has a model worth asking: not the bundled tiny local
    model, which cannot follow a JSON schema (the heuristic does better)."""
    if model is None:
        return False
    if isinstance(model, ModelRouter):
        chain = model.chain("extract")
        return bool(chain) and chain[0].provider.kind != "embedded"
    return True


__all__ = ["NotFound", "WorldMemory"]
