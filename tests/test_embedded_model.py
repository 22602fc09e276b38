"""The bundled model (SmolLM2-135M on llama.cpp) end to end, through the real pipeline.

The model is loaded once for the module. Its prose is weak, so nothing here reads
it beyond checking that there is some; sampling is greedy to keep runs repeatable.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from taleweaver.config import Settings
from taleweaver.domain.choices import parse_choices
from taleweaver.domain.errors import ModelUnavailable
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.models import model_from_settings
from taleweaver.llm import EmbeddedModel
from taleweaver.llm.embedded import bundled_model_path
from taleweaver.llm.shape import ReplyShape, shaped
from taleweaver.llm.small_model import CHOICES_TOKENS, fit_system, small_prompt
from taleweaver.llm.templates import TEMPLATES
from taleweaver.llm.types import StreamItem
from tests.conftest import META

pytestmark = pytest.mark.embedded_model

WS = "local"
# Greedy, the model answers this with a reply longer than 400 tokens: seconds of work.
LONG_REPLY = "Describe everything I see, in great detail."


class Borrowed:
    """The module's loaded model, lent to one engine: closing the engine keeps it loaded."""

    def __init__(self, model: EmbeddedModel) -> None:
        self.model = model
        self.name = model.name

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int) -> AsyncIterator[str]:
        return self.model.stream(messages, max_tokens=max_tokens)

    async def check(self) -> None:
        await self.model.check()

    async def aclose(self) -> None:
        return None


@pytest.fixture(scope="module")
def embedded() -> Iterator[EmbeddedModel]:
    """The bundled model, loaded (by generating one token) once for the module."""
    model = EmbeddedModel(temperature=0.0)

    async def warm_up() -> None:
        async for _ in model.stream([ChatMessage("user", "Hello")], max_tokens=1):
            pass

    asyncio.run(warm_up())
    yield model
    asyncio.run(model.aclose())


@pytest.fixture
async def engine(make_engine: Callable[..., Any], embedded: EmbeddedModel) -> Engine:
    opened: Engine = await make_engine(model=Borrowed(embedded))
    return opened


async def new_story(engine: Engine) -> str:
    created = await engine.sessions.create(
        WS,
        kind=SessionKind.STORY,
        title="The Lighthouse",
        settings={"premise": "A keeper finds a stranger's boat on the rocks at dawn."},
        metadata=META,
    )
    session_id: str = created["id"]
    return session_id


def say(text: str) -> TurnRequest:
    return TurnRequest.build(action=None, text=text, choice=None)


async def event_types(engine: Engine, session_id: str) -> list[str]:
    return [e.type for e in await engine.sessions.events(WS, session_id, after=0, limit=100)]


def test_bundled_model_is_a_gguf_file_that_exists() -> None:
    path = bundled_model_path()
    assert path.is_file()
    assert path.suffix == ".gguf"
    assert path.stat().st_size > 10_000_000
    with path.open("rb") as file:
        assert file.read(4) == b"GGUF"


def test_with_no_model_configured_the_bundled_model_narrates(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, model=None, openai_base_url=None)
    assert settings.resolved_model() == "embedded"
    model = model_from_settings(settings)
    assert isinstance(model, EmbeddedModel)
    assert model.name == "embedded:SmolLM2-135M-Instruct"


async def test_check_passes_when_the_bundled_model_is_installed() -> None:
    await EmbeddedModel().check()


async def test_story_turn_completes_with_a_streamed_reply(engine: Engine) -> None:
    engine.caps.max_reply_tokens = 48
    sid = await new_story(engine)
    handle = await engine.turns.start(WS, sid, say("I walk down to the rocks"), META)
    streamed = [e.data["text"] async for e in handle.subscribe() if e.name == "token"]
    turn = await handle.wait()

    assert turn["status"] == "completed"
    assert turn["model"] == "embedded:SmolLM2-135M-Instruct"
    assert turn["reply"]["text"].strip()
    assert len(streamed) > 1
    # The prose keeps to the cap; the choices written after it have their own few tokens.
    assert 1 < turn["tokens"] <= 48 + CHOICES_TOKENS
    messages = await engine.sessions.messages(WS, sid, after_turn=0, limit=10)
    assert [(m["role"], m["content"]) for m in messages] == [
        ("player", "I walk down to the rocks"),
        ("narrator", turn["reply"]["text"]),
    ]


