"""OpenTelemetry traces: a span per HTTP request (`api/spans.py`), per turn, per
pipeline stage and per provider call, with the GenAI semantic conventions' names.

Exported by OTLP over HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the SDK reads
the rest of the standard `OTEL_*` variables itself). When it is not, no SDK is
installed and the API's tracer does nothing: a span costs a function call.

Spans carry no text anyone wrote: their attributes are ids, names, counts and
outcomes. The one exception is a workspace's `trace_content` flag, which puts the
player's words and the reply on its turn spans (`record_content`); a sensitive
workspace cannot have it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from taleweaver.config import TelemetrySettings

__all__ = [
    "Span",
    "active",
    "configure_tracing",
    "current_trace_id",
    "fail",
    "record_content",
    "span",
    "start_span",
]

log = logging.getLogger(__name__)

TRACER = trace.get_tracer("taleweaver")

# GenAI semantic conventions (attribute names as the spec spells them).
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
MAX_TOKENS = "gen_ai.request.max_tokens"
CONVERSATION = "gen_ai.conversation.id"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"

_configured = False


def configure_tracing(service_name: str = "taleweaver") -> bool:
    """Install the SDK with an OTLP exporter when an endpoint is configured; True
    when traces are exported. Called once at server start; later calls do nothing."""
    global _configured
    if _configured:
        return True
    telemetry = TelemetrySettings.read()
    if not (telemetry.otel_exporter_otlp_endpoint or telemetry.otel_exporter_otlp_traces_endpoint):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = telemetry.otel_service_name or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True
    log.info("exporting traces by OTLP as %s", name)
    return True


def active() -> bool:
    """Whether spans go anywhere: an SDK is installed, by `configure_tracing` or by
    whoever runs the server (`opentelemetry-instrument`, a test's exporter)."""
    installed = trace.get_tracer_provider()
    return not isinstance(installed, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


@contextmanager
def span(
    name: str, attributes: dict[str, str | int | float | bool] | None = None
) -> Iterator[Span]:
    """A span around a block, current inside it; an exception marks it an error."""
    with TRACER.start_as_current_span(name, attributes=attributes) as current:
        yield current


def start_span(name: str, attributes: dict[str, str | int | float | bool]) -> Span:
    """A span that is not made current (for an async generator, which yields to
    its caller between tokens); the caller ends it."""
    return TRACER.start_span(name, attributes=attributes)


def fail(current: Span, error: BaseException) -> None:
    current.set_status(Status(StatusCode.ERROR, type(error).__name__))
    current.set_attribute("error.type", type(error).__name__)


def record_content(current: Span, said: str | None, reply: str) -> None:
    """The turn's text on its span, as the GenAI conventions' opt-in message
    attributes (only for a workspace that asked, see the module's docstring)."""
    if said:
        current.set_attribute(INPUT_MESSAGES, _messages("user", said))
    if reply:
        current.set_attribute(OUTPUT_MESSAGES, _messages("assistant", reply))


def _messages(role: str, text: str) -> str:
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


def current_trace_id() -> str | None:
    """The current span's trace id in hex, for log lines; None outside a trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x")
