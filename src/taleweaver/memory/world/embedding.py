"""Keeping entity vectors in step with entities.

The embedder is the router's `embed` route when one is configured, else the bundled
sentence encoder (else, without its packages, the hashing embedder). Embedding
happens after the change commits (a model call never holds the write lock); a failed
call leaves the old vector and is retried by the next change or by `reindex`. When
the model changes, the first search that finds another model's vectors starts
re-embedding the world in the background, and searches keyword and graph meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from taleweaver.domain.errors import ModelError
from taleweaver.llm import CallScope, ChatModel, ModelRouter
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


# Providers of a model handed in as it is (tests, benchmarks, commands that never
# generate) or the scripted demo: they get no embedder unless one is given.
_NO_DEFAULT = frozenset({"direct", "scripted"})


def default_embedder(model: ChatModel | None) -> TextEmbedder | None:
    """World memory's embedder: the router's embed route; else, for a real model, the
    bundled sentence encoder, or the hashing embedder when its packages are missing."""
    if not isinstance(model, ModelRouter):
        return None
    routed = router_embedder(model)
    if routed is not None:
        return routed
    chain = model.chain("narrate")
    if not chain or chain[0].provider.kind in _NO_DEFAULT:
        return None
    return local_embedder()


def local_embedder() -> TextEmbedder:
    """The bundled sentence encoder as an embedder; hashing when it is not installed."""
    # Imported here: the encoder brings numpy, which an engine that never embeds
    # (a CLI command) need not load.
    from taleweaver.llm import HashingEmbedder, SentenceEmbedder, shared_sentence_encoder

    encoder = shared_sentence_encoder()
    if encoder is None:
        log.warning("world memory embeds by hashing words: the sentence encoder is missing")
        return HashingEmbedder()
    return SentenceEmbedder(encoder)


# Told (entities checked so far, of how many) as a whole world is re-embedded.
Progress = Callable[[int, int], Awaitable[None]]

# A change touching more entities than this (an import) is embedded in the background:
# at a few milliseconds an entity on a local encoder, the request would wait minutes.
INLINE = 256


class VectorSync:
    def __init__(self, db: Database, index: VectorIndex, embedder: TextEmbedder) -> None:
        self.db = db
        self.index = index
        self.embedder = embedder
        self.background: BackgroundReembed | None = None

    async def __call__(self, workspace_id: str, world_id: str, touched: set[str]) -> None:
        if len(touched) > INLINE and self.background is not None:
            self.background.start(workspace_id, world_id)
            return
        try:
            await self.sync(workspace_id, world_id, sorted(touched))
        except ModelError as exc:
            log.warning("entity vectors not updated in world %s: %s", world_id, exc.detail)

    async def sync(
        self,
        workspace_id: str,
        world_id: str,
        ids: Sequence[str] | None,
        *,
        progress: Progress | None = None,
    ) -> int:
        """Embed the given entities (all of the world's when None) whose text changed;
        drop vectors of deleted and deprecated ones. Returns how many were embedded.
        `progress` hears (entities checked, of how many) after each chunk."""
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
            model = self.embedder.name
            stale = [i for i in chunk if stored.get(i) != (digest(texts[i]), model)]
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
            if progress is not None:
                await progress(start + len(chunk), len(ordered))
        if ids is None:  # a whole world is now this model's: leave no other model's
            await self.index.drop_other_models(world_id, self.embedder.name)
        return done


class BackgroundReembed:
    """Re-embeds a whole world in the background: when a search finds its vectors
    stale (another model's) or missing, not again for a vectors version it already
    ran on (a failed run waits for the next change); and after a change too large to
    embed inline. One run per world at a time."""

    def __init__(self, sync: VectorSync) -> None:
        self.sync = sync
        sync.background = self
        self._running: dict[str, asyncio.Task[None]] = {}
        self._tried: dict[str, int] = {}
        self._again: set[str] = set()

    def __call__(self, workspace_id: str, world_id: str, version: int) -> None:
        # A search during a run sees the world half rebuilt: that is the run's to finish.
        if world_id in self._running or self._tried.get(world_id) == version:
            return
        self._tried[world_id] = version
        self.start(workspace_id, world_id)

    def start(self, workspace_id: str, world_id: str) -> None:
        """Re-embed the world now, in the background; once more after a run under way
        (which may have read the world before this change)."""
        if world_id in self._running:
            self._again.add(world_id)
            return
        task = asyncio.get_running_loop().create_task(
            self._run(workspace_id, world_id), name=f"re-embed world {world_id}"
        )
        self._running[world_id] = task
        task.add_done_callback(lambda _: self._running.pop(world_id, None))

    async def _run(self, workspace_id: str, world_id: str) -> None:
        started = time.perf_counter()
        done = 0
        try:
            while True:
                self._again.discard(world_id)
                done += await self.sync.sync(workspace_id, world_id, None)
                if world_id not in self._again:
                    break
        except ModelError as exc:
            log.warning("world %s not re-embedded: %s", world_id, exc.detail)
            return
        except Exception:  # a background task's failure would otherwise go unseen
            log.exception("world %s not re-embedded", world_id)
            return
        log.info(
            "world %s re-embedded with %s: %d entities in %.1f s",
            world_id,
            self.sync.embedder.name,
            done,
            time.perf_counter() - started,
        )

    async def wait(self) -> None:
        """Until every re-embedding started so far has finished."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def cancel(self) -> None:
        for task in self._running.values():
            task.cancel()
