"""Project blueprints: saved as versions in their own streams, compared and
restored, rendered as Markdown; the table's lines and veils kept in the linked
world's content rules (lines forbidden, veils as content warnings), so the
narrator's prompt and the check on its replies both honour them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import Conflict, InvalidInput, NotFound
from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.domain.studio import (
    ContentRulesPort,
    StudioEvent,
    WorldBiblePort,
    blueprint_markdown,
    blueprint_stream,
    changed_fields,
    clean_blueprint,
    diff_fields,
)
from taleweaver.store.database import Database
from taleweaver.store.events import EventStore
from taleweaver.store.studio_schema import studio_blueprints
from taleweaver.studio.versions import Kind, VersionedStore, new_id, plain

# Safety's own limit on a scope's topics (safety.content): checked before a save, so
# a blueprint is never saved with rules its world could not take.
MAX_RULE_TOPICS = 100

KIND = Kind(
    what="blueprint",
    table=studio_blueprints,
    value_key="blueprint",
    saved=StudioEvent.BLUEPRINT_SAVED,
    deleted=StudioEvent.BLUEPRINT_DELETED,
    stream=blueprint_stream,
    columns=lambda value: {
        "name": value["name"],
        "world_id": value.get("world_id"),
        "fields": value,
    },
)


# Told of each saved version once it is committed: (workspace, the blueprint as saved).
Saved = Callable[[str, JSON], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RulesChange:
    """A world's content rules as they become once a blueprint's lines and veils move."""

    scope: str
    forbidden: list[str]
    content_warnings: list[str]
    locale: str | None


def _view(row: JSON) -> JSON:
    return {
        "id": row["id"],
        "name": row["name"],
        "version": row["version"],
        "world_id": row["world_id"],
        "fields": row["fields"],
        "field_sources": row["field_sources"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "updated_by": row["updated_by"],
    }


def _swap(current: list[str], drop: list[str], add: list[str]) -> list[str]:
    dropped = {t.casefold() for t in drop}
    kept = [t for t in current if t.casefold() not in dropped]
    for topic in add:
        if topic.casefold() not in (k.casefold() for k in kept):
            kept.append(topic)
    return kept


class Blueprints:
    def __init__(
        self,
        db: Database,
        store: EventStore,
        bible: WorldBiblePort,
        content: ContentRulesPort,
    ) -> None:
        self.db = db
        self.versioned = VersionedStore(db, store, KIND)
        self.bible = bible
        self.content = content
        self.listeners: list[Saved] = []

    async def saved(self, workspace_id: str, blueprint: JSON) -> None:
        for listener in self.listeners:
            await listener(workspace_id, blueprint)

    # --- reading -----------------------------------------------------------------------

    async def get(self, workspace_id: str, blueprint_id: str) -> JSON:
        return _view(await self.versioned.get(workspace_id, blueprint_id))

    async def all(self, workspace_id: str) -> list[JSON]:
        table = studio_blueprints
        async with self.db.read() as conn:
            result = await conn.execute(
                sa.select(table)
                .where(table.c.workspace_id == workspace_id)
                .order_by(table.c.updated_at.desc(), table.c.id)
            )
            return [_view(plain(r)) for r in result]

    async def versions(self, workspace_id: str, blueprint_id: str) -> list[JSON]:
        return await self.versioned.versions(workspace_id, blueprint_id)

    async def version(self, workspace_id: str, blueprint_id: str, version: int) -> JSON:
        fields = await self.versioned.version(workspace_id, blueprint_id, version)
        return {"id": blueprint_id, "version": version, "fields": fields}

    async def diff(
        self, workspace_id: str, blueprint_id: str, from_version: int, to_version: int
    ) -> JSON:
        before = await self.versioned.version(workspace_id, blueprint_id, from_version)
        after = await self.versioned.version(workspace_id, blueprint_id, to_version)
        return {
            "id": blueprint_id,
            "from": from_version,
            "to": to_version,
            "changes": diff_fields(before, after),
        }

    async def markdown(
        self, workspace_id: str, blueprint_id: str, version: int | None = None
    ) -> str:
        if version is None:
            row = await self.versioned.get(workspace_id, blueprint_id)
            return blueprint_markdown(row["fields"], version=row["version"])
        fields = await self.versioned.version(workspace_id, blueprint_id, version)
        return blueprint_markdown(fields, version=version)

    # --- writing -----------------------------------------------------------------------

    async def create(
        self,
        workspace_id: str,
        data: Mapping[str, Any],
        meta: EventMetadata,
        *,
        sources: Mapping[str, JSON] | None = None,
    ) -> JSON:
        fields = clean_blueprint(data)
        changes = await self._plan_rules(workspace_id, None, fields)
        blueprint_id = new_id()
        changed = [f for f in fields if fields[f] not in (None, [], {})]
        row = await self.versioned.save(
            workspace_id,
            blueprint_id,
            fields,
            meta,
            create=True,
            sources=sources,
            changed=changed,
        )
        await self.apply_rules(workspace_id, changes)
        await self.saved(workspace_id, _view(row))
        return _view(row)

    async def update(
        self,
        workspace_id: str,
        blueprint_id: str,
        changes: Mapping[str, Any],
        meta: EventMetadata,
        *,
        expected_version: int | None = None,
        sources: Mapping[str, JSON] | None = None,
    ) -> JSON:
        """The blueprint with `changes` (field -> value; None clears) as a new version;
        nothing changes, no version is added."""
        current = await self.versioned.get(workspace_id, blueprint_id)
        return await self._save(
            workspace_id,
            current,
            {**current["fields"], **changes},
            meta,
            expected_version=expected_version,
            sources=sources,
        )

    async def restore(
        self, workspace_id: str, blueprint_id: str, version: int, meta: EventMetadata
    ) -> JSON:
        """A new version holding what `version` held."""
        old = await self.versioned.version(workspace_id, blueprint_id, version)
        current = await self.versioned.get(workspace_id, blueprint_id)
        return await self._save(workspace_id, current, old, meta, restored_from=version)

    async def delete(self, workspace_id: str, blueprint_id: str, meta: EventMetadata) -> None:
        current = await self.versioned.get(workspace_id, blueprint_id)
        changes = await self._plan_rules(workspace_id, current["fields"], None)
        await self.versioned.delete(workspace_id, blueprint_id, meta)
        await self.apply_rules(workspace_id, changes)

    async def _save(
        self,
        workspace_id: str,
        current: JSON,
        data: Mapping[str, Any],
        meta: EventMetadata,
        *,
        expected_version: int | None = None,
        restored_from: int | None = None,
        sources: Mapping[str, JSON] | None = None,
    ) -> JSON:
        fields = clean_blueprint(data)
        changed = changed_fields(current["fields"], fields)
        if not changed and restored_from is None:
            if expected_version is not None and expected_version != current["version"]:
                return await self._conflict(current, expected_version)
            return _view(current)
        rules = await self._plan_rules(workspace_id, current["fields"], fields)
        row = await self.versioned.save(
            workspace_id,
            current["id"],
            fields,
            meta,
            sources=sources,
            changed=changed,
            restored_from=restored_from,
            expected_version=expected_version,
        )
        await self.apply_rules(workspace_id, rules)
        await self.saved(workspace_id, _view(row))
        return _view(row)

    async def _conflict(self, current: JSON, expected: int) -> JSON:
        raise Conflict(
            f"blueprint {current['id']} is at version {current['version']}, not {expected}"
        )

    async def save_in(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        blueprint_id: str | None,
        data: Mapping[str, Any],
        meta: EventMetadata,
        *,
        sources: Mapping[str, JSON],
    ) -> tuple[str, list[RulesChange]]:
        """Create or update inside the caller's write transaction (chat to structure);
        the content-rule changes to apply once it commits."""
        if blueprint_id is None:
            fields = clean_blueprint(data)
            rules = await self._plan_rules(workspace_id, None, fields)
            blueprint_id = new_id()
            changed = [f for f in fields if fields[f] not in (None, [], {})]
            await self.versioned.save_in(
                conn, workspace_id, blueprint_id, fields, meta, create=True,
                sources=sources, changed=changed,
            )  # fmt: skip
            return blueprint_id, rules
        current = await self.versioned.row(conn, workspace_id, blueprint_id)
        if current is None:
            raise NotFound(f"blueprint {blueprint_id} not found")
        fields = clean_blueprint({**current["fields"], **data})
        changed = changed_fields(current["fields"], fields)
        if not changed:
            return blueprint_id, []
        rules = await self._plan_rules(workspace_id, current["fields"], fields)
        await self.versioned.save_in(
            conn, workspace_id, blueprint_id, fields, meta, sources=sources, changed=changed
        )
        return blueprint_id, rules

    async def check(self, workspace_id: str, data: Mapping[str, Any]) -> JSON:
        """The cleaned fields, and the linked world checked (nothing written)."""
        fields = clean_blueprint(data)
        await self._plan_rules(workspace_id, None, fields)
        return fields

    # --- lines and veils -> the world's content rules ------------------------------------

    async def _plan_rules(
        self, workspace_id: str, before: JSON | None, after: JSON | None
    ) -> list[RulesChange]:
        """What each touched world's content rules become: the old blueprint's lines and
        veils out, the new one's in, the rules anyone else set kept."""
        old_world = (before or {}).get("world_id")
        new_world = (after or {}).get("world_id")
        if new_world:
            try:
                await self.bible.world(workspace_id, new_world)
            except NotFound as exc:
                raise InvalidInput(f"world_id: world {new_world} is not in this workspace") from exc
        plans: list[RulesChange] = []
        for world in dict.fromkeys(w for w in (old_world, new_world) if w):
            scope = f"world:{world}"
            rules = await self.content.rules(workspace_id, scope)
            drop = before if before and old_world == world else {}
            add = after if after and new_world == world else {}
            forbidden = _swap(rules["forbidden"], drop.get("lines", []), add.get("lines", []))
            warnings = _swap(rules["content_warnings"], drop.get("veils", []), add.get("veils", []))
            if forbidden == rules["forbidden"] and warnings == rules["content_warnings"]:
                continue
            for what, topics in (("lines", forbidden), ("veils", warnings)):
                if len(topics) > MAX_RULE_TOPICS:
                    raise InvalidInput(
                        f"{what}: the world's content rules would hold more than "
                        f"{MAX_RULE_TOPICS} topics"
                    )
            plans.append(RulesChange(scope, forbidden, warnings, rules.get("locale")))
        return plans

    async def apply_rules(self, workspace_id: str, changes: list[RulesChange]) -> None:
        for change in changes:
            await self.content.set_rules(
                workspace_id,
                change.scope,
                content_warnings=change.content_warnings,
                forbidden=change.forbidden,
                locale=change.locale,
            )
