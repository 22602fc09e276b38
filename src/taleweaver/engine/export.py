"""A session rendered for people (Markdown, text), for tools (JSON), or for
SillyTavern (chat JSONL)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON
from taleweaver.domain.formats import Exporter, ImportedSession, ImportedTurn, SessionExport
from taleweaver.engine.sessions import Sessions
from taleweaver.interop.limits import gc_paused
from taleweaver.interop.sillytavern import import_record, render_chat

# Accepted names of each format, and the media type and file suffix it is served as.
FORMATS: dict[str, str] = {
    "md": "md",
    "markdown": "md",
    "txt": "txt",
    "text": "txt",
    "json": "json",
    "jsonl": "jsonl",
    "sillytavern": "jsonl",
}
MEDIA_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
}
ALL = 10**9
MAX_FORK_DEPTH = 50


def canonical_format(fmt: str) -> str:
    try:
        return FORMATS[fmt.lower()]
    except KeyError:
        raise InvalidInput(
            f"unknown export format {fmt!r}: use one of {', '.join(sorted(FORMATS))}"
        ) from None


def render_export(
    session: JSON, messages: list[JSON], events: list[JSON], fmt: str, *, player: str = "You"
) -> str:
    fmt = canonical_format(fmt)
    if fmt == "jsonl":
        raise InvalidInput("chat JSONL is rendered from events: use export_session")
    if fmt == "json":
        return json.dumps(
            {"session": session, "messages": messages, "events": events},
            indent=2,
            default=_default,
        )
    markdown = fmt == "md"
    lines = [f"# {session['title']}" if markdown else session["title"], ""]
    speaker = _speaker(session)
    for message in messages:
        content = message["content"]
        if message["role"] == "player":
            lines.append(f"> **{player}:** {content}" if markdown else f"> {content}")
        elif not content and not message["choices"]:
            continue  # an imported player line that had no reply
        else:
            lines.append(f"**{speaker}:** {content}" if markdown and speaker else content)
            for number, choice in enumerate(message["choices"], 1):
                lines.append(f"{number}. {choice}")
        lines.append("")
    return "\n".join(lines)


def _speaker(session: JSON) -> str | None:
    """A companion's name, to label its lines in Markdown."""
    character = (session.get("settings") or {}).get("character") or {}
    name = character.get("name") if isinstance(character, dict) else None
    return name if isinstance(name, str) and name else None


async def export_session(
    sessions: Sessions,
    workspace_id: str,
    session_id: str,
    fmt: str,
    *,
    player: Callable[[JSON], Awaitable[str]] | None = None,
) -> str:
    """The session in `fmt` (see FORMATS), read from its messages and events.
    `player`: the name a chat or Markdown export gives the player of a session that
    sets none."""
    fmt = canonical_format(fmt)
    session = await sessions.get(workspace_id, session_id)
    name = await player(session) if player is not None else "You"
    if fmt == "jsonl":
        with gc_paused():
            events = await sessions.events(workspace_id, session_id, after=0, limit=ALL)
            imported = await _fork_origin_import(sessions, events[0].payload if events else {})
            return "".join(line + "\n" for line in render_chat(events, imported, player=name))
    messages = await sessions.messages(workspace_id, session_id, after_turn=0, limit=ALL)
    recorded: list[JSON] = []
    if fmt == "json":
        events = await sessions.events(workspace_id, session_id, after=0, limit=ALL)
        recorded = [e.to_dict() for e in events]
    return render_export(session, messages, recorded, fmt, player=name)


async def _fork_origin_import(sessions: Sessions, created: JSON) -> JSON | None:
    """A fork's chat header lives in the imported session it was forked from."""
    store = sessions.repository.store
    for _ in range(MAX_FORK_DEPTH):
        if import_record(created) is not None:
            return import_record(created)
        origin = (created.get("forked_from") or {}).get("session_id")
        if not origin:
            return None
        first = await store.read_stream(origin, limit=1)
        if not first:
            return None
        created = first[0].payload
    return None


def _default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot export {type(value).__name__}")


# --- the built-in formats, registered through the `exporters` and `importers` hooks ----


def _rendered(fmt: str) -> Callable[[SessionExport], str]:
    def render(export: SessionExport) -> str:
        return render_export(
            export.session, export.messages, export.events, fmt, player=export.player
        )

    return render


def builtin_exporters() -> dict[str, Exporter]:
    """Markdown, plain text and JSON (SillyTavern JSONL is rendered from the raw events
    and its forks' origins, by `export_session`, not through the hook)."""
    return {
        "markdown": Exporter(
            MEDIA_TYPES["md"], "md", _rendered("md"), "Markdown", aliases=("md",)
        ),
        "text": Exporter(MEDIA_TYPES["txt"], "txt", _rendered("txt"), "plain text", ("txt",)),
        "json": Exporter(
            MEDIA_TYPES["json"], "json", _rendered("json"), "JSON, with the session's events"
        ),
    }


async def session_export(
    sessions: Sessions, workspace_id: str, session_id: str, *, player: str, events: bool
) -> SessionExport:
    """What an exporter renders; the events are read only for those that need them."""
    session = await sessions.get(workspace_id, session_id)
    messages = await sessions.messages(workspace_id, session_id, after_turn=0, limit=ALL)
    recorded: list[JSON] = []
    if events:
        found = await sessions.events(workspace_id, session_id, after=0, limit=ALL)
        recorded = [e.to_dict() for e in found]
    return SessionExport(session, messages, recorded, player)


class JsonExportImporter:
    """A session's JSON export read back as a new session: its title, kind, settings
    and messages (the events stay behind: it is a copy, not a restore)."""

    description = "a Taleweaver session's JSON export"

    def sniff(self, data: bytes, filename: str | None) -> bool:
        head = data[:4096].lstrip()
        return head.startswith(b"{") and b'"session"' in head and b'"messages"' in data

    def read(self, data: bytes) -> ImportedSession:
        try:
            parsed = json.loads(data)
            session, messages = parsed["session"], parsed["messages"]
            turns: list[ImportedTurn] = []
            said: str | None = None
            for message in messages:
                if message["role"] == "player":
                    if said is not None:
                        turns.append(ImportedTurn(said, ""))
                    said = str(message["content"])
                else:
                    turns.append(ImportedTurn(said, str(message["content"])))
                    said = None
            if said is not None:
                turns.append(ImportedTurn(said, ""))
            return ImportedSession(
                title=str(session["title"]),
                turns=turns,
                kind=str(session["kind"]),
                settings=dict(session.get("settings") or {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"not a Taleweaver JSON export: {exc}") from None

