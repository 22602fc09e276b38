"""The characters service: import, export, read, edit and delete cards; avatars;
relationship state; companion sessions (see `companions`)."""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from taleweaver.characters.cards import avatar, export_bytes, icon_path, split_ours
from taleweaver.characters.companions import Companions
from taleweaver.characters.relationships import Relationships
from taleweaver.characters.storage import Asset, CharacterStore, clean_tags, now
from taleweaver.domain.characters import EDITABLE_FIELDS, Card, apply_edit, normalise_card
from taleweaver.domain.errors import AlreadyImported, InvalidInput, NotFound
from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.interop import read_card_file
from taleweaver.store.database import Database
from taleweaver.store.repository import SessionRepository

log = logging.getLogger(__name__)

OURS = ("voice", "avatar_url", "model_url")
# "ask": refuse a card already imported (AlreadyImported); the others say what to do.
OnDuplicate = Literal["ask", "update", "copy", "skip"]
DEFAULT_USER_NAME = "User"


class LorebookImporter(Protocol):
    """What registering an embedded character book needs of the lorebooks feature."""

    async def import_book(
        self,
        workspace_id: str,
        book_json: JSON,
        *,
        world_id: str | None = None,
        name: str,
        actor: str,
    ) -> Any: ...

    async def named(self, workspace_id: str, names: Sequence[str]) -> builtins.list[str]:
        """For each name that a book has, one such book's id, in the order given."""
        ...


# Every writer's check of a session's settings (the engine's sessions service).
SettingsCheck = Callable[[str, JSON], Awaitable[JSON]]


class UserDirectory(Protocol):
    async def user(self, user_id: str) -> JSON: ...


class AuditTrail(Protocol):
    async def record(
        self,
        actor: str,
        action: str,
        *,
        workspace_id: str | None = None,
        target: str | None = None,
        details: JSON | None = None,
        conn: Any = None,
    ) -> None: ...


def card_of(row: JSON) -> Card:
    return Card(row["card"], row["source_spec"], {})


