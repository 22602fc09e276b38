"""Counting tokens as the narrator's model counts them, for budgets measured in tokens.

A backend that knows its tokenizer offers `count_tokens` (the embedded model does,
once loaded); any other answers with the estimate (about four characters a
token). Counting never loads a model or calls a provider.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from taleweaver.domain.lorebook import TokenCounter, estimate_tokens
from taleweaver.llm.base import ChatModel
from taleweaver.llm.router import BoundModel, ModelRouter


@runtime_checkable
class CountsTokens(Protocol):
    def count_tokens(self, text: str) -> int | None:
        """`text`'s length in this model's tokens; None when it cannot tell now."""
        ...


def narrator(model: ChatModel) -> object:
    """The backend that narrates first for `model` (a router: its narrate route's)."""
    if isinstance(model, ModelRouter):
        chain = model.chain("narrate")
        return chain[0].chat if chain else None
    if isinstance(model, BoundModel):
        return model.chain[0].chat if model.chain else None
    return model


def count_with(model: object, text: str) -> int:
    # A model driven through an adapter (a text-only model as a backend) counts itself.
    inner = getattr(model, "model", None)
    counting = model if isinstance(model, CountsTokens) else inner
    if isinstance(counting, CountsTokens):
        counted = counting.count_tokens(text)
        if counted is not None:
            return counted
    return estimate_tokens(text)


def token_counter(model: Callable[[], ChatModel]) -> TokenCounter:
    """A counter that asks the narrator's model in use when it counts (the engine's
    model may be replaced after wiring), falling back to the estimate."""
    return lambda text: count_with(narrator(model()), text)
