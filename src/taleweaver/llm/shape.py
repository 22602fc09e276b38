"""What the narrator wants a reply to look like, carried beside the model call.

The call itself stays `stream(messages, max_tokens=...)` through the router and
every adapter; the shape rides along in a context variable that the narrate stage
sets around its stream. An adapter that can do something with it (the embedded
model constrains the choices with a grammar and writes for a small model; the
OpenAI-compatible and Ollama adapters put a choices-only call under a JSON
schema) reads it; every other adapter ignores it and gets exactly the prompt it
got before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from taleweaver.domain.prompt import ChatMessage

__all__ = ["Brief", "ReplyShape", "current_shape", "narrating", "shaped"]


@dataclass(frozen=True, slots=True)
class Brief:
    """A shorter system prompt for small models, in place of the kind's own.

    `replaces` is the kind's prompt as it opens the system message; the context
    pieces after it (lore, world, character) are kept.
    """

    replaces: str
    system: str
    # A short scene played before the real history: how a reply should look.
    example: tuple[ChatMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplyShape:
    # The reply ends with 2 to 4 numbered choices.
    choices: bool = False
    # This is the second try, after the first one repeated itself: repeat less.
    retry: bool = False
    brief: Brief | None = None
    # This call writes only the options for the reply before it, as the JSON of
    # `choice_schema`; adapters with structured output decode under that schema.
    choices_only: bool = False


_PLAIN = ReplyShape()
_SHAPE: ContextVar[ReplyShape | None] = ContextVar("reply_shape", default=None)


@contextmanager
def shaped(shape: ReplyShape) -> Iterator[None]:
    token = _SHAPE.set(shape)
    try:
        yield
    finally:
        _SHAPE.reset(token)


def current_shape() -> ReplyShape:
    return _SHAPE.get() or _PLAIN


def narrating() -> bool:
    """Whether this call writes the narrator's reply (summaries, extraction and the
    other tasks call the same models without a shape)."""
    return _SHAPE.get() is not None
