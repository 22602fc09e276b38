"""A session's lorebooks: attach, detach and reorder the books it consults.

The session's own books are its `lorebook_ids` setting, in the order they are
consulted; its world's books follow them. Every change is a settings change
through the sessions service, so it is an event like any other.
"""

from __future__ import annotations

from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.domain.session_settings import book_ids
from taleweaver.engine.sessions import Sessions
from taleweaver.memory.lorebook import Lorebooks


class SessionLorebooks:
    def __init__(self, sessions: Sessions, lorebooks: Lorebooks) -> None:
        self.sessions = sessions
        self.lorebooks = lorebooks

    async def books(self, workspace_id: str, session_id: str) -> list[JSON]:
        """The books the session consults, in order, each saying how it is attached."""
        settings = (await self.sessions.get(workspace_id, session_id))["settings"]
        return await self.lorebooks.session_books(workspace_id, settings)

    async def attach(
        self,
        workspace_id: str,
        session_id: str,
        lorebook_id: str,
        *,
        position: int | None = None,
        metadata: EventMetadata,
    ) -> list[JSON]:
        """Add the book to the session's own (at `position`, else last); attaching
        one already there moves it."""
        await self.lorebooks.get_book(workspace_id, lorebook_id)  # NotFound if absent
        ids = [i for i in await self._ids(workspace_id, session_id) if i != lorebook_id]
        at = len(ids) if position is None else position
        if not 0 <= at <= len(ids):
            raise InvalidInput(f"position must be between 0 and {len(ids)}")
        ids.insert(at, lorebook_id)
        return await self._save(workspace_id, session_id, ids, metadata)

    async def detach(
        self, workspace_id: str, session_id: str, lorebook_id: str, *, metadata: EventMetadata
    ) -> list[JSON]:
        ids = await self._ids(workspace_id, session_id)
        if lorebook_id not in ids:
            if any(b["id"] == lorebook_id for b in await self.books(workspace_id, session_id)):
                raise InvalidInput(
                    f"lorebook {lorebook_id} comes with the session's world: take it out of "
                    "the world (PATCH /api/v1/lorebooks/{id} with another world_id) instead"
                )
            raise NotFound(f"lorebook {lorebook_id} is not attached to session {session_id}")
        return await self._save(
            workspace_id, session_id, [i for i in ids if i != lorebook_id], metadata
        )

    async def reorder(
        self, workspace_id: str, session_id: str, order: list[str], *, metadata: EventMetadata
    ) -> list[JSON]:
        """Put the session's own books in this order (every one of them, each once)."""
        ids = await self._ids(workspace_id, session_id)
        if sorted(order) != sorted(ids):
            raise InvalidInput(
                "the new order must name each of the session's own lorebooks once: "
                + (", ".join(ids) or "(it has none)")
            )
        return await self._save(workspace_id, session_id, order, metadata)

    async def _ids(self, workspace_id: str, session_id: str) -> list[str]:
        return book_ids((await self.sessions.get(workspace_id, session_id))["settings"])

    async def _save(
        self, workspace_id: str, session_id: str, ids: list[str], metadata: EventMetadata
    ) -> list[JSON]:
        updated = await self.sessions.update(
            workspace_id, session_id, settings={"lorebook_ids": ids}, metadata=metadata
        )
        return await self.lorebooks.session_books(workspace_id, updated["settings"])
