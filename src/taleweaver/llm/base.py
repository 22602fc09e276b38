"""The seams between the pipeline, the router and any model.

`ChatModel` is what the pipeline streams text from. `ChatBackend` is what the
router drives: the same model, but yielding typed items (text, reasoning, the
finish with its usage) so that fallbacks, timeouts and accounting can see them.
Every adapter is both; a model that only streams text is wrapped by `as_backend`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from taleweaver.domain.prompt import ChatMessage
from taleweaver.llm.types import Embeddings, Finish, ReasoningDelta, StreamItem

__all__ = [
    "ChatBackend",
    "ChatModel",
    "Embedder",
    "Prefillable",
    "ReplyText",
    "Warmable",
    "WritesChoices",
    "as_backend",
    "text_of",
]


class ChatModel(Protocol):
    """A chat model that streams text.

    Cancelling the task that iterates `stream` must stop the generation upstream
    (close the connection, stop the local sampler); errors are raised as
    `ModelError` / `ModelUnavailable`, never as a driver's own exception.
    """

    name: str

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int) -> AsyncIterator[str]:
        """Yield the reply in pieces as they are generated."""
        ...

    async def check(self) -> None:
        """Raise `ModelUnavailable` unless the model can take a request now."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ChatBackend(Protocol):
    """A chat model as the router drives it.

    `generate` yields text and reasoning deltas and ends with exactly one `Finish`;
    a stream that ends without one raises `ModelError`.
    """

    name: str

    def generate(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[StreamItem]: ...

    async def check(self) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Warmable(Protocol):
    """A model that pays a load before its first reply (a local model) and can pay it
    ahead, at start-up; its `check` raises `ModelLoading` while it loads."""

    async def warm(self) -> None: ...


@runtime_checkable
class Prefillable(Protocol):
    """A model that can evaluate the opening of a prompt before the call that sends
    it (a local model keeping its cache), so that call pays only for what follows."""

    async def prefill(self, messages: Sequence[ChatMessage]) -> None:
        """Evaluate `messages`, the prompt as it will stand before the player's words;
        return early, doing nothing, where that is not worth it now."""
        ...


@runtime_checkable
class WritesChoices(Protocol):
    """A model whose server decodes under a JSON schema (structured output): asked
    for a reply's options alone (`ReplyShape.choices_only`), it sends 2 to 4 of them
    in `choice_schema`'s shape. False where its provider was told not to ask."""

    structured_choices: bool


class Embedder(Protocol):
    name: str

    async def embed(self, texts: Sequence[str]) -> Embeddings: ...


class ReplyText:
    """Picks the reply out of stream items.

    Reasoning is held back; it becomes the reply only when the model finished
    without sending any content (thinking models served with a template that puts
    the whole answer in the reasoning field).
    """

    __slots__ = ("finish", "reasoning", "saw_text", "text_chars")

    def __init__(self) -> None:
        self.saw_text = False
        self.text_chars = 0
        self.reasoning: list[str] = []
        self.finish: Finish | None = None

    def take(self, item: StreamItem) -> str | None:
        if type(item) is str:
            if item:
                self.saw_text = True
                self.text_chars += len(item)
                return item
            return None
        if type(item) is ReasoningDelta:
            if not self.saw_text:
                self.reasoning.append(item.text)
            return None
        assert isinstance(item, Finish)
        self.finish = item
        return None

    def leftover(self) -> str | None:
        """The reasoning, when it has to stand in for a reply that never came."""
        if self.saw_text:
            return None
        text = "".join(self.reasoning).strip()
        if text:
            self.saw_text = True
            self.text_chars += len(text)
            return text
        return None


async def text_of(items: AsyncIterator[StreamItem]) -> AsyncIterator[str]:
    """An adapter's `stream`: the reply's text from its `generate`."""
    reply = ReplyText()
    async for item in items:
        text = reply.take(item)
        if text is not None:
            yield text
    rest = reply.leftover()
    if rest is not None:
        yield rest


class _TextOnly:
    """A model that only streams text, driven as a backend; it has no usage to report."""

    def __init__(self, model: ChatModel) -> None:
        self.model = model
        self.name = model.name

    async def generate(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[StreamItem]:
        async for piece in self.model.stream(messages, max_tokens=max_tokens):
            yield piece
        yield Finish("stop")

    async def check(self) -> None:
        await self.model.check()

    async def aclose(self) -> None:
        await self.model.aclose()


def as_backend(model: ChatModel) -> ChatBackend:
    if isinstance(model, ChatBackend):
        return model
    return _TextOnly(model)
