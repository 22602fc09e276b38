"""The model router: per-task routes, session and character choices, fallbacks,
retries, circuit breakers, deadlines and embeddings, against loopback servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taleweaver.domain.errors import InvalidInput, ModelError, ModelUnavailable
from taleweaver.domain.events import JSON
from taleweaver.domain.pipeline import ReplyUnderReview
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import CallScope, ModelRouter
from taleweaver.llm.breaker import BreakerState, CircuitBreaker
from taleweaver.llm.retry import RetryPolicy
from tests.conftest import META
from tests.loopback_models import (
    FAST,
    STORY_TEXT,
    ModelServer,
    Reply,
    make_settings,
    provider,
    refused,
    serving,
)

WS = "local"
Open = Callable[..., Awaitable[Engine]]
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def running() -> Iterator[list[ModelServer]]:
    with serving(3) as apps:
        yield apps


@pytest.fixture
def servers(running: list[ModelServer]) -> list[ModelServer]:
    return [app.reset() for app in running]


@pytest.fixture
async def open_engine(tmp_path: Path) -> AsyncIterator[Open]:
    opened: list[Engine] = []

    async def open_(**values: Any) -> Engine:
        values.setdefault("router", FAST)
        engine = await Engine.open(make_settings(data_dir=tmp_path / "data", **values))
        opened.append(engine)
        return engine

    yield open_
    for engine in opened:
        await engine.close()


def three_models(servers: list[ModelServer], **routes: Any) -> dict[str, Any]:
    """Models `narrator`, `cheap` and `alt`, each on a loopback server of its own."""
    names = ["narrator", "cheap", "alt"]
    return {
        "providers": {name: provider(s, "openai") for name, s in zip(names, servers, strict=True)},
        "models": {name: {"provider": name, "model": f"{name}-model"} for name in names},
        "routes": routes,
    }


async def story(engine: Engine, **settings: Any) -> str:
    created = await engine.sessions.create(
        WS, kind=SessionKind.STORY, title="T", settings=settings, metadata=META
    )
    session_id: str = created["id"]
    return session_id


async def turn(engine: Engine, sid: str, text: str = "I wait") -> JSON:
    request = TurnRequest.build(action=None, text=text, choice=None)
    return await (await engine.turns.start(WS, sid, request, META)).wait()


class ModelExtractor:
    """An extractor that asks the extract task's model which names the reply mentions."""

    def __init__(self, router: ModelRouter) -> None:
        self.router = router

    async def extract(self, reply: ReplyUnderReview) -> list[JSON]:
        scope = CallScope(reply.workspace_id, reply.session_id, reply.turn_id)
        prompt = [
            ChatMessage("system", "List the names of people and places in the text."),
            ChatMessage("user", reply.reply_text),
        ]
        found = await self.router.complete("extract", prompt, max_tokens=50, scope=scope)
        return [{"kind": "entity", "name": found.text.strip(), "by": found.model}]


# --- routes per task, and choices per session and character ---------------------------------


async def test_extraction_runs_on_its_own_model_while_narration_runs_on_another(
    servers: list[ModelServer], open_engine: Open
) -> None:
    narrator, cheap, _ = servers
    cheap.then(Reply(pieces=("Ferry ", "house")))
    engine = await open_engine(**three_models(servers, narrate="narrator", extract="cheap"))
    assert engine.router is not None
    engine.caps.extractor = ModelExtractor(engine.router)
    sid = await story(engine)
    done = await turn(engine, sid)

    assert done["model"] == "narrator:narrator-model"
    assert done["reply"]["text"] == STORY_TEXT
    [narration] = narrator.seen(CHAT)
    [extraction] = cheap.seen(CHAT)
    assert narration.body["model"] == "narrator-model"
    assert extraction.body["model"] == "cheap-model"
    assert extraction.body["messages"][-1]["content"] == STORY_TEXT
    [_, committed] = await engine.sessions.events(WS, sid, after=0, limit=10)
    assert committed.payload["artifacts"] == [
        {"kind": "entity", "name": "Ferry house", "by": "cheap:cheap-model"}
    ]
    tasks = {row["task"] for row in await engine.usage.breakdown(WS, "task", session_id=sid)}
    models = {row["model"] for row in await engine.usage.breakdown(WS, "model", session_id=sid)}
    assert (tasks, models) == ({"narrate", "extract"}, {"narrator", "cheap"})


