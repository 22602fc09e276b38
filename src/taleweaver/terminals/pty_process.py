"""One command on a pseudo-terminal: spawned in a session of its own with the
terminal as its controlling tty, its output read without blocking the event loop
and handed out in coalesced pieces, its input written, resized and signalled."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import struct
import termios
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.terminals import CHUNK_BYTES, SIGNALS

__all__ = ["PtyProcess"]

# Output waits this long for more before it is handed out (unless a chunk is full).
FLUSH_SECONDS = 0.05
# Output read but not yet handed out: past this the terminal stops being read, so a
# flood is held back by the pseudo-terminal's own buffer (the writer blocks), not
# by our memory.
MAX_PENDING = 16 * CHUNK_BYTES
# How long a write of input waits for a program that is not reading it.
WRITE_SECONDS = 5.0
# How long a hang-up has to end the program before it is killed.
HANGUP_SECONDS = 2.0


def _take_terminal() -> None:  # pragma: no cover - runs in the child, between fork and exec
    """Make the pseudo-terminal (the child's stdin) its controlling terminal, so that
    job control, ^C and SIGWINCH work as in any terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _winsize(cols: int, rows: int) -> bytes:
    return struct.pack("HHHH", rows, cols, 0, 0)


class PtyProcess:
    def __init__(self, process: asyncio.subprocess.Process, master: int) -> None:
        self.process = process
        self.master = master
        self.pid = process.pid
        self._pending = bytearray()
        self._ready = asyncio.Event()  # output pending, or the end reached
        self._eof = False
        self._reading = False
        self._closed = False
        self._resume_reading()

    @classmethod
    async def spawn(
        cls, argv: Sequence[str], *, cwd: Path, env: dict[str, str], cols: int, rows: int
    ) -> PtyProcess:
        """Start `argv` in `cwd`; InvalidInput when it cannot be started."""
        master, slave = pty.openpty()
        try:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, _winsize(cols, rows))
            os.set_blocking(master, False)
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_take_terminal,
            )
        except OSError as exc:
            os.close(master)
            raise InvalidInput(f"the terminal's command {argv[0]!r} cannot start: {exc}") from exc
        finally:
            os.close(slave)  # the child holds its own copy
        return cls(process, master)

    # --- output -----------------------------------------------------------------------

    def _resume_reading(self) -> None:
        if not self._reading and not self._eof and not self._closed:
            asyncio.get_running_loop().add_reader(self.master, self._readable)
            self._reading = True

    def _pause_reading(self) -> None:
        if self._reading:
            asyncio.get_running_loop().remove_reader(self.master)
            self._reading = False

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: every program holding the terminal has let it go
            data = b""
        if not data:
            self._eof = True
            self._pause_reading()
        else:
            self._pending += data
            if len(self._pending) >= MAX_PENDING:
                self._pause_reading()
        self._ready.set()

    def end_output(self) -> None:
        """Stop reading: what is pending is handed out, then the output ends."""
        self._eof = True
        self._pause_reading()
        self._ready.set()

    async def output(self) -> AsyncGenerator[bytes, None]:
        """The output as it comes: each piece what arrived within FLUSH_SECONDS of
        its first byte, or as much as is pending once a chunk's worth is."""
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.wait()
            if not self._pending and self._eof:
                return
            deadline = loop.time() + FLUSH_SECONDS
            while len(self._pending) < CHUNK_BYTES and not self._eof:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), remaining)
            data = bytes(self._pending)
            self._pending.clear()
            self._ready.clear()
            if self._eof:
                self._ready.set()  # the next round ends the output
            self._resume_reading()
            if data:
                yield data

    # --- input, size, signals -----------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Send `data` as typed; Conflict when the program has not read its input for
        WRITE_SECONDS, or the terminal is gone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WRITE_SECONDS
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.master, view)
            except BlockingIOError:
                if loop.time() > deadline:
                    raise Conflict("the terminal's program is not reading its input") from None
                await asyncio.sleep(0.01)
                continue
            except OSError as exc:
                raise Conflict("the terminal has ended") from exc
            view = view[written:]

    def resize(self, cols: int, rows: int) -> None:
        """The terminal's new size; the kernel tells the program (SIGWINCH)."""
        try:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, _winsize(cols, rows))
        except OSError as exc:
            raise Conflict("the terminal has ended") from exc

    def send(self, name: str) -> None:
        """Send a signal by its name in SIGNALS: an interrupt to the program in the
        foreground (as ^C does), the others to it and to the command itself."""
        number = getattr(signal, SIGNALS[name])
        groups = [group] if (group := self._foreground()) is not None else []
        if name != "interrupt" or not groups:
            groups.append(self.pid)
        delivered = False
        for group in dict.fromkeys(groups):
            try:
                os.killpg(group, number)
                delivered = True
            except (ProcessLookupError, PermissionError):
                continue
        if not delivered:
            raise Conflict("the terminal's program has ended")

    # --- the end ------------------------------------------------------------------------

    async def hang_up(self) -> None:
        """As closing a terminal window does: SIGHUP to the session's programs, and
        SIGKILL to what is left after HANGUP_SECONDS."""
        self._kill_group(signal.SIGHUP)
        if (group := self._foreground()) is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGHUP)
        try:
            await asyncio.wait_for(self.process.wait(), HANGUP_SECONDS)
        except TimeoutError:
            self._kill_group(signal.SIGKILL)
            await self.process.wait()

    def kill_leftovers(self) -> None:
        """Programs the command left running on the terminal after it ended."""
        self._kill_group(signal.SIGKILL)

    def _foreground(self) -> int | None:
        """The terminal's foreground process group, if it has one of its own. (With
        none, the kernel may answer 0 or this server's own group: signalling that
        would signal the server.)"""
        if self._closed:
            return None
        try:
            group = os.tcgetpgrp(self.master)
        except OSError:
            return None
        return group if group > 1 and group != os.getpgrp() else None

    def _kill_group(self, number: int) -> None:
        if self.pid <= 1 or self.pid == os.getpgrp():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, number)

    async def wait(self) -> int:
        return await self.process.wait()

    def close(self) -> None:
        """Let go of the terminal (after the output has ended)."""
        if not self._closed:
            self._pause_reading()
            self._closed = True
            os.close(self.master)
