"""The models over HTTP: configured models and routes, provider health in
/api/v1/models/health and /readyz, usage and costs per session and workspace,
budgets, and secrets that never leave the server."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource

from tests.conftest import LoopbackServer
from tests.loopback_models import (
    FAST,
    SECRET,
    STORY_TEXT,
    ModelServer,
    Reply,
    make_settings,
    provider,
    refused,
    serving,
)

API = "/api/v1"
STREAM = {"Accept": "text/event-stream"}
PRICE = {"input": 1.0, "output": 4.0}
Start = Callable[..., httpx.Client]


@pytest.fixture(scope="module")
def running() -> Iterator[list[ModelServer]]:
    with serving(2) as apps:
        yield apps


@pytest.fixture
def servers(running: list[ModelServer]) -> list[ModelServer]:
    return [app.reset() for app in running]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start the app on loopback with a narrator route of `primary` then `backup`."""
    stack: list[tuple[LoopbackServer, httpx.Client]] = []

    def start_(
        primary: ModelServer | str, backup: ModelServer | None, **values: Any
    ) -> httpx.Client:
        providers = {"main": provider(primary, "openai")}
        models = {"narrator": {"provider": "main", "model": "big", "price": PRICE}}
        chain = ["narrator"]
        if backup is not None:
            providers["spare"] = provider(backup, "ollama")
            models["spare"] = {"provider": "spare", "model": "small"}
            chain.append("spare")
        settings = make_settings(
            data_dir=tmp_path / f"data{len(stack)}",
            providers=providers,
            models=models,
            routes={"narrate": chain},
            router=FAST,
            **values,
        )
        server = LoopbackServer(settings, None)
        server.__enter__()
        client = httpx.Client(base_url=server.base_url, timeout=30)
        stack.append((server, client))
        return client

    yield start_
    for server, client in stack:
        client.close()
        server.__exit__()


def new_story(client: httpx.Client) -> str:
    response = client.post(f"{API}/sessions", json={"kind": "story", "title": "T"})
    assert response.status_code == 201, response.text
    session_id: str = response.json()["id"]
    return session_id


def say(client: httpx.Client, session_id: str, text: str = "I wait") -> httpx.Response:
    return client.post(f"{API}/sessions/{session_id}/turns", json={"text": text})


