"""The Anthropic Messages adapter against a loopback server speaking its event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from taleweaver.domain.errors import ModelError, ModelUnavailable
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import AnthropicModel
from taleweaver.llm.anthropic import anthropic_turns
from taleweaver.llm.types import Finish, ReasoningDelta, StreamItem, Usage
from tests.conftest import META
from tests.loopback_models import (
    FAST,
    SECRET,
    STORY,
    STORY_TEXT,
    ModelServer,
    Reply,
    make_settings,
    provider,
    serving,
)

CONVERSATION = [
    ChatMessage("system", "You narrate."),
    ChatMessage("user", "I wait."),
    ChatMessage("assistant", "Rain falls."),
    ChatMessage("user", "I wait longer."),
]


@pytest.fixture(scope="module")
def running() -> Iterator[list[ModelServer]]:
    with serving(1) as apps:
        yield apps


@pytest.fixture
def server(running: list[ModelServer]) -> ModelServer:
    return running[0].reset()


@pytest.fixture
async def model(server: ModelServer) -> AsyncIterator[AnthropicModel]:
    adapter = AnthropicModel(
        model="claude-loopback", api_key=SECRET, base_url=server.url("anthropic")
    )
    yield adapter
    await adapter.aclose()


async def items(
    model: AnthropicModel, messages: list[ChatMessage] = CONVERSATION
) -> list[StreamItem]:
    return [item async for item in model.generate(messages, max_tokens=99)]


async def test_request_carries_the_system_prompt_apart_and_the_turns_in_order(
    server: ModelServer, model: AnthropicModel
) -> None:
    await items(model)
    [request] = server.seen("/v1/messages")
    assert request.headers["x-api-key"] == SECRET
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.body == {
        "model": "claude-loopback",
        "max_tokens": 99,
        "stream": True,
        "system": "You narrate.",
        "messages": [
            {"role": "user", "content": "I wait."},
            {"role": "assistant", "content": "Rain falls."},
            {"role": "user", "content": "I wait longer."},
        ],
    }


def test_turns_alternate_and_begin_with_the_user() -> None:
    system, turns = anthropic_turns(
        [
            ChatMessage("system", "A"),
            ChatMessage("assistant", "Once upon a time."),
            ChatMessage("user", "Go on."),
            ChatMessage("user", "Please."),
        ]
    )
    assert system == "A"
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[-1]["content"] == "Go on.\n\nPlease."


async def test_text_streams_with_its_stop_reason_and_usage(model: AnthropicModel) -> None:
    got = await items(model)
    assert [i for i in got if isinstance(i, str)] == list(STORY)
    assert got[-1] == Finish("end_turn", Usage(12, 34))


async def test_thinking_is_reasoning_not_reply(server: ModelServer, model: AnthropicModel) -> None:
    server.then(Reply(reasoning=("Hmm.",), pieces=("Yes.",)))
    got = await items(model)
    assert got[:2] == [ReasoningDelta("Hmm."), "Yes."]
    assert [p async for p in model.stream(CONVERSATION, max_tokens=9)] == ["Yes."]


async def test_an_overloaded_error_is_a_retryable_model_error(
    server: ModelServer, model: AnthropicModel
) -> None:
    server.then(Reply(status=529))
    with pytest.raises(ModelError, match="HTTP 529") as raised:
        await items(model)
    assert raised.value.retryable
    assert raised.value.status == 529


async def test_a_non_streamed_message_is_read_whole(
    server: ModelServer, model: AnthropicModel
) -> None:
    server.then(Reply(whole=True))
    assert "".join([p async for p in model.stream(CONVERSATION, max_tokens=9)]) == "".join(STORY)


async def test_check_lists_models_with_the_key(server: ModelServer, model: AnthropicModel) -> None:
    await model.check()
    [request] = server.seen("/v1/models")
    assert request.headers["x-api-key"] == SECRET
    server.models_status = 401
    with pytest.raises(ModelUnavailable, match="rejected the credentials"):
        await model.check()


async def test_a_story_runs_on_anthropic(server: ModelServer, tmp_path: Path) -> None:
    settings = make_settings(
        data_dir=tmp_path,
        providers={"claude": provider(server, "anthropic")},
        models={"writer": {"provider": "claude", "model": "claude-loopback"}},
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
    assert turn["model"] == "claude:claude-loopback"
    assert turn["reply"]["text"] == STORY_TEXT
    assert [c["text"] for c in turn["reply"]["choices"]] == [
        "Board the ferry",
        "Wait out the storm",
    ]
