"""The `taleweaver` console script, run as a user runs it: a real process, a real pty."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pexpect
import pytest
from click.testing import CliRunner, Result

from taleweaver.cli.main import cli
from taleweaver.cli.play import COMMAND_LIST, Notice, Swipe, parse_line
from taleweaver.domain.turns import TurnRequest
from taleweaver.store.database import redacted_url
from taleweaver.store.migrate import head_revision
from tests.conftest import free_port
from tests.data.cards import factory as cards

SCRIPT = Path(sys.executable).with_name("taleweaver")
PROMPT = r"\r\n> "
CHOICES = (
    "Follow the sound of water",
    "Examine the carvings on the wall",
    "Call out into the dark",
)
NEW_STORY = re.compile(r"New story '.*' \((\w+)\)\.")
RESUME = re.compile(r"Saved\. Resume with: taleweaver play --session (\w+)")

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason=f"the console script is not installed at {SCRIPT}"
)


def cli_env(data_dir: Path, *, token_delay_ms: int = 0) -> dict[str, str]:
    """The environment of a user with a fresh data dir and the scripted narrator."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALEWEAVER_")}
    env.update(
        TALEWEAVER_DATA_DIR=str(data_dir),
        TALEWEAVER_MODEL="scripted",
        TALEWEAVER_SCRIPTED_TOKEN_DELAY_MS=str(token_delay_ms),
        PYTHONUNBUFFERED="1",
    )
    return env