def summary(row: JSON, tags: list[str]) -> JSON:
    return {
        "id": row["id"],
        "name": row["name"],
        "display_name": row["display_name"],
        "format": row["source_format"],
        "spec": row["source_spec"],
        "tags": tags,
        "lorebook_id": row["lorebook_id"],
        # ISO strings: what the service returns is plain JSON, ready to print or store.
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def view(row: JSON, tags: list[str], assets: list[JSON]) -> JSON:
    """A character as `get` answers: the summary, the card, Taleweaver's settings, assets."""
    return summary(row, tags) | {
        "card": row["card"],
        "taleweaver": {
            "voice": row["voice"],
            "avatar_url": row["avatar_url"],
            "model_url": row["model_url"],
            "extra": row["extra"],
        },
        "edited": row["edited"],
        "has_avatar": icon_path(card_of(row), [(a["kind"], a["path"]) for a in assets]) is not None,
        "assets": assets,
    }


class Characters:
    """Every workspace's characters. (Its `list` method shadows the builtin in the
    class body, so annotations there say `builtins.list`.)"""

    def __init__(
        self,
        db: Database,
        repository: SessionRepository,
        *,
        audit: AuditTrail,
        users: UserDirectory | None = None,
        lorebooks: LorebookImporter | None = None,
        settings_check: SettingsCheck | None = None,
    ) -> None:
        self.db = db
        self.store = CharacterStore(db)
        self.audit = audit
        self.users = users
        self.lorebooks = lorebooks
        self.settings_check = settings_check
        self.relationships = Relationships(db, repository.queries)
        self.companions = Companions(self, repository)

    # --- import and export ------------------------------------------------------------

    async def import_card(
        self,
        workspace_id: str,
        data: bytes,
        *,
        filename: str | None = None,
        on_duplicate: OnDuplicate = "copy",
        actor: str,
    ) -> JSON:
        """A PNG, JSON or CHARX card (told apart by content) as a new character.

        Everything is checked before anything is written; a bad file raises a
        4xx error (InvalidInput, PayloadTooLarge) and leaves no row behind.
        A card matching a character already here (the same card, or one of the same
        name) is refused with AlreadyImported under "ask", is left out under "skip",
        replaces that character's card under "update", and is kept beside it under
        "copy" (the default).
        """
        found = read_card_file(data, filename)
        card = normalise_card(found.card)
        if on_duplicate != "copy":
            match = await self._match(workspace_id, card)
            if match is not None:
                return await self._reimport(workspace_id, match, card, found, on_duplicate, actor)
        ours = split_ours(card.taleweaver)
        assets = [Asset("file", path, content) for path, content in found.files.items()]
        if found.image is not None:
            assets.insert(0, Asset("image", "avatar.png", found.image))
        character_id = uuid.uuid4().hex
        stamp = now()
        row: JSON = {
            "id": character_id,
            "workspace_id": workspace_id,
            "name": card.name,
            "display_name": card.display_name,
            "card": card.card,
            "raw": found.text,
            "source_format": found.format,
            "source_spec": card.source_spec,
            "edited": False,
            "lorebook_id": None,
            "created_by": actor,
            "created_at": stamp,
            "updated_at": stamp,
        } | ours
        async with self.db.write() as conn:
            await self.store.insert(conn, row, card.tags, assets)
            await self.audit.record(
                actor,
                "character.imported",
                workspace_id=workspace_id,
                target=character_id,
                details={"format": found.format, "spec": card.source_spec, "name": card.name},
                conn=conn,
            )
        if card.character_book is not None:
            row["lorebook_id"] = await self._register_book(workspace_id, character_id, card, actor)
        # Built from what was just written: no need to read it back.
        return view(row, sorted(clean_tags(card.tags)), [a.describe() for a in assets])

    async def _match(self, workspace_id: str, card: Card) -> tuple[JSON, str] | None:
        """(row, "same content" | "same name") of the character this card matches."""
        named, _ = await self.store.page(
            workspace_id, tag=None, name=card.name, limit=None, offset=0
        )
        ids = [r["id"] for r in named if r["name"].casefold() == card.name.casefold()]
        rows = await self.store.rows(workspace_id, ids)
        found = [rows[i] for i in ids if i in rows]
        same = [r for r in found if r["card"] == card.card]
        if same:
            return same[0], "same content"
        return (found[0], "same name") if found else None

    async def _reimport(
        self,
        workspace_id: str,
        match: tuple[JSON, str],
        card: Card,
        found: Any,
        on_duplicate: OnDuplicate,
        actor: str,
    ) -> JSON:
        row, why = match
        if on_duplicate == "ask":
            raise AlreadyImported(
                f"this card was already imported ({why} as '{row['name']}', id {row['id']}): "
                "import it again with on_duplicate=update (replace that character's card), "
                "copy (keep both) or skip",
                {"id": row["id"], "name": row["name"], "match": why},
            )
        if on_duplicate == "update":
            values = {
                "name": card.name,
                "display_name": card.display_name,
                "card": card.card,
                "raw": found.text,
                "source_format": found.format,
                "source_spec": card.source_spec,
                "edited": False,
            }
            await self.store.update(workspace_id, row["id"], values, card.tags)
            await self.audit.record(
                actor, "character.reimported", workspace_id=workspace_id, target=row["id"]
            )
        view = await self.get(workspace_id, row["id"])
        return view | {"duplicate": {"of": row["id"], "match": why, "outcome": on_duplicate}}

    async def _register_book(
        self, workspace_id: str, character_id: str, card: Card, actor: str
    ) -> str | None:
        """Make the embedded book activate like any lorebook (it also stays in the card)."""
        if self.lorebooks is None:
            log.warning(
                "character %s: its character_book is kept in the card but not registered "
                "as a lorebook (the lorebooks feature is not available)",
                character_id,
            )
            return None
        book = card.character_book or {}
        name = str(book.get("name") or f"{card.name} (character book)")
        try:
            made = await self.lorebooks.import_book(
                workspace_id, book, world_id=None, name=name, actor=actor
            )
        except Exception:
            # The book was refused: take the character back out, so nothing is half-written.
            await self.store.delete(workspace_id, character_id)
            raise
        lorebook_id = made.get("id") if isinstance(made, dict) else None
        if not lorebook_id:
            return None
        await self.store.update(
            workspace_id, character_id, {"lorebook_id": lorebook_id}, None, touch=False
        )
        return str(lorebook_id)

    async def export_card(
        self,
        workspace_id: str,
        character_id: str,
        fmt: str,
        *,
        relationships_for: Sequence[str] = (),
    ) -> bytes:
        """The character as a card file: "png", "json" or "charx".

        `relationships_for`: users whose relationship state goes into
        `extensions.taleweaver.relationships` (none by default: it is personal, and
        an import never reads it back, since the state is derived from sessions)."""
        row = await self.store.row(workspace_id, character_id)
        assets = await self.store.assets(workspace_id, character_id)
        extra: JSON = {}
        if relationships_for:
            extra["relationships"] = [
                await self.relationships.view(workspace_id, character_id, user)
                for user in dict.fromkeys(relationships_for)
            ]
        return export_bytes(row, card_of(row), assets, fmt, extra=extra)

    # --- reading ---------------------------------------------------------------------

    async def get(self, workspace_id: str, character_id: str) -> JSON:
        row = await self.store.row(workspace_id, character_id)
        tags = (await self.store.tags([character_id]))[character_id]
        return view(row, tags, await self.store.asset_list(workspace_id, character_id))

    async def page(
        self,
        workspace_id: str,
        *,
        tag: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[builtins.list[JSON], int]:
        rows, total = await self.store.page(
            workspace_id, tag=tag, name=name, limit=limit, offset=offset
        )
        tags = await self.store.tags([r["id"] for r in rows])
        return [summary(r, tags[r["id"]]) for r in rows], total

    async def list(
        self,
        workspace_id: str,
        *,
        tag: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[JSON]:
        """Summaries of the workspace's characters, oldest first (all of them by default)."""
        rows, _ = await self.page(workspace_id, tag=tag, name=name, limit=limit, offset=offset)
        return rows

    async def avatar(self, workspace_id: str, character_id: str) -> tuple[str, bytes]:
        """(media type, bytes) of the character's picture."""
        row = await self.store.row(workspace_id, character_id)
        found = avatar(card_of(row), await self.store.assets(workspace_id, character_id))
        if found is None:
            raise NotFound(f"character {character_id} has no avatar image")
        return found.media_type, found.data

    async def relationship(self, workspace_id: str, character_id: str, user_id: str) -> JSON:
        await self.store.row(workspace_id, character_id)
        return await self.relationships.view(workspace_id, character_id, user_id)

    # --- editing ---------------------------------------------------------------------

    async def update(
        self, workspace_id: str, character_id: str, changes: Mapping[str, Any], *, actor: str
    ) -> JSON:
        """Change card fields (`EDITABLE_FIELDS`) and Taleweaver's own (`voice`,
        `avatar_url`, `model_url`); the card is checked again as on import."""
        unknown = set(changes) - set(EDITABLE_FIELDS) - set(OURS)
        if unknown:
            raise InvalidInput(f"these fields cannot be edited: {', '.join(sorted(unknown))}")
        row = await self.store.row(workspace_id, character_id)
        card_changes = {k: v for k, v in changes.items() if k not in OURS}
        card = apply_edit(card_of(row), card_changes) if card_changes else card_of(row)
        values: JSON = {
            "card": card.card,
            "name": card.name,
            "display_name": card.display_name,
            "edited": True,
        }
        for key in OURS:
            if key in changes:
                values[key] = changes[key] if key != "voice" else dict(changes[key] or {})
        tags = card.tags if "tags" in card_changes else None
        await self.store.update(workspace_id, character_id, values, tags)
        await self.audit.record(
            actor,
            "character.updated",
            workspace_id=workspace_id,
            target=character_id,
            details={"fields": sorted(changes)},
        )
        return await self.get(workspace_id, character_id)

    async def delete(self, workspace_id: str, character_id: str, *, actor: str) -> None:
        await self.store.delete(workspace_id, character_id)
        await self.audit.record(
            actor, "character.deleted", workspace_id=workspace_id, target=character_id
        )

    # --- for companion sessions -------------------------------------------------------

    async def start_session(
        self,
        workspace_id: str,
        character_ids: builtins.list[str],
        *,
        owner_id: str | None,
        title: str | None = None,
        greeting: int | None = None,
        settings: JSON | None = None,
        metadata: EventMetadata,
    ) -> str:
        """A new companion session with these characters, opened by a greeting
        (`greeting`: its index among first_mes and the alternates; unset: a seeded
        choice). The first character greets; its embedded lorebook is linked."""
        return await self.companions.start(
            workspace_id,
            character_ids,
            owner_id=owner_id,
            title=title,
            greeting=greeting,
            settings=settings,
            metadata=metadata,
        )

    async def user_name(self, user_id: str | None) -> str:
        """What `{{user}}` stands for: the player's display name, else "User"."""
        if user_id is None or self.users is None:
            return DEFAULT_USER_NAME
        try:
            found = await self.users.user(user_id)
        except NotFound:
            return DEFAULT_USER_NAME
        name = found.get("display_name")
        return name if isinstance(name, str) and name.strip() else DEFAULT_USER_NAME

    async def cards(self, workspace_id: str, character_ids: builtins.list[str]) -> dict[str, Card]:
        rows = await self.store.rows(workspace_id, character_ids)
        return {cid: card_of(row) for cid, row in rows.items()}

    async def lorebook_ids(
        self, workspace_id: str, character_ids: builtins.list[str]
    ) -> builtins.list[str]:
        """The characters' lorebooks: each one's embedded book, then the World Info
        books their cards link by name (`extensions.world`), each once."""
        rows = await self.store.rows(workspace_id, character_ids)
        found = [r for c in character_ids if (r := rows.get(c)) is not None]
        embedded = [r["lorebook_id"] for r in found if r["lorebook_id"]]
        worlds = [w for r in found if (w := card_of(r).world) is not None]
        linked = []
        if worlds and self.lorebooks is not None:
            linked = await self.lorebooks.named(workspace_id, worlds)
        return list(dict.fromkeys([*embedded, *linked]))
