"""The one seam between the pipeline and any model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from taleweaver.domain.prompt import ChatMessage


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
