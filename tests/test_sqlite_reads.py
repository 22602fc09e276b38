"""The hot reads of every turn run on the calling thread on SQLite (no aiosqlite hop),
see only what was committed, and give way to the pool when the file is busy."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from taleweaver.store import sqlite_fast
from taleweaver.store.database import Database


async def _table(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)"))
        await conn.execute(sa.text("INSERT INTO notes (text) VALUES ('kept')"))


async def test_a_read_runs_on_the_calling_thread_and_sees_what_was_committed(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        await _table(db)
        seen = await sqlite_fast.fetch_rows(db, "SELECT text FROM notes", {})
        assert seen == [("kept",)]
        async with db.write() as conn:
            await conn.execute(sa.text("INSERT INTO notes (text) VALUES ('pending')"))
            # Inside the writer's open transaction: a reader sees only what was committed.
            assert db.read_now("SELECT count(*) FROM notes", {}) == [(1,)]
        assert db.read_now("SELECT count(*) FROM notes", {}) == [(2,)]
        # Each thread reads on its own connection.
        found: list[object] = []
        worker = threading.Thread(
            target=lambda: found.append(db.read_now("SELECT count(*) FROM notes", {}))
        )
        worker.start()
        worker.join()
        assert found == [[(2,)]]
    finally:
        await db.dispose()


async def test_a_busy_file_answers_none_at_once_so_the_read_goes_through_the_pool(
    tmp_path: Path,
) -> None:
    # A file in rollback-journal mode under an exclusive lock: the one state in which
    # a reader must wait (in WAL mode, which the store uses, readers never wait).
    path = tmp_path / "b.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    holder.execute("BEGIN EXCLUSIVE")
    db = Database(f"sqlite:///{path}")
    try:
        started = time.perf_counter()
        assert db.read_now("SELECT count(*) FROM notes", {}) is None
        assert time.perf_counter() - started < 0.5  # the event loop is never held long
        holder.execute("COMMIT")
        assert db.read_now("SELECT count(*) FROM notes", {}) == [(0,)]
    finally:
        holder.close()
        await db.dispose()


async def test_no_read_runs_on_the_calling_thread_for_memory_or_postgresql() -> None:
    memory = Database("sqlite:///:memory:")
    postgres = Database("postgresql://nobody@127.0.0.1:1/none")
    try:
        assert memory.read_now("SELECT 1", {}) is None
        assert postgres.read_now("SELECT 1", {}) is None
    finally:
        await asyncio.gather(memory.dispose(), postgres.dispose())
