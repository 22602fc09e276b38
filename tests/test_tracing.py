"""Traces of a turn, caught by an in-memory exporter: one span for the turn, one per
pipeline stage and one per model call, with the GenAI attribute names, and never
the words anyone wrote."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taleweaver.api.logs import JsonFormatter
from taleweaver.domain.errors import ModelError
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.observability import tracing
from tests.conftest import META

WS = "local"
PLAYER_WORDS = "whisper the password moonlit-heron"
REPLY = "The heron lifts from the reeds. A gate creaks open."

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider() -> None:
    # The global provider can be set once per process; the tracer in taleweaver is a
    # proxy that follows it.
    installed = trace.get_tracer_provider()
    if not isinstance(installed, TracerProvider):
        installed = TracerProvider()
        trace.set_tracer_provider(installed)
    installed.add_span_processor(SimpleSpanProcessor(_EXPORTER))


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
