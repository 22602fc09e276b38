"""Terminal sessions: open a command on a pseudo-terminal, record what people do to
it as events, keep its output in a capped table, and stream it to attached clients.

A terminal runs in the server process that opened it. Any process can replay its
screen and follow it (by reading the output table); input, resizing and signals
reach it only through its own process.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import os
import pwd
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from taleweaver.auth import is_loopback
from taleweaver.config import Settings, host_environment
from taleweaver.domain.errors import Conflict, Forbidden, NotFound
from taleweaver.domain.events import JSON, EventMetadata, NewEvent, RecordedEvent
from taleweaver.domain.terminals import (
    Frame,
    RetentionWindow,
    TerminalEvent,
    split_chunks,
    terminal_stream,
)
from taleweaver.files import workspace_folder
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore
from taleweaver.store.terminals_schema import terminals
from taleweaver.terminals.output import OutputLog
from taleweaver.terminals.pty_process import PtyProcess

__all__ = ["Terminals"]

log = logging.getLogger(__name__)

# How often a follower of a terminal run by another process reads its new output.
POLL_SECONDS = 0.25
# Frames an attached client may fall behind before it catches up from the table.
SUBSCRIBER_FRAMES = 256
# The environment a terminal's command gets from the server's (nothing else: the
# server's secrets stay out of the shell).
PASSED_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ")
_HERE = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class _Running:
    """A terminal this process runs."""

    terminal_id: str
    workspace_id: str
    process: PtyProcess
    window: RetentionWindow
    seq: int = 0
    subscribers: set[asyncio.Queue[Frame | None]] = field(default_factory=set)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    close_reason: str = "exited"
    closed_by: EventMetadata | None = None
    pump: asyncio.Task[None] | None = None

    def publish(self, frame: Frame) -> None:
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:  # behind: it catches up from the table
                self.subscribers.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)


def _view(row: Any) -> JSON:
    data = dict(row._mapping)
    for key in ("created_at", "closed_at"):
        value = data.get(key)
        if isinstance(value, datetime) and value.tzinfo is None:
            data[key] = value.replace(tzinfo=UTC)
    data["command"] = json.loads(data["command"])
    data.pop("workspace_id")
    return data


def default_command() -> list[str]:
    """The server user's login shell, else /bin/sh."""
    with contextlib.suppress(KeyError):
        shell = pwd.getpwuid(os.getuid()).pw_shell
        if shell and os.access(shell, os.X_OK):
            return [shell]
    return ["/bin/sh"]


