"""What the studio needs from the world bible and from safety's content rules,
as the shapes it calls; the engine hands it the real services."""

from __future__ import annotations

from typing import Protocol

from taleweaver.domain.events import JSON, EventMetadata


class WorldBiblePort(Protocol):
    """The world bible, as the studio uses it (memory's `WorldBible` fits)."""

    async def world(self, workspace_id: str, world_id: str) -> JSON: ...

    async def entity_named(self, workspace_id: str, world_id: str, label: str) -> JSON | None: ...

    async def create_entry(
        self, workspace_id: str, world_id: str, data: JSON, meta: EventMetadata
    ) -> JSON: ...

    async def update_entry(
        self, workspace_id: str, world_id: str, entry_id: str, changes: JSON, meta: EventMetadata
    ) -> JSON: ...

    async def entry(self, workspace_id: str, world_id: str, entry_id: str) -> JSON: ...


class ContentRulesPort(Protocol):
    """A world's content rules (safety's `ContentPreferences` fits): its forbidden
    topics reach the narrator's prompt and the check on its reply."""

    async def rules(self, workspace_id: str, scope: str) -> JSON: ...

    async def set_rules(
        self,
        workspace_id: str,
        scope: str,
        *,
        content_warnings: list[str],
        forbidden: list[str],
        locale: str | None,
    ) -> JSON: ...