def taleweaver(
    data_dir: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        env=cli_env(data_dir),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _as_from_a_shell() -> None:
    # pytest-xdist workers ignore SIGINT, and an ignored SIGINT is inherited: Python
    # then installs no KeyboardInterrupt handler. A shell starts programs with it on.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def play(data_dir: Path, *args: str, token_delay_ms: int = 0) -> Any:
    """`taleweaver play` on a pty, waiting at its first prompt.

    What it printed before its help line is left in the child's `opening`.
    """
    child = pexpect.spawn(
        str(SCRIPT),
        ["play", *args],
        env=cli_env(data_dir, token_delay_ms=token_delay_ms),
        encoding="utf-8",
        timeout=15,
        dimensions=(40, 200),
        preexec_fn=_as_from_a_shell,
    )
    child.expect_exact("Ctrl-D leaves.")
    child.opening = child.before
    child.expect(PROMPT)
    return child


def finish(child: Any) -> int:
    """Wait for the child to exit; its exit status (None if a signal ended it)."""
    child.expect(pexpect.EOF)
    child.close()
    status: int | None = child.exitstatus
    assert status is not None, f"killed by signal {child.signalstatus}"
    return status


def exported(data_dir: Path, session_id: str) -> dict[str, Any]:
    result = taleweaver(data_dir, "sessions", "export", session_id, "--format", "json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def quit_and_export(child: Any, data_dir: Path) -> dict[str, Any]:
    """/quit at the prompt; the saved session, exported as JSON."""
    child.sendline("/quit")
    child.expect(RESUME)
    session_id = child.match.group(1)
    assert finish(child) == 0
    return exported(data_dir, session_id)


def event_types(document: dict[str, Any]) -> list[str]:
    return [e["type"] for e in document["events"]]


# --- play ---------------------------------------------------------------------------------


def test_play_streams_the_story_and_shows_numbered_choices(tmp_path: Path) -> None:
    child = play(tmp_path)
    child.sendline("I light a lantern")
    child.expect("Scene 1. You light a lantern.")
    for number, text in enumerate(CHOICES, 1):
        child.expect_exact(f"  {number}. {text}")
    child.expect(PROMPT)
    child.sendline("/quit")
    assert finish(child) == 0


def test_typing_a_number_picks_that_choice(tmp_path: Path) -> None:
    child = play(tmp_path)
    child.sendline("I look around")
    child.expect(PROMPT)
    child.sendline("2")
    child.expect_exact("Scene 2. You examine the carvings on the wall.")
    child.expect(PROMPT)
    child.sendline("/quit")
    child.expect(RESUME)
    session_id = child.match.group(1)
    assert finish(child) == 0

    player_lines = [
        m["content"] for m in exported(tmp_path, session_id)["messages"] if m["role"] == "player"
    ]
    assert player_lines == ["I look around", "Examine the carvings on the wall"]


def test_a_choice_that_does_not_exist_is_explained_at_the_prompt(tmp_path: Path) -> None:
    child = play(tmp_path)
    child.sendline("I look around")
    child.expect(PROMPT)
    child.sendline("7")
    child.expect_exact("[choice 7 does not exist; the last reply offered 3 (numbered from 1)]")
    child.expect(PROMPT)
    child.sendline("/quit")
    assert finish(child) == 0


def test_regenerate_retells_the_last_reply(tmp_path: Path) -> None:
    child = play(tmp_path)
    child.sendline("I look around")
    child.expect(PROMPT)
    child.sendline("/regenerate")
    child.expect_exact("Scene 1. You look around.")
    child.expect_exact(f"  3. {CHOICES[2]}")
    child.expect_exact("[telling 2/2]")
    child.expect(PROMPT)
    document = quit_and_export(child, tmp_path)
    assert event_types(document)[-2:] == ["turn.committed", "turn.regenerated"]
    assert document["session"]["turn_count"] == 1
    narrator = [m for m in document["messages"] if m["role"] == "narrator"]
    assert len(narrator) == 1
    assert len(narrator[0]["alternatives"]) == 2


def test_prev_next_and_the_arrow_keys_choose_the_telling_the_story_goes_on_from(
    tmp_path: Path,
) -> None:
    child = play(tmp_path)
    child.sendline("I look around")
    child.expect(PROMPT)
    child.sendline("/next")
    child.expect_exact("[the last reply has one telling; /regenerate tells it again]")
    child.expect(PROMPT)
    child.sendline("/regenerate")
    child.expect_exact("[telling 2/2]")
    child.expect(PROMPT)
    child.sendline("/prev")
    child.expect_exact("Scene 1. You look around.")
    child.expect_exact(f"  3. {CHOICES[2]}")
    child.expect_exact("[telling 1/2]")
    child.expect(PROMPT)
    child.sendline("/prev")  # no telling before the first: it stays
    child.expect_exact("[telling 1/2]")
    child.expect(PROMPT)
    child.send("\x1b[C")  # → on an empty line acts at once, no Enter
    child.expect_exact("[telling 2/2]")
    child.expect(PROMPT)
    child.send("\x1b[D")
    child.expect_exact("[telling 1/2]")
    child.expect(PROMPT)
    child.send("ab\x7f\x1b[D")  # an arrow inside a line is no swipe; Backspace edits
    child.sendline("c")
    child.expect_exact("Scene 2. You ac.")
    child.expect(PROMPT)
    document = quit_and_export(child, tmp_path)
    # The choice is in the log: the story went on from the first telling.
    assert event_types(document)[-5:] == [
        "turn.regenerated",
        "turn.selected",
        "turn.selected",
        "turn.selected",
        "turn.committed",
    ]
    narrator = [m for m in document["messages"] if m["role"] == "narrator"]
    assert narrator[0]["active"] == 0


def test_slash_lines_are_commands_never_story_and_edit_asks_first(tmp_path: Path) -> None:
    child = play(tmp_path)
    child.sendline("I look around")
    child.expect(PROMPT)
    child.sendline("/dance wildly")
    child.expect_exact("[unknown command /dance; the commands are:]")
    child.expect_exact("/regenerate")
    child.expect(PROMPT)
    child.sendline("/edit I run")
    child.expect_exact("Replace your last line with 'I run' and retell? [y/N] ")
    child.sendline("n")
    child.expect_exact("[nothing changed]")
    child.expect(PROMPT)
    child.sendline("/edit I run")
    child.expect_exact("[y/N] ")
    child.sendline("y")
    child.expect_exact("Scene 1. You run.")
    child.expect_exact("[telling 2/2]")
    child.expect(PROMPT)
    document = quit_and_export(child, tmp_path)
    assert document["session"]["turn_count"] == 1  # nothing typed after / reached the story
    assert [m["content"] for m in document["messages"] if m["role"] == "player"] == ["I run"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/help", Notice(COMMAND_LIST)),
        ("/Help", Notice(f"[unknown command /Help; the commands are:]\n{COMMAND_LIST}")),
        ("/edit", Notice("[/edit needs the new text: /edit I open the door instead]")),
        ("//me waves", TurnRequest.build(action=None, text="/me waves", choice=None)),
        ("/exit", None),
        ("/prev", Swipe(-1)),
        ("/next", Swipe(1)),
        ("\x1b[D\x1b[D", Swipe(-2)),
        ("\x1bOC", Swipe(1)),
        ("\x1b[Dx", TurnRequest.build(action=None, text="\x1b[Dx", choice=None)),
    ],
)
def test_what_a_line_at_the_prompt_asks_for(line: str, expected: object) -> None:
    assert parse_line(line) == expected


def test_play_with_a_character_greets_first_and_uses_the_persona(tmp_path: Path) -> None:
    card = tmp_path / "aria.json"
    card.write_text(json.dumps(cards.v3_card(alternate_greetings=[])), encoding="utf-8")
    assert taleweaver(tmp_path, "characters", "import", str(card)).returncode == 0

    result = taleweaver(tmp_path, "play", "--character", "aria", "--as", "Mira", stdin="/quit\n")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == "Welcome in out of the rain, Mira. I'm Aria."
    session_id = RESUME.search(result.stdout).group(1)  # type: ignore[union-attr]
    chat = taleweaver(tmp_path, "export", "session", session_id, "--format", "jsonl")
    assert json.loads(chat.stdout.splitlines()[0])["user_name"] == "Mira"


def test_the_display_name_set_once_is_the_player_in_every_session_without_as(
    tmp_path: Path,
) -> None:
    card = tmp_path / "aria.json"
    card.write_text(json.dumps(cards.v3_card(alternate_greetings=[])), encoding="utf-8")
    assert taleweaver(tmp_path, "characters", "import", str(card)).returncode == 0

    named = taleweaver(tmp_path, "users", "set-name", "Mira")

    assert named.returncode == 0, named.stderr
    assert named.stdout == "display name of local@localhost: Mira\n"
    result = taleweaver(tmp_path, "play", "--character", "aria", stdin="Hello\n/quit\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == "Welcome in out of the rain, Mira. I'm Aria."
    session_id = RESUME.search(result.stdout).group(1)  # type: ignore[union-attr]
    chat = taleweaver(tmp_path, "export", "session", session_id, "--format", "jsonl")
    header, *lines = (json.loads(line) for line in chat.stdout.splitlines())
    assert header["user_name"] == "Mira"
    assert [line["name"] for line in lines if line["is_user"]] == ["Mira"]


def test_a_story_played_before_any_name_is_chosen_exports_its_player_as_player(
    played: PlayedStory,
) -> None:
    chat = taleweaver(played.data_dir, "export", "session", played.session_id, "--format", "jsonl")
    assert json.loads(chat.stdout.splitlines()[0])["user_name"] == "Player"


def test_play_with_an_unknown_character_says_how_to_find_one(tmp_path: Path) -> None:
    result = taleweaver(tmp_path, "play", "--character", "Nobody", stdin="")
    assert result.returncode == 1
    assert result.stderr == (
        "error: no character has the id or name 'Nobody': see `taleweaver characters list`\n"
    )


def test_quit_saves_and_prints_how_to_resume(tmp_path: Path) -> None:
    child = play(tmp_path)
    created = NEW_STORY.search(child.opening)
    assert created is not None
    child.sendline("I look around")
    child.expect(PROMPT)
    child.sendline("/quit")
    child.expect(RESUME)
    assert child.match.group(1) == created.group(1)
    assert finish(child) == 0


def test_resuming_a_session_shows_its_last_exchange(tmp_path: Path) -> None:
    child = play(tmp_path, "--title", "The Drowned Stair")
    child.sendline("I descend")
    child.expect(PROMPT)
    child.sendline("/quit")
    child.expect(RESUME)
    session_id = child.match.group(1)
    assert finish(child) == 0

    resumed = play(tmp_path, "--session", session_id)
    shown = resumed.opening
    assert "Continuing 'The Drowned Stair' after turn 1." in shown
    assert "> I descend" in shown
    assert "Scene 1. You descend." in shown
    assert f"  1. {CHOICES[0]}" in shown
    resumed.sendline("1")
    resumed.expect_exact("Scene 2. You follow the sound of water.")
    resumed.expect(PROMPT)
    resumed.sendline("/quit")
    assert finish(resumed) == 0


def test_resuming_an_unknown_session_exits_with_an_error(tmp_path: Path) -> None:
    result = taleweaver(tmp_path, "play", "--session", "no-such-session")
    assert result.returncode == 1
    assert "error: session no-such-session not found" in result.stderr


def test_ctrl_c_while_the_narrator_streams_cancels_the_turn_not_the_program(
    tmp_path: Path,
) -> None:
    # 50 ms a token: the scripted reply takes about two seconds to stream.
    child = play(tmp_path, token_delay_ms=50)
    child.sendline("I run into the dark")
    child.expect_exact("Scene 1.")
    child.sendintr()
    child.expect_exact("[stopped: this reply was not kept]")
    assert "distant water" not in child.before  # the reply was cut short
    child.expect(PROMPT)

    child.sendline("I walk carefully")
    child.expect_exact("Scene 1. You walk carefully.")
    child.expect_exact(f"  3. {CHOICES[2]}")
    child.expect(PROMPT)
    document = quit_and_export(child, tmp_path)
    assert event_types(document) == ["session.created", "turn.cancelled", "turn.committed"]
    assert [(m["role"], m["content"].split(".")[0]) for m in document["messages"]] == [
        ("player", "I walk carefully"),
        ("narrator", "Scene 1"),
    ]
    assert all("run into the dark" not in m["content"] for m in document["messages"])


def test_ctrl_c_at_the_prompt_prints_a_hint_and_keeps_playing(tmp_path: Path) -> None:
    child = play(tmp_path)
    child.sendintr()
    child.expect_exact("(Ctrl-D or /quit to leave)")
    child.expect(PROMPT)
    child.sendline("I wait")
    child.expect_exact("Scene 1. You wait.")
    child.expect(PROMPT)
    child.sendline("/quit")
    assert finish(child) == 0


def test_ctrl_d_at_the_prompt_leaves_cleanly(tmp_path: Path) -> None:
    child = play(tmp_path)
    child.sendeof()
    child.expect(RESUME)
    assert finish(child) == 0


# --- db and sessions ----------------------------------------------------------------------


@dataclass(frozen=True)
class PlayedStory:
    data_dir: Path
    session_id: str


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> PlayedStory:
    """A data dir holding one story of two turns, played through `taleweaver play`."""
    data_dir = tmp_path_factory.mktemp("played")
    result = taleweaver(
        data_dir, "play", "--title", "The Lantern Road", stdin="I look around\n3\n/quit\n"
    )
    assert result.returncode == 0, result.stderr
    match = RESUME.search(result.stdout)
    assert match is not None, result.stdout
    return PlayedStory(data_dir, match.group(1))


def test_db_upgrade_prints_the_revision_it_reached(tmp_path: Path) -> None:
    result = taleweaver(tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"database at revision {head_revision()}"


def test_sessions_list_shows_a_played_session(played: PlayedStory) -> None:
    result = taleweaver(played.data_dir, "sessions", "list")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    stamp = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}"
    pattern = rf"\s+{played.session_id}\s+{stamp}\s+story\s+2 turns\s+The Lantern Road"
    assert re.fullmatch(pattern, line), line


def test_a_one_turn_session_is_listed_as_1_turn_and_can_be_deleted(tmp_path: Path) -> None:
    played = taleweaver(tmp_path, "play", "--title", "Brief", stdin="I wait\n/quit\n")
    match = RESUME.search(played.stdout)
    assert match is not None, played.stdout
    listed = in_process(tmp_path, "sessions", "list").output
    assert re.search(r"\s1 turn\s+Brief$", listed, re.M), listed
    asked = in_process(tmp_path, "sessions", "delete", match.group(1), stdin="n\n")
    assert asked.exit_code == 1 and "Delete session" in asked.output  # refused: kept
    assert "Brief" in in_process(tmp_path, "sessions", "list").output
    gone = in_process(tmp_path, "sessions", "delete", match.group(1), "--yes")
    assert gone.exit_code == 0 and "deleted" in gone.output, gone.output
    assert "no sessions yet" in in_process(tmp_path, "sessions", "list").output


def test_sessions_list_json_prints_one_object_a_line(played: PlayedStory) -> None:
    result = taleweaver(played.data_dir, "sessions", "list", "--json")
    assert result.returncode == 0, result.stderr
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["id"] == played.session_id
    assert row["kind"] == "story"
    assert row["title"] == "The Lantern Road"
    assert row["turn_count"] == 2
    assert row["archived"] is False


def test_sessions_list_filters_by_kind(played: PlayedStory) -> None:
    result = taleweaver(played.data_dir, "sessions", "list", "--kind", "companion", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_sessions_list_without_sessions_says_how_to_start(tmp_path: Path) -> None:
    result = taleweaver(tmp_path, "sessions", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no sessions yet: start one with `taleweaver play`"


def test_export_markdown_renders_the_story(played: PlayedStory) -> None:
    result = taleweaver(played.data_dir, "sessions", "export", played.session_id)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "# The Lantern Road"
    assert "> **Player:** I look around" in lines  # the local account's display name
    assert "> **Player:** Call out into the dark" in lines
    assert any(line.startswith("Scene 2. You call out into the dark.") for line in lines)
    assert f"1. {CHOICES[0]}" in lines


def test_export_text_renders_the_story_without_markup(played: PlayedStory) -> None:
    result = taleweaver(played.data_dir, "sessions", "export", played.session_id, "--format", "txt")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "The Lantern Road"
    assert "> I look around" in lines
    assert "**" not in result.stdout and "#" not in result.stdout


def test_export_json_holds_session_messages_and_events(played: PlayedStory) -> None:
    document = exported(played.data_dir, played.session_id)
    assert document["session"]["id"] == played.session_id
    assert [m["role"] for m in document["messages"]] == ["player", "narrator"] * 2
    assert document["messages"][3]["choices"] == list(CHOICES)
    assert event_types(document) == ["session.created", "turn.committed", "turn.committed"]


def test_export_to_a_file_writes_it_and_says_where(played: PlayedStory, tmp_path: Path) -> None:
    target = tmp_path / "story.md"
    result = taleweaver(played.data_dir, "sessions", "export", played.session_id, "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == f"wrote {target}"
    assert target.read_text(encoding="utf-8").startswith("# The Lantern Road\n")


def in_process(data_dir: Path, *args: str, stdin: str | None = None) -> Result:
    """A command run in this process (no interpreter start-up: for commands whose
    own behaviour is under test, not how the program starts)."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TALEWEAVER_")}
    env = unset | {"TALEWEAVER_DATA_DIR": str(data_dir), "TALEWEAVER_MODEL": "scripted"}
    return CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)


def test_export_session_and_sessions_export_are_one_command(played: PlayedStory) -> None:
    for fmt in ("md", "markdown", "jsonl"):
        one = in_process(played.data_dir, "export", "session", played.session_id, "--format", fmt)
        other = in_process(
            played.data_dir, "sessions", "export", played.session_id, "--format", fmt
        )
        assert one.exit_code == other.exit_code == 0, one.output + other.output
        assert one.output == other.output and one.output.strip()


def test_both_export_commands_name_exactly_the_formats_the_engine_knows() -> None:
    from taleweaver.cli.formats import EXPORT_FORMATS
    from taleweaver.engine.export import FORMATS

    assert set(EXPORT_FORMATS) == set(FORMATS)


def test_exporting_an_unknown_session_fails_with_a_clear_error(played: PlayedStory) -> None:
    result = taleweaver(played.data_dir, "sessions", "export", "no-such-session")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "error: session no-such-session not found"


# --- serve --------------------------------------------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen[str]
    base_url: str
    banner: str


def start_serving(data_dir: Path, log: IO[str] | None = None) -> Served:
    port = free_port()
    process = subprocess.Popen(
        [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=cli_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=log or subprocess.DEVNULL,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=base_url) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            try:
                if client.get("/healthz").status_code == 200:
                    assert process.stdout is not None
                    banner = "".join(process.stdout.readline() for _ in range(3))
                    return Served(process, base_url, banner)
            except httpx.TransportError:
                time.sleep(0.05)
    stop_serving(process)
    raise AssertionError(f"`taleweaver serve` did not come up (exit {process.returncode})")


def stop_serving(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
    return process.returncode


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    running = start_serving(tmp_path_factory.mktemp("served"))
    try:
        yield running
    finally:
        stop_serving(running.process)


def test_serve_prints_where_it_listens(served: Served) -> None:
    assert f"Taleweaver serving on {served.base_url}" in served.banner
    assert f"API docs: {served.base_url}/docs" in served.banner
    assert "model: scripted" in served.banner


def test_serve_names_the_data_dir_and_database_it_opened(served: Served) -> None:
    data_dir = served.banner.split("  data: ", 1)[1].split()[0]
    assert f"database: sqlite+aiosqlite:///{data_dir}/taleweaver.db\n" in served.banner


def test_a_database_url_is_shown_without_its_password() -> None:
    shown = redacted_url("postgresql://tale:s3cret@db.example:5432/tw")
    assert shown == "postgresql://tale:***@db.example:5432/tw"


def test_serve_answers_healthz(served: Served) -> None:
    response = httpx.get(f"{served.base_url}/healthz")
    assert response.status_code == 200


def test_serve_plays_a_story_turn_over_http(served: Served) -> None:
    with httpx.Client(base_url=served.base_url, timeout=30) as client:
        created = client.post("/api/v1/sessions", json={"kind": "story", "title": "Over HTTP"})
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]

        turn = client.post(f"/api/v1/sessions/{session_id}/turns", json={"text": "I knock"})
        assert turn.status_code == 201, turn.text
        body = turn.json()
        assert body["status"] == "completed"
        assert body["reply"]["text"].startswith("Scene 1. You knock.")
        assert [c["text"] for c in body["reply"]["choices"]] == list(CHOICES)

        messages = client.get(f"/api/v1/sessions/{session_id}/messages").json()
        assert [m["role"] for m in messages] == ["player", "narrator"]


def test_serve_shuts_down_gracefully_when_terminated(tmp_path: Path) -> None:
    log_path = tmp_path / "serve.log"
    with log_path.open("w", encoding="utf-8") as log:
        running = start_serving(tmp_path, log)
        status = stop_serving(running.process)
    # uvicorn re-raises the signal it caught once it has shut down, so the exit
    # status is SIGTERM's; the log shows the application's shutdown ran.
    assert status in (0, -signal.SIGTERM)
    messages = [json.loads(line)["message"] for line in log_path.read_text().splitlines()]
    assert "Application shutdown complete." in messages