async def test_cancel_mid_generation_stops_the_model_and_records_no_reply(
    engine: Engine,
) -> None:
    engine.caps.max_reply_tokens = 400
    sid = await new_story(engine)
    handle = await engine.turns.start(WS, sid, say(LONG_REPLY), META)
    tokens = 0
    async for event in handle.subscribe():
        if event.name == "token":
            tokens += 1
            if tokens == 3:
                break
    assert handle.cancel()
    cancelled_at = time.perf_counter()
    turn = await handle.wait()
    stopped_after = time.perf_counter() - cancelled_at

    assert turn["status"] == "cancelled"
    assert turn["reply"] is None
    assert turn["tokens"] < 400
    # The turn ends only once the sampling thread has stopped; one more token
    # takes tens of milliseconds, the rest of the reply many seconds.
    assert stopped_after < 2.0
    assert await event_types(engine, sid) == ["session.created", "turn.cancelled"]
    assert await engine.sessions.messages(WS, sid, after_turn=0, limit=10) == []


async def test_after_a_cancelled_turn_the_model_takes_the_next_one(engine: Engine) -> None:
    engine.caps.max_reply_tokens = 400
    sid = await new_story(engine)
    first = await engine.turns.start(WS, sid, say(LONG_REPLY), META)
    async for event in first.subscribe():
        if event.name == "token":
            break
    first.cancel()
    assert (await first.wait())["status"] == "cancelled"

    engine.caps.max_reply_tokens = 24
    second = await engine.turns.start(WS, sid, say("I walk down to the rocks"), META)
    # Liveness, not speed: a busy CI machine shares these cores with other tests.
    turn = await asyncio.wait_for(second.wait(), timeout=120)
    assert turn["status"] == "completed"
    assert turn["number"] == 1
    assert turn["reply"]["text"].strip()


async def test_choices_written_under_the_grammar_parse_as_two_to_four_options(
    embedded: EmbeddedModel,
) -> None:
    messages = [
        ChatMessage("system", "You narrate a story. Premise: a keeper finds a boat."),
        ChatMessage("user", "I walk down to the rocks."),
    ]
    with shaped(ReplyShape(choices=True)):
        reply = "".join([p async for p in embedded.stream(messages, max_tokens=64)])
    parsed = parse_choices(reply)
    assert parsed.prose
    assert 2 <= len(parsed.choices) <= 4
    for choice in parsed.choices:
        assert choice[0].isupper() and "\n" not in choice and 3 < len(choice) <= 51


async def test_a_story_turn_on_the_bundled_model_offers_choices(engine: Engine) -> None:
    engine.caps.max_reply_tokens = 400
    sid = await new_story(engine)
    turn = await (await engine.turns.start(WS, sid, say("I walk down to the rocks"), META)).wait()

    assert turn["status"] == "completed"
    assert turn["reply"]["text"].strip()
    assert 2 <= len(turn["reply"]["choices"]) <= 4
    assert "Choices:" not in turn["reply"]["text"]


async def test_the_server_loads_the_model_at_start_up_and_readiness_says_so(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, model=None, openai_base_url=None)
    opened = await Engine.open(settings)
    try:
        loading = opened.warm_up()
        await asyncio.sleep(0)  # the load has begun in its thread
        assert (await opened.model_readiness())["status"] == "loading"
        await loading
        report = await opened.model_readiness()
        assert report["status"] == "ok"
    finally:
        await opened.close()


