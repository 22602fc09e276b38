"""The lock a running server (or `taleweaver play`) holds on its database, so that
maintenance which replaces the data under it (restore) refuses instead of losing
what it writes.

SQLite: `flock` on a file beside the database, which also lists the holders'
pids and commands. PostgreSQL: a session-level advisory lock keyed by the schema,
on a connection the holder keeps open. Servers and players hold the lock shared
(replicas run side by side), maintenance exclusive. Both die with their process:
the kernel drops a dead process's flock and PostgreSQL ends a dead client's
session, so a server killed with -9 leaves nothing behind that blocks later.
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
_APP_NAME = "taleweaver"
# How each holder is named in a refusal, and how it is stopped where it runs.
_HOLDERS = {
    "serve": ("a Taleweaver server", "Ctrl-C"),
    "play": ("`taleweaver play`", "/quit"),
}


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
            # Ending the session drops its locks. Closed, not pooled: a holder releases
            # after its engine's last writes, when the pool may be disposed already.
            try:
                await conn.invalidate()
            finally:
                await conn.close()


def lock_path(db: Database) -> Path | None:
    """The SQLite lock file, beside the database; None for PostgreSQL or in memory."""
    if db.dialect != "sqlite":
        return None
    database = make_url(db.url).database
    if not database or database == ":memory:":
        return None
    return Path(f"{database}.serving")


async def hold_for_serving(db: Database, command: str = "serve") -> ServerLease:
    """Take a shared hold for `command` ("serve" or "play", named in maintenance's
    refusal); a Conflict while maintenance has the database."""
    what = "the server" if command == "serve" else f"`taleweaver {command}`"
    busy = Conflict(
        f"a restore is replacing this database right now: start {what} when it finishes"
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
        os.write(fd, f"{os.getpid()} {command}\n".encode())
        return ServerLease(fd=fd)
    if db.dialect != "postgresql":
        return ServerLease()
    conn = await _pg_connection(db)
    try:
        name = f"{_APP_NAME} {command} pid {os.getpid()} on {socket.gethostname()}"
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
        await _pg_unlock(conn)


def _running(what: str, holders: list[tuple[str, str, str]]) -> ServerRunning:
    """`holders`: (pid, host, command) of each; the kill hint names only this host's."""
    here = socket.gethostname()
    commands = [c for c in _HOLDERS if any(command == c for _, _, command in holders)]
    commands = commands or ["serve"]  # a holder we cannot name: most likely a server
    nouns = [_HOLDERS[c][0] for c in commands]
    verb = "is" if len(nouns) == 1 else "are"
    pids = [pid for pid, host, _ in holders if host == here and pid.isdigit()]
    who = ", ".join(
        f"pid {pid}" + ("" if host == here else f" on {host}") for pid, host, _ in holders
    )
    who = f" ({who})" if who else ""
    it, runs = ("it", "it runs") if len(holders) <= 1 else ("them", "they run")
    how = " or ".join(_HOLDERS[c][1] for c in commands) + f" where {runs}"
    how += f", or `kill {' '.join(pids)}`" if pids else ""
    return ServerRunning(
        f"{' and '.join(nouns)} {verb} running on this database{who}: stop {it} first "
        f"({how}), then run {what} again"
    )


def _live_pids(path: Path) -> list[tuple[str, str, str]]:
    alive: list[tuple[str, str, str]] = []
    here = socket.gethostname()
    for line in path.read_text(encoding="ascii", errors="replace").splitlines():
        pid, _, command = line.strip().partition(" ")
        command = command or "serve"  # lines of older servers carry only the pid
        if not pid.isdigit() or (pid, here, command) in alive:
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            continue  # a holder that died without unlocking: the kernel dropped its flock
        except PermissionError:
            pass  # alive, someone else's
        alive.append((pid, here, command))
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


async def _pg_holders(conn: AsyncConnection, key: int) -> list[tuple[str, str, str]]:
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
        # "taleweaver play pid 1234 on host", as hold_for_serving names its session.
        name = str(row.application_name or "").removeprefix(_APP_NAME + " ")
        command, _, rest = name.partition(" pid ")
        pid, _, host = rest.partition(" on ")
        if command in _HOLDERS and pid.isdigit():
            holders.append((pid, host, command))
        else:
            backend = f"{row.pid} (a PostgreSQL backend)"
            holders.append((backend, str(row.addr or "a local socket"), "serve"))
    return holders


async def _pg_unlock(conn: AsyncConnection) -> None:
    try:
        key = await _pg_key(conn)
        await conn.execute(sa.select(sa.func.pg_advisory_unlock(_PG_NAMESPACE, key)))
        await conn.execute(sa.text("RESET application_name"))
    except sa.exc.DBAPIError:
        pass  # the session is gone, and its locks with it
    finally:
        await conn.close()
