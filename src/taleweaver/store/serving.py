"""The lock a running server holds on its database, so that maintenance which
replaces the data under it (restore) refuses instead of losing what it writes.

SQLite: `flock` on a file beside the database, which also lists the servers'
pids. PostgreSQL: a session-level advisory lock keyed by the schema, on a
connection the server keeps open. Servers hold the lock shared (replicas run side
by side), maintenance exclusive. Both die with their process: the kernel drops a
dead process's flock and PostgreSQL ends a dead client's session, so a server
killed with -9 leaves nothing behind that blocks later.
"""

from __future__ import annotations

import fcntl
import os
import socket
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import Conflict
from taleweaver.store.database import Database

__all__ = ["ServerLease", "ServerRunning", "hold_for_serving", "lock_path", "maintenance"]

# First half of the PostgreSQL advisory lock key: Taleweaver's; the second is the schema's.
_PG_NAMESPACE = 0x7457
_SERVER_NAME = "taleweaver serve"


class ServerRunning(Conflict):
    """Maintenance that needs the database to itself found a server on it."""


class ServerLease:
    """A server's hold on its database, kept until `release`."""

    def __init__(self, fd: int | None = None, conn: AsyncConnection | None = None) -> None:
        self._fd = fd
        self._conn = conn

    async def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await _pg_unlock(conn, shared=True)


def lock_path(db: Database) -> Path | None:
    """The SQLite lock file, beside the database; None for PostgreSQL or in memory."""
    if db.dialect != "sqlite":
        return None
    database = make_url(db.url).database
    if not database or database == ":memory:":
        return None
    return Path(f"{database}.serving")


async def hold_for_serving(db: Database) -> ServerLease:
    """Take the server's shared hold; a Conflict while maintenance has the database."""
    busy = Conflict(
        "a restore is replacing this database right now: start the server when it finishes"
    )
    path = lock_path(db)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise busy from None
        os.write(fd, f"{os.getpid()}\n".encode())
        return ServerLease(fd=fd)
    if db.dialect != "postgresql":
        return ServerLease()
    conn = await _pg_connection(db)
    try:
        name = f"{_SERVER_NAME} pid {os.getpid()} on {socket.gethostname()}"
        await conn.execute(sa.select(sa.func.set_config("application_name", name[:63], False)))
        if not await conn.scalar(
            sa.select(sa.func.pg_try_advisory_lock_shared(_PG_NAMESPACE, await _pg_key(conn)))
        ):
            raise busy
    except BaseException:
        await conn.close()
        raise
    return ServerLease(conn=conn)


@asynccontextmanager
async def maintenance(db: Database, what: str) -> AsyncIterator[None]:
    """Have the database to oneself for `what` (e.g. "restore"), or raise
    ServerRunning naming the servers on it and how to stop them."""
    path = lock_path(db)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _running(what, _live_pids(path)) from None
            os.ftruncate(fd, 0)  # forget pids of servers that are gone
            yield
        finally:
            os.close(fd)
        return
    if db.dialect != "postgresql":
        yield
        return
    conn = await _pg_connection(db)
    try:
        key = await _pg_key(conn)
        if not await conn.scalar(sa.select(sa.func.pg_try_advisory_lock(_PG_NAMESPACE, key))):
            raise _running(what, await _pg_holders(conn, key))
    except BaseException:
        await conn.close()
        raise
    try:
        yield
    finally:
        await _pg_unlock(conn, shared=False)


def _running(what: str, holders: list[tuple[str, str]]) -> ServerRunning:
    """`holders`: (pid, host) of each server; the kill hint names only this host's."""
    here = socket.gethostname()
    pids = [pid for pid, host in holders if host == here and pid.isdigit()]
    who = ", ".join(f"pid {pid}" + ("" if host == here else f" on {host}") for pid, host in holders)
    who = f" ({who})" if who else ""
    how = f"Ctrl-C where it runs, or `kill {' '.join(pids)}`" if pids else "Ctrl-C where it runs"
    return ServerRunning(
        f"a Taleweaver server is running on this database{who}: stop it first "
        f"({how}), then run {what} again"
    )


def _live_pids(path: Path) -> list[tuple[str, str]]:
    alive: list[tuple[str, str]] = []
    here = socket.gethostname()
    for line in path.read_text(encoding="ascii", errors="replace").split():
        if not line.isdigit() or (line, here) in alive:
            continue
        try:
            os.kill(int(line), 0)
        except ProcessLookupError:
            continue  # a server that died without unlocking: the kernel dropped its flock
        except PermissionError:
            pass  # alive, someone else's
        alive.append((line, here))
    return alive


async def _pg_connection(db: Database) -> AsyncConnection:
    # Autocommit: the connection sits idle for the server's lifetime and must not
    # hold a transaction (a snapshot) open; session-level locks outlive statements.
    conn = await db.engine.connect()
    return await conn.execution_options(isolation_level="AUTOCOMMIT")


async def _pg_key(conn: AsyncConnection) -> int:
    # Per schema, not per database: instances (and tests) sharing a database in
    # schemas of their own do not lock each other out.
    schema = str(await conn.scalar(sa.text("SELECT current_schema()")))
    return zlib.crc32(schema.encode()) & 0x7FFFFFFF


async def _pg_holders(conn: AsyncConnection, key: int) -> list[tuple[str, str]]:
    rows = await conn.execute(
        sa.text(
            "SELECT a.pid, a.application_name, a.client_addr::text AS addr "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :ns "
            "AND l.objid = :key AND l.objsubid = 2 AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"ns": _PG_NAMESPACE, "key": key},
    )
    holders = []
    for row in rows:
        # "taleweaver serve pid 1234 on host", as hold_for_serving names its session.
        name = str(row.application_name or "").removeprefix(_SERVER_NAME + " pid ")
        pid, _, host = name.partition(" on ")
        if pid.isdigit():
            holders.append((pid, host))
        else:
            holders.append((f"{row.pid} (a PostgreSQL backend)", str(row.addr or "a local socket")))
    return holders


async def _pg_unlock(conn: AsyncConnection, *, shared: bool) -> None:
    unlock = sa.func.pg_advisory_unlock_shared if shared else sa.func.pg_advisory_unlock
    try:
        await conn.execute(sa.select(unlock(_PG_NAMESPACE, await _pg_key(conn))))
        await conn.execute(sa.text("RESET application_name"))
    except sa.exc.DBAPIError:
        pass  # the session is gone, and its locks with it
    finally:
        await conn.close()
