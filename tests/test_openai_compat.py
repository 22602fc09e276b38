"""The OpenAI-compatible adapter against a loopback provider speaking the real protocol.

The provider is a small ASGI app under uvicorn on 127.0.0.1: `/v1/chat/completions`
answers with Server-Sent Events chunks as OpenAI, vLLM or Ollama send them, and it
watches its side of the connection, so a test can see when the client went away.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput, ModelError, ModelUnavailable
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.models import model_from_settings
from taleweaver.engine.turns import TurnHandle
from taleweaver.llm import OpenAICompatibleModel
from tests.conftest import META, free_port

WS = "local"
MODEL = "loopback-narrator"
STORY = (
    "Rain ", "drums ", "on ", "the ", "tin ", "roof ", "of ", "the ", "ferry ", "house.",
    "\n\nChoices:\n", "1. Board ", "the ferry\n", "2. Wait ", "out the storm\n",
)  # fmt: skip
CONVERSATION = [
    ChatMessage("system", "You narrate."),
    ChatMessage("user", "I wait."),
]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]


def chunk(content: str) -> str:
    """One `chat.completion.chunk`, as a streaming provider sends it."""
    return json.dumps(
        {
            "id": "chatcmpl-loopback",
            "object": "chat.completion.chunk",
            "model": MODEL,
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
        }
    )


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Provider:
    """What the loopback provider answers, and what it saw."""

    pieces: Sequence[str] = STORY
    status: int = 200
    models_status: int = 200
    chunk_delay: float = 0.0
    # Raw `data:` payloads to send instead of one chunk per piece.
    payloads: list[str] | None = None
    base_url: str = ""
    requests: list[SeenRequest] = field(default_factory=list)
    chunks_sent: int = 0
    # Set once every chunk and the end of the body were sent.
    finished: threading.Event = field(default_factory=threading.Event)
    # Set when the client hung up before that.
    client_left: threading.Event = field(default_factory=threading.Event)

    def data_lines(self) -> list[str]:
        if self.payloads is not None:
            return self.payloads
        role = json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        return [role, *(chunk(p) for p in self.pieces), "[DONE]"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests.append(
            SeenRequest(
                scope["method"],
                scope["path"],
                {k.decode(): v.decode() for k, v in scope["headers"]},
                json.loads(body) if body else None,
            )
        )
        if scope["path"] == "/v1/models":
            models = {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
            await _json(send, self.models_status, models)
        elif scope["path"] == "/v1/chat/completions" and scope["method"] == "POST":
            if self.status != 200:
                error = {"error": {"message": "the loopback provider exploded"}}
                await _json(send, self.status, error)
            else:
                await self._stream(receive, send)
        else:
            await _json(send, 404, {"error": {"message": "no such route"}})

    async def _stream(self, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # With the body read, the next message uvicorn delivers is the disconnect.
        hang_up = asyncio.ensure_future(receive())
        try:
            for line in self.data_lines():
                if hang_up.done():
                    self.client_left.set()
                    return
                event = f"data: {line}\n\n".encode()
                await send({"type": "http.response.body", "body": event, "more_body": True})
                self.chunks_sent += 1
                if self.chunk_delay:
                    await asyncio.wait({hang_up}, timeout=self.chunk_delay)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.finished.set()
        finally:
            hang_up.cancel()


async def _json(send: Send, status: int, document: object) -> None:
    body = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


@pytest.fixture
def provider() -> Iterator[Provider]:
    """A loopback OpenAI-compatible provider on its own port and thread."""
    app = Provider()
    port = free_port()
    app.base_url = f"http://127.0.0.1:{port}/v1"
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("the loopback provider did not start")
    yield app
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., OpenAICompatibleModel]]:
    """Build adapters that are closed when the test ends."""
    models: list[OpenAICompatibleModel] = []

    def make(base_url: str, *, api_key: str | None = None) -> OpenAICompatibleModel:
        model = OpenAICompatibleModel(base_url=base_url, model=MODEL, api_key=api_key)
        models.append(model)
        return model

    yield make
    for model in models:
        await model.aclose()


async def collect(model: OpenAICompatibleModel, max_tokens: int = 100) -> list[str]:
    return [piece async for piece in model.stream(CONVERSATION, max_tokens=max_tokens)]


def chat_requests(provider: Provider) -> list[SeenRequest]:
    return [r for r in provider.requests if r.path == "/v1/chat/completions"]


def refused_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there


async def new_story(engine: Engine) -> str:
    created = await engine.sessions.create(WS, kind=SessionKind.STORY, title="T", metadata=META)
    session_id: str = created["id"]
    return session_id


def say(text: str) -> TurnRequest:
    return TurnRequest.build(action=None, text=text, choice=None)


async def event_types(engine: Engine, session_id: str) -> list[str]:
    return [e.type for e in await engine.sessions.events(WS, session_id, after=0, limit=100)]


async def until_first_token(handle: TurnHandle) -> str:
    async for event in handle.subscribe():
        if event.name == "token":
            text: str = event.data["text"]
            return text
    raise AssertionError("the turn ended without streaming a token")


# --- the adapter on its own ---------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/"])
async def test_reply_streams_piece_by_piece_as_the_provider_sends_it(
    provider: Provider, connect: Callable[..., OpenAICompatibleModel], suffix: str
) -> None:
    model = connect(provider.base_url + suffix)
    assert await collect(model) == list(STORY)
    assert provider.finished.is_set()


async def test_request_carries_model_name_messages_and_token_limit(
    provider: Provider, connect: Callable[..., OpenAICompatibleModel]
) -> None:
    await collect(connect(provider.base_url), max_tokens=77)
    [request] = chat_requests(provider)
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You narrate."},
            {"role": "user", "content": "I wait."},
        ],
        "max_tokens": 77,
        "stream": True,
    }


async def test_api_key_is_sent_as_a_bearer_token(
    provider: Provider, connect: Callable[..., OpenAICompatibleModel]
) -> None:
    await collect(connect(provider.base_url, api_key="sk-loopback-123"))
    [request] = chat_requests(provider)
    assert request.headers["authorization"] == "Bearer sk-loopback-123"


async def test_without_an_api_key_no_authorization_is_sent(
    provider: Provider, connect: Callable[..., OpenAICompatibleModel]
) -> None:
    await collect(connect(provider.base_url))
    [request] = chat_requests(provider)
    assert "authorization" not in request.headers


async def test_server_error_is_a_model_error_naming_the_status(
    provider: Provider, connect: Callable[..., OpenAICompatibleModel]
) -> None:
    provider.status = 500
    with pytest.raises(ModelError) as raised:
        await collect(connect(provider.base_url))
    assert type(raised.value) is ModelError
    assert "HTTP 500" in raised.value.detail
    assert "the loopback provider exploded" in raised.value.detail


async def test_connection_refused_is_model_unavailable(
    connect: Callable[..., OpenAICompatibleModel],
) -> None:
    with pytest.raises(ModelUnavailable, match="unreachable"):
        await collect(connect(refused_url()))


async def test_malformed_chunk_is_a_model_error(
    provider: Provider, connect: Callable[..., OpenAICompatibleModel]
) -> None:
    provider.payloads = [chunk("Rain "), '{"choices": [{"delta": ', "[DONE]"]
    model = connect(provider.base_url)
    received: list[str] = []
    with pytest.raises(ModelError, match="malformed chunk"):
        async for piece in model.stream(CONVERSATION, max_tokens=100):
            received.append(piece)
    assert received == ["Rain "]


async def test_error_chunk_in_the_stream_is_a_model_error(
    provider: Provider, connect: Callable[..., OpenAICompatibleModel]
) -> None:
    provider.payloads = [chunk("Rain "), json.dumps({"error": {"message": "overloaded"}})]
    with pytest.raises(ModelError, match=r"reported an error: .*overloaded"):
        await collect(connect(provider.base_url))


async def test_chunks_without_content_are_skipped(
    provider: Provider, connect: Callable[..., OpenAICompatibleModel]
) -> None:
    finish = json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = json.dumps({"choices": [], "usage": {"completion_tokens": 2}})
    provider.payloads = [chunk("Rain "), finish, usage, chunk("falls."), "[DONE]"]
    assert await collect(connect(provider.base_url)) == ["Rain ", "falls."]


async def test_cancelling_the_reading_task_closes_the_upstream_connection(
    provider: Provider, connect: Callable[..., OpenAICompatibleModel]
) -> None:
    provider.pieces = [f"word{i} " for i in range(200)]
    provider.chunk_delay = 0.02  # four seconds for the whole reply
    model = connect(provider.base_url)
    first = asyncio.Event()
    received: list[str] = []

    async def read() -> None:
        async for piece in model.stream(CONVERSATION, max_tokens=500):
            received.append(piece)
            first.set()

    reader = asyncio.create_task(read())
    await first.wait()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader

    assert await asyncio.to_thread(provider.client_left.wait, 5)
    assert not provider.finished.is_set()
    assert provider.chunks_sent < 50
    assert len(received) < 50


async def test_check_passes_when_the_provider_lists_models(
    provider: Provider, connect: Callable[..., OpenAICompatibleModel]
) -> None:
    await connect(provider.base_url, api_key="sk-loopback").check()
    [request] = provider.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["authorization"] == "Bearer sk-loopback"


async def test_check_fails_when_the_provider_answers_5xx(
    provider: Provider, connect: Callable[..., OpenAICompatibleModel]
) -> None:
    provider.models_status = 503
    with pytest.raises(ModelUnavailable, match="HTTP 503"):
        await connect(provider.base_url).check()


async def test_check_fails_when_nothing_listens(
    connect: Callable[..., OpenAICompatibleModel],
) -> None:
    with pytest.raises(ModelUnavailable, match="unreachable"):
        await connect(refused_url()).check()


# --- choosing it from settings ------------------------------------------------------------


def test_openai_without_a_base_url_is_refused_with_what_to_set(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path, model="openai", openai_base_url=None)
    with pytest.raises(InvalidInput, match="TALEWEAVER_OPENAI_BASE_URL"):
        model_from_settings(settings)


async def test_a_base_url_alone_selects_the_provider_with_its_model_and_key(
    provider: Provider, tmp_path: Any
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        model=None,
        openai_base_url=provider.base_url,
        openai_model=MODEL,
        openai_api_key="sk-from-settings",
    )
    model = model_from_settings(settings)
    try:
        assert model.name == f"openai:{MODEL}"
        assert [p async for p in model.stream(CONVERSATION, max_tokens=10)] == list(STORY)
    finally:
        await model.aclose()
    [request] = chat_requests(provider)
    assert request.body["model"] == MODEL
    assert request.headers["authorization"] == "Bearer sk-from-settings"


# --- through the engine -------------------------------------------------------------------


async def test_story_turn_streams_through_the_provider_and_parses_choices(
    provider: Provider,
    connect: Callable[..., OpenAICompatibleModel],
    make_engine: Callable[..., Any],
) -> None:
    engine: Engine = await make_engine(model=connect(provider.base_url))
    sid = await new_story(engine)
    handle = await engine.turns.start(WS, sid, say("I wait by the river"), META)
    streamed = [e.data["text"] async for e in handle.subscribe() if e.name == "token"]
    turn = await handle.wait()

    assert turn["status"] == "completed"
    assert turn["model"] == f"openai:{MODEL}"
    assert turn["reply"]["text"] == "Rain drums on the tin roof of the ferry house."
    assert turn["reply"]["choices"] == [
        {"number": 1, "text": "Board the ferry"},
        {"number": 2, "text": "Wait out the storm"},
    ]
    assert "".join(streamed).strip() == turn["reply"]["text"]
    assert len(streamed) > 1
    [request] = chat_requests(provider)
    assert request.body["messages"][0]["role"] == "system"
    assert request.body["messages"][-1] == {"role": "user", "content": "I wait by the river"}


async def test_provider_error_fails_the_turn_and_records_no_reply(
    provider: Provider,
    connect: Callable[..., OpenAICompatibleModel],
    make_engine: Callable[..., Any],
) -> None:
    provider.status = 500
    engine: Engine = await make_engine(model=connect(provider.base_url))
    sid = await new_story(engine)
    handle = await engine.turns.start(WS, sid, say("I wait"), META)
    with pytest.raises(ModelError, match="HTTP 500"):
        await handle.wait()
    assert [e.name for e in handle.events] == ["start", "error"]
    assert await event_types(engine, sid) == ["session.created", "turn.failed"]
    assert await engine.sessions.messages(WS, sid, after_turn=0, limit=10) == []


async def test_stream_failing_midway_leaves_no_partial_turn(
    provider: Provider,
    connect: Callable[..., OpenAICompatibleModel],
    make_engine: Callable[..., Any],
) -> None:
    provider.payloads = [chunk("Rain "), chunk("drums "), "not json at all"]
    engine: Engine = await make_engine(model=connect(provider.base_url))
    sid = await new_story(engine)
    handle = await engine.turns.start(WS, sid, say("I wait"), META)
    with pytest.raises(ModelError, match="malformed chunk"):
        await handle.wait()
    assert [e.name for e in handle.events] == ["start", "token", "token", "error"]
    assert await event_types(engine, sid) == ["session.created", "turn.failed"]
    assert await engine.sessions.messages(WS, sid, after_turn=0, limit=10) == []
    assert (await engine.sessions.get(WS, sid))["turn_count"] == 0


async def test_unreachable_provider_fails_the_turn_as_unavailable(
    connect: Callable[..., OpenAICompatibleModel], make_engine: Callable[..., Any]
) -> None:
    engine: Engine = await make_engine(model=connect(refused_url()))
    sid = await new_story(engine)
    handle = await engine.turns.start(WS, sid, say("I wait"), META)
    with pytest.raises(ModelUnavailable):
        await handle.wait()
    assert handle.events[-1].data["type"] == "ModelUnavailable"
    assert await event_types(engine, sid) == ["session.created", "turn.failed"]


async def test_cancelling_the_turn_mid_stream_closes_the_upstream_connection(
    provider: Provider,
    connect: Callable[..., OpenAICompatibleModel],
    make_engine: Callable[..., Any],
) -> None:
    provider.pieces = [f"word{i} " for i in range(200)]
    provider.chunk_delay = 0.02  # four seconds for the whole reply
    engine: Engine = await make_engine(model=connect(provider.base_url))
    sid = await new_story(engine)
    handle = await engine.turns.start(WS, sid, say("I wait"), META)

    assert await until_first_token(handle) == "word0 "
    assert handle.cancel()
    turn = await handle.wait()

    assert turn["status"] == "cancelled"
    assert turn["reply"] is None
    assert await asyncio.to_thread(provider.client_left.wait, 5)
    assert not provider.finished.is_set()
    assert provider.chunks_sent < 50
    assert await event_types(engine, sid) == ["session.created", "turn.cancelled"]
    assert await engine.sessions.messages(WS, sid, after_turn=0, limit=10) == []


async def test_after_a_cancelled_turn_the_next_turn_completes(
    provider: Provider,
    connect: Callable[..., OpenAICompatibleModel],
    make_engine: Callable[..., Any],
) -> None:
    provider.chunk_delay = 0.05
    engine: Engine = await make_engine(model=connect(provider.base_url))
    sid = await new_story(engine)
    first = await engine.turns.start(WS, sid, say("I wait"), META)
    await until_first_token(first)
    first.cancel()
    assert (await first.wait())["status"] == "cancelled"

    provider.chunk_delay = 0.0
    second = await engine.turns.start(WS, sid, say("I board"), META)
    turn = await second.wait()
    assert turn["status"] == "completed"
    assert turn["number"] == 1
    assert len(chat_requests(provider)) == 2
