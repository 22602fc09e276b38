"""The play prompt's line reader: ← and → on an empty line act at once.

`input()` only hands over whole lines, so an arrow would need Enter after it. On a
terminal this reads keys one at a time (cbreak mode, which leaves Ctrl-C to raise
KeyboardInterrupt as usual) and edits the line itself: typing, Backspace, Ctrl-U to
clear, Enter to send, Ctrl-D on an empty line to leave. Anywhere else (a pipe, a
file, Windows) it is `input()`.
"""

from __future__ import annotations

import codecs
import os
import sys
from dataclasses import dataclass

__all__ = ["Arrow", "read_line"]

_STEPS = {"C": 1, "D": -1}  # the final byte of → and ← (ESC [ or ESC O before it)
_ERASE = ("\x7f", "\b")
_CLEAR = "\x15"  # Ctrl-U
_END = "\x04"  # Ctrl-D


@dataclass(frozen=True)
class Arrow:
    """← (-1) or → (+1) pressed on an empty line."""

    step: int


def read_line(prompt: str) -> str | Arrow:
    """A line typed at `prompt`, or the arrow pressed on an empty one.
    Raises EOFError on Ctrl-D (or end of input) and KeyboardInterrupt on Ctrl-C."""
    if os.name != "posix" or not sys.stdin.isatty():
        return input(prompt)
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    _write(prompt)
    try:
        tty.setcbreak(fd)
        return _edit(fd)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _edit(fd: int) -> str | Arrow:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    line: list[str] = []
    while True:
        raw = os.read(fd, 1)
        if not raw:
            raise EOFError
        key = decoder.decode(raw)
        if not key:
            continue  # the middle of a multi-byte character
        if key in ("\r", "\n"):
            _write("\n")
            return "".join(line)
        if key == _END and not line:
            raise EOFError
        if key in _ERASE:
            if line:
                line.pop()
                _write("\b \b")
        elif key == _CLEAR:
            _write("\b \b" * len(line))
            line.clear()
        elif key == "\x1b":
            final = _escape(fd)
            if final in _STEPS and not line:
                _write("\n")
                return Arrow(_STEPS[final])
        elif key.isprintable():
            line.append(key)
            _write(key)


def _escape(fd: int) -> str:
    """The final byte of an escape sequence whose ESC was just read."""
    kind = os.read(fd, 1)
    if kind not in (b"[", b"O"):
        return ""
    while True:
        byte = os.read(fd, 1)
        if not byte or 0x40 <= byte[0] <= 0x7E:  # a final byte ends the sequence
            return byte.decode("ascii", errors="replace")


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
