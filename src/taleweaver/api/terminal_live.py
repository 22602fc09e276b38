"""A terminal over the live channel: JSON frames over a WebSocket.

Server frames: `hello` ({terminal}), `output` ({seq, data}) for each chunk kept and
then each that comes, `truncated` ({seq}) where the retention window dropped chunks,
`exit` ({seq, exit_code, reason}) once the terminal has ended (then the server
closes), `ping` ({at}), `resized` ({terminal}), `error` (a problem, with `request`).
Client frames: `pong`, `input` ({data}), `resize` ({cols, rows}), `signal`
({signal}: interrupt, terminate, hangup, kill). Input, resizing and signals are
events of the terminal's log, as over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import datetime
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from taleweaver.api.guard import load_storable
from taleweaver.api.problems import problem_body
from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput, TaleweaverError
from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.domain.json_values import Unstorable
from taleweaver.domain.terminals import SIGNALS, Frame
from taleweaver.engine import Engine

log = logging.getLogger(__name__)

NO_HEARTBEAT = 4000  # close code: the client stopped answering pings (as sessions')
MAX_INPUT = 65536
_SIZE = range(2, 1001)


def _when(value: object) -> str:
    """A terminal's times, as the HTTP routes write them (ISO 8601)."""
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def output_frame(frame: Frame) -> JSON:
    data: JSON = {"type": frame.kind, "seq": frame.seq}
    if frame.kind == "output":
        data["data"] = frame.data
    elif frame.kind == "exit":
        data |= {"exit_code": frame.exit_code, "reason": frame.data}
    return data


class TerminalConnection:
    def __init__(
        self,
        websocket: WebSocket,
        engine: Engine,
        settings: Settings,
        *,
        terminal_id: str,
        workspace_id: str,
        meta: EventMetadata,
    ) -> None:
        self.websocket = websocket
        self.terminals = engine.terminals
        self.terminal_id = terminal_id
        self.workspace_id = workspace_id
        self.meta = meta
        self.ping_s = settings.live_ping_seconds
        self.dead_after_s = settings.live_dead_after_seconds
        self.max_frame_bytes = settings.max_body_bytes
        self.heard_at = time.monotonic()
        self._send_lock = asyncio.Lock()

    async def run(self, after: int) -> None:
        """Serve until either side ends it, or the terminal does."""
        terminal = await self.terminals.get(self.workspace_id, self.terminal_id)
        await self.send({"type": "hello", "terminal": terminal})
        tasks = [
            asyncio.ensure_future(job)
            for job in (self._output(after), self._heartbeat(), self._receive())
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if error is not None and not isinstance(error, WebSocketDisconnect):
                    log.warning("terminal %s live channel ended: %r", self.terminal_id, error)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await self.websocket.close()

    async def send(self, frame: JSON) -> None:
        async with self._send_lock:
            await self.websocket.send_text(json.dumps(frame, separators=(",", ":"), default=_when))

    async def _output(self, after: int) -> None:
        """The kept screen after chunk `after`, then the output as it comes; ends
        after the `exit` frame."""
        frames = await self.terminals.attach(self.workspace_id, self.terminal_id, after=after)
        async for frame in frames:
            await self.send(output_frame(frame))

    async def _heartbeat(self) -> None:
        """A ping every `ping_s`; a client silent past `dead_after_s` is dropped."""
        while True:
            await asyncio.sleep(self.ping_s)
            if time.monotonic() - self.heard_at > self.dead_after_s:
                await self.websocket.close(NO_HEARTBEAT, "no answer to pings")
                return
            await self.send({"type": "ping", "at": time.time()})

    async def _receive(self) -> None:
        while True:
            text = await self.websocket.receive_text()
            self.heard_at = time.monotonic()
            kind: str | None = None
            try:
                frame = self._read(text)
                kind = frame.get("type") if isinstance(frame, dict) else None
                if kind == "pong":
                    continue
                await self._act(kind, frame)
            except TaleweaverError as exc:
                await self._refuse(exc, kind)

    async def _act(self, kind: str | None, frame: Any) -> None:
        terminals, ws, tid = self.terminals, self.workspace_id, self.terminal_id
        if kind == "input":
            data = frame.get("data")
            if not isinstance(data, str) or not 0 < len(data) <= MAX_INPUT:
                raise InvalidInput(f"input needs 'data': text of 1 to {MAX_INPUT} characters")
            await terminals.write(ws, tid, data, self.meta)
        elif kind == "resize":
            cols, rows = frame.get("cols"), frame.get("rows")
            if not all(type(v) is int and v in _SIZE for v in (cols, rows)):
                raise InvalidInput("resize needs 'cols' and 'rows': whole numbers, 2 to 1000")
            resized = await terminals.resize(ws, tid, cols, rows, self.meta)
            await self.send({"type": "resized", "terminal": resized})
        elif kind == "signal":
            name = frame.get("signal")
            if name not in SIGNALS:
                raise InvalidInput(f"signal is one of {', '.join(SIGNALS)}")
            await terminals.signal(ws, tid, name, self.meta)
        else:
            raise InvalidInput(
                'send {"type": "pong"}, {"type": "input", "data": ...}, '
                '{"type": "resize", "cols": ..., "rows": ...} or {"type": "signal", "signal": ...}'
            )

    def _read(self, text: str) -> Any:
        """The frame's JSON, held to what an HTTP JSON body is held to (api/guard.py)."""
        if len(text) > self.max_frame_bytes or len(text.encode()) > self.max_frame_bytes:
            raise InvalidInput(f"a frame is at most {self.max_frame_bytes} bytes")
        try:
            return load_storable(text)
        except Unstorable as exc:
            where = f"the frame's {exc.where}" if exc.where else "the frame"
            raise InvalidInput(f"{where} {exc.what}") from None
        except ValueError:
            raise InvalidInput("a frame is a JSON object") from None

    async def _refuse(self, error: TaleweaverError, request: str | None) -> None:
        """An `error` frame for a refused frame; the channel stays open."""
        problem = problem_body(error)
        problem["problem"] = problem.pop("type")
        await self.send({"type": "error", "request": request} | problem)
