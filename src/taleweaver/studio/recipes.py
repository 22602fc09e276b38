"""The recipe vault: prompt recipes saved as versions in their own streams, found by
words and tags, and rendered for a tool with world entities' canon appearance
facts filled in and cited."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.domain.studio import (
    CanonEntity,
    CanonFact,
    StudioEvent,
    WorldBiblePort,
    clean_recipe,
    entity_labels,
    fill_slots,
    recipe_stream,
    render,
)
from taleweaver.domain.studio.recipes import RECIPE_FIELDS, search_text
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore
from taleweaver.store.studio_schema import studio_recipes
from taleweaver.studio.versions import Kind, VersionedStore, new_id, plain

KIND = Kind(
    what="recipe",
    table=studio_recipes,
    value_key="recipe",
    saved=StudioEvent.RECIPE_SAVED,
    deleted=StudioEvent.RECIPE_DELETED,
    stream=recipe_stream,
    columns=lambda value: {
        "name": value["name"],
        "kind": value["kind"],
        "recipe": value,
        "tags": value["tags"],
        "search_text": search_text(value),
    },
)


def _view(row: JSON) -> JSON:
    return {
        "id": row["id"],
        "version": row["version"],
        **row["recipe"],
        "field_sources": row["field_sources"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "updated_by": row["updated_by"],
    }


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _changed(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[str]:
    if before is None:
        return [f for f in RECIPE_FIELDS if after.get(f) not in (None, "", [], {})]
    return [f for f in RECIPE_FIELDS if before.get(f) != after.get(f)]


class RecipeVault:
    def __init__(self, db: Database, store: EventStore, bible: WorldBiblePort) -> None:
        self.db = db
        self.versioned = VersionedStore(db, store, KIND)
        self.bible = bible

    # --- reading -----------------------------------------------------------------------

    async def get(self, workspace_id: str, recipe_id: str) -> JSON:
        return _view(await self.versioned.get(workspace_id, recipe_id))

    async def search(
        self,
        workspace_id: str,
        *,
        text: str | None = None,
        tags: list[str] | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[JSON]:
        """Recipes whose name, description, template or tags hold every word of
        `text`, carrying every tag in `tags`."""
        table = studio_recipes
        query = sa.select(table).where(table.c.workspace_id == workspace_id)
        for word in (text or "").lower().split():
            query = query.where(table.c.search_text.like(f"%{_like(word)}%", escape="\\"))
        if kind is not None:
            query = query.where(table.c.kind == kind)
        async with self.db.read() as conn:
            result = await conn.execute(query.order_by(table.c.name, table.c.id))
            found = [_view(plain(r)) for r in result]
        wanted = [t.strip().lstrip("#").lower() for t in tags or [] if t.strip()]
        found = [r for r in found if all(t in r["tags"] for t in wanted)]
        return found[:limit]

    async def versions(self, workspace_id: str, recipe_id: str) -> list[JSON]:
        return await self.versioned.versions(workspace_id, recipe_id)

    async def version(self, workspace_id: str, recipe_id: str, version: int) -> JSON:
        recipe = await self.versioned.version(workspace_id, recipe_id, version)
        return {"id": recipe_id, "version": version, "recipe": recipe}

    async def diff(
        self, workspace_id: str, recipe_id: str, from_version: int, to_version: int
    ) -> JSON:
        before = await self.versioned.version(workspace_id, recipe_id, from_version)
        after = await self.versioned.version(workspace_id, recipe_id, to_version)
        changes = [
            {"field": f, "from": before.get(f), "to": after.get(f)}
            for f in RECIPE_FIELDS
            if before.get(f) != after.get(f)
        ]
        return {"id": recipe_id, "from": from_version, "to": to_version, "changes": changes}

    # --- writing -----------------------------------------------------------------------

    async def create(
        self,
        workspace_id: str,
        data: Mapping[str, Any],
        meta: EventMetadata,
        *,
        sources: Mapping[str, JSON] | None = None,
    ) -> JSON:
        recipe = await self.check(workspace_id, data)
        row = await self.versioned.save(
            workspace_id,
            new_id(),
            recipe,
            meta,
            create=True,
            sources=sources,
            changed=_changed(None, recipe),
        )
        return _view(row)

    async def update(
        self,
        workspace_id: str,
        recipe_id: str,
        changes: Mapping[str, Any],
        meta: EventMetadata,
        *,
        expected_version: int | None = None,
    ) -> JSON:
        current = await self.versioned.get(workspace_id, recipe_id)
        recipe = await self.check(workspace_id, {**current["recipe"], **changes})
        changed = _changed(current["recipe"], recipe)
        if not changed and expected_version in (None, current["version"]):
            return _view(current)
        row = await self.versioned.save(
            workspace_id,
            recipe_id,
            recipe,
            meta,
            changed=changed,
            expected_version=expected_version,
        )
        return _view(row)

    async def restore(
        self, workspace_id: str, recipe_id: str, version: int, meta: EventMetadata
    ) -> JSON:
        old = await self.versioned.version(workspace_id, recipe_id, version)
        current = await self.versioned.get(workspace_id, recipe_id)
        row = await self.versioned.save(
            workspace_id,
            recipe_id,
            old,
            meta,
            changed=_changed(current["recipe"], old),
            restored_from=version,
        )
        return _view(row)

    async def delete(self, workspace_id: str, recipe_id: str, meta: EventMetadata) -> None:
        await self.versioned.delete(workspace_id, recipe_id, meta)

    async def check(self, workspace_id: str, data: Mapping[str, Any]) -> JSON:
        """The cleaned recipe, its default world checked (nothing written)."""
        recipe = clean_recipe(data)
        if recipe["world_id"]:
            await self._world(workspace_id, recipe["world_id"])
        return recipe

    async def save_in(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        recipe_id: str | None,
        recipe: JSON,
        meta: EventMetadata,
        *,
        sources: Mapping[str, JSON],
    ) -> str:
        """Create or update a checked recipe inside the caller's write transaction."""
        if recipe_id is None:
            recipe_id = new_id()
            await self.versioned.save_in(
                conn, workspace_id, recipe_id, recipe, meta, create=True,
                sources=sources, changed=_changed(None, recipe),
            )  # fmt: skip
            return recipe_id
        current = await self.versioned.row(conn, workspace_id, recipe_id)
        if current is None:
            raise NotFound(f"recipe {recipe_id} not found")
        changed = _changed(current["recipe"], recipe)
        if changed:
            await self.versioned.save_in(
                conn, workspace_id, recipe_id, recipe, meta, sources=sources, changed=changed
            )
        return recipe_id

    # --- rendering ---------------------------------------------------------------------

    async def render(
        self,
        workspace_id: str,
        recipe_id: str,
        values: Mapping[str, Any],
        *,
        tool: str = "generic",
        world_id: str | None = None,
    ) -> JSON:
        """The recipe filled and rendered for `tool`; `[[Name]]` in the result pulls
        that entity's canon appearance facts from the world (the call's, or the
        recipe's own), each cited by entity and fact id."""
        row = await self.versioned.get(workspace_id, recipe_id)
        recipe = row["recipe"]
        filled = fill_slots(recipe, values)
        labels = entity_labels(filled)
        world = world_id or recipe["world_id"]
        entities: dict[str, CanonEntity] = {}
        if labels:
            if world is None:
                raise InvalidInput(
                    f"[[{labels[0]}]] names a world entity: give world_id to look it up in"
                )
            await self._world(workspace_id, world)
            for label in labels:
                found = await self.bible.entity_named(workspace_id, world, label)
                if found is None:
                    raise InvalidInput(f"[[{label}]] is not an entity of world {world}")
                entities[label] = CanonEntity(
                    id=found["id"],
                    name=found["name"],
                    status=found["status"],
                    facts=tuple(
                        CanonFact(f["id"], f["attribute"], f["value"])
                        for f in found.get("facts", [])
                        if f.get("status", "active") == "active"
                    ),
                )
        rendered = render(recipe, filled, entities, tool).to_dict()
        return {"recipe_id": recipe_id, "version": row["version"], "world_id": world, **rendered}

    async def _world(self, workspace_id: str, world_id: str) -> None:
        try:
            await self.bible.world(workspace_id, world_id)
        except NotFound as exc:
            raise InvalidInput(f"world_id: world {world_id} is not in this workspace") from exc