async def test_what_other_threads_print_while_the_model_loads_is_not_lost(
    capfd: pytest.CaptureFixture[str],
) -> None:
    model = EmbeddedModel(context_tokens=512)
    loaded = threading.Event()
    printed: list[int] = []

    def chatter() -> None:  # a server's log, the player's screen
        while not loaded.is_set() or not printed:
            n = len(printed)
            print(f"out {n}", flush=True)
            os.write(1, f"fd {n}\n".encode())
            print(f"err {n}", file=sys.stderr, flush=True)
            printed.append(n)
            time.sleep(0.005)

    other = threading.Thread(target=chatter)
    other.start()
    try:
        await model.warm()
    finally:
        loaded.set()
        other.join()
        await model.aclose()
    out, err = capfd.readouterr()
    assert len(printed) > 1
    assert out.splitlines() == [line for n in printed for line in (f"out {n}", f"fd {n}")]
    assert err.splitlines() == [f"err {n}" for n in printed]
    # llama.cpp's own load report and the library's verbose prints went to the log.
    assert "llama_model_loader" not in out + err
    assert "Model metadata" not in out + err


async def test_why_a_gguf_fails_to_load_is_logged_as_an_error_and_its_chatter_is_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    caplog.set_level("DEBUG", logger="taleweaver.llm.embedded")

    with pytest.raises(ModelUnavailable, match="could not load the embedded model"):
        await EmbeddedModel(broken).warm()

    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("invalid magic" in message for message in errors)
    assert capfd.readouterr() == ("", "")  # llama.cpp wrote nothing past our log


async def test_a_gguf_given_by_path_is_prompted_in_the_chat_template_it_carries() -> None:
    # The bundled file carries ChatML in its metadata: read from there, the prompt is
    # exactly the one the bundled model gets.
    model = EmbeddedModel(bundled_model_path(), context_tokens=512)
    messages = [ChatMessage("system", "You narrate."), ChatMessage("user", "I wait.")]
    try:
        await model.warm()
        assert model._render(messages) == TEMPLATES["chatml"].render(messages)
        assert "<|im_end|>" in model._stops
    finally:
        await model.aclose()


