"""Token and cost accounting per workspace, session, task and model, and budgets that
warn and then stop, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taleweaver.domain.errors import BudgetExceeded, ModelError
from taleweaver.domain.events import JSON
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.turns import TurnHandle
from taleweaver.llm import ScriptedModel, UsageLedger
from taleweaver.llm.budgets import BudgetStatus, month_start
from taleweaver.llm.ledger import UsageRecord
from tests.conftest import META, DatabaseSpec
from tests.loopback_models import FAST, ModelServer, Reply, make_settings, provider, serving

WS = "local"
Open = Callable[..., Awaitable[Engine]]
# $2 per million prompt tokens, $8 per million completion tokens.
PRICE = {"input": 2.0, "output": 8.0}


@pytest.fixture(scope="module")
def running() -> Iterator[list[ModelServer]]:
    with serving(1) as apps:
        yield apps


@pytest.fixture
def server(running: list[ModelServer]) -> ModelServer:
    return running[0].reset()


@pytest.fixture
async def open_engine(db_spec: DatabaseSpec, tmp_path: Any) -> AsyncIterator[Open]:
    opened: list[Engine] = []

    async def open_(
        server: ModelServer, *, budgets: dict[str, Any] | None = None, **extra: Any
    ) -> Engine:
        settings = make_settings(
            data_dir=tmp_path,
            providers={"cloud": provider(server, "openai", **extra)},
            models={
                "writer": {"provider": "cloud", "model": "gpt-loopback", "price": PRICE},
            },
            router=FAST,
            budgets=budgets or {},
        )
        engine = await Engine.open(settings, database=db_spec.open())
        opened.append(engine)
        return engine

    yield open_
    for engine in opened:
        await engine.close()


async def new_story(engine: Engine) -> str:
    created = await engine.sessions.create(WS, kind=SessionKind.STORY, title="T", metadata=META)
    session_id: str = created["id"]
    return session_id


async def start(engine: Engine, sid: str) -> TurnHandle:
    request = TurnRequest.build(action=None, text="I wait", choice=None)
    return await engine.turns.start(WS, sid, request, META)


async def play(engine: Engine, sid: str) -> JSON:
    return await (await start(engine, sid)).wait()


def cost(prompt: int, completion: int) -> float:
    return (prompt * PRICE["input"] + completion * PRICE["output"]) / 1e6


# --- the ledger ---------------------------------------------------------------------------


def record(
    session: str | None, task: str, model: str, tokens: tuple[int, int], usd: float
) -> UsageRecord:
    return UsageRecord(WS, session, None, task, "p", model, *tokens, usd, "ok", False)


async def test_ledger_sums_per_session_task_and_model(engine: Engine) -> None:
    ledger = UsageLedger(engine.db)
    await ledger.record(record("s1", "narrate", "big", (100, 50), 0.5))
    await ledger.record(record("s1", "extract", "small", (10, 5), 0.01))
    await ledger.record(record("s2", "narrate", "big", (200, 100), 1.0))

    totals = await ledger.totals(WS)
    assert (totals.calls, totals.prompt_tokens, totals.completion_tokens) == (3, 310, 155)
    assert totals.cost_usd == pytest.approx(1.51)
    session = await ledger.totals(WS, session_id="s1")
    assert session.cost_usd == pytest.approx(0.51)
    by_model = await ledger.breakdown(WS, "model")
    assert [(r["model"], r["calls"]) for r in by_model] == [("big", 2), ("small", 1)]
    by_task = await ledger.breakdown(WS, "task", session_id="s1")
    assert [(r["task"], r["total_tokens"]) for r in by_task] == [("narrate", 150), ("extract", 15)]
    by_session = await ledger.breakdown(WS, "session_id")
    assert [r["session_id"] for r in by_session] == ["s2", "s1"]
    assert (await ledger.totals("elsewhere")).calls == 0


async def test_buffered_usage_is_written_by_flush_for_every_reader(engine: Engine) -> None:
    ledger = UsageLedger(engine.db, flush_after=60)
    ledger.record_soon(record("s1", "narrate", "big", (3, 4), 0.5))
    other = UsageLedger(engine.db)  # another replica reads the database only
    assert (await other.totals(WS)).calls == 0
    assert (await ledger.totals(WS)).calls == 1  # a ledger reads its own writes
    assert (await other.totals(WS)).calls == 1
    ledger.record_soon(record("s1", "narrate", "big", (3, 4), 0.5))
    await ledger.flush()  # what the engine does when it closes
    assert (await other.totals(WS)).calls == 2


async def test_ledger_sums_from_a_given_moment(engine: Engine) -> None:
    ledger = UsageLedger(engine.db)
    await ledger.record(record(None, "narrate", "big", (1, 1), 0.25))
    now = datetime.now(UTC)
    assert (await ledger.totals(WS, since=month_start(now))).cost_usd == pytest.approx(0.25)
    assert (await ledger.totals(WS, since=now + timedelta(minutes=1))).calls == 0


# --- what a turn costs ---------------------------------------------------------------------------


async def test_a_turn_records_the_providers_usage_at_the_models_price(
    server: ModelServer, open_engine: Open
) -> None:
    engine = await open_engine(server)
    sid = await new_story(engine)
    done = await play(engine, sid)

    [row] = await engine.usage.breakdown(WS, "model", session_id=sid)
    assert row | {"cost_usd": pytest.approx(cost(12, 34))} == {
        "model": "writer",
        "provider": "cloud",
        "calls": 1,
        "prompt_tokens": 12,
        "completion_tokens": 34,
        "total_tokens": 46,
        "cost_usd": cost(12, 34),
    }
    [task] = await engine.usage.breakdown(WS, "task", session_id=sid)
    assert task["task"] == "narrate"
    assert done["status"] == "completed"


async def test_without_usage_from_the_provider_tokens_are_estimated(
    server: ModelServer, open_engine: Open
) -> None:
    server.then(Reply(pieces=("x" * 40,), usage=None))
    # One call: no second one for the options this reply lacks (test_structured_choices).
    engine = await open_engine(server, structured_output=False)
    sid = await new_story(engine)
    await play(engine, sid)
    totals = await engine.usage.totals(WS, session_id=sid)
    assert totals.completion_tokens == 10  # forty characters, about four to a token
    assert totals.prompt_tokens > 20  # the system prompt and the player's line
    assert totals.cost_usd == pytest.approx(cost(totals.prompt_tokens, 10))


async def test_a_turn_that_fails_mid_reply_still_records_what_it_used(
    server: ModelServer, open_engine: Open
) -> None:
    server.then(Reply(disconnect_after=3))
    engine = await open_engine(server)
    sid = await new_story(engine)
    with pytest.raises(ModelError):
        await play(engine, sid)
    [row] = await engine.usage.breakdown(WS, "model", session_id=sid)
    assert row["calls"] == 1
    assert row["completion_tokens"] > 0  # estimated from the three pieces that came


async def test_a_cancelled_turn_still_records_what_it_used(
    server: ModelServer, open_engine: Open
) -> None:
    server.then(Reply(pieces=[f"w{i} " for i in range(100)], delay=0.02))
    engine = await open_engine(server)
    sid = await new_story(engine)
    handle = await start(engine, sid)
    async for event in handle.subscribe():
        if event.name == "token":
            break
    handle.cancel()
    assert (await handle.wait())["status"] == "cancelled"
    totals = await engine.usage.totals(WS, session_id=sid)
    assert totals.calls == 1
    assert totals.completion_tokens > 0


# --- budgets ---------------------------------------------------------------------------------


async def test_a_session_budget_warns_and_then_stops_further_turns(
    server: ModelServer, open_engine: Open
) -> None:
    limit = cost(12, 34) * 1.5  # the first turn spends two thirds of it
    engine = await open_engine(server, budgets={"session_usd": limit, "warn_at": 0.5})
    sid = await new_story(engine)

    first = await start(engine, sid)
    assert (await first.wait())["status"] == "completed"
    [warning] = [e.data for e in first.events if e.name == "budget"]
    assert (warning["scope"], warning["level"]) == ("session", "warning")

    second = await start(engine, sid)
    assert (await second.wait())["status"] == "completed"
    [exceeded] = [e.data for e in second.events if e.name == "budget"]
    assert exceeded["level"] == "exceeded"

    calls = len(server.seen("/v1/chat/completions"))
    third = await start(engine, sid)
    with pytest.raises(BudgetExceeded, match="session budget"):
        await third.wait()
    assert len(server.seen("/v1/chat/completions")) == calls  # no call was made
    assert third.events[-1].data["type"] == "BudgetExceeded"
    events = await engine.sessions.events(WS, sid, after=0, limit=10)
    assert [e.type for e in events].count("turn.committed") == 2

    other = await new_story(engine)  # another session has its own budget
    assert (await play(engine, other))["status"] == "completed"


async def test_a_workspace_budget_stops_every_session_of_the_month(
    server: ModelServer, open_engine: Open
) -> None:
    engine = await open_engine(server, budgets={"workspace_usd": cost(12, 34) / 2})
    await play(engine, await new_story(engine))
    with pytest.raises(BudgetExceeded, match="workspace budget"):
        await play(engine, await new_story(engine))
    assert engine.budgets is not None
    [status] = await engine.budgets.status(WS, None)
    assert status.period == datetime.now(UTC).strftime("%Y-%m")


def test_budget_levels() -> None:
    def level(spent: float) -> str:
        return BudgetStatus("session", 1.0, spent, 0.8, "lifetime").level

    assert [level(0.5), level(0.8), level(0.99), level(1.0)] == [
        "ok",
        "warning",
        "warning",
        "exceeded",
    ]


async def test_a_bare_model_handed_in_is_accounted_too(make_engine: Callable[..., Any]) -> None:
    engine: Engine = await make_engine(model=ScriptedModel(["Once."]))
    sid = await new_story(engine)
    await play(engine, sid)
    [row] = await engine.usage.breakdown(WS, "model", session_id=sid)
    assert (row["model"], row["provider"], row["cost_usd"]) == ("scripted", "scripted", 0.0)
