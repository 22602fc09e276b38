"""Ollama's native API against a loopback server speaking NDJSON."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from taleweaver.domain.errors import ModelError, ModelUnavailable
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import OllamaEmbeddings, OllamaModel
from taleweaver.llm.types import Finish, ReasoningDelta, StreamItem, Usage
from tests.conftest import META
from tests.loopback_models import (
    FAST,
    STORY,
    STORY_TEXT,
    ModelServer,
    Reply,
    make_settings,
    provider,
    serving,
)

CONVERSATION = [ChatMessage("system", "You narrate."), ChatMessage("user", "I wait.")]


@pytest.fixture(scope="module")
def running() -> Iterator[list[ModelServer]]:
    with serving(1) as apps:
        yield apps


@pytest.fixture
def server(running: list[ModelServer]) -> ModelServer:
    return running[0].reset()


@pytest.fixture
async def model(server: ModelServer) -> AsyncIterator[OllamaModel]:
    adapter = OllamaModel(
        model="llama3.1:8b",
        base_url=server.url("ollama"),
        keep_alive="10m",
        temperature=0.2,
        options={"num_ctx": 8192},
    )
    yield adapter
    await adapter.aclose()


async def items(model: OllamaModel) -> list[StreamItem]:
    return [item async for item in model.generate(CONVERSATION, max_tokens=77)]


async def test_request_carries_keep_alive_and_model_options(
    server: ModelServer, model: OllamaModel
) -> None:
    await items(model)
    [request] = server.seen("/api/chat")
    assert request.body == {
        "model": "llama3.1:8b",
        "messages": [m.to_dict() for m in CONVERSATION],
        "stream": True,
        "options": {"num_ctx": 8192, "num_predict": 77, "temperature": 0.2},
        "keep_alive": "10m",
    }


async def test_ndjson_streams_with_done_reason_and_counts(model: OllamaModel) -> None:
    got = await items(model)
    assert [i for i in got if isinstance(i, str)] == list(STORY)
    assert got[-1] == Finish("stop", Usage(12, 34))


async def test_thinking_is_reasoning(server: ModelServer, model: OllamaModel) -> None:
    server.then(Reply(reasoning=("Let me think.",), pieces=("Rain.",)))
    assert (await items(model))[:2] == [ReasoningDelta("Let me think."), "Rain."]


async def test_an_unknown_model_is_a_model_error_naming_it(
    server: ModelServer, model: OllamaModel
) -> None:
    server.then(Reply(status=404))
    with pytest.raises(ModelError, match="HTTP 404: the loopback model exploded") as raised:
        await items(model)
    assert not raised.value.retryable


async def test_an_error_line_in_the_stream_is_a_model_error(
    server: ModelServer, model: OllamaModel
) -> None:
    server.then(Reply(error_body="model runner has unexpectedly stopped"))
    with pytest.raises(ModelError, match="reported an error: model runner"):
        await items(model)


async def test_check_reads_the_tags(server: ModelServer, model: OllamaModel) -> None:
    await model.check()
    assert server.seen("/api/tags")
    server.models_status = 500
    with pytest.raises(ModelUnavailable, match="HTTP 500"):
        await model.check()


async def test_embeddings_come_from_api_embed(server: ModelServer) -> None:
    async with httpx.AsyncClient(base_url=server.url("ollama") + "/") as client:
        embedder = OllamaEmbeddings(client=client, model="nomic-embed-text", keep_alive=-1)
        result = await embedder.embed(["a", "bb"])
    assert result.vectors == [[1.0, 0.0, 0.5], [2.0, 1.0, 0.5]]
    assert result.usage == Usage(10, 0)
    [request] = server.seen("/api/embed")
    assert request.body == {"model": "nomic-embed-text", "input": ["a", "bb"], "keep_alive": -1}


async def test_a_story_runs_on_ollama(server: ModelServer, tmp_path: Path) -> None:
    settings = make_settings(
        data_dir=tmp_path,
        providers={"local": provider(server, "ollama", keep_alive="5m")},
        models={"llama": {"provider": "local", "model": "llama3.1:8b"}},
        router=FAST,
    )
    engine = await Engine.open(settings)
    try:
        created = await engine.sessions.create(
            "local", kind=SessionKind.STORY, title="T", metadata=META
        )
        request = TurnRequest.build(action=None, text="I wait", choice=None)
        turn = await (await engine.turns.start("local", created["id"], request, META)).wait()
    finally:
        await engine.close()
    assert turn["model"] == "local:llama3.1:8b"
    assert turn["reply"]["text"] == STORY_TEXT
    [request_seen] = server.seen("/api/chat")
    assert request_seen.body["keep_alive"] == "5m"
