"""Loopback model servers that speak the real wire protocols, with fault injection.

One ASGI app answers as an OpenAI-compatible server (`/v1/chat/completions` and
`/v1/completions` as Server-Sent Events, `/v1/models`, `/v1/embeddings`), as
Anthropic (`/v1/messages` as typed SSE events) and as Ollama (`/api/chat` as
NDJSON, `/api/tags`, `/api/embed`), under uvicorn on 127.0.0.1 in a thread of its
own. Each generation request takes the next `Reply` of the script (the last one
repeats): a normal stream, or one of the faults real backends show. The app
watches its side of the connection, so a test can see when the client went away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn

from taleweaver.config import Settings
from tests.conftest import free_port

Wire = Literal["openai", "openai-text", "anthropic", "ollama"]
WIRES: tuple[Wire, ...] = ("openai", "anthropic", "ollama")

STORY = (
    "Rain ", "drums ", "on ", "the ", "tin ", "roof ", "of ", "the ", "ferry ", "house.",
    "\n\nChoices:\n", "1. Board ", "the ferry\n", "2. Wait ", "out the storm\n",
)  # fmt: skip
STORY_TEXT = "Rain drums on the tin roof of the ferry house."

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
Frame = tuple[bytes, Literal["head", "piece", "end"]]


class Disconnect(Exception):
    """Raised inside the app to drop the connection mid-body, as a crashed server would."""


@dataclass
class Reply:
    """What the server does with one generation request."""

    pieces: Sequence[str] = STORY
    reasoning: Sequence[str] = ()
    # An HTTP error: this status with the protocol's error body (and `headers`).
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "the loopback model exploded"
    # 200, but the body is the protocol's error object instead of a stream.
    error_body: str | None = None
    # Take the request and never answer, not even the headers.
    hang: bool = False
    # Send the headers, then nothing.
    stall_before: bool = False
    # After this many pieces: stop sending, drop the connection, or send garbage.
    stall_after: int | None = None
    disconnect_after: int | None = None
    malformed_after: int | None = None
    # End the body cleanly without a stop reason.
    no_stop: bool = False
    # Answer with one JSON body, as servers that ignore `stream: true` do.
    whole: bool = False
    delay: float = 0.0
    # What the server reports as (prompt, completion) tokens; None: nothing.
    usage: tuple[int, int] | None = (12, 34)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ModelServer:
    """The app, what it will answer, and what it saw."""

    script: list[Reply] = field(default_factory=lambda: [Reply()])
    model_ids: list[str] = field(default_factory=lambda: ["loopback-model"])
    models_status: int = 200
    dimensions: int = 3
    base: str = ""
    requests: list[Seen] = field(default_factory=list)
    generations: int = 0
    pieces_sent: int = 0
    finished: threading.Event = field(default_factory=threading.Event)
    client_left: threading.Event = field(default_factory=threading.Event)

    def url(self, wire: str) -> str:
        """The base URL an adapter of this kind is configured with."""
        return f"{self.base}/v1" if wire.startswith("openai") else self.base

    def reset(self) -> ModelServer:
        """Forget the last test: a server is shared by a module's tests."""
        self.script = [Reply()]
        self.model_ids = ["loopback-model"]
        self.models_status = 200
        self.requests = []
        self.generations = 0
        self.pieces_sent = 0
        # New events: a handler still winding down from the last test sets its own.
        self.finished = threading.Event()
        self.client_left = threading.Event()
        return self

    def then(self, *replies: Reply) -> ModelServer:
        self.script = list(replies)
        return self

    def seen(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    def _next(self) -> Reply:
        reply = self.script[0] if len(self.script) == 1 else self.script.pop(0)
        self.generations += 1
        return reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path, method = scope["path"], scope["method"]
        self.requests.append(
            Seen(
                method,
                path,
                {k.decode(): v.decode() for k, v in scope["headers"]},
                json.loads(body) if body else None,
            )
        )
        if method == "GET" and path in ("/v1/models", "/api/tags"):
            listing: Any = (
                {"models": [{"name": m} for m in self.model_ids]}
                if path == "/api/tags"
                else {
                    "object": "list",
                    "data": [{"id": m, "object": "model"} for m in self.model_ids],
                }
            )
            await _json(send, self.models_status, listing)
        elif method == "POST" and path in ("/v1/embeddings", "/api/embed"):
            await self._embed(path, json.loads(body), send)
        elif method == "POST" and path in WIRE_PATHS:
            await self._generate(WIRE_PATHS[path], json.loads(body), receive, send)
        else:
            await _json(send, 404, {"error": {"message": f"no route {path}"}})

    async def _embed(self, path: str, request: Any, send: Send) -> None:
        reply = self._next()
        if reply.status != 200:
            await _json(
                send, reply.status, {"error": {"message": "embedding failed"}}, reply.headers
            )
            return
        texts = request["input"]
        vectors = [[float(len(t)), float(i), 0.5][: self.dimensions] for i, t in enumerate(texts)]
        if path == "/api/embed":
            document: Any = {"embeddings": vectors, "prompt_eval_count": 5 * len(texts)}
        else:
            document = {
                "data": [
                    {"index": i, "embedding": v} for i, v in reversed(list(enumerate(vectors)))
                ],
                "usage": {"prompt_tokens": 5 * len(texts), "total_tokens": 5 * len(texts)},
            }
        await _json(send, 200, document)

    async def _generate(self, wire: Wire, request: Any, receive: Receive, send: Send) -> None:
        reply = self._next()
        render = RENDERERS[wire]
        left, finished = self.client_left, self.finished
        hang_up = asyncio.ensure_future(receive())  # the next message is the disconnect
        try:
            if reply.hang:
                await _wait_for_client(hang_up, left)
                return
            if reply.status != 200:
                await _json(send, reply.status, render.error(reply.message), reply.headers)
                return
            if reply.error_body is not None:
                await _json(send, 200, render.error(reply.error_body))
                return
            if reply.whole:
                await _json(send, 200, render.whole(reply))
                return
            await self._stream(reply, render, hang_up, send, left, finished)
        finally:
            hang_up.cancel()

    async def _stream(
        self,
        reply: Reply,
        render: Renderer,
        hang_up: asyncio.Future[Any],
        send: Send,
        left: threading.Event,
        finished: threading.Event,
    ) -> None:
        headers = [(b"content-type", render.content_type.encode()), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if reply.stall_before:
            await _wait_for_client(hang_up, left)
            return
        sent = 0
        for frame, kind in render.frames(reply):
            if hang_up.done():
                left.set()
                return
            if kind == "piece":
                if sent == reply.stall_after:
                    await _wait_for_client(hang_up, left)
                    return
                if sent == reply.disconnect_after:
                    raise Disconnect("dropped mid-stream on purpose")
                if sent == reply.malformed_after:
                    frame = render.malformed
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
                    break
                sent += 1
                self.pieces_sent += 1
            if kind == "end" and reply.no_stop:
                break
            await send({"type": "http.response.body", "body": frame, "more_body": True})
            if reply.delay and kind == "piece":
                await asyncio.wait({hang_up}, timeout=reply.delay)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        finished.set()


async def _wait_for_client(hang_up: asyncio.Future[Any], left: threading.Event) -> None:
    await asyncio.wait({hang_up}, timeout=30)
    if hang_up.done():
        left.set()


async def _json(
    send: Send, status: int, document: object, extra: dict[str, str] | None = None
) -> None:
    body = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


# --- the wire formats ---------------------------------------------------------------------


def _sse(document: object, event: str | None = None) -> bytes:
    data = document if isinstance(document, str) else json.dumps(document)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {data}\n\n".encode()


class Renderer:
    content_type = "text/event-stream"
    malformed = b'data: {"choices": [{"delta": \n\n'

    def frames(self, reply: Reply) -> list[Frame]:
        raise NotImplementedError

    def error(self, message: str) -> Any:
        return {"error": {"message": message, "type": "server_error"}}

    def whole(self, reply: Reply) -> Any:
        raise NotImplementedError


class OpenAIChat(Renderer):
    def frames(self, reply: Reply) -> list[Frame]:
        def delta(part: dict[str, str]) -> bytes:
            return _sse(
                {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": part}]}
            )

        return [
            (delta({"role": "assistant"}), "head"),
            *((delta({"reasoning_content": r}), "piece") for r in reply.reasoning),
            *((delta({"content": p}), "piece") for p in reply.pieces),
            (_sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}), "end"),
            *_usage_frames(reply),
            (_sse("[DONE]"), "end"),
        ]

    def whole(self, reply: Reply) -> Any:
        prompt, completion = reply.usage or (0, 0)
        return {
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(reply.pieces)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }


class OpenAIText(Renderer):
    def frames(self, reply: Reply) -> list[Frame]:
        def text(piece: str, finish: str | None = None) -> bytes:
            return _sse(
                {
                    "object": "text_completion",
                    "choices": [{"index": 0, "text": piece, "finish_reason": finish}],
                }
            )

        return [
            *((text(p), "piece") for p in reply.pieces),
            (text("", "stop"), "end"),
            *_usage_frames(reply),
            (_sse("[DONE]"), "end"),
        ]

    def whole(self, reply: Reply) -> Any:
        return {"choices": [{"index": 0, "text": "".join(reply.pieces), "finish_reason": "stop"}]}


def _usage_frames(reply: Reply) -> list[Frame]:
    if reply.usage is None:
        return []
    prompt, completion = reply.usage
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return [(_sse({"choices": [], "usage": usage}), "end")]


class Anthropic(Renderer):
    malformed = b'event: content_block_delta\ndata: {"type": "content_block_delta", \n\n'

    def frames(self, reply: Reply) -> list[Frame]:
        prompt, completion = reply.usage or (0, 0)
        start = {
            "type": "message_start",
            "message": {
                "id": "msg_loopback",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "loopback-model",
                "stop_reason": None,
                "usage": {"input_tokens": prompt, "output_tokens": 1},
            },
        }
        frames: list[Frame] = [
            (_sse(start, "message_start"), "head"),
            (_sse({"type": "ping"}, "ping"), "head"),
        ]
        index = 0
        if reply.reasoning:
            frames.append((self._block_start(index, "thinking"), "head"))
            frames += [
                (self._delta(index, "thinking_delta", "thinking", r), "piece")
                for r in reply.reasoning
            ]
            frames.append(
                (_sse({"type": "content_block_stop", "index": index}, "content_block_stop"), "head")
            )
            index += 1
        frames.append((self._block_start(index, "text"), "head"))
        frames += [(self._delta(index, "text_delta", "text", p), "piece") for p in reply.pieces]
        frames.append(
            (_sse({"type": "content_block_stop", "index": index}, "content_block_stop"), "end")
        )
        message_delta = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": completion},
        }
        frames.append((_sse(message_delta, "message_delta"), "end"))
        frames.append((_sse({"type": "message_stop"}, "message_stop"), "end"))
        return frames

    @staticmethod
    def _block_start(index: int, kind: str) -> bytes:
        block = {"type": kind, kind: ""}
        return _sse(
            {"type": "content_block_start", "index": index, "content_block": block},
            "content_block_start",
        )

    @staticmethod
    def _delta(index: int, kind: str, key: str, text: str) -> bytes:
        event = {"type": "content_block_delta", "index": index, "delta": {"type": kind, key: text}}
        return _sse(event, "content_block_delta")

    def error(self, message: str) -> Any:
        return {"type": "error", "error": {"type": "api_error", "message": message}}

    def whole(self, reply: Reply) -> Any:
        prompt, completion = reply.usage or (0, 0)
        return {
            "type": "message",
            "content": [{"type": "text", "text": "".join(reply.pieces)}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": prompt, "output_tokens": completion},
        }


class Ollama(Renderer):
    content_type = "application/x-ndjson"
    malformed = b'{"message": {"content": \n'

    def frames(self, reply: Reply) -> list[Frame]:
        def line(document: object) -> bytes:
            return json.dumps(document).encode() + b"\n"

        def chunk(content: str = "", thinking: str | None = None) -> bytes:
            message = {"role": "assistant", "content": content}
            if thinking is not None:
                message["thinking"] = thinking
            return line({"model": "loopback-model", "message": message, "done": False})

        prompt, completion = reply.usage or (0, 0)
        done = {
            "model": "loopback-model",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": prompt,
            "eval_count": completion,
        }
        return [
            *((chunk(thinking=r), "piece") for r in reply.reasoning),
            *((chunk(p), "piece") for p in reply.pieces),
            (line(done), "end"),
        ]

    def error(self, message: str) -> Any:
        return {"error": message}

    def whole(self, reply: Reply) -> Any:
        return {
            "model": "loopback-model",
            "message": {"role": "assistant", "content": "".join(reply.pieces)},
            "done": True,
        }


RENDERERS: dict[Wire, Renderer] = {
    "openai": OpenAIChat(),
    "openai-text": OpenAIText(),
    "anthropic": Anthropic(),
    "ollama": Ollama(),
}
WIRE_PATHS: dict[str, Wire] = {
    "/v1/chat/completions": "openai",
    "/v1/completions": "openai-text",
    "/v1/messages": "anthropic",
    "/api/chat": "ollama",
}
GENERATE_PATH: dict[str, str] = {wire: path for path, wire in WIRE_PATHS.items()}


# --- running it ---------------------------------------------------------------------------


class Running:
    def __init__(self, app: ModelServer) -> None:
        port = free_port()
        app.base = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return
            threading.Event().wait(0.01)
        raise RuntimeError("the loopback model server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serving(count: int = 1) -> Iterator[list[ModelServer]]:
    """Start `count` loopback model servers; stop them when the block ends."""
    apps = [ModelServer() for _ in range(count)]
    running = [Running(app) for app in apps]
    try:
        for server in running:
            server.start()
        yield apps
    finally:
        for server in running:
            server.stop()


class _QuietDisconnects(logging.Filter):
    """uvicorn logs an app's exception as an error; a planned disconnect is not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], Disconnect))


logging.getLogger("uvicorn.error").addFilter(_QuietDisconnects())


# --- configuring the engine against them --------------------------------------------------

SECRET = "sk-loopback-secret-0123456789"
KIND = {"openai": "openai", "openai-text": "openai", "anthropic": "anthropic", "ollama": "ollama"}
# Deadlines and backoff small enough for tests; a breaker that stays out of the way.
FAST: dict[str, Any] = {
    "timeouts": {"connect": 2, "first_token": 0.5, "idle": 0.5, "total": 10},
    "retry": {
        "attempts": 2,
        "base_delay": 0.01,
        "max_delay": 0.02,
        "jitter": 0,
        "max_retry_after": 3,
    },
    "breaker": {"failures": 1000},
    "health_timeout": 2,
}


def make_settings(**values: Any) -> Settings:
    """Settings as a TOML file would give them: nested tables as plain dicts."""
    return Settings(**values)


def provider(server: ModelServer | str, wire: str, **extra: Any) -> dict[str, Any]:
    """A provider entry for a loopback server (or a URL where nothing listens)."""
    url = server if isinstance(server, str) else server.url(wire)
    return {"kind": KIND[wire], "base_url": url, "api_key": SECRET} | extra


def refused(wire: str) -> str:
    base = f"http://127.0.0.1:{free_port()}"
    return f"{base}/v1" if wire.startswith("openai") else base
