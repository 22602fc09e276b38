"""Importing a chat from another tool as a companion session.

An import is not a turn: nothing is generated, so the pipeline does not run. The
whole chat becomes one new session stream committed through the session
repository in one transaction with its read models and a snapshot, so a file that fails to
parse, or a commit that fails, leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON, EventMetadata, NewEvent
from taleweaver.domain.sessions import MAX_TITLE_LENGTH, EventType, SessionKind
from taleweaver.engine.outcome import new_id
from taleweaver.engine.sessions import Sessions
from taleweaver.interop import sillytavern
from taleweaver.interop.limits import check_size, gc_paused
from taleweaver.interop.readmodel import project_new_stream


def chat_events(
    chat: sillytavern.Chat,
    *,
    workspace_id: str,
    title: str | None,
    owner_id: str | None,
    links: JSON | None = None,
) -> list[NewEvent]:
    """The new session's whole stream: created, then each turn's events. `links`:
    settings that tie it to the workspace's own character (`character_ids`...)."""
    name = chat.character_name
    settings: JSON = (links or {}) | {"character": {"name": name}, "user_name": chat.user_name}
    created = NewEvent(
        EventType.SESSION_CREATED,
        {
            "workspace_id": workspace_id,
            "kind": str(SessionKind.COMPANION),
            "title": _title(title or f"{name} (imported)"),
            "settings": settings,
            "owner_id": owner_id,
            "import": {
                "format": sillytavern.FORMAT,
                "header": chat.header,
                "messages": chat.messages,
            },
        },
    )
    events = [created]
    for number, turn in enumerate(chat.turns, start=1):
        events += sillytavern.turn_events(turn, number, _fresh_id)
    return events


def _fresh_id() -> str:
    """An id like `new_id`'s (32 hex digits), minus the UUID bookkeeping: an import
    makes three per turn."""
    return os.urandom(16).hex()


def _title(title: str) -> str:
    cleaned = " ".join(title.split()) or "Imported chat"
    if len(cleaned) > MAX_TITLE_LENGTH:
        cleaned = cleaned[: MAX_TITLE_LENGTH - 1] + "…"
    return cleaned


# (workspace id, character name) -> settings linking the session to that character.
Linker = Callable[[str, str], Awaitable[JSON]]


async def _no_links(workspace_id: str, name: str) -> JSON:
    return {}


class ChatImporter:
    def __init__(self, sessions: Sessions, link: Linker = _no_links) -> None:
        self.sessions = sessions
        self.link = link

    async def import_sillytavern(
        self,
        workspace_id: str,
        data: bytes,
        *,
        title: str | None = None,
        owner_id: str | None = None,
        metadata: EventMetadata,
    ) -> JSON:
        """A new companion session holding the chat; its view, with `imported` counts."""
        check_size(data, "chat")
        with gc_paused():
            chat = sillytavern.parse_chat(data)
            if not chat.turns:
                raise InvalidInput("the chat holds no messages")
            links = await self.link(workspace_id, chat.character_name)
            events = chat_events(
                chat, workspace_id=workspace_id, title=title, owner_id=owner_id, links=links
            )
            session_id = await self.commit_new_session(workspace_id, events, metadata)
        session = await self.sessions.get(workspace_id, session_id)
        counts = {"messages": chat.messages, "turns": len(chat.turns)}
        if chat.stripped:  # NUL and lone surrogates removed: say so
            counts["stripped"] = chat.stripped
        return session | {"imported": counts}

    async def commit_new_session(
        self, workspace_id: str, events: list[NewEvent], metadata: EventMetadata
    ) -> str:
        """Append a new session's whole stream with its read models and a snapshot."""
        state = await self.sessions.repository.commit_new(
            new_id(), workspace_id, events, metadata, project_all=project_new_stream
        )
        return state.id
