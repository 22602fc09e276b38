"""`taleweaver play`: a story in the terminal, streamed, through the one pipeline.

The prompt runs outside the event loop so that Ctrl-C there is a plain
KeyboardInterrupt; while the narrator streams, Ctrl-C is routed to the turn's
cancel instead, which stops the generation and records the turn as cancelled.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass

import click

from taleweaver.auth import LOCAL_USER_ID
from taleweaver.cli.line_input import Arrow, read_line
from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput, NotFound, TaleweaverError
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.engine import database_from_settings
from taleweaver.engine.stages.narrate import LOOP_RETRY_REASON
from taleweaver.store.schema import DEFAULT_WORKSPACE_ID as WORKSPACE
from taleweaver.store.serving import ServerLease, hold_for_serving

HELP = (
    "Type what you do, or the number of a choice; /help lists the commands. "
    "Ctrl-C stops the narrator; Ctrl-D leaves."
)
COMMANDS = (
    ("/help", "this list"),
    ("/continue", "the narrator goes on without you"),
    ("/regenerate", "tell the last reply again (every telling is kept)"),
    ("/edit TEXT", "replace your last line with TEXT and retell (asks first)"),
    ("/prev, /next", "go on from the last reply's other tellings (also \u2190 or \u2192)"),
    ("/quit", "save and leave (also /exit or Ctrl-D)"),
    ("//TEXT", "say TEXT starting with one slash"),
)
COMMAND_LIST = "\n".join(f"  {name:<13} {what}" for name, what in COMMANDS)
# What the arrow keys send: on a terminal an arrow on an empty line acts at once
# (line_input); elsewhere a line of arrows arrives as their escape sequences
# (normal and application cursor modes).
_ARROWS = {"\x1b[D": -1, "\x1bOD": -1, "\x1b[C": 1, "\x1bOC": 1}
_ARROW_KEYS = {-1: "/prev", 1: "/next"}
META = EventMetadata(actor="cli")
# Why a reply already on the screen is written again, by the rewrite's reason.
_BROKE_A_RULE = "\n[that reply broke a content rule and is written again]"
_REWRITTEN = {LOOP_RETRY_REASON: "\n[the reply started repeating itself and is written again]"}


@dataclass(frozen=True)
class Notice:
    """A line answered at the prompt; nothing goes to the narrator."""

    text: str


@dataclass(frozen=True)
class Swipe:
    """Show another telling of the last reply: `step` tellings on (back if negative)."""

    step: int


@dataclass(frozen=True)
class Confirm:
    """A request sent only once the player says yes to `question`."""

    question: str
    request: TurnRequest


def parse_line(line: str) -> TurnRequest | Confirm | Notice | Swipe | None:
    """What a line typed at the prompt asks for; None for /quit. A line starting
    with one slash is a command, never story text."""
    text = line.strip()
    if (step := _arrows(text)) is not None:
        return Swipe(step)
    if text.startswith("//"):
        return TurnRequest.build(action=None, text=text[1:], choice=None)
    if not text.startswith("/"):
        if text.isdigit():
            return TurnRequest.build(action=None, text=None, choice=int(text))
        return TurnRequest.build(action=None, text=text, choice=None)
    word, _, rest = text.partition(" ")
    rest = rest.strip()
    if word in ("/quit", "/exit"):
        return None
    if word == "/help":
        return Notice(COMMAND_LIST)
    if word == "/continue":
        return TurnRequest.build(action=TurnAction.CONTINUE, text=None, choice=None)
    if word == "/regenerate":
        return TurnRequest.build(action=TurnAction.REGENERATE, text=None, choice=None)
    if word in ("/prev", "/next"):
        return Swipe(-1 if word == "/prev" else 1)
    if word == "/edit":
        if not rest:
            return Notice("[/edit needs the new text: /edit I open the door instead]")
        return Confirm(
            f"Replace your last line with {rest!r} and retell? [y/N] ",
            TurnRequest.build(action=TurnAction.EDIT, text=rest, choice=None),
        )
    return Notice(f"[unknown command {word}; the commands are:]\n{COMMAND_LIST}")


def _arrows(text: str) -> int | None:
    """The steps a line of only ← and → presses asks for; None for any other line."""
    step, rest = 0, text
    while rest:
        key = rest[:3]
        if key not in _ARROWS:
            return None
        step, rest = step + _ARROWS[key], rest[3:]
    return step if text else None


async def _turn(engine: Engine, session_id: str, request: TurnRequest) -> None:
    handle = await engine.live.tables.start(WORKSPACE, session_id, request, META)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, handle.cancel)
    pending = ""  # trailing whitespace, written only if more text follows
    # Output safety may rewrite or replace a reply already streamed to the screen.
    replaced = False
    try:
        async for event in handle.subscribe():
            if event.name == "token":
                text = pending + event.data["text"]
                body = text.rstrip()
                pending = text[len(body) :]
                sys.stdout.write(body)
                sys.stdout.flush()
            elif event.name == "choices":
                click.echo()
                for choice in event.data["choices"]:
                    click.echo(f"  {choice['number']}. {choice['text']}")
            elif event.name == "continuity":
                for finding in event.data["findings"]:
                    click.echo(f"\n[continuity: {finding['summary']}]")
            elif event.name == "rewrite":  # the rewrite streams like any reply
                click.echo(_REWRITTEN.get(event.data["reason"], _BROKE_A_RULE))
            elif event.name == "safety" and event.data["action"] == "replaced":
                replaced = True
                click.echo("\n[that reply broke a content rule and was replaced]")
            elif event.name == "done" and event.data["turn"]["status"] == "cancelled":
                click.echo("\n[stopped: this reply was not kept]")
            elif event.name == "done" and replaced and event.data["turn"].get("reply"):
                click.echo(event.data["turn"]["reply"]["text"])
            elif event.name == "error":
                click.echo(f"\n[the narrator failed: {event.data['detail']}]")
        click.echo()
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    if request.action in (TurnAction.REGENERATE, TurnAction.EDIT):
        click.echo(await _telling(engine, session_id))


async def _telling(engine: Engine, session_id: str) -> str:
    """Which of the last reply's tellings is shown: "[telling 2/3]"."""
    session = await engine.sessions.get(WORKSPACE, session_id)
    recent = await engine.sessions.messages(
        WORKSPACE, session_id, after_turn=max(session["turn_count"] - 1, 0), limit=4
    )
    narrator = [m for m in recent if m["role"] != "player"]
    if not narrator:
        return ""
    last = narrator[-1]
    return f"[telling {int(last['active']) + 1}/{max(len(last['alternatives']), 1)}]"