async def test_a_task_without_a_route_uses_the_default_chain(
    servers: list[ModelServer], open_engine: Open
) -> None:
    engine = await open_engine(**three_models(servers, default=["alt"]))
    assert engine.router is not None
    assert [m.alias for m in engine.router.chain("narrate")] == ["alt"]
    assert [m.alias for m in engine.router.chain("summarize")] == ["alt"]
    assert engine.router.chain("embed") == []


async def test_a_session_can_choose_its_narrator(
    servers: list[ModelServer], open_engine: Open
) -> None:
    narrator, _, alt = servers
    engine = await open_engine(**three_models(servers, narrate=["narrator"]))
    chosen = await story(engine, models={"narrate": "alt"})
    plain = await story(engine)

    assert (await turn(engine, chosen))["model"] == "alt:alt-model"
    assert (await turn(engine, plain))["model"] == "narrator:narrator-model"
    assert len(alt.seen(CHAT)) == 1
    assert len(narrator.seen(CHAT)) == 1


async def test_a_character_choice_wins_over_the_session_choice(
    servers: list[ModelServer], open_engine: Open
) -> None:
    engine = await open_engine(**three_models(servers, narrate=["narrator"]))
    created = await engine.sessions.create(
        WS,
        kind=SessionKind.COMPANION,
        title="Mara",
        settings={"models": {"narrate": "cheap"}, "character": {"name": "Mara", "model": "alt"}},
        metadata=META,
    )
    assert (await turn(engine, created["id"], "Hello"))["model"] == "alt:alt-model"


async def test_a_chosen_model_keeps_the_route_as_its_fallback(
    servers: list[ModelServer], open_engine: Open
) -> None:
    _, _, alt = servers
    alt.then(Reply(status=404))
    engine = await open_engine(**three_models(servers, narrate=["narrator", "cheap"]))
    sid = await story(engine, models={"narrate": "alt"})
    assert (await turn(engine, sid))["model"] == "narrator:narrator-model"
    assert len(alt.seen(CHAT)) == 1  # a 404 is not worth a retry


async def test_a_session_naming_an_unknown_model_gets_a_clear_error_and_keeps_nothing(
    servers: list[ModelServer], open_engine: Open
) -> None:
    engine = await open_engine(**three_models(servers, narrate=["narrator"]))
    sid = await story(engine, models={"narrate": "gpt-17"})
    with pytest.raises(InvalidInput, match="'gpt-17' to narrate, which is not configured"):
        await turn(engine, sid)
    events = await engine.sessions.events(WS, sid, after=0, limit=10)
    assert [e.type for e in events] == ["session.created"]


async def test_a_session_setting_that_names_no_task_is_refused(
    servers: list[ModelServer], open_engine: Open
) -> None:
    engine = await open_engine(**three_models(servers, narrate=["narrator"]))
    sid = await story(engine, models={"narration": "alt"})
    with pytest.raises(InvalidInput, match="'narration', which is not a task"):
        await turn(engine, sid)


async def test_when_every_model_fails_the_error_names_each_of_them(
    servers: list[ModelServer], open_engine: Open
) -> None:
    engine = await open_engine(
        providers={
            "a": provider(refused("openai"), "openai"),
            "b": provider(refused("ollama"), "ollama"),
        },
        models={"a": {"provider": "a", "model": "m"}, "b": {"provider": "b", "model": "m"}},
        routes={"narrate": ["a", "b"]},
    )
    sid = await story(engine)
    with pytest.raises(ModelUnavailable) as raised:
        await turn(engine, sid)
    assert "no model could narrate" in raised.value.detail
    assert "a:m is unreachable" in raised.value.detail
    assert "b:m is unreachable" in raised.value.detail


async def test_a_model_cap_on_reply_length_applies_below_the_tasks_ask(
    servers: list[ModelServer], open_engine: Open
) -> None:
    narrator = servers[0]
    config = three_models(servers, narrate=["narrator"])
    config["models"]["narrator"] |= {
        "max_tokens": 64,
        "temperature": 0.3,
        "options": {"top_p": 0.9},
    }
    engine = await open_engine(**config)
    await turn(engine, await story(engine))
    [request] = narrator.seen(CHAT)
    assert request.body["max_tokens"] == 64
    assert request.body["temperature"] == 0.3
    assert request.body["top_p"] == 0.9
    assert request.body["stream_options"] == {"include_usage": True}


