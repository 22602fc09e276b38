"""A deterministic model for tests, benchmarks and demos: a real provider, driven by a script."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence

from taleweaver.domain.errors import ModelError
from taleweaver.domain.prompt import ChatMessage

Script = Callable[[Sequence[ChatMessage]], str]

_TOKEN = re.compile(r"\S+\s*|\s+")


def story_script(messages: Sequence[ChatMessage]) -> str:
    """A small story that answers whatever the player did, with choices."""
    player = next((m.content for m in reversed(messages) if m.role == "user"), "")
    turn = sum(1 for m in messages if m.role == "assistant") + 1
    action = re.sub(r"^i\s+", "", player.strip().rstrip("."), flags=re.IGNORECASE) or "wait"
    action = action[0].lower() + action[1:]
    return (
        f"Scene {turn}. You {action}. The lantern light wavers over wet stone "
        "as the corridor bends toward a sound like distant water.\n\n"
        "Choices:\n"
        "1. Follow the sound of water\n"
        "2. Examine the carvings on the wall\n"
        "3. Call out into the dark\n"
    )


class ScriptedModel:
    """Replies from a list (in turn, repeating the last) or from a function.

    `token_delay` paces the stream; `fail_after` raises `ModelError` after that
    many tokens (0: before the first), to exercise failure paths.
    """

    def __init__(
        self,
        replies: Sequence[str] | Script | None = None,
        *,
        token_delay: float = 0.0,
        fail_after: int | None = None,
        name: str = "scripted",
    ) -> None:
        self.name = name
        self.token_delay = token_delay
        self.fail_after = fail_after
        self.calls: list[list[ChatMessage]] = []
        self.tokens_sent = 0
        self._script: Script
        if replies is None:
            self._script = story_script
        elif callable(replies):
            self._script = replies
        else:
            queue = list(replies)
            if not queue:
                raise ValueError("a scripted model needs at least one reply")

            def from_list(_: Sequence[ChatMessage]) -> str:
                return queue.pop(0) if len(queue) > 1 else queue[0]

            self._script = from_list

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int
    ) -> AsyncIterator[str]:
        self.calls.append(list(messages))
        tokens = _TOKEN.findall(self._script(messages))[:max_tokens]
        for index, token in enumerate(tokens):
            if self.fail_after is not None and index >= self.fail_after:
                raise ModelError("scripted failure")
            if self.token_delay:
                await asyncio.sleep(self.token_delay)
            self.tokens_sent += 1
            yield token
        if self.fail_after is not None and self.fail_after >= len(tokens):
            raise ModelError("scripted failure")

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
