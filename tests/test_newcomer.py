"""The newcomer's first hour, end to end, as a user runs it: real processes, a real
pty, the bundled model (nothing configured), real files.

A story with streamed prose and numbered choices; a companion from a PNG card,
greeting first; a lorebook attached to that chat; the chat exported and imported
again; a backup; restore refused while the server runs, and done once it stops.
Replies are capped at a few tokens: the model's prose is not what is checked here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pexpect
import pytest

from tests.conftest import free_port
from tests.test_cli import PROMPT, RESUME, SCRIPT, _as_from_a_shell, finish, stop_serving

pytestmark = pytest.mark.embedded_model

DATA = Path(__file__).parent / "data"
# A V2 card (PNG, `chara` chunk) of our own, built with tests/data/cards/factory.py.
CARD = DATA / "cards" / "wren.png"
LOREBOOK = DATA / "lorebooks" / "river_crossing.json"
GREETING = "Evening, Mira. I'm Wren. Mind the rope, we leave at the bell."
# The first two numbered choices, each with some text.
CHOICES = re.compile(r"\r\n  1\. \S[^\r\n]*\r\n  2\. \S")
# The bundled model on 2 busy cores: loading it and a first reply take seconds.
SLOW = 90


def newcomer_env(data_dir: Path) -> dict[str, str]:
    """A user's environment: no model configured, short replies to keep this quick."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALEWEAVER_")}
    env.update(
        TALEWEAVER_DATA_DIR=str(data_dir),
        TALEWEAVER_MAX_REPLY_TOKENS="24",
        PYTHONUNBUFFERED="1",
    )
    return env


class Newcomer:
    """Runs `taleweaver` commands in a working directory of their own."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = newcomer_env(home / "data")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=SLOW,
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, f"taleweaver {' '.join(args)}: {result.stderr}"
        return result.stdout

    def play(self, *args: str) -> Any:
        """`taleweaver play` on a pty, at its first prompt; what it printed first is
        in the child's `opening`, and every piece read from the pty in `pieces`."""
        child = pexpect.spawn(
            str(SCRIPT),
            ["play", *args],
            env=self.env,
            cwd=str(self.home),
            encoding="utf-8",
            timeout=SLOW,
            dimensions=(40, 200),
            preexec_fn=_as_from_a_shell,
        )
        child.pieces = []
        child.logfile_read = Pieces(child.pieces)
        child.expect_exact("Ctrl-D leaves.")
        child.opening = child.before
        child.expect(PROMPT)
        return child

    def serve(self) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        process = subprocess.Popen(
            [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=self.env,
            cwd=self.home,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SLOW
        with httpx.Client(base_url=base_url) as client:
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    if client.get("/healthz").status_code == 200:
                        return process, base_url
                except httpx.TransportError:
                    time.sleep(0.1)
        stop_serving(process)
        raise AssertionError(f"`taleweaver serve` did not come up (exit {process.returncode})")


class Pieces:
    """A pexpect log that keeps each read from the pty apart: streamed text comes
    in several pieces, a reply printed whole in one."""

    def __init__(self, into: list[str]) -> None:
        self.into = into

    def write(self, text: str) -> None:
        self.into.append(text)

    def flush(self) -> None:
        return None


def turn(child: Any, line: str) -> str:
    """Send `line`; what came back before the choices, which must follow it."""
    child.pieces.clear()
    child.sendline(line)
    child.expect(CHOICES)
    reply = str(child.before)
    child.expect(PROMPT)
    return reply


def quit_play(child: Any) -> str:
    child.sendline("/quit")
    child.expect(RESUME)
    session_id = str(child.match.group(1))
    assert finish(child) == 0
    return session_id


def chat_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_newcomers_first_hour_on_the_bundled_model(tmp_path: Path) -> None:
    user = Newcomer(tmp_path)

    # A story: the reply streams in, then numbered choices; a number picks one.
    story = user.play("--title", "The Night Crossing")
    first = turn(story, "I light a lantern and look around")
    assert re.search(r"\w{3}", first.removeprefix("I light a lantern and look around"))
    # Read from the pty: the echoed line, then the reply in pieces up to the choices.
    upto = next(i for i, piece in enumerate(story.pieces) if "  1. " in piece)
    assert len([p for p in story.pieces[: upto + 1] if p.strip()]) >= 3, "not streamed"
    turn(story, "1")
    story_id = quit_play(story)

    # A companion from a real card file, greeting first, then a reply.
    imported = user.ok("import", str(CARD))
    assert re.search(r": character-card: \w+ Wren$", imported.strip()), imported
    chat = user.play("--character", "Wren", "--as", "Mira")
    assert GREETING in chat.opening  # before the first prompt: the greeting comes first
    chat.sendline("Where does the ferry go tonight?")
    chat.expect(PROMPT)
    chat_id = quit_play(chat)

    # A lorebook, imported and attached to that chat.
    book = re.search(r": lorebook: (\w+) ", user.ok("import", str(LOREBOOK)))
    assert book is not None
    # Attaching lists the session's books as they now stand.
    assert "river_crossing" in user.ok("sessions", "lorebooks", "attach", chat_id, book.group(1))

    # Exported as a SillyTavern chat and imported again, with the same messages.
    exported = tmp_path / "wren.jsonl"
    user.ok("export", "session", chat_id, "--format", "jsonl", "-o", str(exported))
    lines = chat_lines(exported)
    assert lines[0]["user_name"] == "Mira"
    said = [(m["name"], m["mes"]) for m in lines[1:]]
    assert said[0] == ("Wren", GREETING)
    assert said[1] == ("Mira", "Where does the ferry go tonight?")
    assert said[2][0] == "Wren" and said[2][1].strip(), "the companion said nothing"
    reimported = user.ok("import", str(exported))
    again = re.search(r": sillytavern-chat: session (\w+) \(3 messages", reimported)
    assert again is not None, reimported
    reexported = tmp_path / "again.jsonl"
    user.ok("export", "session", again.group(1), "--format", "jsonl", "-o", str(reexported))
    assert [(m["name"], m["mes"]) for m in chat_lines(reexported)[1:]] == said

    # A backup; restore is refused while the server runs, and done once it stops.
    archive = tmp_path / "backup.zip"
    assert user.ok("backup", "-o", str(archive)).startswith("backed up ")
    server, _ = user.serve()
    try:
        refused = user.run("restore", "--force", str(archive))
        assert refused.returncode == 1
        assert refused.stderr.startswith(
            f"error: a Taleweaver server is running on this database (pid {server.pid})"
        )
    finally:
        # uvicorn re-raises the SIGTERM it handled once it has shut down.
        assert stop_serving(server) in (0, -signal.SIGTERM)
    assert user.ok("restore", "--force", str(archive)).startswith("restored ")
    listed = user.ok("sessions", "list")
    for session_id in (story_id, chat_id, again.group(1)):
        assert session_id in listed
