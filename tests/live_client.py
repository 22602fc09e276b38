"""A live-channel client for tests: a real WebSocket over loopback (`websockets`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]
WAIT_S = 20.0  # a safety net against hanging, never a synchronisation


class LiveClient:
    """Reads in the background and answers pings as they arrive, as the web app does:
    a test that awaits one client must not starve another's heartbeat."""

    def __init__(self, ws: ClientConnection, *, answer_pings: bool) -> None:
        self.ws = ws
        self.answer_pings = answer_pings
        self.frames: list[Frame] = []  # the frames a test has read, in order
        self._inbox: asyncio.Queue[Frame | ConnectionClosed] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                frame: Frame = json.loads(await self.ws.recv())
                if frame["type"] == "ping" and self.answer_pings:
                    await self.send({"type": "pong"})
                self._inbox.put_nowait(frame)
        except ConnectionClosed as closed:
            self._inbox.put_nowait(closed)

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def next(self, *types: str) -> Frame:
        """The next frame of one of `types` (any type when none is given)."""
        return await self.until(lambda f: not types or f["type"] in types)

    async def until(self, wanted: Callable[[Frame], bool]) -> Frame:
        async with asyncio.timeout(WAIT_S):
            while True:
                item = await self._inbox.get()
                if isinstance(item, ConnectionClosed):
                    self._inbox.put_nowait(item)  # every later read sees the close too
                    raise item
                self.frames.append(item)
                if wanted(item):
                    return item

    async def seen(self, wanted: Callable[[Frame], bool]) -> Frame:
        """The first frame so far that is `wanted`, else the next one to come: for a
        frame that may have arrived while the test waited for another."""
        for frame in self.frames:
            if wanted(frame):
                return frame
        return await self.until(wanted)

    async def send(self, frame: Frame) -> None:
        await self.ws.send(json.dumps(frame))

    def of_type(self, prefix: str) -> list[Frame]:
        return [f for f in self.frames if f["type"].startswith(prefix)]


def live_url(base_url: str, session_id: str, **query: object) -> str:
    params = urlencode({k: v for k, v in query.items() if v is not None})
    ws_base = base_url.replace("http://", "ws://", 1)
    return f"{ws_base}/api/v1/sessions/{session_id}/live" + (f"?{params}" if params else "")


@asynccontextmanager
async def live(
    base_url: str,
    session_id: str,
    *,
    after: int | None = None,
    turn: str | None = None,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
    answer_pings: bool = True,
) -> AsyncIterator[LiveClient]:
    url = live_url(base_url, session_id, after=after, turn=turn)
    async with connect(
        url,
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        open_timeout=WAIT_S,
        # Unbounded: a test that leaves frames unread must not stall the closing
        # handshake (a full queue stops the client reading, close frame included).
        max_queue=None,
    ) as ws:
        client = LiveClient(ws, answer_pings=answer_pings)
        try:
            yield client
        finally:
            await client.close()
