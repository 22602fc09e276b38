"""The in-process ANN index (usearch) over a world's vectors on SQLite: it agrees with
the exact search, follows writes and deletes, and comes back after a restart (from
its saved file, or rebuilt when the file is behind the database)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from taleweaver.memory.world import ann as ann_module
from taleweaver.memory.world.vectors import Nearest, VectorIndex
from taleweaver.store import migrate
from taleweaver.store.database import Database
from taleweaver.store.world_schema import worlds

pytestmark = pytest.mark.skipif(not ann_module.available(), reason="usearch is not installed")

WS, WORLD, MODEL, DIM = "local", "w1", "unit-384", 384
N = 3000
ANN_MIN = 500


CENTRES = np.random.default_rng(0).standard_normal((40, DIM)).astype(np.float32)


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit vectors around a few dozen topics, as sentence embeddings are (uniform
    random vectors in 384 dimensions have no near neighbours to find)."""
    topics = CENTRES[rng.integers(0, len(CENTRES), n)]
    data = (topics + 0.8 * rng.standard_normal((n, DIM))).astype(np.float32)
    normalised: np.ndarray = data / np.linalg.norm(data, axis=1, keepdims=True)
    return normalised


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/world.db")
    await migrate.upgrade(database.engine)
    now = datetime.now(UTC)
    async with database.write() as conn:
        await conn.execute(
            worlds.insert().values(
                id=WORLD,
                workspace_id=WS,
                name="ANN",
                description="",
                settings={},
                version=1,
                vectors_version=0,
                created_at=now,
                updated_at=now,
            )
        )
    yield database
    await database.dispose()


async def fill(index: VectorIndex, data: np.ndarray, start: int = 0) -> None:
    for at in range(0, len(data), 500):
        chunk = data[at : at + 500]
        await index.upsert(
            WS,
            WORLD,
            MODEL,
            [(f"e{start + at + i}", v.tolist(), "h") for i, v in enumerate(chunk)],
        )


async def nearest(index: VectorIndex, query: np.ndarray, k: int = 10) -> Nearest:
    async with index.db.read() as conn:
        version = await _version(index, conn)
        return await index.nearest(conn, WS, WORLD, query.tolist(), k, version, MODEL)


async def _version(index: VectorIndex, conn: object) -> int:
    version = await index._version(WORLD)
    assert version is not None
    return version


async def ready(index: VectorIndex, query: np.ndarray) -> Nearest:
    """The first search starts the build; the one after it answers from the index."""
    await nearest(index, query)
    assert index.ann is not None
    await index.ann.wait()
    found = await nearest(index, query)
    assert found.method == "ann"
    return found


def ids(found: Nearest) -> list[str]:
    return [entity_id for entity_id, _ in found.found]


async def test_ann_agrees_with_exact_search_on_a_small_world(db: Database) -> None:
    rng = np.random.default_rng(1)
    index = VectorIndex(db, ann_min=ANN_MIN)
    exact = VectorIndex(db, ann=False)
    await fill(index, unit(rng, N))
    queries = unit(rng, 50)
    await ready(index, queries[0])
    hits = 0
    for query in queries:
        approximate = await nearest(index, query)
        truth = await nearest(exact, query)
        assert approximate.method == "ann" and truth.method == "exact"
        hits += len(set(ids(approximate)) & set(ids(truth)))
        # Distances are the same cosine distances, nearest first.
        got = [d for _, d in approximate.found]
        assert got == sorted(got)
    assert hits / (10 * len(queries)) >= 0.95
    await index.aclose()


async def test_a_small_world_stays_exact(db: Database) -> None:
    rng = np.random.default_rng(2)
    index = VectorIndex(db, ann_min=ANN_MIN)
    await fill(index, unit(rng, ANN_MIN - 1))
    found = await nearest(index, unit(rng, 1)[0])
    assert index.ann is not None and not index.ann.building(WORLD)
    assert found.method == "exact" and len(found.found) == 10


async def test_writes_and_deletes_are_reflected_without_a_rebuild(db: Database) -> None:
    rng = np.random.default_rng(3)
    index = VectorIndex(db, ann_min=ANN_MIN)
    await fill(index, unit(rng, N))
    query = unit(rng, 1)[0]
    await ready(index, query)
    assert index.ann is not None
    # A new vector right by the query is found first, from the index kept in step.
    await index.upsert(WS, WORLD, MODEL, [("fresh", query.tolist(), "h")])
    found = await nearest(index, query)
    assert found.method == "ann" and ids(found)[0] == "fresh"
    assert not index.ann.building(WORLD)
    # An entity's vector replaced: it moves.
    far = (-query).tolist()
    await index.upsert(WS, WORLD, MODEL, [("fresh", far, "h2")])
    found = await nearest(index, query)
    assert found.method == "ann" and "fresh" not in ids(found)
    found = await nearest(index, -query)
    assert ids(found)[0] == "fresh"
    # Deleted: gone from every answer.
    await index.remove(WORLD, ["fresh"])
    found = await nearest(index, -query)
    assert found.method == "ann" and "fresh" not in ids(found)
    assert not index.ann.building(WORLD)


async def test_the_index_comes_back_after_a_restart(db: Database) -> None:
    rng = np.random.default_rng(4)
    first = VectorIndex(db, ann_min=ANN_MIN)
    await fill(first, unit(rng, N))
    query = unit(rng, 1)[0]
    before = ids(await ready(first, query))
    await first.aclose()  # saves the index beside the database file
    saved = Path(db.url.split("///", 1)[1] + ".world-ann")
    assert await asyncio.to_thread(lambda: any(saved.glob("*.usearch")))

    restarted = VectorIndex(db, ann_min=ANN_MIN)
    await restarted.warm()  # what the engine does at start: restore in the background
    assert restarted.ann is not None
    await restarted.ann.wait()
    found = await nearest(restarted, query)
    assert found.method == "ann" and ids(found) == before
    await restarted.aclose()

    # Another process wrote after the save: the file is behind, so it is rebuilt.
    other = VectorIndex(db, ann=False)
    await other.upsert(WS, WORLD, MODEL, [("late", query.tolist(), "h")])
    again = VectorIndex(db, ann_min=ANN_MIN)
    await again.warm()
    assert again.ann is not None
    await again.ann.wait()
    found = await nearest(again, query)
    assert found.method == "ann" and ids(found)[0] == "late"
    await again.aclose()


async def test_a_write_from_another_process_falls_back_to_exact_then_rebuilds(
    db: Database,
) -> None:
    rng = np.random.default_rng(5)
    index = VectorIndex(db, ann_min=ANN_MIN)
    await fill(index, unit(rng, N))
    query = unit(rng, 1)[0]
    await ready(index, query)
    other = VectorIndex(db, ann=False)
    await other.upsert(WS, WORLD, MODEL, [("elsewhere", query.tolist(), "h")])
    # Never a stale answer: exact while the index catches up (the world fits the cache).
    found = await nearest(index, query)
    assert found.method == "exact" and ids(found)[0] == "elsewhere"
    found = await ready(index, query)
    assert ids(found)[0] == "elsewhere"