async def _swipe(engine: Engine, session_id: str, step: int) -> None:
    """Make the telling of the last reply `step` on from the shown one the one the
    story goes on from, and print it."""
    session = await engine.sessions.get(WORKSPACE, session_id)
    recent = await engine.sessions.messages(
        WORKSPACE, session_id, after_turn=max(session["turn_count"] - 1, 0), limit=4
    )
    narrator = [m for m in recent if m["role"] != "player"]
    tellings = narrator[-1]["alternatives"] if narrator else []
    if len(tellings) < 2:
        click.echo("[the last reply has one telling; /regenerate tells it again]")
        return
    active = int(narrator[-1]["active"])
    now = min(max(active + step, 0), len(tellings) - 1)
    if now != active:
        await engine.sessions.select_telling(
            WORKSPACE, session_id, narrator[-1]["id"], now, metadata=META
        )
    telling = tellings[now]
    click.echo(telling["text"])
    for number, choice in enumerate(telling.get("choices") or [], 1):
        click.echo(f"  {number}. {choice}")
    click.echo(f"[telling {now + 1}/{len(tellings)}]")


@dataclass(frozen=True)
class Start:
    """How `taleweaver play` opens: an existing session, or a new story or chat."""

    session_id: str | None = None
    title: str = "A new story"
    premise: str | None = None
    character: str | None = None  # an id or a name: a companion chat
    world_id: str | None = None
    persona: str | None = None  # the player's name in the story and its exports


async def _character_id(engine: Engine, wanted: str) -> str:
    try:
        return str((await engine.characters.get(WORKSPACE, wanted))["id"])
    except NotFound:
        pass
    key = wanted.casefold()
    named = [
        c
        for c in await engine.characters.list(WORKSPACE)
        if key in (str(c.get("name", "")).casefold(), str(c.get("display_name", "")).casefold())
    ]
    if not named:
        raise NotFound(
            f"no character has the id or name {wanted!r}: see `taleweaver characters list`"
        )
    if len(named) > 1:
        ids = ", ".join(str(c["id"]) for c in named)
        raise InvalidInput(f"{len(named)} characters are named {wanted!r}: pick one by id ({ids})")
    return str(named[0]["id"])


