"""Terminal sessions: a shell on a pseudo-terminal whose lifecycle is an event stream.

The log (`terminal:<id>`) records what people did: opened, input, resized,
signalled, closed. The screen's bytes are not events: they go to a capped output
table owned by the terminals package, as numbered chunks of which only the last
`retention` bytes are kept, so that a `yes` flood cannot grow the store without
bound. Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

__all__ = [
    "CHUNK_BYTES",
    "SIGNALS",
    "Frame",
    "RetentionWindow",
    "TerminalEvent",
    "TerminalSignal",
    "split_chunks",
    "terminal_stream",
]

# A chunk of output: at most this many bytes, or what arrived within the flush delay.
CHUNK_BYTES = 4096


class TerminalEvent(StrEnum):
    OPENED = "terminal.opened"
    INPUT = "terminal.input"
    RESIZED = "terminal.resized"
    SIGNALLED = "terminal.signalled"
    CLOSED = "terminal.closed"


TerminalSignal = Literal["interrupt", "terminate", "hangup", "kill"]

# What each signal a client may send is called by the operating system.
SIGNALS: dict[str, str] = {
    "interrupt": "SIGINT",
    "terminate": "SIGTERM",
    "hangup": "SIGHUP",
    "kill": "SIGKILL",
}


def terminal_stream(terminal_id: str) -> str:
    return f"terminal:{terminal_id}"


@dataclass(frozen=True, slots=True)
class Frame:
    """What an attached client receives, in order: `output` (a chunk, numbered by
    `seq`), `truncated` (chunks before `seq` were dropped by the retention window),
    `exit` (the process ended; `data` holds its exit code or the reason)."""

    kind: Literal["output", "truncated", "exit"]
    seq: int
    data: str = ""
    exit_code: int | None = None


def split_chunks(data: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    """`data` in pieces of at most `size` bytes."""
    return [data[i : i + size] for i in range(0, len(data), size)]


class RetentionWindow:
    """The last `limit` bytes of a terminal's output, by chunk: `add` says from
    which chunk on the output is kept (the newest chunk is always kept whole)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: deque[tuple[int, int]] = deque()  # (seq, bytes)
        self.total = 0

    def add(self, seq: int, size: int) -> int:
        """Count chunk `seq` of `size` bytes in; the first chunk still kept."""
        self.chunks.append((seq, size))
        self.total += size
        while len(self.chunks) > 1 and self.total > self.limit:
            _, dropped = self.chunks.popleft()
            self.total -= dropped
        return self.chunks[0][0]
