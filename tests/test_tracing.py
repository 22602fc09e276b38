"""Traces of a turn, caught by an in-memory exporter: one span for the turn, one per
pipeline stage and one per model call, with the GenAI attribute names, and never
the words anyone wrote."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taleweaver.api.logs import JsonFormatter
from taleweaver.domain.errors import Conflict, ModelError
from taleweaver.domain.flags import TRACE_CONTENT
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.observability import tracing
from tests.conftest import META
from tests.test_api import API

WS = "local"
PLAYER_WORDS = "whisper the password moonlit-heron"
REPLY = "The heron lifts from the reeds. A gate creaks open."

_EXPORTER = InMemorySpanExporter()
_EXPORTING: list[bool] = []  # whether its processor is installed


@pytest.fixture(scope="module", autouse=True)
def provider() -> None:
    # The global provider can be set once per process; the tracer in taleweaver is a
    # proxy that follows it.
    # Once per process: a module fixture is set up again when the parallel workers
    # interleave this module with others, and a second processor exports each span twice.
    installed = trace.get_tracer_provider()
    if not isinstance(installed, TracerProvider):
        installed = TracerProvider()
        trace.set_tracer_provider(installed)
    if not _EXPORTING:
        installed.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        _EXPORTING.append(True)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


async def _turn(engine: Engine) -> str:
    session = await engine.sessions.create(WS, kind=SessionKind.STORY, title="Reeds", metadata=META)
    request = TurnRequest.build(action=None, text=PLAYER_WORDS, choice=None)
    await (await engine.turns.start(WS, session["id"], request, META)).wait()
    sid: str = session["id"]
    return sid


def _by_name(found: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in found:
        named.setdefault(span.name, []).append(span)
    return named


async def test_a_turn_is_one_trace_of_stages_and_model_calls(
    make_engine: object, spans: InMemorySpanExporter
) -> None:
    engine = await make_engine(ScriptedModel([REPLY]))  # type: ignore[operator]
    sid = await _turn(engine)
    named = _by_name(spans.get_finished_spans())
    (turn,) = named["turn"]
    assert turn.attributes is not None
    assert turn.attributes[tracing.CONVERSATION] == sid
    assert turn.attributes["taleweaver.turn.outcome"] == "completed"
    for stage in ("understand", "safety_in", "recall", "narrate", "safety_out"):
        (span,) = named[f"stage {stage}"]
        assert span.parent is not None and span.parent.span_id == turn.context.span_id
    (call,) = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    attributes = dict(call.attributes or {})
    assert attributes[tracing.OPERATION] == "chat"
    assert attributes[tracing.PROVIDER] and attributes[tracing.REQUEST_MODEL]
    assert attributes[tracing.CONVERSATION] == sid
    output_tokens = attributes[tracing.OUTPUT_TOKENS]
    assert isinstance(output_tokens, int) and output_tokens > 0
    assert isinstance(attributes[tracing.INPUT_TOKENS], int)
    narrate = named["stage narrate"][0]
    assert call.parent is not None and call.parent.span_id == narrate.context.span_id
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {turn.context.trace_id}


async def test_spans_never_carry_what_was_written(
    make_engine: object, spans: InMemorySpanExporter
) -> None:
    engine = await make_engine(ScriptedModel([REPLY]))  # type: ignore[operator]
    await _turn(engine)
    dumped = json.dumps([json.loads(s.to_json()) for s in spans.get_finished_spans()])
    assert "moonlit-heron" not in dumped and "heron lifts" not in dumped


async def test_a_workspace_that_opts_in_sees_the_turns_words_on_its_turn_span(
    make_engine: object, spans: InMemorySpanExporter
) -> None:
    engine = await make_engine(ScriptedModel([REPLY]))  # type: ignore[operator]
    await engine.flags.set(WS, TRACE_CONTENT, True, actor="admin-1")
    await _turn(engine)
    named = _by_name(spans.get_finished_spans())
    (turn,) = named["turn"]
    assert turn.attributes is not None
    said = json.loads(str(turn.attributes[tracing.INPUT_MESSAGES]))
    assert said == [{"role": "user", "parts": [{"type": "text", "content": PLAYER_WORDS}]}]
    assert "heron lifts" in str(turn.attributes[tracing.OUTPUT_MESSAGES])
    # Only the turn span: stages and model calls still carry no text.
    others = [json.loads(s.to_json()) for s in spans.get_finished_spans() if s.name != "turn"]
    assert "moonlit-heron" not in json.dumps(others)


async def test_a_sensitive_workspace_cannot_put_words_on_its_spans(
    make_engine: object, spans: InMemorySpanExporter
) -> None:
    engine = await make_engine(ScriptedModel([REPLY]))  # type: ignore[operator]
    # Set while the workspace was not sensitive; marked sensitive since: ignored.
    await engine.flags.set(WS, TRACE_CONTENT, True, actor="admin-1")
    await engine.accounts.update_workspace(WS, name=None, sensitive=True, actor="admin-1")
    await _turn(engine)
    dumped = json.dumps([json.loads(s.to_json()) for s in spans.get_finished_spans()])
    assert "moonlit-heron" not in dumped and "heron lifts" not in dumped
    with pytest.raises(Conflict, match="sensitive"):
        await engine.flags.set(WS, TRACE_CONTENT, True, actor="admin-1")
    off = await engine.flags.set(WS, TRACE_CONTENT, False, actor="admin-1")  # always allowed
    assert not off.enabled


async def test_a_failed_model_call_marks_its_span_and_the_turn(
    make_engine: object, spans: InMemorySpanExporter
) -> None:
    engine = await make_engine(ScriptedModel(["Half a"], fail_after=0))  # type: ignore[operator]
    with pytest.raises(ModelError):
        await _turn(engine)
    named = _by_name(spans.get_finished_spans())
    (call,) = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
    assert call.status.status_code is trace.StatusCode.ERROR
    assert named["turn"][0].status.status_code is trace.StatusCode.ERROR
    assert named["turn"][0].attributes is not None
    assert named["turn"][0].attributes["taleweaver.turn.outcome"] == "failed"


def test_log_lines_inside_a_span_carry_its_trace_id(spans: InMemorySpanExporter) -> None:
    record = logging.makeLogRecord({"msg": "hello", "levelname": "INFO", "name": "t"})
    with tracing.span("outer") as current:
        line = json.loads(JsonFormatter().format(record))
    assert line["trace_id"] == format(current.get_span_context().trace_id, "032x")
    assert "trace_id" not in json.loads(JsonFormatter().format(record))


# --- a server span per HTTP request ----------------------------------------------------

T = TypeVar("T")
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def http_log() -> Iterator[io.StringIO]:
    """The request log's lines as the server writes them (formatted where they are
    written, inside the request's context)."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("taleweaver.http")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def _eventually(find: Callable[[], T | None]) -> T:
    """The server ends the span and logs the request just after the client has the
    response: wait for them."""
    deadline = time.monotonic() + 10
    while (found := find()) is None:
        assert time.monotonic() < deadline, "never written"
        time.sleep(0.02)
    return found


