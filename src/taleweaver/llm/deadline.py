"""First-token, idle and total deadlines over one stream, on a single timer.

A per-item `asyncio.timeout` would cost a timer per token; here one timer looks
at when the stream last started waiting and either fires or sleeps until the
next moment it could. Only time spent waiting on the model counts: a consumer
that holds a token for a while does not make the model look stalled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from taleweaver.domain.errors import ModelError, ModelUnavailable
from taleweaver.llm.types import StreamItem

__all__ = ["Deadlines", "Watch", "close", "guarded"]


@dataclass(frozen=True, slots=True)
class Deadlines:
    first_token: float = 60.0
    idle: float = 60.0
    total: float = 600.0


class Watch:
    """Watches one stream: `await watch.next(items)` for each item, `stop()` at the end.

    When a deadline passes while the stream waits on the model, the waiting task
    is cancelled and `next` raises `ModelUnavailable` (nothing came at all) or
    `ModelError` (a stall mid-reply, or the whole reply too slow) instead. The
    router inlines `next` in its loop (a call a token is worth sparing), so its
    parts are public: `waiting` is when the wait began (None when not waiting),
    `got_first` whether an item came, and `raise_if_fired` turns the timer's
    cancellation into the deadline's error.
    """

    __slots__ = (
        "_cancelling",
        "_deadlines",
        "_fired",
        "_handle",
        "_loop",
        "_name",
        "_started",
        "_task",
        "clock",
        "got_first",
        "waiting",
    )

    def __init__(self, deadlines: Deadlines, name: str) -> None:
        self._deadlines = deadlines
        self._name = name
        self._loop = asyncio.get_running_loop()
        self.clock = self._loop.time
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._cancelling = task.cancelling()
        self._started = self.clock()
        self.waiting: float | None = None
        self.got_first = False
        self._fired: ModelError | None = None
        first = self._started + min(deadlines.first_token, deadlines.total)
        self._handle: asyncio.TimerHandle | None = self._loop.call_at(first, self._check)

    async def next(self, items: AsyncIterator[StreamItem]) -> StreamItem | None:
        """The next item, or None at the end of the stream."""
        self.waiting = self.clock()
        try:
            item = await items.__anext__()
        except StopAsyncIteration:
            return None
        except asyncio.CancelledError as exc:
            self.raise_if_fired(exc)
            raise
        finally:
            self.waiting = None
        self.got_first = True
        return item

    def raise_if_fired(self, cancelled: asyncio.CancelledError) -> None:
        """Raise the deadline's error when it was this watch that cancelled the wait."""
        if self._fired is not None and self._task.uncancel() <= self._cancelling:
            raise self._fired from cancelled

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        now = self.clock()
        end = self._started + self._deadlines.total
        if self.waiting is None:  # the consumer is busy, not the model: look again later
            step = min(self._deadlines.idle, self._deadlines.first_token)
            later = now + step if end <= now else min(now + step, end)
            self._handle = self._loop.call_at(later, self._check)
            return
        limit = self._deadlines.idle if self.got_first else self._deadlines.first_token
        due = min(self.waiting + limit, end)
        if now < due:
            self._handle = self._loop.call_at(due, self._check)
            return
        self._handle = None
        self._fired = self._error(total=due == end)
        self._task.cancel()

    def _error(self, *, total: bool) -> ModelError:
        d = self._deadlines
        if total:
            return ModelError(f"{self._name} did not finish within {d.total:g} s")
        if not self.got_first:
            return ModelUnavailable(f"{self._name} sent nothing for {d.first_token:g} s")
        return ModelError(f"{self._name} stalled mid-reply: nothing for {d.idle:g} s")


async def guarded(
    items: AsyncIterator[StreamItem], deadlines: Deadlines, name: str
) -> AsyncGenerator[StreamItem, None]:
    """`items` under `deadlines`; `items` is closed at the end, closing its connection."""
    watch = Watch(deadlines, name)
    try:
        while (item := await watch.next(items)) is not None:
            yield item
    finally:
        watch.stop()
        await close(items)


async def close(items: AsyncIterator[StreamItem]) -> None:
    """Close a stream that may not have run to its end (an async generator's `aclose`)."""
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        await aclose()
