"""What the router tells the operator about each provider call: its span (GenAI
attribute names) and its counts (calls, tokens, cost)."""

from __future__ import annotations

from taleweaver.llm.ledger import Outcome
from taleweaver.llm.pricing import cost_usd
from taleweaver.llm.routing import CallScope, RoutedModel
from taleweaver.llm.types import Usage
from taleweaver.observability import observe_model_call, tracing
from taleweaver.observability.tracing import Span


def call_span(
    routed: RoutedModel, task: str, scope: CallScope, operation: str, max_tokens: int
) -> Span:
    """The span of one call, started now; `end_call` ends it."""
    attributes: dict[str, str | int | float | bool] = {
        tracing.OPERATION: operation,
        tracing.PROVIDER: routed.provider.kind,
        tracing.REQUEST_MODEL: routed.model or routed.alias,
        tracing.MAX_TOKENS: max_tokens,
        "taleweaver.task": task,
        "taleweaver.model.alias": routed.alias,
    }
    if scope.session_id:
        attributes[tracing.CONVERSATION] = scope.session_id
    return tracing.start_span(f"{operation} {routed.model or routed.alias}", attributes)


def end_call(call: Span, usage: Usage | None) -> None:
    if usage is not None:
        call.set_attribute(tracing.INPUT_TOKENS, usage.prompt_tokens)
        call.set_attribute(tracing.OUTPUT_TOKENS, usage.completion_tokens)
    call.end()


def observe_call(routed: RoutedModel, task: str, outcome: Outcome, usage: Usage | None) -> None:
    observe_model_call(
        routed.provider.name,
        routed.alias,
        task,
        outcome,
        input_tokens=usage.prompt_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
        cost_usd=cost_usd(routed.price, usage) if usage else 0.0,
    )
