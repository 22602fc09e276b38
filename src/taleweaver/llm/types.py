"""The vocabulary adapters and the router share: tasks, stream items, usage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Task = Literal["narrate", "extract", "safety", "summarize", "embed"]
TASKS: tuple[Task, ...] = get_args(Task)

__all__ = [
    "TASKS",
    "Embeddings",
    "Finish",
    "ReasoningDelta",
    "StreamItem",
    "Task",
    "Usage",
]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of a thinking model's reasoning: not the reply, but proof of life."""

    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The provider said the reply is complete, and why (`stop`, `length`, `end_turn`...)."""

    reason: str
    usage: Usage | None = None


# A piece of the reply is a plain `str`: it is nearly every item of a stream, and
# the cheapest thing to pass along; everything else is a typed item.
StreamItem = str | ReasoningDelta | Finish


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]
    usage: Usage | None = None
