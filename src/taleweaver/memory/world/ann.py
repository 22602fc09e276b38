"""Approximate nearest neighbours for big worlds searched in process (SQLite, or a
PostgreSQL without pgvector): an HNSW graph per world, built from the stored
vectors, kept in step with this process's writes, saved beside the SQLite file and
restored (or rebuilt) in the background at start.

The library is usearch (Unum, Apache-2.0): a 2.3 MB manylinux wheel for CPython
3.11 x86_64 with nothing to compile, released every few weeks, and it deletes
(`remove`), saves and restores an index, adds with all cores. The others looked at:
hnswlib ships only a source archive (a C++ build on every install) and has had no
release since December 2023; faiss-cpu is a 19 MB wheel whose HNSW index cannot
delete a vector, so every edit of a world would mean a rebuild.

Worlds under `ANN_MIN` vectors stay on the exact search (a matrix product is a few
milliseconds there, and exact). While a world's index is being built, searches
use the exact matrix when it is cached or fits the cache budget, else keyword and
graph only; a process that cannot import usearch searches exactly everywhere.

Consistency: an index records the world's `vectors_version` it reflects. A write
through this process moves it one version on (upsert, remove); a write it did not
see (another process) leaves it behind the database, and the next search uses the
exact path and rebuilds it in the background. Writes made while a build runs are
journaled and replayed onto the built index (they are idempotent).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

ANN_MIN = 20_000  # vectors in a world before it gets an index
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128


def available() -> bool:
    """Whether usearch is installed, without importing it (it brings numpy, which a
    CLI command that opens the engine must not pay for)."""
    return importlib.util.find_spec("usearch") is not None


@dataclass(slots=True)
class Stored:
    """One world's vectors of one model as read from the store."""

    version: int
    model: str
    ids: list[str]
    data: np.ndarray  # float32, one row per id (not normalised: cosine does that)
    foreign: bool  # another model's or size's vectors are there too


Loader = Callable[[str, str], Awaitable[Stored | None]]  # (workspace, world)
VersionOf = Callable[[str], Awaitable[int | None]]  # world -> its vectors_version


@dataclass(slots=True)
class _Ann:
    workspace_id: str
    model: str
    dim: int
    version: int
    index: Any  # usearch.index.Index
    ids: list[str | None]  # key -> entity id (None: removed)
    keys: dict[str, int]  # entity id -> key
    saved: int | None = None  # the version on disk

    def upsert(self, items: Sequence[tuple[str, Sequence[float]]]) -> None:
        import numpy as np

        self.remove([entity_id for entity_id, _ in items])
        fresh = [(i, v) for i, v in items if len(v) == self.dim]
        if not fresh:
            return
        start = len(self.ids)
        keys = np.arange(start, start + len(fresh), dtype=np.uint64)
        data = np.asarray([v for _, v in fresh], dtype=np.float32)
        self.index.add(keys, data, threads=1)
        for offset, (entity_id, _) in enumerate(fresh):
            self.ids.append(entity_id)
            self.keys[entity_id] = start + offset

    def remove(self, ids: Sequence[str]) -> None:
        import numpy as np

        gone = [self.keys.pop(i) for i in ids if i in self.keys]
        if gone:
            self.index.remove(np.asarray(gone, dtype=np.uint64))
            for key in gone:
                self.ids[key] = None

    def search(self, unit: np.ndarray, k: int) -> list[tuple[str, float]]:
        matches = self.index.search(unit, k, threads=1)
        out: list[tuple[str, float]] = []
        for key, distance in zip(matches.keys.tolist(), matches.distances.tolist(), strict=True):
            entity_id = self.ids[key] if 0 <= key < len(self.ids) else None
            if entity_id is not None:
                out.append((entity_id, float(distance)))
        return out


# A write seen while a build ran, replayed onto the built index:
# (new version, "upsert" | "remove" | "drop", model, items or ids).
_Entry = tuple[int, str, str, list[Any]]


@dataclass(slots=True)
class _Build:
    task: asyncio.Task[None] | None = None
    journal: list[_Entry] = field(default_factory=list)


