"""Options guaranteed by structure on providers with structured output.

A story reply that streams without 2 to 4 options is followed by a second short
call that the server decodes under the options schema (OpenAI `response_format`,
Ollama `format`), against loopback servers speaking the real protocols.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm.choice_schema import CHOICES_SCHEMA, read_choices
from tests.conftest import META
from tests.loopback_models import (
    FAST,
    GENERATE_PATH,
    STORY,
    STORY_TEXT,
    ModelServer,
    Reply,
    make_settings,
    provider,
    serving,
)

WS = "local"
PROSE_ONLY = Reply(pieces=STORY[:10])
OPTIONS = ["Board the ferry", "Wait out the storm", "Ask the ferryman"]
JSON_OPTIONS = Reply(
    pieces=('{"choices": ', json.dumps(OPTIONS)[:20], json.dumps(OPTIONS)[20:], "}")
)


@pytest.fixture(scope="module")
def running() -> Iterator[list[ModelServer]]:
    with serving(1) as apps:
        yield apps


@pytest.fixture
def server(running: list[ModelServer]) -> ModelServer:
    return running[0].reset()


async def story_turn(
    server: ModelServer, tmp_path: Path, wire: str, **extra: Any
) -> tuple[dict[str, Any], list[str]]:
    settings = make_settings(
        data_dir=tmp_path,
        providers={"remote": provider(server, wire, **extra)},
        models={"narrator": {"provider": "remote", "model": "loopback-model"}},
        router=FAST,
    )
    engine = await Engine.open(settings)
    try:
        created = await engine.sessions.create(
            WS, kind=SessionKind.STORY, title="Ferry", metadata=META
        )
        request = TurnRequest.build(action=None, text="I wait", choice=None)
        handle = await engine.turns.start(WS, created["id"], request, META)
        shown = [e.data["text"] async for e in handle.subscribe() if e.name == "token"]
        turn: dict[str, Any] = await handle.wait()
    finally:
        await engine.close()
    return turn, shown


def bodies(server: ModelServer, wire: str) -> list[dict[str, Any]]:
    return [seen.body for seen in server.seen(GENERATE_PATH[wire])]


def schema_of(body: dict[str, Any], wire: str) -> Any:
    if wire == "ollama":
        return body.get("format")
    response_format = body.get("response_format")
    return response_format["json_schema"]["schema"] if response_format else None


@pytest.mark.parametrize("wire", ["openai", "ollama"])
async def test_a_reply_without_options_gets_them_from_a_call_under_the_schema(
    server: ModelServer, tmp_path: Path, wire: str
) -> None:
    server.then(PROSE_ONLY, JSON_OPTIONS)

    turn, shown = await story_turn(server, tmp_path, wire)

    assert turn["status"] == "completed"
    assert turn["reply"]["text"] == STORY_TEXT
    assert [c["text"] for c in turn["reply"]["choices"]] == OPTIONS
    assert "".join(shown) == STORY_TEXT  # the JSON is never shown as prose
    story, options = bodies(server, wire)
    assert schema_of(story, wire) is None  # the prose streams as it always did
    assert schema_of(options, wire) == CHOICES_SCHEMA
    assert options["messages"][-2] == {"role": "assistant", "content": STORY_TEXT}
    if wire == "openai":
        assert options["response_format"]["json_schema"]["strict"] is True


@pytest.mark.parametrize("wire", ["openai", "ollama"])
async def test_a_reply_that_offers_options_is_not_asked_again(
    server: ModelServer, tmp_path: Path, wire: str
) -> None:
    server.then(Reply(pieces=STORY))

    turn, _ = await story_turn(server, tmp_path, wire)

    assert [c["text"] for c in turn["reply"]["choices"]] == [
        "Board the ferry",
        "Wait out the storm",
    ]
    assert len(bodies(server, wire)) == 1


async def test_more_than_four_options_are_cut_to_the_first_four(
    server: ModelServer, tmp_path: Path
) -> None:
    listed = "".join(f"{n}. Option number {n}\n" for n in range(1, 7))
    server.then(Reply(pieces=(STORY_TEXT, "\n\nChoices:\n", listed)))

    turn, _ = await story_turn(server, tmp_path, "openai")

    assert len(turn["reply"]["choices"]) == 4
    assert len(bodies(server, "openai")) == 1


async def test_a_provider_told_not_to_use_structured_output_is_asked_nothing_more(
    server: ModelServer, tmp_path: Path
) -> None:
    server.then(PROSE_ONLY, JSON_OPTIONS)

    turn, _ = await story_turn(server, tmp_path, "openai", structured_output=False)

    assert turn["reply"]["choices"] == []
    assert len(bodies(server, "openai")) == 1


async def test_a_failing_options_call_costs_the_options_not_the_reply(
    server: ModelServer, tmp_path: Path
) -> None:
    server.then(PROSE_ONLY, Reply(status=500))

    turn, _ = await story_turn(server, tmp_path, "openai")

    assert turn["status"] == "completed"
    assert turn["reply"]["text"] == STORY_TEXT
    assert turn["reply"]["choices"] == []


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ('{"choices": ["Run", "Hide"]}', ["Run", "Hide"]),
        ('Sure! {"choices": ["Run", "Hide", "Run"]} Enjoy.', ["Run", "Hide"]),
        ('{"choices": ["a", "b", "c", "d", "e"]}', ["a", "b", "c", "d"]),
        ('{"choices": ["  Walk\\n  away ", 3, "Stay"]}', ["Walk away", "Stay"]),
        ('{"choices": ["Only one"]}', []),
        ('{"choices": "Run"}', []),
        ("no json at all", []),
        ('{"choices": ["Run", ', []),
    ],
)
def test_options_are_read_as_two_to_four_distinct_lines_or_none(
    text: str, options: list[str]
) -> None:
    assert read_choices(text) == options


async def test_the_options_are_asked_of_the_model_that_told_the_reply(tmp_path: Path) -> None:
    with serving(2) as (primary, backup):
        primary.then(Reply(status=500))
        backup.then(PROSE_ONLY, JSON_OPTIONS)
        settings = make_settings(
            data_dir=tmp_path,
            providers={
                "primary": provider(primary, "openai"),
                "backup": provider(backup, "ollama"),
            },
            models={
                "primary": {"provider": "primary", "model": "loopback-model"},
                "backup": {"provider": "backup", "model": "loopback-model"},
            },
            routes={"narrate": ["primary", "backup"]},
            router=FAST,
        )
        engine = await Engine.open(settings)
        try:
            created = await engine.sessions.create(
                WS, kind=SessionKind.STORY, title="Ferry", metadata=META
            )
            request = TurnRequest.build(action=None, text="I wait", choice=None)
            turn = await (await engine.turns.start(WS, created["id"], request, META)).wait()
        finally:
            await engine.close()

    assert turn["model"] == "backup:loopback-model"
    assert [c["text"] for c in turn["reply"]["choices"]] == OPTIONS
    assert len(bodies(primary, "openai")) == 2  # its two tries at the reply, nothing more
    assert schema_of(bodies(backup, "ollama")[1], "ollama") == CHOICES_SCHEMA
