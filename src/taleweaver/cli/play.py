"""`taleweaver play`: a story in the terminal, streamed, through the one pipeline.

The prompt runs outside the event loop so that Ctrl-C there is a plain
KeyboardInterrupt; while the narrator streams, Ctrl-C is routed to the turn's
cancel instead, which stops the generation and records the turn as cancelled.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import click

from taleweaver.config import Settings
from taleweaver.domain.errors import TaleweaverError
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.store.schema import DEFAULT_WORKSPACE_ID as WORKSPACE

HELP = (
    "Type what you do, or the number of a choice. /continue, /regenerate, "
    "/edit TEXT, /quit. Ctrl-C stops the narrator; Ctrl-D leaves."
)
META = EventMetadata(actor="cli")


def parse_line(line: str) -> TurnRequest | None:
    """What a line typed at the prompt asks for; None for /quit."""
    text = line.strip()
    if text in ("/quit", "/exit"):
        return None
    if text == "/continue":
        return TurnRequest.build(action=TurnAction.CONTINUE, text=None, choice=None)
    if text == "/regenerate":
        return TurnRequest.build(action=TurnAction.REGENERATE, text=None, choice=None)
    if text.startswith("/edit "):
        return TurnRequest.build(action=TurnAction.EDIT, text=text[6:], choice=None)
    if text.isdigit():
        return TurnRequest.build(action=None, text=None, choice=int(text))
    return TurnRequest.build(action=None, text=text, choice=None)


async def _turn(engine: Engine, session_id: str, request: TurnRequest) -> None:
    handle = await engine.turns.start(WORKSPACE, session_id, request, META)
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
                click.echo("\n[that reply broke a content rule and is written again]")
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


async def _open(
    settings: Settings, session_id: str | None, title: str, premise: str | None
) -> tuple[Engine, str]:
    engine = await Engine.open(settings)
    try:
        if session_id is None:
            settings_json = {"premise": premise} if premise else {}
            created = await engine.sessions.create(
                WORKSPACE,
                kind=SessionKind.STORY,
                title=title,
                settings=settings_json,
                metadata=META,
            )
            session_id = created["id"]
            click.echo(f"New story '{title}' ({session_id}).")
        else:
            session = await engine.sessions.get(WORKSPACE, session_id)
            click.echo(f"Continuing '{session['title']}' after turn {session['turn_count']}.")
            recent = await engine.sessions.messages(
                WORKSPACE, session_id, after_turn=max(session["turn_count"] - 1, 0), limit=4
            )
            for message in recent:
                prefix = "> " if message["role"] == "player" else ""
                click.echo(prefix + message["content"])
                for number, choice in enumerate(message["choices"], 1):
                    click.echo(f"  {number}. {choice}")
    except BaseException:
        await engine.close()
        raise
    return engine, session_id


def run_play(settings: Settings, *, session_id: str | None, title: str, premise: str | None) -> int:
    loop = asyncio.new_event_loop()
    try:
        try:
            engine, sid = loop.run_until_complete(_open(settings, session_id, title, premise))
        except TaleweaverError as exc:
            click.echo(f"error: {exc.detail}", err=True)
            return 1
        click.echo(HELP)
        try:
            while True:
                try:
                    line = input("\n> ")
                except KeyboardInterrupt:
                    click.echo("\n(Ctrl-D or /quit to leave)")
                    continue
                except EOFError:
                    click.echo()
                    break
                if not line.strip():
                    continue
                try:
                    request = parse_line(line)
                    if request is None:
                        break
                    loop.run_until_complete(_turn(engine, sid, request))
                except TaleweaverError as exc:
                    click.echo(f"[{exc.detail}]")
        finally:
            loop.run_until_complete(engine.close())
        click.echo(f"Saved. Resume with: taleweaver play --session {sid}")
        return 0
    finally:
        loop.close()
