"""Turn events as Server-Sent Events, with ids a client can resume from."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse

from taleweaver.api.problems import problem_body
from taleweaver.engine.turns import StreamEvent, TurnHandle


def encode(event: StreamEvent, handle: TurnHandle) -> bytes:
    data = event.data
    if event.name == "error" and handle.error is not None:
        data = problem_body(handle.error) | {"turn_id": handle.turn_id}
    payload = json.dumps(data, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.name}\ndata: {payload}\n\n".encode()


def parse_last_event_id(value: str | None, turn_id: str) -> int:
    """The sequence number to resume after, from a `turn_id:seq` event id."""
    if not value:
        return 0
    prefix, _, seq = value.rpartition(":")
    if prefix != turn_id or not seq.isdigit():
        return 0
    return int(seq)


def stream(handle: TurnHandle, after: int = 0, *, status_code: int = 200) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        async for event in handle.subscribe(after):
            yield encode(event, handle)

    return StreamingResponse(
        body(),
        status_code=status_code,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
