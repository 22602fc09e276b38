"""One model tried on its own, with no fallback: what `taleweaver models test` runs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from taleweaver.domain.errors import ModelError
from taleweaver.domain.prompt import ChatMessage
from taleweaver.llm.base import ReplyText
from taleweaver.llm.deadline import guarded
from taleweaver.llm.routing import RoutedModel

__all__ = ["PROBE", "Trial", "try_model"]

PROBE = [
    ChatMessage("system", "You are a health check. Answer in one short sentence."),
    ChatMessage("user", "Say that you are ready."),
]


@dataclass(frozen=True, slots=True)
class Trial:
    alias: str
    name: str
    ok: bool
    detail: str
    first_token_ms: float | None = None
    elapsed_ms: float = 0.0
    pieces: int = 0


async def try_model(
    routed: RoutedModel, messages: Sequence[ChatMessage] = PROBE, *, max_tokens: int = 32
) -> Trial:
    """Generate a short reply (or embed a word) and time it; never raises a ModelError."""
    started = time.perf_counter()

    def ms() -> float:
        return round((time.perf_counter() - started) * 1000, 1)

    try:
        if routed.chat is None:
            assert routed.embedder is not None
            result = await routed.embedder.embed(["ready"])
            dims = len(result.vectors[0]) if result.vectors else 0
            return Trial(routed.alias, routed.name, True, f"{dims} dimensions", None, ms(), 1)
        reply = ReplyText()
        first: float | None = None
        pieces: list[str] = []
        items = guarded(
            routed.chat.generate(messages, max_tokens=max_tokens),
            routed.provider.deadlines,
            routed.name,
        )
        async for item in items:
            text = reply.take(item)
            if first is None:
                first = ms()
            if text is not None:
                pieces.append(text)
        rest = reply.leftover()
        if rest is not None:
            pieces.append(rest)
        text = "".join(pieces).strip()
        if reply.finish is None or not text:
            raise ModelError(f"{routed.name} sent no reply")
        return Trial(routed.alias, routed.name, True, text, first, ms(), len(pieces))
    except ModelError as exc:
        return Trial(routed.alias, routed.name, False, exc.detail, None, ms())
