"""The interop service the engine exposes as `engine.interop`: chat imports,
session exports, search with context, workspace bundles, and importing any file
a user brings (cards and lorebooks go to their own features)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from taleweaver.characters import Characters
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON, EventMetadata, NewEvent
from taleweaver.domain.formats import ImportedSession
from taleweaver.domain.session_settings import persona
from taleweaver.domain.sessions import EventType, Reply, SessionKind, known_kind, validate_title
from taleweaver.domain.turn_record import MessageIds, TurnInput, TurnRecord
from taleweaver.engine.chat_import import ChatImporter
from taleweaver.engine.export import FORMATS, export_session, session_export
from taleweaver.engine.formats import CHAT_JSONL, Formats
from taleweaver.engine.sessions import Sessions
from taleweaver.interop import bundles, detect
from taleweaver.interop.limits import check_size
from taleweaver.memory.lorebook import Lorebooks, OnDuplicate
from taleweaver.store.events import EventStore

SEARCH_CONTEXT = 2  # messages shown on each side of a hit

# (workspace id, plugin name): raises Conflict where the workspace turned the plugin off.
PluginCheck = Callable[[str, str], Awaitable[None]]


async def _any_workspace(workspace_id: str, plugin: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ExportedFile:
    body: str
    media_type: str
    suffix: str


class Interop:
    def __init__(
        self,
        sessions: Sessions,
        store: EventStore,
        characters: Characters,
        lorebooks: Lorebooks,
        formats: Formats | None = None,
        plugin_check: PluginCheck = _any_workspace,
    ) -> None:
        # The formats offered (built-in and plugins'), and whether a workspace lets a
        # plugin's format serve it.
        self.formats = formats or Formats()
        self.plugin_check = plugin_check
        self.sessions = sessions
        self.store = store
        self.characters = characters
        self.lorebooks = lorebooks
        self.chats = ChatImporter(sessions, self._character_links)
        # One workspace bundle in memory at a time in this process: each may take
        # about 2 GiB while it is parsed (interop/archive.py), and two at once must
        # not double that on a small server. A second import waits its turn.
        self._bundle_import = asyncio.Semaphore(1)

    async def import_chat(
        self,
        workspace_id: str,
        data: bytes,
        *,
        title: str | None = None,
        owner_id: str | None = None,
        metadata: EventMetadata,
    ) -> JSON:
        return await self.chats.import_sillytavern(
            workspace_id, data, title=title, owner_id=owner_id, metadata=metadata
        )

    async def export_session(self, workspace_id: str, session_id: str, fmt: str) -> str:
        return (await self.export(workspace_id, session_id, fmt)).body

    async def export(self, workspace_id: str, session_id: str, fmt: str) -> ExportedFile:
        """The session in `fmt`: a built-in format or one a plugin adds (`exporters`)."""
        if fmt.lower() in CHAT_JSONL:
            body = await export_session(
                self.sessions, workspace_id, session_id, "jsonl", player=self._player_name
            )
            return ExportedFile(body, "application/x-ndjson", FORMATS["jsonl"])
        found = self.formats.exporter(fmt)
        await self.plugin_check(workspace_id, found.plugin)
        session = await self.sessions.get(workspace_id, session_id)
        export = await session_export(
            self.sessions,
            workspace_id,
            session_id,
            player=await self._player_name(session),
            events=found.name not in ("markdown", "text"),
        )
        exporter = found.handler
        return ExportedFile(exporter.render(export), exporter.media_type, exporter.suffix)

    async def import_as(
        self,
        workspace_id: str,
        data: bytes,
        fmt: str,
        *,
        title: str | None = None,
        owner_id: str | None = None,
        metadata: EventMetadata,
    ) -> JSON:
        """A file in `fmt` (SillyTavern chat JSONL, or an importer's format) as a new session."""
        if fmt.lower() == "sillytavern":
            return await self.import_chat(
                workspace_id, data, title=title, owner_id=owner_id, metadata=metadata
            )
        found = self.formats.importer(fmt)
        await self.plugin_check(workspace_id, found.plugin)
        check_size(data, "file")
        imported = found.handler.read(data)
        return await self._import_session(
            workspace_id, imported, found.name, title=title, owner_id=owner_id, metadata=metadata
        )

    async def _import_session(
        self,
        workspace_id: str,
        imported: ImportedSession,
        fmt: str,
        *,
        title: str | None,
        owner_id: str | None,
        metadata: EventMetadata,
    ) -> JSON:
        if not isinstance(imported, ImportedSession):
            raise InvalidInput(f"the {fmt} importer read no session")
        kind = known_kind(imported.kind) if imported.kind else SessionKind.COMPANION
        for check in self.sessions.kind_checks:
            await check(workspace_id, kind)
        settings = await self.sessions.check_settings(workspace_id, dict(imported.settings))
        events = [
            NewEvent(
                EventType.SESSION_CREATED,
                {
                    "workspace_id": workspace_id,
                    "kind": str(kind),
                    "title": validate_title(title or imported.title),
                    "settings": settings,
                    "owner_id": owner_id,
                    "import": {"format": fmt},
                },
            )
        ]
        for number, turn in enumerate(imported.turns, start=1):
            record = TurnRecord(
                turn_id=os.urandom(16).hex(),
                number=number,
                action="say" if turn.player is not None else "continue",
                reply=Reply(turn.reply),
                input=TurnInput(turn.player),
                message_ids=MessageIds(os.urandom(16).hex(), os.urandom(16).hex()),
                model="imported",
                details={"imported": fmt},
            )
            events.append(record.to_event())
        session_id = await self.chats.commit_new_session(workspace_id, events, metadata)
        session = await self.sessions.get(workspace_id, session_id)
        said = sum(1 for turn in imported.turns if turn.player is not None)
        turns = len(imported.turns)
        counts = {"format": fmt, "turns": turns, "messages": said + turns}
        return session | {"imported": counts}

    async def _player_name(self, session: JSON) -> str:
        """Who played a session: the name it sets (`--as`), else its owner's display
        name ("You" if it has neither)."""
        given = persona(session.get("settings") or {})
        if given:
            return given
        owner = session.get("owner_id")
        return await self.characters.user_name(owner) if owner else "You"

    async def search(
        self,
        workspace_id: str,
        text: str,
        *,
        session_id: str | None = None,
        owners: frozenset[str] | None = None,
        limit: int = 20,
        character: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[JSON]:
        if since is not None and until is not None and since > until:
            raise InvalidInput("'since' must not be after 'until'")
        if session_id is not None:
            await self.sessions.repository.open(workspace_id, session_id)
        return await self.sessions.queries.search(
            workspace_id,
            text,
            session_id=session_id,
            owners=owners,
            limit=limit,
            character=character,
            kind=kind,
            since=since,
            until=until,
            context=SEARCH_CONTEXT,
        )

    async def export_workspace(self, workspace_id: str) -> bytes:
        return await bundles.export_workspace(self.store, workspace_id)

    async def import_workspace(
        self, workspace_id: str, data: bytes, *, ids: bundles.IdMode = "auto"
    ) -> bundles.ImportReport:
        async with self._bundle_import:
            return await bundles.import_workspace(self.store, workspace_id, data, ids=ids)

    async def import_file(
        self,
        workspace_id: str,
        data: bytes,
        *,
        filename: str | None,
        owner_id: str | None,
        metadata: EventMetadata,
        on_duplicate: OnDuplicate = "ask",
    ) -> tuple[str, JSON]:
        """Recognise the file and import it where it belongs: (kind, what was made).
        A lorebook named after its file when it has no name of its own; one already
        imported is refused with the choices unless `on_duplicate` says what to do."""
        check_size(data, "file")
        if (found := self.formats.sniff(data, filename)) is not None:
            await self.plugin_check(workspace_id, found.plugin)
            made = await self._import_session(
                workspace_id,
                found.handler.read(data),
                found.name,
                title=None,
                owner_id=owner_id,
                metadata=metadata,
            )
            return found.name, made
        kind = detect.sniff(data, filename)
        if kind == detect.CHAT:
            made = await self.import_chat(workspace_id, data, owner_id=owner_id, metadata=metadata)
            return kind, made
        if kind == detect.BUNDLE:
            return kind, (await self.import_workspace(workspace_id, data)).to_dict()
        if kind == detect.BACKUP:
            raise InvalidInput(
                "this is an instance backup: restore it with `taleweaver restore FILE`"
            )
        if kind == detect.CARD:
            made = await self.characters.import_card(
                workspace_id,
                data,
                filename=filename,
                on_duplicate=on_duplicate,
                actor=metadata.actor,
            )
            return kind, made
        made = await self.lorebooks.import_book(
            workspace_id,
            data,
            world_id=None,
            filename=filename,
            on_duplicate=on_duplicate,
            actor=metadata.actor,
        )
        return kind, made

    async def _character_links(self, workspace_id: str, name: str) -> JSON:
        """An imported chat speaks with the workspace's character of that name, when
        there is exactly one: its card and lorebooks then shape the replies."""
        characters = self.characters
        if not name.strip():
            return {}
        wanted = name.strip().casefold()
        found = [
            c
            for c in await characters.list(workspace_id, name=name.strip())
            if str(c.get("name", "")).strip().casefold() == wanted
        ]
        if len(found) != 1:
            return {}
        ids = [str(found[0]["id"])]
        return {
            "character_ids": ids,
            "lorebook_ids": await characters.lorebook_ids(workspace_id, ids),
        }
