"""Entity vectors: embedded through the model router's `embed` task, kept in
`world_vectors` on both backends as float32 blobs, and searched exactly by cosine
distance over an in-process matrix per world.

The matrix is loaded on a world's first vector search and reused until the world's
`vectors_version` moves (every vector write bumps it, in the same transaction), so
a search costs one small read plus a matrix product: a few milliseconds for 100,000
entities of 64 dimensions. Matrices are kept for the most recently searched worlds
up to `TALEWEAVER_WORLD_VECTOR_CACHE_MB` (default 512).

Every vector records the model that made it. A search only ever compares vectors of
the query's own model: while a world still holds vectors of another (the embedding
model changed and the rebuild has not finished), `nearest` says so and finds nothing.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.config import WorldSettings
from taleweaver.domain.events import JSON
from taleweaver.store.database import Database
from taleweaver.store.world_schema import world_vectors, worlds

if TYPE_CHECKING:
    import numpy as np

MAX_DIM = 8192


class TextEmbedder(Protocol):
    name: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def entity_text(entity: JSON) -> str:
    """What an entity's vector stands for."""
    parts = [entity["name"], entity["type"], " ".join(entity.get("aliases") or [])]
    parts += [entity.get("summary") or "", " ".join(entity.get("tags") or [])]
    return "\n".join(p for p in parts if p)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def to_blob(vector: Sequence[float]) -> bytes:
    import numpy as np  # on first use: a process that never searches skips its import

    return np.asarray(vector, dtype="<f4").tobytes()


@dataclass(slots=True)
class _Matrix:
    version: int
    model: str
    ids: list[str]
    unit: np.ndarray  # one row per id, normalised to length 1
    foreign: bool  # the world also holds vectors of another model

    @property
    def nbytes(self) -> int:
        return int(self.unit.nbytes)


def _cache_bytes() -> int:
    return WorldSettings.read().world_vector_cache_mb << 20


@dataclass(slots=True)
class Nearest:
    """The k nearest of one model's vectors; `stale` when the world also holds
    another model's (then `found` is empty: two models' distances do not compare)."""

    found: list[tuple[str, float]]
    stale: bool = False
    empty: bool = False  # the world has no vectors of this model at all