def _server_span(spans: InMemorySpanExporter, name: str) -> ReadableSpan | None:
    server = trace.SpanKind.SERVER
    found = [s for s in spans.get_finished_spans() if s.kind is server and s.name == name]
    return found[0] if found else None


def _log_line(lines: io.StringIO, method: str, path: str) -> dict[str, object] | None:
    for raw in lines.getvalue().splitlines():
        line: dict[str, object] = json.loads(raw)
        if line.get("method") == method and line.get("path") == path:
            return line
    return None


def test_a_request_continues_the_callers_trace_and_its_log_line_carries_it(
    serve: Callable[..., httpx.Client], spans: InMemorySpanExporter, http_log: io.StringIO
) -> None:
    client = serve(model=ScriptedModel([REPLY]))
    traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    created = client.post(
        f"{API}/sessions", json={"kind": "story"}, headers={"traceparent": traceparent}
    )
    assert created.status_code == 201, created.text
    span = _eventually(lambda: _server_span(spans, "POST /api/v1/sessions"))
    assert format(span.context.trace_id, "032x") == CALLER_TRACE
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER_SPAN
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/api/v1/sessions"
    assert span.attributes["http.response.status_code"] == 201
    line = _eventually(lambda: _log_line(http_log, "POST", "/api/v1/sessions"))
    assert line["trace_id"] == CALLER_TRACE
    # A turn the request starts is part of the same trace.
    turns = f"{API}/sessions/{created.json()['id']}/turns"
    said = client.post(turns, json={"text": "I wade in"}, headers={"traceparent": traceparent})
    assert said.status_code == 201, said.text
    turn = _eventually(
        lambda: next(iter(_by_name(spans.get_finished_spans()).get("turn", [])), None)
    )
    assert format(turn.context.trace_id, "032x") == CALLER_TRACE


def test_a_request_without_a_caller_trace_starts_one_its_log_line_carries(
    serve: Callable[..., httpx.Client], spans: InMemorySpanExporter, http_log: io.StringIO
) -> None:
    client = serve(model=ScriptedModel([REPLY]))
    assert client.get(f"{API}/sessions").status_code == 200
    span = _eventually(lambda: _server_span(spans, "GET /api/v1/sessions"))
    assert span.parent is None
    line = _eventually(lambda: _log_line(http_log, "GET", "/api/v1/sessions"))
    assert line["trace_id"] == format(span.context.trace_id, "032x")
    named = _by_name(spans.get_finished_spans())
    assert len(named[span.name]) == 1  # FastAPI's own request span is off: one a request


def test_a_request_span_leaves_out_the_query_people_typed(
    serve: Callable[..., httpx.Client], spans: InMemorySpanExporter
) -> None:
    client = serve(model=ScriptedModel([REPLY]))
    found = client.get(f"{API}/characters", params={"name": "moonlit-heron"})
    assert found.status_code == 200, found.text
    _eventually(lambda: _server_span(spans, "GET /api/v1/characters"))
    dumped = json.dumps([json.loads(s.to_json()) for s in spans.get_finished_spans()])
    assert "moonlit-heron" not in dumped


def test_without_tracing_no_request_is_wrapped_in_a_span(tmp_path: Path) -> None:
    """No exporter configured and no SDK installed: the app has no span middleware."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = (
        "from taleweaver.api.app import create_app\n"
        "from taleweaver.config import Settings\n"
        f"app = create_app(Settings(data_dir={str(tmp_path)!r}, model='scripted'))\n"
        "print(' '.join(m.cls.__name__ for m in app.user_middleware))\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, timeout=60, capture_output=True
    ).stdout.decode()
    assert "RequestContext" in shown and "ServerSpans" not in shown
