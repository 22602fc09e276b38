"""Connecting to SQLite or PostgreSQL, and the write transaction both share."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from taleweaver.domain.errors import InvalidInput
from taleweaver.observability import observe_query


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


def redacted_url(url: str) -> str:
    """The URL to show a person: any password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(not a database URL)"


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'taleweaver.db'}"


class Database:
    """Async engines plus the one way to open a write transaction.

    On SQLite, where aiosqlite makes every driver call a thread hop, reads and
    writes use separate pools configured so that neither pays for statements it
    does not need: readers run in autocommit (no BEGIN, no pinned WAL snapshot),
    writers let sqlite3 issue BEGIN IMMEDIATE implicitly in the same call as the
    first write, so two writers never deadlock upgrading a read lock. On
    PostgreSQL one pool serves both.
    """

    def __init__(self, url: str, **engine_args: Any) -> None:
        self.url = normalise_url(url)
        if self.url.startswith("sqlite"):
            connect_args = dict(engine_args.pop("connect_args", {}))
            # Every write ends in an explicit commit or rollback, and reads never
            # open a transaction: the pool's rollback on return would be a wasted hop.
            engine_args.setdefault("pool_reset_on_return", None)
            self.engine: AsyncEngine = create_async_engine(
                self.url,
                connect_args=connect_args | {"isolation_level": "IMMEDIATE"},
                **engine_args,
            )
            self.reader: AsyncEngine = create_async_engine(
                self.url,
                connect_args=connect_args | {"isolation_level": None},
                isolation_level="AUTOCOMMIT",
                **engine_args,
            )
            _configure_sqlite(self.engine)
            _configure_sqlite(self.reader)
            # The reader never opens a transaction, so the rollback SQLAlchemy issues
            # when a connection closes has nothing to undo; skip its round trip.
            self.reader.dialect.do_rollback = _no_rollback  # type: ignore[method-assign,assignment]
        else:
            self.engine = create_async_engine(self.url, **engine_args)
            self.reader = self.engine
        self.dialect = self.engine.dialect.name
        for each in {self.engine, self.reader}:
            _time_queries(each)
        self._file = _sqlite_file(self.url)
        self._here = threading.local()  # each thread's connection for `read_now`
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()

    def read_now(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]] | None:
        """A small read run at once on the calling thread, or None where it cannot be
        (not a SQLite file, or the file is busy): then read through the pool.

        Every aiosqlite call is a hop to its worker thread and back, which on two busy
        cores costs more than the indexed read itself; SQLite in WAL mode lets a
        reader run beside the writer, so the hot reads of every turn run here. The
        connection is the thread's own and read-only, in autocommit (each statement
        sees what was committed before it), and waits at most a few milliseconds for
        a lock rather than stall the event loop.
        """
        if self._file is None:
            return None
        conn: sqlite3.Connection | None = getattr(self._here, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._file, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA busy_timeout=5")
            self._here.conn = conn
            with self._opened_lock:
                self._opened.append(conn)
        started = time.perf_counter()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None
            raise sa.exc.DBAPIError.instance(sql, params, exc, sqlite3.Error) from exc
        except sqlite3.Error as exc:
            raise sa.exc.DBAPIError.instance(sql, params, exc, sqlite3.Error) from exc
        finally:
            observe_query(sql, time.perf_counter() - started)

    def connections_in_use(self) -> int:
        """Connections checked out of the pools now (for the metrics)."""
        pools = {id(e.pool): e.pool for e in (self.engine, self.reader)}
        return sum(int(getattr(pool, "checkedout", lambda: 0)()) for pool in pools.values())

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that holds the database's write lock.

        SQLite: BEGIN IMMEDIATE, taken with the transaction's first write.
        PostgreSQL: an EXCLUSIVE lock on the events table (plain reads still run), so
        global positions are handed out in commit order with no gaps.
        """
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(sa.text("LOCK TABLE events IN EXCLUSIVE MODE"))
            yield conn

    async def lock(self, conn: AsyncConnection) -> None:
        """Take the write lock now, inside `write()`, before a read that the write
        depends on (SQLite would otherwise take it only at the first write)."""
        if self.dialect != "sqlite":
            return
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        if not driver.in_transaction:
            await driver.execute("BEGIN IMMEDIATE")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.reader.connect() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.reader.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._here = threading.local()
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()


def _time_queries(engine: AsyncEngine) -> None:
    """Every statement's duration into `taleweaver_db_query_duration_seconds`."""
    clock = time.perf_counter

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(
        _conn: Any, _cursor: Any, _sql: str, _params: Any, context: Any, _many: bool
    ) -> None:
        if context is not None:
            context._taleweaver_started = clock()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _after(_conn: Any, _cursor: Any, sql: str, _params: Any, context: Any, _many: bool) -> None:
        started = getattr(context, "_taleweaver_started", None)
        if started is not None:
            observe_query(sql, clock() - started)


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL; None for PostgreSQL or a database in memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    name = parsed.database or ""
    if not name or name == ":memory:" or "mode=memory" in name:
        return None
    return name


def _no_rollback(_dbapi_connection: Any) -> None:
    return None


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "busy_timeout=10000",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