class VectorIndex:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.limit_bytes = _cache_bytes()
        self._matrices: OrderedDict[str, _Matrix] = OrderedDict()

    async def stored_hashes(self, world_id: str, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """{entity_id: (content hash, model)} of the stored vectors among `ids`."""
        async with self.db.read() as conn:
            result = await conn.execute(
                sa.select(
                    world_vectors.c.entity_id, world_vectors.c.content_hash, world_vectors.c.model
                ).where(
                    world_vectors.c.world_id == world_id, world_vectors.c.entity_id.in_(list(ids))
                )
            )
            return {r.entity_id: (r.content_hash, r.model) for r in result}

    async def upsert(
        self,
        workspace_id: str,
        world_id: str,
        model: str,
        items: Sequence[tuple[str, list[float], str]],
    ) -> None:
        """Store (entity_id, vector, content hash) triples, replacing older vectors."""
        if not items:
            return
        now = datetime.now(UTC)
        ids = [entity_id for entity_id, _, _ in items]
        async with self.db.write() as conn:
            await conn.execute(
                world_vectors.delete().where(
                    world_vectors.c.world_id == world_id, world_vectors.c.entity_id.in_(ids)
                )
            )
            await conn.execute(
                world_vectors.insert(),
                [
                    {
                        "entity_id": entity_id,
                        "workspace_id": workspace_id,
                        "world_id": world_id,
                        "model": model,
                        "dim": len(vector),
                        "content_hash": content_hash,
                        "vector": to_blob(vector),
                        "updated_at": now,
                    }
                    for entity_id, vector, content_hash in items
                ],
            )
            await bump(conn, world_id)

    async def remove(self, world_id: str, ids: Sequence[str]) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                world_vectors.delete().where(
                    world_vectors.c.world_id == world_id, world_vectors.c.entity_id.in_(ids)
                )
            )
            await bump(conn, world_id)

    async def drop_other_models(self, world_id: str, model: str) -> int:
        """Delete the world's vectors not made by `model` (what a rebuild left over:
        those of entities that no longer have text to embed)."""
        async with self.db.write() as conn:
            result = await conn.execute(
                world_vectors.delete().where(
                    world_vectors.c.world_id == world_id, world_vectors.c.model != model
                )
            )
            if result.rowcount:
                await bump(conn, world_id)
            return int(result.rowcount or 0)

    async def nearest(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        world_id: str,
        vector: Sequence[float],
        k: int,
        version: int,
        model: str,
    ) -> Nearest:
        """(entity_id, cosine distance) of the k nearest vectors of `model`, nearest
        first.

        `version` is the world's `vectors_version` as the caller read it in `conn`;
        deleted and deprecated entities have no vectors, and callers load the
        entities they keep anyway, so a row that vanished since is dropped there."""
        if not vector or len(vector) > MAX_DIM or k <= 0:
            return Nearest([])
        import numpy as np

        query = np.asarray(vector, dtype=np.float32)
        norm = float(np.linalg.norm(query))
        if norm == 0:
            return Nearest([])
        matrix = await self._matrix(conn, workspace_id, world_id, version, model)
        if matrix.foreign:
            return Nearest([], stale=True)
        if not matrix.ids:
            return Nearest([], empty=True)
        if matrix.unit.shape[1] != len(vector):
            return Nearest([], stale=True)  # same name, other size: not one model
        # einsum, not `@`: a matrix-vector product through OpenBLAS spreads over all
        # cores, and on a busy host waiting for them cost 10x the product itself.
        scores = np.einsum("ij,j->i", matrix.unit, query / norm)
        take = min(len(matrix.ids), k)
        best = np.argpartition(scores, len(scores) - take)[-take:]
        best = best[np.argsort(-scores[best], kind="stable")]
        return Nearest([(matrix.ids[i], 1.0 - float(scores[i])) for i in best])

    async def _matrix(
        self, conn: AsyncConnection, workspace_id: str, world_id: str, version: int, model: str
    ) -> _Matrix:
        matrix = self._matrices.get(world_id)
        if matrix is None or matrix.version != version or matrix.model != model:
            matrix = await self._load(conn, workspace_id, world_id, version, model)
            self._matrices[world_id] = matrix
        self._matrices.move_to_end(world_id)
        # Forget the least recently searched worlds beyond the budget (never this one).
        while len(self._matrices) > 1 and (
            sum(m.nbytes for m in self._matrices.values()) > self.limit_bytes
        ):
            self._matrices.popitem(last=False)
        if matrix.nbytes > self.limit_bytes:
            self._matrices.pop(world_id, None)
        return matrix

    async def _load(
        self, conn: AsyncConnection, workspace_id: str, world_id: str, version: int, model: str
    ) -> _Matrix:
        result = await conn.execute(
            sa.select(
                world_vectors.c.entity_id,
                world_vectors.c.model,
                world_vectors.c.dim,
                world_vectors.c.vector,
            ).where(
                world_vectors.c.world_id == world_id,
                world_vectors.c.workspace_id == workspace_id,
            )
        )
        ids: list[str] = []
        blobs: list[bytes] = []
        dims: set[int] = set()
        foreign = False
        for row in result:
            if row.model != model:
                foreign = True
                continue
            ids.append(row.entity_id)
            dims.add(row.dim)
            blobs.append(bytes(row.vector))
        import numpy as np

        if len(dims) > 1:  # one name, two sizes: not one model's vectors; rebuild them
            return _Matrix(version, model, [], np.zeros((0, 0), np.float32), True)
        dim = dims.pop() if dims else 0
        data = np.frombuffer(b"".join(blobs), dtype="<f4").astype(np.float32)
        data = data.reshape(len(ids), dim)
        norms = np.linalg.norm(data, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return _Matrix(version, model, ids, data / norms, foreign)


async def bump(conn: AsyncConnection, world_id: str) -> None:
    """Mark the world's vectors changed, so cached matrices are reloaded."""
    await conn.execute(
        worlds.update()
        .where(worlds.c.id == world_id)
        .values(vectors_version=worlds.c.vectors_version + 1)
    )
