"""A circuit breaker per provider: stop calling one that keeps failing, probe it later.

closed ── `failures` within `window` s ──▶ open ── `cooldown` s ──▶ half-open
half-open ── a probe succeeds ──▶ closed;  a probe fails ──▶ open again
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Every call the breaker allows must end in `success`, `failure` or `release`
    (the call ended in a way that says nothing about the provider's health)."""

    def __init__(
        self,
        *,
        failures: int = 5,
        window: float = 60.0,
        cooldown: float = 30.0,
        half_open_probes: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.window = window
        self.cooldown = cooldown
        self.probes = half_open_probes
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._recent: deque[float] = deque()
        self._opened_at = 0.0
        self._in_flight = 0

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown:
            self._state = BreakerState.HALF_OPEN
            self._in_flight = 0
        return self._state

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown - self._clock())

    def allow(self) -> bool:
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._in_flight < self.probes:
            self._in_flight += 1
            return True
        return False

    def success(self) -> None:
        # Closed, successes do not forgive failures: `failures` within `window` trip
        # the breaker even when calls in between went well.
        if self._state is BreakerState.HALF_OPEN:
            self._state = BreakerState.CLOSED
            self._in_flight = 0
            self._recent.clear()

    def failure(self) -> None:
        now = self._clock()
        if self._state is BreakerState.HALF_OPEN:
            self._trip(now)
            return
        if self._state is BreakerState.OPEN:
            return
        self._recent.append(now)
        while self._recent and now - self._recent[0] > self.window:
            self._recent.popleft()
        if len(self._recent) >= self.threshold:
            self._trip(now)

    def release(self) -> None:
        if self._state is BreakerState.HALF_OPEN and self._in_flight:
            self._in_flight -= 1

    def _trip(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._recent.clear()
        self._in_flight = 0
