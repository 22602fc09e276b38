"""Connecting to SQLite or PostgreSQL, and the write transaction both share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from taleweaver.domain.errors import InvalidInput

_WRITE = "taleweaver_write"


def normalise_url(url: str) -> str:
    """Pick the async driver for the URL's database, whatever the user wrote."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise InvalidInput(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise InvalidInput(f"unsupported database {backend!r}: use sqlite or postgresql")


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'taleweaver.db'}"


class Database:
    """An async engine plus the one way to open a write transaction."""

    def __init__(self, url: str, **engine_args: Any) -> None:
        self.url = normalise_url(url)
        if self.url.startswith("sqlite"):
            # Every transaction here ends in an explicit commit or rollback, so the
            # pool's extra rollback on return is only a wasted driver round trip.
            engine_args.setdefault("pool_reset_on_return", None)
        self.engine: AsyncEngine = create_async_engine(self.url, **engine_args)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            _configure_sqlite(self.engine)
        self._writer = self.engine.execution_options(**{_WRITE: True})

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that holds the database's write lock from its first statement.

        SQLite: BEGIN IMMEDIATE, so two writers never deadlock upgrading a read lock.
        PostgreSQL: an EXCLUSIVE lock on the events table (plain reads still run), so
        global positions are handed out in commit order with no gaps.
        """
        async with self._writer.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(sa.text("LOCK TABLE events IN EXCLUSIVE MODE"))
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    # pysqlite's own transaction handling is switched off so that BEGIN is ours to
    # issue (SQLAlchemy's documented recipe): IMMEDIATE for writes, so two writers
    # never deadlock upgrading a read lock; none for reads, which run in autocommit
    # and so never pin an old WAL snapshot or pay two extra driver round trips.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "busy_timeout=10000",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get(_WRITE, False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
