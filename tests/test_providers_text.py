"""Base models on a text-completion endpoint: instruct templates, stop sequences,
and a story through `/v1/completions` on a loopback server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import TextCompletionModel
from taleweaver.llm.templates import TEMPLATES, StopTrimmer
from tests.conftest import META
from tests.loopback_models import (
    FAST,
    STORY_TEXT,
    ModelServer,
    Reply,
    make_settings,
    provider,
    serving,
)

CHAT = [
    ChatMessage("system", "You narrate."),
    ChatMessage("user", "I wait."),
    ChatMessage("assistant", "Rain falls."),
    ChatMessage("user", "I board."),
]

EXPECTED = {
    "chatml": (
        "<|im_start|>system\nYou narrate.<|im_end|>\n<|im_start|>user\nI wait.<|im_end|>\n"
        "<|im_start|>assistant\nRain falls.<|im_end|>\n<|im_start|>user\nI board.<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    "llama3": (
        "<|start_header_id|>system<|end_header_id|>\n\nYou narrate.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nI wait.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nRain falls.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nI board.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "alpaca": (
        "You narrate.\n\n### Instruction:\nI wait.\n\n### Response:\nRain falls.\n\n"
        "### Instruction:\nI board.\n\n### Response:\n"
    ),
    "mistral": "[INST] You narrate.\n\nI wait. [/INST]Rain falls.</s>[INST] I board. [/INST]",
    "gemma": (
        "<start_of_turn>user\nYou narrate.\n\nI wait.<end_of_turn>\n"
        "<start_of_turn>model\nRain falls.<end_of_turn>\n"
        "<start_of_turn>user\nI board.<end_of_turn>\n<start_of_turn>model\n"
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_template_renders_the_chat_as_its_model_was_trained(name: str) -> None:
    assert TEMPLATES[name].render(CHAT) == EXPECTED[name]


def test_a_system_prompt_alone_opens_a_user_turn_where_there_is_no_system_role() -> None:
    rendered = TEMPLATES["gemma"].render([ChatMessage("system", "Be brief.")])
    assert rendered == "<start_of_turn>user\nBe brief.<end_of_turn>\n<start_of_turn>model\n"


def test_stop_trimmer_cuts_at_a_stop_sequence_split_across_pieces() -> None:
    trimmer = StopTrimmer(["<|im_end|>"])
    shown = [trimmer.feed(p) for p in ["Rain falls.", "<|im_", "end|>", "<|im_start|>user"]]
    assert "".join(shown) + trimmer.flush() == "Rain falls."
    assert trimmer.stopped


@given(st.text(alphabet="ab<|>", max_size=30), st.lists(st.integers(1, 5), max_size=10))
def test_stop_trimmer_shows_exactly_the_text_before_the_first_stop(
    text: str, cuts: list[int]
) -> None:
    trimmer = StopTrimmer(["<|a|>", "b>"])
    pieces, rest = [], text
    for size in cuts:
        pieces.append(rest[:size])
        rest = rest[size:]
    pieces.append(rest)
    shown = "".join(trimmer.feed(p) for p in pieces) + trimmer.flush()
    ends = [i for i in (text.find("<|a|>"), text.find("b>")) if i >= 0]
    assert shown == (text[: min(ends)] if ends else text)


@pytest.fixture(scope="module")
def running() -> Iterator[list[ModelServer]]:
    with serving(1) as apps:
        yield apps


@pytest.fixture
def server(running: list[ModelServer]) -> ModelServer:
    return running[0].reset()


async def test_the_prompt_and_stop_sequences_go_to_the_completions_endpoint(
    server: ModelServer,
) -> None:
    model = TextCompletionModel(model="base", template="chatml", base_url=server.url("openai"))
    try:
        text = "".join([p async for p in model.stream(CHAT, max_tokens=50)])
    finally:
        await model.aclose()
    assert text.startswith(STORY_TEXT)
    [request] = server.seen("/v1/completions")
    assert request.body == {
        "model": "base",
        "prompt": EXPECTED["chatml"],
        "max_tokens": 50,
        "stream": True,
        "stop": ["<|im_end|>", "<|im_start|>"],
    }


async def test_text_after_a_stop_sequence_the_server_sent_back_is_dropped(
    server: ModelServer,
) -> None:
    server.then(Reply(pieces=("The end.", "<|eot", "_id|>", "<|start_header_id|>user")))
    model = TextCompletionModel(model="base", template="llama3", base_url=server.url("openai"))
    try:
        pieces = [p async for p in model.stream(CHAT, max_tokens=50)]
    finally:
        await model.aclose()
    assert "".join(pieces) == "The end."


async def test_a_story_runs_on_a_base_model_with_a_template(
    server: ModelServer, tmp_path: Path
) -> None:
    settings = make_settings(
        data_dir=tmp_path,
        providers={"kobold": provider(server, "openai-text")},
        models={"base": {"provider": "kobold", "model": "mythomax", "template": "alpaca"}},
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
    assert turn["model"] == "kobold:mythomax"
    assert turn["reply"]["text"] == STORY_TEXT
    [request_seen] = server.seen("/v1/completions")
    assert request_seen.body["prompt"].endswith("### Instruction:\nI wait\n\n### Response:\n")
