"""Characters, their tags and assets in the database; every query scoped by workspace."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.errors import NotFound
from taleweaver.domain.events import JSON
from taleweaver.store.characters_schema import (
    character_assets,
    character_sessions,
    character_tags,
    characters,
    relationships,
)
from taleweaver.store.database import Database

MAX_TAG_CHARS = 200
# What a listing shows: everything but the card itself.
SUMMARY_COLUMNS = [c for c in characters.columns if c.name not in ("card", "raw", "voice", "extra")]


def now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def media_type(path: str) -> str:
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"


def clean_tags(tags: list[str]) -> list[str]:
    """Distinct, trimmed, non-empty tags short enough for their column, in order."""
    seen: dict[str, None] = {}
    for tag in tags:
        cleaned = tag.strip()[:MAX_TAG_CHARS]
        if cleaned:
            seen.setdefault(cleaned, None)
    return list(seen)


@dataclass(frozen=True, slots=True)
class Asset:
    kind: str  # "image" (a PNG card's picture) or "file" (a CHARX entry)
    path: str
    data: bytes

    @property
    def media_type(self) -> str:
        return "image/png" if self.kind == "image" else media_type(self.path)

    def describe(self) -> JSON:
        """The asset without its bytes, as `asset_list` gives it."""
        return {
            "kind": self.kind,
            "path": self.path,
            "media_type": self.media_type,
            "size": len(self.data),
        }


class CharacterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(
        self, conn: AsyncConnection, row: JSON, tags: list[str], assets: list[Asset]
    ) -> None:
        await conn.execute(characters.insert().values(row))
        await self._write_tags(conn, row["workspace_id"], row["id"], tags, fresh=True)
        if assets:
            await conn.execute(
                character_assets.insert(),
                [
                    {
                        "id": f"{row['id']}-{index:04d}",
                        "workspace_id": row["workspace_id"],
                        "character_id": row["id"],
                        "kind": asset.kind,
                        "path": asset.path,
                        "media_type": asset.media_type,
                        "size": len(asset.data),
                        "data": asset.data,
                    }
                    for index, asset in enumerate(assets)
                ],
            )

    async def _write_tags(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        character_id: str,
        tags: list[str],
        *,
        fresh: bool = False,
    ) -> None:
        if not fresh:
            await conn.execute(
                character_tags.delete().where(character_tags.c.character_id == character_id)
            )
        cleaned = clean_tags(tags)
        if cleaned:
            await conn.execute(
                character_tags.insert(),
                [
                    {"character_id": character_id, "tag": t, "workspace_id": workspace_id}
                    for t in cleaned
                ],
            )

    async def row(self, workspace_id: str, character_id: str) -> JSON:
        async with self.db.read() as conn:
            found = (
                await conn.execute(
                    sa.select(characters).where(
                        characters.c.id == character_id, characters.c.workspace_id == workspace_id
                    )
                )
            ).first()
        if found is None:
            raise NotFound(f"character {character_id} not found")
        return _row_dict(found)

    async def rows(self, workspace_id: str, character_ids: list[str]) -> dict[str, JSON]:
        """The characters of this workspace among `character_ids` (missing ones left out)."""
        if not character_ids:
            return {}
        async with self.db.read() as conn:
            found = await conn.execute(
                sa.select(characters).where(
                    characters.c.workspace_id == workspace_id,
                    characters.c.id.in_(sorted(set(character_ids))),
                )
            )
            return {r.id: _row_dict(r) for r in found}

    async def page(
        self,
        workspace_id: str,
        *,
        tag: str | None,
        name: str | None,
        limit: int | None,
        offset: int,
    ) -> tuple[list[JSON], int]:
        conditions: list[Any] = [characters.c.workspace_id == workspace_id]
        if tag is not None:
            tagged = sa.select(character_tags.c.character_id).where(
                character_tags.c.workspace_id == workspace_id,
                sa.func.lower(character_tags.c.tag) == tag.strip().lower(),
            )
            conditions.append(characters.c.id.in_(tagged))
        if name is not None:
            escaped = name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(sa.func.lower(characters.c.name).like(f"%{escaped}%", escape="\\"))
        query = (
            sa.select(*SUMMARY_COLUMNS)
            .where(*conditions)
            .order_by(characters.c.created_at, characters.c.id)
            .offset(offset)
        )
        if limit is not None:
            query = query.limit(limit)
        async with self.db.read() as conn:
            found = [_row_dict(r) for r in await conn.execute(query)]
            total = await conn.scalar(
                sa.select(sa.func.count()).select_from(characters).where(*conditions)
            )
        return found, int(total or 0)

    async def tags(self, character_ids: list[str]) -> dict[str, list[str]]:
        if not character_ids:
            return {}
        out: dict[str, list[str]] = {cid: [] for cid in character_ids}
        async with self.db.read() as conn:
            for r in await conn.execute(
                sa.select(character_tags.c.character_id, character_tags.c.tag).where(
                    character_tags.c.character_id.in_(character_ids)
                )
            ):
                out[r.character_id].append(r.tag)
        # Sorted here, not in SQL: collations differ between SQLite and PostgreSQL.
        return {cid: sorted(tags) for cid, tags in out.items()}

    async def update(
        self,
        workspace_id: str,
        character_id: str,
        values: JSON,
        tags: list[str] | None,
        *,
        touch: bool = True,
    ) -> None:
        """Change columns (and tags when given); `touch`: an edit, so updated_at moves."""
        async with self.db.write() as conn:
            done = await conn.execute(
                characters.update()
                .where(characters.c.id == character_id, characters.c.workspace_id == workspace_id)
                .values(values | ({"updated_at": now()} if touch else {}))
            )
            if done.rowcount == 0:
                raise NotFound(f"character {character_id} not found")
            if tags is not None:
                await self._write_tags(conn, workspace_id, character_id, tags)

    async def delete(self, workspace_id: str, character_id: str) -> None:
        async with self.db.write() as conn:
            await self.delete_in(conn, workspace_id, character_id)

    async def delete_in(self, conn: AsyncConnection, workspace_id: str, character_id: str) -> None:
        scoped = (characters.c.id == character_id) & (characters.c.workspace_id == workspace_id)
        exists = await conn.scalar(sa.select(characters.c.id).where(scoped))
        if exists is None:
            raise NotFound(f"character {character_id} not found")
        for table in (character_assets, character_tags, character_sessions, relationships):
            await conn.execute(table.delete().where(table.c.character_id == character_id))
        await conn.execute(characters.delete().where(scoped))

    async def assets(self, workspace_id: str, character_id: str) -> list[Asset]:
        async with self.db.read() as conn:
            found = await conn.execute(
                sa.select(character_assets.c.kind, character_assets.c.path, character_assets.c.data)
                .where(
                    character_assets.c.character_id == character_id,
                    character_assets.c.workspace_id == workspace_id,
                )
                .order_by(character_assets.c.id)
            )
            return [Asset(r.kind, r.path, bytes(r.data)) for r in found]

    async def asset_list(self, workspace_id: str, character_id: str) -> list[JSON]:
        """The assets without their bytes."""
        async with self.db.read() as conn:
            found = await conn.execute(
                sa.select(
                    character_assets.c.kind,
                    character_assets.c.path,
                    character_assets.c.media_type,
                    character_assets.c.size,
                )
                .where(
                    character_assets.c.character_id == character_id,
                    character_assets.c.workspace_id == workspace_id,
                )
                .order_by(character_assets.c.id)
            )
            return [dict(r._mapping) for r in found]


def _row_dict(row: Any) -> JSON:
    data = dict(row._mapping)
    data["created_at"] = _utc(data["created_at"])
    data["updated_at"] = _utc(data["updated_at"])
    return data
