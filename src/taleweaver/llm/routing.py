"""What the router routes over: providers, the models on them, and who a call is for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from taleweaver.llm.base import ChatBackend, Embedder
from taleweaver.llm.breaker import CircuitBreaker
from taleweaver.llm.config import Price
from taleweaver.llm.deadline import Deadlines
from taleweaver.llm.retry import RetryPolicy

__all__ = ["CallScope", "Completion", "Provider", "RoutedModel"]


@dataclass(frozen=True, slots=True)
class CallScope:
    """Who a call is for (for accounting and budgets) and their own model choices."""

    workspace_id: str = "local"
    session_id: str | None = None
    turn_id: str | None = None
    # task -> model alias, chosen by the session or its character.
    overrides: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Provider:
    """One configured backend: its health check, its breaker and its policies."""

    name: str
    kind: str
    check: Callable[[], Awaitable[object]]
    close: Callable[[], Awaitable[None]]
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    deadlines: Deadlines = field(default_factory=Deadlines)


@dataclass(slots=True)
class RoutedModel:
    """A configured model: its alias, where it runs, its adapters and its price."""

    alias: str
    name: str
    provider: Provider
    model: str
    chat: ChatBackend | None = None
    embedder: Embedder | None = None
    price: Price = field(default_factory=Price)
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