async def _create(engine: Engine, start: Start) -> str:
    settings_json: dict[str, object] = {}
    if start.premise:
        settings_json["premise"] = start.premise
    if start.world_id:
        settings_json["world_id"] = start.world_id
    if start.persona:
        settings_json["user_name"] = start.persona
    if start.character is not None:
        sid = await engine.characters.start_session(
            WORKSPACE,
            [await _character_id(engine, start.character)],
            owner_id=LOCAL_USER_ID,
            settings=settings_json,
            metadata=META,
        )
        session = await engine.sessions.get(WORKSPACE, sid)
        click.echo(f"{session['title']} ({sid}).")
        await _show_recent(engine, sid, session["turn_count"])  # the greeting comes first
        return sid
    created = await engine.sessions.create(
        WORKSPACE,
        kind=SessionKind.STORY,
        title=start.title,
        settings=settings_json,
        owner_id=LOCAL_USER_ID,  # whose display name {{user}} and exports use
        metadata=META,
    )
    click.echo(f"New story '{start.title}' ({created['id']}).")
    return str(created["id"])


async def _show_recent(engine: Engine, session_id: str, turn_count: int) -> None:
    recent = await engine.sessions.messages(
        WORKSPACE, session_id, after_turn=max(turn_count - 1, 0), limit=4
    )
    for message in recent:
        prefix = "> " if message["role"] == "player" else ""
        click.echo(prefix + message["content"])
        for number, choice in enumerate(message["choices"], 1):
            click.echo(f"  {number}. {choice}")


@dataclass(frozen=True)
class Table:
    """What `play` holds open: the engine, the session, and the database hold."""

    engine: Engine
    session_id: str
    lease: ServerLease

    async def close(self) -> None:
        try:
            await self.engine.close()
        finally:
            await self.lease.release()


async def _open(settings: Settings, start: Start) -> Table:
    db = database_from_settings(settings)
    # Held like a server's, before anything is written: a restore refuses while
    # the player plays, and play refuses while a restore replaces the database.
    try:
        lease = await hold_for_serving(db, "play")
    except BaseException:
        await db.dispose()
        raise
    try:
        engine = await Engine.open(settings, database=db)
    except BaseException:
        await lease.release()
        await db.dispose()
        raise
    try:
        # A local model loads while the player reads the opening, not in the first turn.
        engine.warm_up()
        if start.session_id is None:
            return Table(engine, await _create(engine, start), lease)
        session = await engine.sessions.get(WORKSPACE, start.session_id)
        click.echo(f"Continuing '{session['title']}' after turn {session['turn_count']}.")
        await _show_recent(engine, start.session_id, session["turn_count"])
    except BaseException:
        await Table(engine, "", lease).close()
        raise
    return Table(engine, start.session_id, lease)


def _ask(question: str) -> bool:
    try:
        return input(question).strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt):
        click.echo()
        return False


def run_play(settings: Settings, start: Start) -> int:
    loop = asyncio.new_event_loop()
    try:
        try:
            table = loop.run_until_complete(_open(settings, start))
        except TaleweaverError as exc:
            click.echo(f"error: {exc.detail}", err=True)
            return 1
        engine, sid = table.engine, table.session_id
        click.echo(HELP)
        try:
            while True:
                try:
                    line = read_line("\n> ")
                except KeyboardInterrupt:
                    click.echo("\n(Ctrl-D or /quit to leave)")
                    continue
                except EOFError:
                    click.echo()
                    break
                if isinstance(line, Arrow):
                    line = _ARROW_KEYS[line.step]
                if not line.strip():
                    continue
                try:
                    request = parse_line(line)
                    if request is None:
                        break
                    if isinstance(request, Notice):
                        click.echo(request.text)
                        continue
                    if isinstance(request, Swipe):
                        loop.run_until_complete(_swipe(engine, sid, request.step))
                        continue
                    if isinstance(request, Confirm):
                        if not _ask(request.question):
                            click.echo("[nothing changed]")
                            continue
                        request = request.request
                    loop.run_until_complete(_turn(engine, sid, request))
                except TaleweaverError as exc:
                    click.echo(f"[{exc.detail}]")
        finally:
            loop.run_until_complete(table.close())
        click.echo(f"Saved. Resume with: taleweaver play --session {sid}")
        return 0
    finally:
        loop.close()
