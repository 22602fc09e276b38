"""When to try a model again: exponential backoff with jitter, honouring Retry-After."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`attempts` tries per model in all (1: no retry). The n-th retry waits
    `base_delay * 2**(n-1)`, capped at `max_delay`, less up to `jitter` of it at
    random; a longer Retry-After wins, unless it is over `max_retry_after`, when
    waiting is worse than moving on to the next model."""

    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.5
    max_retry_after: float = 20.0
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before try `attempt + 1`, or None when it should not happen."""
        if attempt >= self.attempts:
            return None
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        backoff *= 1 - self.jitter * self.random()
        return max(backoff, retry_after or 0.0)
