"""The status an ASGI response started with, for middleware that reports it."""

from __future__ import annotations

from starlette.types import Message, Send


class ResponseStatus:
    """Wraps `send`: pass `self.send` down the app, read `code` once it returns
    (`default` when no response started, e.g. the app raised first)."""

    def __init__(self, send: Send, default: int) -> None:
        self._send = send
        self.code = default

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = int(message["status"])
        await self._send(message)