class AnnIndexes:
    """Every world's index in this process."""

    def __init__(
        self,
        loader: Loader,
        version_of: VersionOf,
        folder: Path | None,
        *,
        min_size: int = ANN_MIN,
    ) -> None:
        self.loader = loader
        self.version_of = version_of
        self.folder = folder
        self.min_size = min_size
        self._ready: dict[str, _Ann] = {}
        self._builds: dict[str, _Build] = {}
        self._refused: dict[str, int] = {}  # world -> version it could not be built at

    # -- searching ---------------------------------------------------------------

    def ready(self, world_id: str, version: int, model: str) -> _Ann | None:
        ann = self._ready.get(world_id)
        if ann is None or ann.version != version or ann.model != model:
            return None
        return ann

    def building(self, world_id: str) -> bool:
        return world_id in self._builds

    def start(self, workspace_id: str, world_id: str, version: int) -> None:
        """Build (or restore) the world's index in the background, once per version
        it could not be built at."""
        if world_id in self._builds or self._refused.get(world_id) == version:
            return
        build = _Build()
        self._builds[world_id] = build
        build.task = asyncio.get_running_loop().create_task(
            self._build(workspace_id, world_id, build), name=f"ann index {world_id}"
        )

    # -- writes made through this process ------------------------------------------

    def upserted(
        self, world_id: str, version: int, model: str, items: Sequence[tuple[str, Sequence[float]]]
    ) -> None:
        self._apply(world_id, (version, "upsert", model, list(items)))

    def removed(self, world_id: str, version: int, ids: Sequence[str]) -> None:
        self._apply(world_id, (version, "remove", "", list(ids)))

    def dropped(self, world_id: str, version: int, model: str) -> None:
        """Another model's vectors were deleted: an index of another model is gone."""
        self._apply(world_id, (version, "drop", model, []))

    def _apply(self, world_id: str, entry: _Entry) -> None:
        build = self._builds.get(world_id)
        if build is not None:
            build.journal.append(entry)
            return
        ann = self._ready.get(world_id)
        if ann is None:
            return
        if ann.version != entry[0] - 1:  # a write this process did not see came between
            self._ready.pop(world_id, None)
            return
        _replay(ann, entry)

    # -- building, saving, restoring -------------------------------------------------

    async def _build(self, workspace_id: str, world_id: str, build: _Build) -> None:
        started = time.perf_counter()
        try:
            ann = await self._restore(world_id)
            how = "restored"
            if ann is None:
                stored = await self.loader(workspace_id, world_id)
                if stored is None or stored.foreign or len(stored.ids) < self.min_size:
                    if stored is not None:
                        self._refused[world_id] = stored.version
                    self._ready.pop(world_id, None)
                    return
                ann = await asyncio.to_thread(_make, workspace_id, stored)
                how = "built"
            for entry in build.journal:
                if entry[0] > ann.version:
                    _replay(ann, entry)
            self._ready[world_id] = ann
            log.info(
                "world %s: ANN index %s (%d vectors of %s, version %d) in %.1f s",
                world_id,
                how,
                len(ann.keys),
                ann.model,
                ann.version,
                time.perf_counter() - started,
            )
            if how == "built":
                await self.save(world_id)
        except Exception:  # a background task's failure would otherwise go unseen
            log.exception("world %s: ANN index not built; searching exactly", world_id)
        finally:
            self._builds.pop(world_id, None)

    def _paths(self, world_id: str) -> tuple[Path, Path] | None:
        if self.folder is None:
            return None
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in world_id)
        return self.folder / f"{safe}.usearch", self.folder / f"{safe}.json"

    async def save(self, world_id: str) -> None:
        """Write the world's index to disk unless the file is at its version already."""
        ann = self._ready.get(world_id)
        paths = self._paths(world_id)
        if ann is None or paths is None or ann.saved == ann.version:
            return
        version = ann.version
        await asyncio.to_thread(_save, ann, *paths)
        ann.saved = version

    async def save_all(self) -> None:
        for world_id in list(self._ready):
            try:
                await self.save(world_id)
            except OSError as exc:
                log.warning("world %s: ANN index not saved: %s", world_id, exc)

    async def _restore(self, world_id: str) -> _Ann | None:
        """The saved index, when it is at the world's current version."""
        paths = self._paths(world_id)
        if paths is None or not paths[1].exists():
            return None
        try:
            meta = json.loads(paths[1].read_text())
        except (OSError, ValueError):
            return None
        current = await self.version_of(world_id)
        if current is None or meta.get("version") != current:
            return None
        return await asyncio.to_thread(_load, meta, paths[0])

    async def close(self) -> None:
        for build in list(self._builds.values()):
            if build.task is not None:
                build.task.cancel()
        await asyncio.gather(
            *(b.task for b in list(self._builds.values()) if b.task is not None),
            return_exceptions=True,
        )
        await self.save_all()

    async def wait(self) -> None:
        """Until every build started so far has finished."""
        while self._builds:
            tasks = [b.task for b in self._builds.values() if b.task is not None]
            await asyncio.gather(*tasks, return_exceptions=True)

    def describe(self) -> dict[str, object]:
        return {
            "ann": "usearch",
            "ann_min_vectors": self.min_size,
            "ann_worlds": len(self._ready),
            "ann_building": len(self._builds),
        }


def _new_index(dim: int) -> Any:
    from usearch.index import Index

    return Index(
        ndim=dim,
        metric="cos",
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )


def _make(workspace_id: str, stored: Stored) -> _Ann:
    import numpy as np

    dim = int(stored.data.shape[1])
    index = _new_index(dim)
    index.add(np.arange(len(stored.ids), dtype=np.uint64), stored.data, threads=os.cpu_count() or 1)
    ids: list[str | None] = list(stored.ids)
    keys = {entity_id: key for key, entity_id in enumerate(stored.ids)}
    return _Ann(workspace_id, stored.model, dim, stored.version, index, ids, keys)


def _replay(ann: _Ann, entry: _Entry) -> None:
    version, kind, model, items = entry
    if kind == "upsert":
        if model == ann.model:
            ann.upsert(items)
        else:  # another model's vectors arrive: this index no longer answers
            ann.remove([entity_id for entity_id, _ in items])
            ann.model = ""
    elif kind == "remove":
        ann.remove(items)
    elif kind == "drop" and model != ann.model:
        ann.model = ""
    ann.version = version


def _save(ann: _Ann, index_path: Path, meta_path: Path) -> None:
    index_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_index = index_path.with_suffix(".usearch.tmp")
    tmp_meta = meta_path.with_suffix(".json.tmp")
    ann.index.save(str(tmp_index))
    meta = {
        "workspace_id": ann.workspace_id,
        "model": ann.model,
        "dim": ann.dim,
        "version": ann.version,
        "ids": ann.ids,
    }
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_index, index_path)
    os.replace(tmp_meta, meta_path)


def _load(meta: dict[str, Any], index_path: Path) -> _Ann | None:
    index = _new_index(int(meta["dim"]))
    try:
        index.load(str(index_path))
    except (OSError, RuntimeError, ValueError):
        return None
    ids: list[str | None] = meta["ids"]
    keys = {entity_id: key for key, entity_id in enumerate(ids) if entity_id is not None}
    return _Ann(
        meta["workspace_id"],
        meta["model"],
        int(meta["dim"]),
        int(meta["version"]),
        index,
        ids,
        keys,
    )
