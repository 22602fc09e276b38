"""One driver call per statement on SQLite's hot paths.

aiosqlite runs every driver call on its own thread, and SQLAlchemy's cursor
adapter spends three or four calls per statement (open a cursor, execute,
fetch, close); at well under a millisecond of SQLite work per turn, those
thread hops were most of a turn's cost. The few statements every turn runs go
straight to aiosqlite here, on the same connection and so inside the same
transaction as everything else. Everything else uses SQLAlchemy Core.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.observability import observe_query
from taleweaver.store.database import Database

Row = Sequence[Any]


def stamp(value: datetime) -> str:
    """A timestamp in the text form SQLAlchemy's SQLite DateTime reads back."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


@asynccontextmanager
async def _driver(conn: AsyncConnection, sql: str) -> AsyncIterator[Any]:
    """The aiosqlite connection under `conn`; driver errors come out wrapped the
    way SQLAlchemy wraps them, so callers see one error vocabulary on every path."""
    raw = await conn.get_raw_connection()
    started = time.perf_counter()
    try:
        yield raw.driver_connection
    except sqlite3.Error as exc:
        raise sa.exc.DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc
    finally:  # SQLAlchemy's statement events do not see this path: time it here
        observe_query(sql, time.perf_counter() - started)


async def fetch_rows(db: Database, sql: str, params: dict[str, Any]) -> list[Row]:
    """Run a read with named (`:name`) parameters: on SQLite in one driver call, on
    PostgreSQL through SQLAlchemy as usual. For small, hot reads on every request."""
    now = db.read_now(sql, params)
    if now is not None:
        return list(now)
    async with db.read() as conn:
        if db.dialect == "sqlite":
            return await fetch_all(conn, sql, params)
        return [tuple(row) for row in await conn.execute(sa.text(sql), params)]


async def fetch_all(
    conn: AsyncConnection, sql: str, params: Row | dict[str, Any] = ()
) -> list[Row]:
    async with _driver(conn, sql) as driver:
        rows: list[Row] = list(await driver.execute_fetchall(sql, params))
    return rows


async def execute(conn: AsyncConnection, sql: str, params: Row = ()) -> None:
    async with _driver(conn, sql) as driver:
        await driver.execute(sql, params)


async def insert(conn: AsyncConnection, sql: str, params: Row) -> int:
    """Run an INSERT; return the last inserted rowid."""
    async with _driver(conn, sql) as driver:
        row = await driver.execute_insert(sql, params)
    return int(row[0])


async def execute_many(conn: AsyncConnection, sql: str, rows: Iterable[Row]) -> None:
    async with _driver(conn, sql) as driver:
        await driver.executemany(sql, list(rows))
