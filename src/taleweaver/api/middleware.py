"""ASGI middleware: correlation ids, request logs and the request body limit."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taleweaver.api.logs import correlation_id
from taleweaver.api.problems import problem, unexpected
from taleweaver.domain.errors import PayloadTooLarge

log = logging.getLogger("taleweaver.http")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContext:
    """Tags each request with a correlation id (X-Request-ID, kept when a client sends
    a sane one), logs it once when done, refuses bodies over `max_body_bytes` (or
    `upload_bytes` for an import), and answers an unhandled error with a bare 500
    problem."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.upload_bytes = upload_bytes

    def _limit(self, scope: Scope) -> int:
        is_upload = scope["method"] == "POST" and scope["path"].endswith("/import")
        return self.upload_bytes if is_upload else self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        cid = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", cid.encode())]
            await send(message)

        try:
            limit = self._limit(scope)
            body_receive = await self._limited(headers, receive, limit)
            if body_receive is None:
                detail = f"the request body must be at most {limit} bytes"
                too_large = problem(413, PayloadTooLarge.title, detail)
                await too_large(scope, receive, send_with_id)
            else:
                await self.app(scope, body_receive, send_with_id)
        except Exception:
            if status:  # the response has begun: nothing more can be said
                raise
            # Answered here, not by Starlette's outermost error middleware, so the
            # problem carries the correlation id (and the log line too).
            await unexpected(scope["method"], scope["path"])(scope, receive, send_with_id)
        finally:
            log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            correlation_id.reset(token)

    @staticmethod
    async def _limited(headers: dict[bytes, bytes], receive: Receive, limit: int) -> Receive | None:
        """The receive to pass on, or None when the body is over the limit."""
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                too_big = True
            return None if too_big else receive
        # No length given (chunked): read up to the limit, then replay what was read.
        chunks: list[Message] = []
        size = 0
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                return None
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        return replay