# --- the circuit breaker, through the engine --------------------------------------------------


async def test_a_failing_provider_is_skipped_once_its_circuit_opens_and_probed_after_cooldown(
    servers: list[ModelServer], open_engine: Open
) -> None:
    narrator, cheap, _ = servers
    narrator.then(Reply(status=503), Reply(status=503), Reply())
    router = FAST | {
        "retry": {"attempts": 1},
        "breaker": {"failures": 2, "window": 60, "cooldown": 0.3},
    }
    engine = await open_engine(
        **three_models(servers, narrate=["narrator", "cheap"]), router=router
    )
    assert engine.router is not None
    sid = await story(engine)

    for _ in range(2):  # two failures trip the breaker
        assert (await turn(engine, sid))["model"] == "cheap:cheap-model"
    assert state_of(engine.router.providers["narrator"].breaker) is BreakerState.OPEN
    health = await engine.model_health()
    assert health["narrator"]["breaker"] == "open"

    assert (await turn(engine, sid))["model"] == "cheap:cheap-model"
    assert len(narrator.seen(CHAT)) == 2  # open: not even asked

    await asyncio.sleep(0.35)
    assert (await turn(engine, sid))["model"] == "narrator:narrator-model"  # the probe
    assert state_of(engine.router.providers["narrator"].breaker) is BreakerState.CLOSED
    assert len(cheap.seen(CHAT)) == 3


async def test_client_errors_do_not_trip_the_breaker(
    servers: list[ModelServer], open_engine: Open
) -> None:
    narrator = servers[0]
    narrator.then(Reply(status=400))
    # One failure opens this breaker, so a reply merely slow on a loaded machine must
    # not count as one: only the 400 is under test.
    patient = {"connect": 5, "first_token": 5, "idle": 5, "total": 20}
    router = FAST | {"breaker": {"failures": 1}, "timeouts": patient}
    engine = await open_engine(
        **three_models(servers, narrate=["narrator", "cheap"]), router=router
    )
    assert engine.router is not None
    await turn(engine, await story(engine))
    assert state_of(engine.router.providers["narrator"].breaker) is BreakerState.CLOSED


# --- deadlines -----------------------------------------------------------------------------------


async def test_a_reply_slower_than_the_total_deadline_is_cut_off(
    servers: list[ModelServer], open_engine: Open
) -> None:
    narrator = servers[0]
    narrator.then(Reply(pieces=[f"w{i} " for i in range(40)], delay=0.05))
    router = FAST | {"timeouts": {"first_token": 1, "idle": 1, "total": 0.5}}
    engine = await open_engine(**three_models(servers, narrate=["narrator"]), router=router)
    with pytest.raises(ModelError, match=r"did not finish within 0\.5 s"):
        await turn(engine, await story(engine))
    assert await asyncio.to_thread(narrator.client_left.wait, 5)


async def test_a_slow_reader_does_not_make_the_model_look_stalled(
    servers: list[ModelServer], open_engine: Open
) -> None:
    servers[0].then(Reply(pieces=("One, ", "two, ", "three.")))
    engine = await open_engine(**three_models(servers, narrate=["narrator"]))
    assert engine.router is not None
    model = engine.router.bind("narrate")
    pieces = []
    async for piece in model.stream([ChatMessage("user", "hi")], max_tokens=50):
        pieces.append(piece)
        if len(pieces) == 1:
            await asyncio.sleep(0.7)  # longer than the idle deadline (0.5 s): the reader's time
    assert "".join(pieces) == "One, two, three."


# --- embeddings -----------------------------------------------------------------------------------


