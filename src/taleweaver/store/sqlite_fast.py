"""One driver call per statement on SQLite's hot paths.

aiosqlite runs every driver call on its own thread, and SQLAlchemy's cursor
adapter spends three or four calls per statement (open a cursor, execute,
fetch, close); at well under a millisecond of SQLite work per turn, those
thread hops were most of a turn's cost. The few statements every turn runs go
straight to aiosqlite here, on the same connection and so inside the same
transaction as everything else. Everything else uses SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

Row = Sequence[Any]


def stamp(value: datetime) -> str:
    """A timestamp in the text form SQLAlchemy's SQLite DateTime reads back."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


async def _driver(conn: AsyncConnection) -> Any:
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def fetch_all(conn: AsyncConnection, sql: str, params: Row = ()) -> list[Row]:
    driver = await _driver(conn)
    rows: list[Row] = list(await driver.execute_fetchall(sql, params))
    return rows


async def execute(conn: AsyncConnection, sql: str, params: Row = ()) -> None:
    driver = await _driver(conn)
    await driver.execute(sql, params)


async def insert(conn: AsyncConnection, sql: str, params: Row) -> int:
    """Run an INSERT; return the last inserted rowid."""
    driver = await _driver(conn)
    row = await driver.execute_insert(sql, params)
    return int(row[0])


async def execute_many(conn: AsyncConnection, sql: str, rows: Iterable[Row]) -> None:
    driver = await _driver(conn)
    await driver.executemany(sql, list(rows))