class Terminals:
    def __init__(self, db: Database, store: EventStore, settings: Settings) -> None:
        self.db = db
        self.store = store
        self.settings = settings
        self.output = OutputLog(db, store.sealer)
        self._running: dict[str, _Running] = {}

    # --- who may ----------------------------------------------------------------------

    def check(self, *, instance_admin: bool) -> None:
        """Forbidden unless terminals are on for this server and this caller: they run
        commands as the server's user."""
        settings = self.settings
        if not settings.terminal_enabled:
            raise Forbidden("terminals are off on this server (TALEWEAVER_TERMINAL_ENABLED)")
        if not is_loopback(settings.bind_host) and not settings.terminal_allow_remote:
            raise Forbidden(
                f"terminals are off on a server bound to {settings.bind_host}; "
                "TALEWEAVER_TERMINAL_ALLOW_REMOTE=true allows them there"
            )
        if not instance_admin and not settings.terminal_workspace_admins:
            raise Forbidden("only an instance administrator may use a terminal")

    # --- reading ----------------------------------------------------------------------

    async def _row(self, workspace_id: str, terminal_id: str) -> Any:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(terminals).where(
                        terminals.c.id == terminal_id, terminals.c.workspace_id == workspace_id
                    )
                )
            ).first()
        if row is None:
            raise NotFound(f"terminal {terminal_id} not found")
        return row

    async def get(self, workspace_id: str, terminal_id: str) -> JSON:
        row = await self._row(workspace_id, terminal_id)
        if row.status == "running" and terminal_id not in self._running and self._lost(row):
            await self._record_lost(row)
            row = await self._row(workspace_id, terminal_id)
        view = _view(row)
        view["kept_chunks"], view["kept_bytes"] = await self.output.kept(terminal_id)
        return view

    async def all(self, workspace_id: str) -> list[JSON]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(terminals)
                .where(terminals.c.workspace_id == workspace_id)
                .order_by(terminals.c.created_at.desc(), terminals.c.id)
            )
            return [_view(r) for r in rows]

    async def events(self, workspace_id: str, terminal_id: str) -> list[JSON]:
        """The terminal's log: opened, input, resized, signalled, closed."""
        await self._row(workspace_id, terminal_id)
        return [e.to_dict() for e in await self.store.read_stream(terminal_stream(terminal_id))]

    # --- lifecycle --------------------------------------------------------------------

    async def open(self, workspace_id: str, meta: EventMetadata, *, cols: int, rows: int) -> JSON:
        """Start the configured command in the workspace's folder (`terminal.opened`)."""
        if len(self._running) >= self.settings.terminal_max_open:
            raise Conflict(
                f"{len(self._running)} terminals are open on this server; close one first"
            )
        argv = list(self.settings.terminal_command) or default_command()
        cwd = workspace_folder(self.settings.data_dir, workspace_id)
        process = await PtyProcess.spawn(
            argv, cwd=cwd, env=self._environment(cwd), cols=cols, rows=rows
        )
        terminal_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        running = _Running(
            terminal_id,
            workspace_id,
            process,
            RetentionWindow(self.settings.terminal_retention_bytes),
        )
        # Known as this process's before its row says "running": no reader takes it
        # for a terminal of a server that is gone.
        self._running[terminal_id] = running
        try:
            async with self.db.write() as conn:
                await self.db.lock(conn)
                await self.store.append(
                    conn,
                    stream_id=terminal_stream(terminal_id),
                    workspace_id=workspace_id,
                    expected_version=0,
                    new_events=[
                        NewEvent(
                            TerminalEvent.OPENED,
                            {
                                "command": argv,
                                "cwd": str(cwd),
                                "cols": cols,
                                "rows": rows,
                                "pid": process.pid,
                                "owner": _HERE,
                            },
                        )
                    ],
                    metadata=meta,
                )
                await conn.execute(
                    terminals.insert().values(
                        id=terminal_id,
                        workspace_id=workspace_id,
                        command=json.dumps(argv),
                        cwd=str(cwd),
                        cols=cols,
                        rows=rows,
                        status="running",
                        owner=f"{_HERE}:{process.pid}",
                        output_seq=0,
                        output_bytes=0,
                        version=1,
                        created_by=meta.actor[:64],
                        created_at=now,
                    )
                )
        except BaseException:
            self._running.pop(terminal_id, None)
            await process.hang_up()
            process.close()
            raise
        running.pump = asyncio.create_task(self._pump(running), name=f"terminal {terminal_id}")
        return await self.get(workspace_id, terminal_id)

    def _environment(self, cwd: Path) -> dict[str, str]:
        env = host_environment(PASSED_ENVIRONMENT)
        return env | {"TERM": "xterm-256color", "PWD": str(cwd)}

    async def _pump(self, running: _Running) -> None:
        """Output to the table and to attached clients until the command ends; then
        `terminal.closed`."""
        process = running.process
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        waiting = asyncio.create_task(process.wait())
        keep_from = 1
        try:
            async for data in self._output_until_exit(process, waiting):
                pieces = split_chunks(data)
                chunks = []
                for piece in pieces:
                    running.seq += 1
                    text = decoder.decode(piece)
                    chunks.append((running.seq, text, len(piece)))
                    keep_from = running.window.add(running.seq, len(piece))
                await self.output.append(
                    running.workspace_id, running.terminal_id, chunks, keep_from=keep_from
                )
                for seq, text, _ in chunks:
                    running.publish(Frame("output", seq, text))
            exit_code = await waiting
        except Exception:
            log.exception("terminal %s failed; ending it", running.terminal_id)
            running.close_reason = "failed"
            await process.hang_up()
            exit_code = await waiting
        finally:
            process.kill_leftovers()
            process.close()
        try:
            await self._record(
                running.workspace_id,
                running.terminal_id,
                TerminalEvent.CLOSED,
                {"exit_code": exit_code, "reason": running.close_reason},
                running.closed_by or EventMetadata(actor="system"),
                status="closed",
                exit_code=exit_code,
                close_reason=running.close_reason,
                closed_at=datetime.now(UTC),
            )
        finally:
            self._running.pop(running.terminal_id, None)
            running.publish(Frame("exit", running.seq, running.close_reason, exit_code))
            running.done.set()

    async def _output_until_exit(
        self, process: PtyProcess, waiting: asyncio.Task[int]
    ) -> AsyncIterator[bytes]:
        """The output, ended a moment after the command exits even when a program it
        left behind still holds the terminal."""
        output = process.output()

        async def stop_after_exit() -> None:
            await asyncio.shield(waiting)  # cancelling this must not cancel the wait
            await asyncio.sleep(0.2)  # what it wrote last is still on its way
            process.end_output()

        stopper = asyncio.create_task(stop_after_exit())
        try:
            async for data in output:
                yield data
        finally:
            stopper.cancel()
            await output.aclose()

    async def _record(
        self,
        workspace_id: str,
        terminal_id: str,
        event: TerminalEvent,
        payload: JSON,
        meta: EventMetadata,
        **row: Any,
    ) -> RecordedEvent:
        async with self.db.write() as conn:
            await self.db.lock(conn)
            version = await conn.scalar(
                sa.select(terminals.c.version).where(
                    terminals.c.id == terminal_id, terminals.c.workspace_id == workspace_id
                )
            )
            if version is None:
                raise NotFound(f"terminal {terminal_id} not found")
            recorded = await self.store.append(
                conn,
                stream_id=terminal_stream(terminal_id),
                workspace_id=workspace_id,
                expected_version=int(version),
                new_events=[NewEvent(event, payload)],
                metadata=meta,
            )
            await conn.execute(
                terminals.update()
                .where(terminals.c.id == terminal_id)
                .values(version=recorded[-1].version, **row)
            )
        return recorded[-1]

    async def _here(self, workspace_id: str, terminal_id: str) -> _Running:
        """The running terminal, which must be this process's."""
        row = await self._row(workspace_id, terminal_id)
        running = self._running.get(terminal_id)
        if running is not None:
            return running
        if row.status != "running":
            raise Conflict(f"terminal {terminal_id} has ended")
        if self._lost(row):
            await self._record_lost(row)
            raise Conflict(f"terminal {terminal_id} has ended")
        raise Conflict(f"terminal {terminal_id} runs in another server process ({row.owner})")

    def _lost(self, row: Any) -> bool:
        """A running terminal of a server process on this machine that is gone (or is
        this one, restarted): nothing will ever end it but this."""
        host, _, rest = str(row.owner).partition(":")
        server_pid = rest.partition(":")[0]
        if host != socket.gethostname() or not server_pid.isdigit():
            return False
        if int(server_pid) == os.getpid():
            return True  # not in this process's table: it was this process before
        try:
            os.kill(int(server_pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    async def _record_lost(self, row: Any) -> None:
        with contextlib.suppress(NotFound):
            await self._record(
                row.workspace_id,
                row.id,
                TerminalEvent.CLOSED,
                {"exit_code": None, "reason": "lost"},
                EventMetadata(actor="system"),
                status="closed",
                close_reason="lost",
                closed_at=datetime.now(UTC),
            )

    async def write(
        self, workspace_id: str, terminal_id: str, data: str, meta: EventMetadata
    ) -> None:
        """Type `data` into the terminal (`terminal.input`)."""
        running = await self._here(workspace_id, terminal_id)
        await self._record(workspace_id, terminal_id, TerminalEvent.INPUT, {"data": data}, meta)
        await running.process.write(data.encode("utf-8", errors="replace"))

    async def resize(
        self, workspace_id: str, terminal_id: str, cols: int, rows: int, meta: EventMetadata
    ) -> JSON:
        running = await self._here(workspace_id, terminal_id)
        running.process.resize(cols, rows)
        await self._record(
            workspace_id,
            terminal_id,
            TerminalEvent.RESIZED,
            {"cols": cols, "rows": rows},
            meta,
            cols=cols,
            rows=rows,
        )
        return await self.get(workspace_id, terminal_id)

    async def signal(
        self, workspace_id: str, terminal_id: str, name: str, meta: EventMetadata
    ) -> None:
        """Send a signal (domain.terminals.SIGNALS) (`terminal.signalled`)."""
        running = await self._here(workspace_id, terminal_id)
        await self._record(
            workspace_id, terminal_id, TerminalEvent.SIGNALLED, {"signal": name}, meta
        )
        running.process.send(name)

    async def close(self, workspace_id: str, terminal_id: str, meta: EventMetadata) -> JSON:
        """Hang up and wait for the end (`terminal.closed`); a terminal that has ended
        already is left as it is."""
        row = await self._row(workspace_id, terminal_id)
        if row.status == "running":
            running = await self._here(workspace_id, terminal_id)
            await self._end(running, "closed", meta)
        return await self.get(workspace_id, terminal_id)

    async def _end(self, running: _Running, reason: str, meta: EventMetadata) -> None:
        running.close_reason = reason
        running.closed_by = meta
        await running.process.hang_up()
        await running.done.wait()

    async def aclose(self) -> None:
        """End every terminal this process runs (the server stops)."""
        stopping = EventMetadata(actor="system")
        ending = [self._end(r, "server stopped", stopping) for r in list(self._running.values())]
        results = await asyncio.gather(*ending, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("a terminal did not close cleanly: %s", result)

    # --- attaching --------------------------------------------------------------------

    async def attach(
        self, workspace_id: str, terminal_id: str, *, after: int = 0, follow: bool = True
    ) -> AsyncIterator[Frame]:
        """The screen kept after chunk `after`, then (with `follow`) the output as it
        comes, and an `exit` frame when the terminal has ended."""
        row = await self._row(workspace_id, terminal_id)
        running = self._running.get(terminal_id)
        if running is not None and follow:
            return self._follow_here(running, after)
        return self._follow_table(workspace_id, row, after, follow)

    async def _follow_here(self, running: _Running, after: int) -> AsyncIterator[Frame]:
        last = after
        while True:
            queue: asyncio.Queue[Frame | None] = asyncio.Queue(SUBSCRIBER_FRAMES)
            running.subscribers.add(queue)  # before the replay: nothing falls between
            try:
                for frame in await self.output.replay(running.terminal_id, last):
                    last = max(last, frame.seq) if frame.kind == "output" else last
                    yield frame
                if running.done.is_set():
                    yield self._exit_frame(
                        await self._row(running.workspace_id, running.terminal_id)
                    )
                    return
                while (item := await queue.get()) is not None:
                    if item.kind == "output" and item.seq <= last:
                        continue
                    if item.kind == "output":
                        last = item.seq
                    if item.kind == "exit":
                        yield self._exit_frame(
                            await self._row(running.workspace_id, running.terminal_id)
                        )
                        return
                    yield item
            finally:
                running.subscribers.discard(queue)

    async def _follow_table(
        self, workspace_id: str, row: Any, after: int, follow: bool
    ) -> AsyncIterator[Frame]:
        last = after
        while True:
            for frame in await self.output.replay(row.id, last):
                if frame.kind == "output":
                    last = frame.seq
                yield frame
            if row.status != "running":
                yield self._exit_frame(row)
                return
            if not follow:
                return
            await asyncio.sleep(POLL_SECONDS)
            row = await self._row(workspace_id, row.id)
            if row.status == "running" and row.id not in self._running and self._lost(row):
                await self._record_lost(row)

    @staticmethod
    def _exit_frame(row: Any) -> Frame:
        return Frame("exit", int(row.output_seq), str(row.close_reason or ""), row.exit_code)