async def test_embeddings_go_through_their_route_with_a_fallback(
    servers: list[ModelServer], open_engine: Open
) -> None:
    first, second, _ = servers
    first.then(Reply(status=500))
    engine = await open_engine(
        providers={"oai": provider(first, "openai"), "oll": provider(second, "ollama")},
        models={
            "chat": {"provider": "oai", "model": "chat-model"},
            "vec-a": {"provider": "oai", "model": "text-embedding-3-small"},
            "vec-b": {"provider": "oll", "model": "nomic-embed-text"},
        },
        routes={"narrate": ["chat"], "embed": ["vec-a", "vec-b"]},
    )
    assert engine.router is not None
    vectors = await engine.router.embed(["lamp", "river"], scope=CallScope(WS))
    assert vectors == [[4.0, 0.0, 0.5], [5.0, 1.0, 0.5]]
    assert len(first.seen("/v1/embeddings")) == 2  # a 500 is retried once
    [request] = second.seen("/api/embed")
    assert request.body["model"] == "nomic-embed-text"
    [row] = await engine.usage.breakdown(WS, "task")
    assert (row["task"], row["prompt_tokens"]) == ("embed", 10)


async def test_embeddings_on_an_openai_server_come_back_in_input_order(
    servers: list[ModelServer], open_engine: Open
) -> None:
    engine = await open_engine(
        providers={"oai": provider(servers[0], "openai")},
        models={
            "vec": {"provider": "oai", "model": "e"},
            "chat": {"provider": "oai", "model": "c"},
        },
        routes={"narrate": ["chat"], "embed": ["vec"]},
    )
    assert engine.router is not None
    vectors = await engine.router.embed(["a", "bb", "ccc"])
    assert [v[0] for v in vectors] == [1.0, 2.0, 3.0]


async def test_without_an_embedding_route_embedding_is_refused_clearly(
    servers: list[ModelServer], open_engine: Open
) -> None:
    engine = await open_engine(**three_models(servers, narrate=["narrator"]))
    assert engine.router is not None
    with pytest.raises(ModelUnavailable, match=r"set routes\.embed"):
        await engine.router.embed(["x"])


# --- the policies on their own ---------------------------------------------------------------


def state_of(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # a call, so that type checkers do not pin the state down


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_enough_failures_within_the_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, window=10, cooldown=5, clock=clock)
    for at in (0, 1, 2):
        clock.now = at
        assert breaker.allow()
        breaker.failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_in() == pytest.approx(5)


def test_breaker_forgets_failures_older_than_the_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, window=10, cooldown=5, clock=clock)
    for at in (0, 1, 20):
        clock.now = at
        breaker.failure()
    assert state_of(breaker) is BreakerState.CLOSED


def test_breaker_half_opens_after_cooldown_and_lets_a_limited_number_of_probes_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, window=10, cooldown=5, half_open_probes=1, clock=clock)
    breaker.failure()
    clock.now = 5
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # one probe at a time
    breaker.success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.allow()


def test_a_failed_probe_opens_the_breaker_again_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, window=10, cooldown=5, clock=clock)
    breaker.failure()
    clock.now = 6
    assert breaker.allow()
    breaker.failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert breaker.retry_in() == pytest.approx(5)


def test_a_released_probe_frees_its_slot_without_judging_the_provider() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, window=10, cooldown=5, clock=clock)
    breaker.failure()
    clock.now = 5
    assert breaker.allow()
    breaker.release()
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_backoff_doubles_up_to_the_cap_and_stops_after_the_last_attempt() -> None:
    policy = RetryPolicy(attempts=5, base_delay=1, max_delay=3, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [1, 2, 3, 3, None]


def test_jitter_shortens_a_delay_by_at_most_its_fraction() -> None:
    low = RetryPolicy(attempts=3, base_delay=2, jitter=0.5, random=lambda: 1.0)
    high = RetryPolicy(attempts=3, base_delay=2, jitter=0.5, random=lambda: 0.0)
    assert low.delay(1) == 1.0
    assert high.delay(1) == 2.0


def test_retry_after_wins_over_a_shorter_backoff_unless_it_is_too_long() -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.5, jitter=0, max_retry_after=10)
    assert policy.delay(1, retry_after=4) == 4
    assert policy.delay(1, retry_after=0.1) == 0.5
    assert policy.delay(1, retry_after=11) is None


def test_the_llm_package_exports_what_its_modules_declare() -> None:
    import importlib
    import pkgutil

    import taleweaver.llm as llm

    for name in llm.__all__:
        assert hasattr(llm, name), name
    for info in pkgutil.iter_modules(llm.__path__):
        module = importlib.import_module(f"taleweaver.llm.{info.name}")
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"{info.name}.{name}"
