"""What a call costs, and how many tokens it used when the provider did not say."""

from __future__ import annotations

import math
from collections.abc import Sequence

from taleweaver.domain.prompt import ChatMessage
from taleweaver.llm.config import Price
from taleweaver.llm.types import Usage

__all__ = ["cost_usd", "estimate_prompt_tokens", "estimate_tokens"]

# Roughly four characters a token in English text; per-message framing on top.
_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 4


def estimate_tokens(chars: int) -> int:
    return math.ceil(chars / _CHARS_PER_TOKEN) if chars > 0 else 0


def estimate_prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    return sum(estimate_tokens(len(m.content)) + _PER_MESSAGE for m in messages)


def cost_usd(price: Price, usage: Usage) -> float:
    return (usage.prompt_tokens * price.input + usage.completion_tokens * price.output) / 1e6