class Prefilling(Borrowed):
    """The borrowed model driven as a backend, so that the router can ask it to prefill."""

    def generate(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[StreamItem]:
        return self.model.generate(messages, max_tokens=max_tokens)

    async def prefill(self, messages: Sequence[ChatMessage]) -> None:
        await self.model.prefill(messages)


class EvalSpy:
    """Counts the tokens each `eval` of the loaded llama.cpp context reads."""

    def __init__(self, model: EmbeddedModel, monkeypatch: pytest.MonkeyPatch) -> None:
        llama = model._llama
        self.batches: list[int] = []
        self.started = threading.Event()
        real = llama.eval

        def counted(tokens: Sequence[int]) -> None:
            self.batches.append(len(tokens))
            self.started.set()
            real(tokens)

        monkeypatch.setattr(llama, "eval", counted)

    def take(self) -> int:
        total, self.batches = sum(self.batches), []
        return total


# A card long enough that reading it is most of a first turn's work (~330 tokens).
LONG_CARD = {
    "name": "Mira",
    "description": " ".join(
        f"At the {place} Mira once traded a brass compass for a story, and she hums "
        "whenever she remembers it."
        for place in ["harbour", "market", "chapel", "mill", "forge", "orchard"] * 2
    ),
}


async def test_a_new_companion_session_is_prefilled_so_its_first_turn_reads_only_the_player(
    make_engine: Callable[..., Any], embedded: EmbeddedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine: Engine = await make_engine(model=Prefilling(embedded))
    engine.caps.max_reply_tokens = 8
    spy = EvalSpy(embedded, monkeypatch)
    created = await engine.sessions.create(
        WS,
        kind=SessionKind.COMPANION,
        title="Mira",
        settings={"character": LONG_CARD},
        metadata=META,
    )
    await engine.prefills.settle()
    read_ahead = spy.take()

    turn = await (await engine.turns.start(WS, created["id"], say("Hello Mira"), META)).wait()

    assert turn["status"] == "completed"
    assert read_ahead > 250
    # The player's words and the template around them, and the reply's own tokens.
    assert spy.take() < 40


# A card of about 2,000 tokens, as long cards are: mostly one description.
HUGE_CARD = {
    "name": "Mira",
    "description": " ".join(
        f"At the {place} Mira once traded a brass compass for a story number {i}, and she "
        "hums whenever she remembers it."
        for i, place in enumerate(["harbour", "market", "chapel", "mill", "forge"] * 16)
    ),
    "personality": "Warm, curious, stubborn about maps.",
    "scenario": "A stormy night in the lighthouse; {{user}} knocks at the door.",
}


async def test_a_huge_card_is_cut_to_what_the_small_model_can_use_and_still_prefilled(
    make_engine: Callable[..., Any], embedded: EmbeddedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine: Engine = await make_engine(model=Prefilling(embedded))
    engine.caps.max_reply_tokens = 8
    spy = EvalSpy(embedded, monkeypatch)
    assert len(embedded._llama.tokenize(HUGE_CARD["description"].encode())) > 1500
    created = await engine.sessions.create(
        WS,
        kind=SessionKind.COMPANION,
        title="Mira",
        settings={"character": HUGE_CARD},
        metadata=META,
    )
    await engine.prefills.settle()
    read_ahead = spy.take()

    turn = await (await engine.turns.start(WS, created["id"], say("Hello Mira"), META)).wait()

    assert turn["status"] == "completed"
    # The card's opening, its personality and scenario whole: a few hundred tokens.
    assert 250 < read_ahead < 800
    assert spy.take() < 40  # the cut prompt is the one prefilled, byte for byte


def test_a_long_system_message_keeps_every_paragraphs_opening() -> None:
    rules = "You are the narrator. Stay in character."
    description = " ".join(f"Sentence {i} of a long description." for i in range(300))
    scenario = "Scenario: a storm at the lighthouse."
    system = "\n\n".join([rules, description, scenario])

    cut = fit_system(system, 2400)

    assert len(cut) <= 2400
    kept_rules, kept_description, kept_scenario = cut.split("\n\n")
    assert (kept_rules, kept_scenario) == (rules, scenario)
    assert description.startswith(kept_description)
    assert kept_description.endswith("description.")  # at a sentence's end
    assert fit_system(rules, 2400) == rules
    # The bundled model's prompt is cut; a model of the user's reads the card whole.
    messages = [ChatMessage("system", system), ChatMessage("user", "Hi")]
    assert small_prompt(messages, ReplyShape(), 2400)[0].content == cut
    assert small_prompt(messages, ReplyShape())[0].content == system


async def test_a_turn_that_arrives_during_a_prefill_stops_it_and_reuses_its_work(
    embedded: EmbeddedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = EvalSpy(embedded, monkeypatch)
    persona = LONG_CARD["description"]
    opening = [ChatMessage("system", f"Mira keeps the north light. Persona: {persona}")]
    prefilling = asyncio.create_task(embedded.prefill(opening))
    await asyncio.to_thread(spy.started.wait, 30)  # the first chunk is being read

    with shaped(ReplyShape()):
        reply = [
            p async for p in embedded.stream([*opening, ChatMessage("user", "Hi")], max_tokens=4)
        ]
    await prefilling

    assert reply
    prompt_tokens = len(embedded._llama.tokenize(embedded._render(opening).encode()))
    # Prompt reads (sampling reads one token at a time): the prefill's chunk or two
    # before it gave way, then the turn's rest of the prompt, none of it read twice.
    prompt_reads = [n for n in spy.batches if n > 1]
    assert len(prompt_reads) <= 3
    assert sum(spy.batches) < prompt_tokens + 40