def stream(client: httpx.Client, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    url = f"{API}/sessions/{session_id}/turns"
    with client.stream("POST", url, json={"text": "I wait"}, headers=STREAM) as response:
        assert response.status_code == 201
        return [
            (sse.event, json.loads(sse.data))
            for sse in EventSource(response).iter_sse()
            if sse.data
        ]


# --- models and their health --------------------------------------------------------------


def test_models_lists_each_model_with_its_price_and_tasks(
    servers: list[ModelServer], start: Start
) -> None:
    client = start(servers[0], servers[1])
    body = client.get(f"{API}/models").json()
    narrator = next(m for m in body["models"] if m["alias"] == "narrator")
    assert narrator == {
        "alias": "narrator",
        "name": "main:big",
        "provider": "main",
        "kind": "openai",
        "model": "big",
        "type": "chat",
        "price": {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 4.0},
        "tasks": ["narrate", "extract", "safety", "summarize"],
    }
    assert body["routes"]["narrate"] == ["narrator", "spare"]
    assert body["routes"]["embed"] == []


def test_health_reports_each_provider(servers: list[ModelServer], start: Start) -> None:
    client = start(servers[0], servers[1])
    response = client.get(f"{API}/models/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["providers"]["main"] | {"latency_ms": 0} == {
        "status": "ok",
        "kind": "openai",
        "models": ["narrator"],
        "breaker": "closed",
        "latency_ms": 0,
        "detail": None,
    }
    assert body["providers"]["spare"]["status"] == "ok"


def test_a_provider_down_behind_a_working_fallback_leaves_the_server_ready(
    servers: list[ModelServer], start: Start
) -> None:
    client = start(refused("openai"), servers[1])
    health = client.get(f"{API}/models/health").json()
    assert health["providers"]["main"]["status"] == "error"
    assert "unreachable" in health["providers"]["main"]["detail"]
    ready = client.get("/readyz")
    assert ready.status_code == 200
    model = ready.json()["components"]["model"]
    assert model["status"] == "ok"
    assert model["providers"]["main"]["status"] == "error"
    assert model["providers"]["spare"]["status"] == "ok"


def test_with_no_working_model_for_a_task_the_server_is_not_ready(start: Start) -> None:
    client = start(refused("openai"), None)
    assert client.get(f"{API}/models/health").status_code == 503
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "no model can narrate" in ready.json()["components"]["model"]["detail"]


# --- what the player sees ---------------------------------------------------------------------


def test_a_turn_streams_only_the_fallbacks_words_when_the_primary_fails(
    servers: list[ModelServer], start: Start
) -> None:
    primary, backup = servers
    primary.then(Reply(status=500))
    backup.then(Reply(pieces=("The ", "spare ", "speaks.")))
    client = start(primary, backup)
    events = stream(client, new_story(client))
    names = [name for name, _ in events]
    assert (names[0], names[-1]) == ("start", "done")
    tokens = "".join(data["text"] for name, data in events if name == "token")
    assert tokens.strip() == "The spare speaks."
    assert events[-1][1]["turn"]["model"] == "spare:small"


def test_a_failure_mid_reply_ends_the_stream_with_an_error_and_keeps_nothing(
    servers: list[ModelServer], start: Start
) -> None:
    primary, backup = servers
    primary.then(Reply(disconnect_after=2))
    client = start(primary, backup)
    sid = new_story(client)
    events = stream(client, sid)
    assert events[-1][0] == "error"
    assert events[-1][1]["title"] == "Model error"
    assert client.get(f"{API}/sessions/{sid}/messages").json() == []
    response = say(client, sid)
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"


# --- usage and budgets ------------------------------------------------------------------------


def test_a_sessions_cost_shows_per_task_and_model(servers: list[ModelServer], start: Start) -> None:
    client = start(servers[0], servers[1])
    sid = new_story(client)
    for _ in range(2):
        assert say(client, sid).status_code == 201
    usage = client.get(f"{API}/sessions/{sid}/usage").json()
    cost = 2 * (12 * 1.0 + 34 * 4.0) / 1e6
    assert usage["session_id"] == sid
    assert usage["totals"] == {
        "calls": 2,
        "prompt_tokens": 24,
        "completion_tokens": 68,
        "total_tokens": 92,
        "cost_usd": pytest.approx(cost),
    }
    assert [(t["task"], t["calls"]) for t in usage["by_task"]] == [("narrate", 2)]
    assert [(m["model"], m["provider"]) for m in usage["by_model"]] == [("narrator", "main")]
    assert usage["budgets"] == []


def test_workspace_usage_totals_every_session(servers: list[ModelServer], start: Start) -> None:
    client = start(servers[0], servers[1])
    first, second = new_story(client), new_story(client)
    say(client, first)
    say(client, second)
    say(client, second)
    usage = client.get(f"{API}/usage").json()
    assert usage["workspace_id"] == "local"
    assert usage["totals"]["calls"] == 3
    assert [(s["session_id"], s["calls"]) for s in usage["by_session"]] == [(second, 2), (first, 1)]
    assert (
        client.get(f"{API}/usage", params={"since": "2999-01-01T00:00:00Z"}).json()["totals"][
            "calls"
        ]
        == 0
    )


def test_usage_of_an_unknown_session_is_404(servers: list[ModelServer], start: Start) -> None:
    client = start(servers[0], servers[1])
    assert client.get(f"{API}/sessions/nope/usage").status_code == 404


def test_a_spent_budget_answers_402_and_shows_in_usage(
    servers: list[ModelServer], start: Start
) -> None:
    client = start(servers[0], servers[1], budgets={"session_usd": 0.0001})
    sid = new_story(client)
    events = stream(client, sid)
    [budget] = [data for name, data in events if name == "budget"]
    assert budget["level"] == "exceeded"

    response = say(client, sid)
    assert response.status_code == 402
    problem = response.json()
    assert problem["title"] == "Budget exceeded"
    assert "session budget of $0.00" in problem["detail"]
    [status] = client.get(f"{API}/sessions/{sid}/usage").json()["budgets"]
    assert (status["scope"], status["level"], status["limit_usd"]) == (
        "session",
        "exceeded",
        0.0001,
    )


# --- secrets ------------------------------------------------------------------------------------


def test_an_api_key_never_appears_in_responses_or_logs(
    servers: list[ModelServer], start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    primary = servers[0]
    # Some providers quote the key they were sent back in their error.
    primary.then(Reply(status=401, message=f"Incorrect API key provided: {SECRET}"))
    caplog.set_level(logging.DEBUG)
    client = start(primary, None)
    sid = new_story(client)
    failed = say(client, sid)
    streamed = stream(client, sid)
    shown = [
        failed.text,
        json.dumps(streamed),
        client.get(f"{API}/models").text,
        client.get(f"{API}/models/health").text,
        client.get("/readyz").text,
        client.get(f"{API}/sessions/{sid}/events").text,
    ]
    assert failed.status_code == 502
    assert "rejected the credentials" in failed.json()["detail"]
    assert "[redacted]" in failed.json()["detail"]
    for text in shown:
        assert SECRET not in text
    assert SECRET not in caplog.text
    [request] = primary.seen("/v1/chat/completions")[:1]
    assert request.headers["authorization"] == f"Bearer {SECRET}"  # it was sent, only upstream


def test_the_reply_text_through_a_configured_router(
    servers: list[ModelServer], start: Start
) -> None:
    client = start(servers[0], servers[1])
    turn = say(client, new_story(client)).json()
    assert turn["reply"]["text"] == STORY_TEXT
    assert turn["model"] == "main:big"
