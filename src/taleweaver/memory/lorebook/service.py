"""Lorebooks: storage, import and export, editing, and activation with per-session state.

Every query is scoped by workspace: a book in another workspace does not exist.
A change bumps the book's version, which retires its prepared automaton; an
entry edit, once committed, revises the cached one instead (what it changed,
not the whole book), so the next turn does not wait for a rebuild.

Any other change (an import, a replace, new settings) prepares the book whole,
in the background: the entries are read in batches and decoded and prepared on
a builder thread (`PreparedBooks`), so the event loop keeps serving meanwhile,
and the build starts as soon as the change is committed (and, through `warm`,
when the engine starts). What a turn sees while a book is being prepared:

- a book no version of which is prepared yet: the turn waits for the build (one
  build, shared by every turn and dry run that wants it);
- a book prepared at an older version (its settings changed, it was replaced):
  the turn activates the older version at once, with its entries and settings as
  they were before the change, until the new one is ready; the first turn after
  that uses the new one. Small books (up to SMALL_BOOK entries) are waited for
  instead, since their build takes a few tens of milliseconds;
- a dry run (an author checking a change) always waits for the current version.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.auth import AuditLog
from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.events import JSON
from taleweaver.domain.json_values import find_unstorable
from taleweaver.domain.lorebook import (
    ActiveCharacter,
    Book,
    Entry,
    Outcome,
    PreparedBook,
    Segment,
    TokenCounter,
    activate,
    entry_from_json,
    entry_to_json,
    estimate_tokens,
    generation_types,
    make_entry,
    settings_from_json,
    settings_to_json,
    update_entry,
)
from taleweaver.domain.lorebook.model import MAX_SCAN_DEPTH
from taleweaver.domain.pipeline import RecallQuery
from taleweaver.domain.session_settings import book_ids
from taleweaver.memory.lorebook.formats import parse_lorebook, to_format
from taleweaver.memory.lorebook.matcher import CACHE_SIZE, PreparedBooks, Source
from taleweaver.memory.lorebook.reimport import (
    OnDuplicate,
    ask,
    copy_name,
    file_stem,
    find_match,
)
from taleweaver.store.database import Database
from taleweaver.store.lorebook_schema import lorebook_entries, lorebook_timed, lorebooks

log = logging.getLogger(__name__)

MAX_NAME = 200
MAX_ID = 64
INSERT_BATCH = 2000
READ_BATCH = 2000  # entries read per hop when a book is prepared whole
# Books this small are prepared in a few tens of milliseconds: a turn waits for them.
SMALL_BOOK = 1_000


def _now() -> datetime:
    return datetime.now(UTC)


def _summary(row: Any) -> JSON:
    return {
        "id": row.id,
        "name": row.name,
        "format": row.format,
        "entries": row.entry_count,
        "world_id": row.world_id,
        "version": row.version,
        "settings": row.settings,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _world_id(value: str | None) -> str | None:
    if value is not None and (not value.strip() or len(value) > MAX_ID or "\x00" in value):
        raise InvalidInput(f"world_id must be 1 to {MAX_ID} characters")
    return value


def _storable(data: Any, what: str) -> None:
    """Refuse up front what one database or the other cannot store (a NUL, a lone
    surrogate, NaN), alike on both."""
    problem = find_unstorable(data)
    if problem is not None:
        raise InvalidInput(f"{what} cannot be stored: {problem}")


def _name(value: str) -> str:
    name = value.strip()
    if not name:
        raise InvalidInput("a lorebook needs a name")
    return name[:MAX_NAME]


def window(current: str | None, recent: Sequence[tuple[str, str]]) -> list[Segment]:
    """The scan window, newest first: the player's words (none on a "continue"), then
    recent messages. A scan depth of N reads the N newest of these, as SillyTavern's
    does (its chat holds the player's message by the time it scans)."""
    segments = [Segment("player message", current)] if current else []
    for back, (role, text) in enumerate(reversed(recent[-MAX_SCAN_DEPTH:]), start=1):
        segments.append(Segment(f"{role} message ({back} back)", text))
    return segments


# Who speaks this turn, asked only when a book has entries with a character filter.
Speaker = Callable[[], Awaitable[ActiveCharacter | None]]


class Lorebooks:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        *,
        cache: PreparedBooks | None = None,
        count_tokens: TokenCounter = estimate_tokens,
    ):
        self.db = db
        self.audit = audit
        self.prepared = cache or PreparedBooks()
        # How budgets are counted: the narrator's tokenizer where the engine has one.
        self.count_tokens = count_tokens
        self._warming: asyncio.Task[None] | None = None

    # --- import and export --------------------------------------------------------

    async def import_book(
        self,
        workspace_id: str,
        data: bytes | JSON,
        *,
        world_id: str | None = None,
        name: str | None = None,
        filename: str | None = None,
        on_duplicate: OnDuplicate = "copy",
        actor: str,
    ) -> JSON:
        """Detect the format, store the book and its entries; nothing is stored on error.

        The book is named `name`, else by its own name field, else after `filename`.
        One matching a book already here (see `reimport`) is refused with
        AlreadyImported under "ask", replaces that book's entries under "update", is
        left out under "skip", and is stored beside it under "copy" (the default, for
        books that come inside something else, such as a character card)."""
        if isinstance(data, bytes | bytearray):
            try:
                data = json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InvalidInput(f"the lorebook file is not valid JSON: {exc}") from None
        _storable([data, name, filename], "the lorebook")
        book = parse_lorebook(
            data, name=_name(name) if name is not None else None, fallback=file_stem(filename)
        )
        title = _name(book.name)
        book_id = uuid.uuid4().hex
        replaced: tuple[str, int] | None = None  # (book id, new version) of an update
        async with self.db.write() as conn:
            # A copy the caller named needs no match; any other import looks for one.
            wanted = on_duplicate != "copy" or name is None
            match = await find_match(conn, workspace_id, book, title) if wanted else None
            outcome: JSON = {}
            if match is not None:
                row, why = match
                outcome = {"duplicate": {"of": row.id, "match": why, "outcome": on_duplicate}}
                if on_duplicate == "ask":
                    raise ask(row, why)
                if on_duplicate == "skip":
                    kept = (row.id, row.name, row.format, row.entry_count, row.world_id)
                    return _import_result(*kept) | outcome
                if on_duplicate == "update":
                    version = await self._replace(conn, row, book, world_id, actor)
                    replaced = (row.id, version)
                    made = (row.id, title, book.format, len(book.entries), world_id or row.world_id)
                else:
                    outcome["duplicate"]["outcome"] = "copy"
                    title = copy_name(title) if title.casefold() == row.name.casefold() else title
            if replaced is None:
                await self._insert_book(conn, workspace_id, book_id, book, title, world_id, actor)
        if replaced is not None:
            # Committed: the new entries are prepared in the background, while turns go
            # on with the old ones (see the module's docstring).
            self.prepared.start(*replaced, self._load)
            return _import_result(*made) | outcome
        self.prepared.start(book_id, 1, self._load)  # ready by the first turn
        made = (book_id, title[:MAX_NAME], book.format, len(book.entries), world_id)
        return _import_result(*made) | outcome

    async def _insert_book(
        self,
        conn: AsyncConnection,
        workspace_id: str,
        book_id: str,
        book: Book,
        title: str,
        world_id: str | None,
        actor: str,
    ) -> None:
        stamp = _now()
        await conn.execute(
            lorebooks.insert().values(
                id=book_id,
                workspace_id=workspace_id,
                world_id=_world_id(world_id),
                name=title[:MAX_NAME],
                format=book.format,
                settings=settings_to_json(book.settings),
                envelope=book.envelope,
                version=1,
                entry_count=len(book.entries),
                created_at=stamp,
                updated_at=stamp,
            )
        )
        await _insert_entries(conn, workspace_id, book_id, book)
        await self.audit.record(
            actor,
            "lorebook.imported",
            workspace_id=workspace_id,
            target=book_id,
            details={"format": book.format, "entries": len(book.entries)},
            conn=conn,
        )

    async def _replace(
        self, conn: AsyncConnection, row: Any, book: Book, world_id: str | None, actor: str
    ) -> int:
        """A re-import's update: the book keeps its id, and takes the new entries."""
        await conn.execute(
            lorebook_entries.delete().where(lorebook_entries.c.lorebook_id == row.id)
        )
        await _insert_entries(conn, row.workspace_id, row.id, book)
        values: JSON = {
            "name": _name(book.name),
            "format": book.format,
            "settings": settings_to_json(book.settings),
            "envelope": book.envelope,
            "entry_count": len(book.entries),
        }
        if world_id is not None:
            values["world_id"] = _world_id(world_id)
        version = await self._bump(conn, row, **values)
        await self.audit.record(
            actor,
            "lorebook.reimported",
            workspace_id=row.workspace_id,
            target=row.id,
            details={"format": book.format, "entries": len(book.entries)},
            conn=conn,
        )
        return version

    async def export_book(self, workspace_id: str, lorebook_id: str, fmt: str) -> JSON:
        return to_format(await self.book(workspace_id, lorebook_id), fmt)

    async def book(self, workspace_id: str, lorebook_id: str) -> Book:
        """The stored book, as the format module reads and writes it."""
        async with self.db.read() as conn:
            row = await self._row(conn, workspace_id, lorebook_id)
            entries = await self._entries(conn, lorebook_id)
        return Book(
            name=row.name,
            format=row.format,
            settings=settings_from_json(row.settings),
            entries=tuple(entry_from_json(e.data) for e in entries),
            raw_entries=tuple(e.raw for e in entries),
            envelope=row.envelope,
        )

    # --- reading and editing ------------------------------------------------------

    async def list_books(self, workspace_id: str, *, world_id: str | None = None) -> list[JSON]:
        query = sa.select(lorebooks).where(lorebooks.c.workspace_id == workspace_id)
        if world_id is not None:
            query = query.where(lorebooks.c.world_id == world_id)
        async with self.db.read() as conn:
            rows = (await conn.execute(query.order_by(lorebooks.c.created_at))).all()
        return [_summary(row) for row in rows]

    async def get_book(self, workspace_id: str, lorebook_id: str) -> JSON:
        async with self.db.read() as conn:
            row = await self._row(conn, workspace_id, lorebook_id)
            entries = await self._entries(conn, lorebook_id)
        return _summary(row) | {"items": [e.data for e in entries]}

    async def update_book(
        self, workspace_id: str, lorebook_id: str, changes: JSON, *, actor: str
    ) -> JSON:
        """Change a book's name, world or settings (`changes` holds only what changes)."""
        values: JSON = {}
        _storable(changes, "the change")
        async with self.db.write() as conn:
            row = await self._row(conn, workspace_id, lorebook_id)
            if "name" in changes:
                values["name"] = _name(changes["name"])
            if "world_id" in changes:
                values["world_id"] = _world_id(changes["world_id"])
            if "settings" in changes:
                merged = dict(row.settings) | changes["settings"]
                values["settings"] = settings_to_json(settings_from_json(merged))
            version = await self._bump(conn, row, **values)
            await self.audit.record(
                actor, "lorebook.updated", workspace_id=workspace_id, target=lorebook_id, conn=conn
            )
        if "settings" not in values:  # a new name or world: the prepared book still holds
            self.prepared.rename(lorebook_id, version, values.get("name", row.name))
        if self.prepared.get(lorebook_id, version) is None:
            self.prepared.start(lorebook_id, version, self._load)
        return await self._summary(workspace_id, lorebook_id)

    async def delete_book(self, workspace_id: str, lorebook_id: str, *, actor: str) -> None:
        async with self.db.write() as conn:
            await self._row(conn, workspace_id, lorebook_id)
            await conn.execute(
                lorebook_entries.delete().where(lorebook_entries.c.lorebook_id == lorebook_id)
            )
            await conn.execute(lorebooks.delete().where(lorebooks.c.id == lorebook_id))
            await self.audit.record(
                actor, "lorebook.deleted", workspace_id=workspace_id, target=lorebook_id, conn=conn
            )
        self.prepared.forget(lorebook_id)

    async def add_entry(
        self, workspace_id: str, lorebook_id: str, fields: JSON, *, actor: str
    ) -> JSON:
        _storable(fields, "the entry")
        async with self.db.write() as conn:
            await self.db.lock(conn)
            row = await self._row(conn, workspace_id, lorebook_id)
            entries = await self._entries(conn, lorebook_id)
            uid = fields.get("uid")
            if uid is None:
                numbers = [int(e.uid) for e in entries if e.uid.isdigit()]
                uid = str(max(numbers, default=-1) + 1)
            elif not isinstance(uid, str) or not uid.strip() or len(uid) > MAX_NAME:
                raise InvalidInput(f"uid must be 1 to {MAX_NAME} characters")
            if any(e.uid == uid for e in entries):
                raise InvalidInput(f"entry {uid} already exists in this lorebook")
            entry = make_entry(uid, {k: v for k, v in fields.items() if k != "uid"})
            await conn.execute(
                lorebook_entries.insert().values(
                    lorebook_id=lorebook_id,
                    uid=uid,
                    workspace_id=workspace_id,
                    seq=max((e.seq for e in entries), default=-1) + 1,
                    data=entry_to_json(entry),
                    raw=None,
                )
            )
            version = await self._bump(conn, row, entry_count=row.entry_count + 1)
            await self.audit.record(
                actor,
                "lorebook.entry_added",
                workspace_id=workspace_id,
                target=f"{lorebook_id}/{uid}",
                conn=conn,
            )
        self.prepared.revise(lorebook_id, version, [(uid, entry)])
        return entry_to_json(entry)

    async def update_entry(
        self, workspace_id: str, lorebook_id: str, uid: str, changes: JSON, *, actor: str
    ) -> JSON:
        _storable(changes, "the entry")
        async with self.db.write() as conn:
            row = await self._row(conn, workspace_id, lorebook_id)
            stored = await self._entry_row(conn, lorebook_id, uid)
            entry = update_entry(entry_from_json(stored.data), changes)
            await conn.execute(
                lorebook_entries.update()
                .where(lorebook_entries.c.lorebook_id == lorebook_id)
                .where(lorebook_entries.c.uid == uid)
                .values(data=entry_to_json(entry))
            )
            version = await self._bump(conn, row)
            await self.audit.record(
                actor,
                "lorebook.entry_updated",
                workspace_id=workspace_id,
                target=f"{lorebook_id}/{uid}",
                conn=conn,
            )
        self.prepared.revise(lorebook_id, version, [(uid, entry)])
        return entry_to_json(entry)

    async def delete_entry(
        self, workspace_id: str, lorebook_id: str, uid: str, *, actor: str
    ) -> None:
        async with self.db.write() as conn:
            row = await self._row(conn, workspace_id, lorebook_id)
            await self._entry_row(conn, lorebook_id, uid)
            await conn.execute(
                lorebook_entries.delete()
                .where(lorebook_entries.c.lorebook_id == lorebook_id)
                .where(lorebook_entries.c.uid == uid)
            )
            version = await self._bump(conn, row, entry_count=row.entry_count - 1)
            await self.audit.record(
                actor,
                "lorebook.entry_deleted",
                workspace_id=workspace_id,
                target=f"{lorebook_id}/{uid}",
                conn=conn,
            )
        self.prepared.revise(lorebook_id, version, [(uid, None)])

    # --- activation -----------------------------------------------------------------

    async def dry_run(
        self,
        workspace_id: str,
        lorebook_id: str,
        *,
        messages: Sequence[tuple[str, str]],
        text: str | None,
        seed: str = "dry-run",
    ) -> JSON:
        """Which entries would activate for these messages, and why; nothing is stored."""
        async with self.db.read() as conn:
            row = await self._row(conn, workspace_id, lorebook_id)
        book = await self._prepare(row, fresh=True)
        outcome = activate(
            [book],
            window(text, messages),
            clock=len(messages) + 1,
            seed=seed,
            budget_tokens=book.settings.token_budget,
            count_tokens=self.count_tokens,
        )
        return describe(outcome)

    async def activate_for_session(
        self, query: RecallQuery, speaker: Speaker | None = None
    ) -> tuple[list[PreparedBook], Outcome] | None:
        """Run activation over the session's books, saving its timed effects; None if
        the session has no lorebook. `speaker` says who speaks (None: no character);
        it is asked only when a book has entries with a character filter."""
        async with self.db.read() as conn:
            rows = await self._session_rows(conn, query.workspace_id, query.settings)
            if not rows:
                return None
            state = await conn.scalar(
                sa.select(lorebook_timed.c.state)
                .where(lorebook_timed.c.session_id == query.session_id)
                .where(lorebook_timed.c.workspace_id == query.workspace_id)
            )
        books = list(await asyncio.gather(*(self._prepare(row) for row in rows)))
        filtered = speaker is not None and any(book.character_filtered for book in books)
        character = await speaker() if filtered and speaker is not None else None
        outcome = activate(
            books,
            window(query.current_text, query.recent),
            # Chat length in messages, the player's words this turn included.
            clock=2 * query.turn_number - 1,
            timed_state=state or {},
            seed=f"{query.session_id}:{query.turn_number}",
            budget_tokens=_budget(query.settings, books),
            character=character,
            generation=generation_types(query.action),
            count_tokens=self.count_tokens,
        )
        if outcome.timed != (state or {"sticky": {}, "cooldown": {}}):
            await self._save_timed(query, outcome.timed)
        return books, outcome

    async def session_books(self, workspace_id: str, settings: JSON) -> list[JSON]:
        """The books a session with these settings consults, in order, each saying
        why: "session" (listed in its settings) or "world" (attached to its world)."""
        listed = set(book_ids(settings))
        async with self.db.read() as conn:
            rows = await self._session_rows(conn, workspace_id, settings)
        return [
            _summary(row) | {"attached": "session" if row.id in listed else "world"}
            for row in rows
        ]

    async def named(self, workspace_id: str, names: Sequence[str]) -> list[str]:
        """For each name a book has (ignoring case), the first such book's id."""
        wanted = [n.strip().casefold() for n in names if n.strip()]
        if not wanted:
            return []
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(lorebooks.c.id, lorebooks.c.name)
                    .where(lorebooks.c.workspace_id == workspace_id)
                    .where(sa.func.lower(lorebooks.c.name).in_(wanted))
                    .order_by(lorebooks.c.created_at, lorebooks.c.id)
                )
            ).all()
        first: dict[str, str] = {}
        for row in rows:
            first.setdefault(row.name.casefold(), row.id)
        return list(dict.fromkeys(first[n] for n in wanted if n in first))

    async def check_listed(self, workspace_id: str, settings: JSON) -> None:
        """Refuse settings that list a lorebook this workspace does not have."""
        ids = book_ids(settings)
        if not ids:
            return
        async with self.db.read() as conn:
            known = set(
                (
                    await conn.scalars(
                        sa.select(lorebooks.c.id)
                        .where(lorebooks.c.workspace_id == workspace_id)
                        .where(lorebooks.c.id.in_(ids))
                    )
                ).all()
            )
        missing = [i for i in ids if i not in known]
        if missing:
            raise InvalidInput(f"settings.lorebook_ids: lorebook {missing[0]} not found")

    async def _session_rows(
        self, conn: AsyncConnection, workspace_id: str, settings: JSON
    ) -> list[Any]:
        """The session's own books in its order, then its world's books, oldest first."""
        ids = book_ids(settings)
        world = settings.get("world_id")
        conditions = []
        if isinstance(world, str) and world:
            conditions.append(lorebooks.c.world_id == world)
        if ids:
            conditions.append(lorebooks.c.id.in_(ids))
        if not conditions:
            return []
        rows = (
            await conn.execute(
                sa.select(lorebooks)
                .where(lorebooks.c.workspace_id == workspace_id)
                .where(sa.or_(*conditions))
                .order_by(lorebooks.c.created_at, lorebooks.c.id)
            )
        ).all()
        place = {book_id: at for at, book_id in enumerate(ids)}
        return sorted(rows, key=lambda row: place.get(row.id, len(place)))

    async def _save_timed(self, query: RecallQuery, state: JSON) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                lorebook_timed.delete()
                .where(lorebook_timed.c.session_id == query.session_id)
                .where(lorebook_timed.c.workspace_id == query.workspace_id)
            )
            await conn.execute(
                lorebook_timed.insert().values(
                    session_id=query.session_id,
                    workspace_id=query.workspace_id,
                    state=state,
                    updated_at=_now(),
                )
            )

    async def _prepare(self, row: Any, *, fresh: bool = False) -> PreparedBook:
        """The prepared book for `row`: see the module's docstring for which version."""
        cached = self.prepared.get(row.id, row.version)
        if cached is not None:
            return cached
        older = None if fresh else self.prepared.newest(row.id)
        if older is not None and older[0] < row.version and row.entry_count > SMALL_BOOK:
            self.prepared.start(row.id, row.version, self._load)  # or the one under way
            return older[1]
        prepared = await self.prepared.ready(row.id, row.version, self._load)
        if prepared is None:
            raise NotFound(f"lorebook {row.id} not found")
        return prepared

    async def _load(self, lorebook_id: str) -> Source | None:
        """The book as stored now, for a whole build: the entries are read in batches
        (the event loop serves others between them) and decoded on the builder thread.
        The version is read again after the entries, so that they are that version's."""
        while True:
            async with self.db.read() as conn:
                row = (
                    await conn.execute(sa.select(lorebooks).where(lorebooks.c.id == lorebook_id))
                ).first()
                if row is None:
                    return None
                texts = await _entry_texts(conn, lorebook_id)
                version = await conn.scalar(
                    sa.select(lorebooks.c.version).where(lorebooks.c.id == lorebook_id)
                )
            if version == row.version:
                break

        def entries() -> list[Entry]:
            return [entry_from_json(json.loads(text)) for text in texts]

        settings = settings_from_json(row.settings)
        return Source(row.version, row.name, settings, entries, size=len(texts))

    def warm(self, limit: int | None = None) -> asyncio.Task[None]:
        """Prepare stored books in the background (the engine does at start), the most
        recently changed first, as many as the cache keeps; one at a time, so that a
        turn's own build never waits behind more than one of these."""
        if self._warming is None:
            self._warming = asyncio.create_task(
                self._warm(limit or self.prepared.size), name="warm lorebooks"
            )
        return self._warming

    async def _warm(self, limit: int) -> None:
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    sa.select(lorebooks.c.id, lorebooks.c.version)
                    .order_by(lorebooks.c.updated_at.desc(), lorebooks.c.id)
                    .limit(min(limit, CACHE_SIZE))
                )
            ).all()
        for row in rows:
            try:
                await self.prepared.ready(row.id, row.version, self._load)
            except Exception as exc:  # a turn that needs the book reports it
                log.warning("preparing lorebook %s failed: %r", row.id, exc)

    async def aclose(self) -> None:
        """Stop warming and building (the engine closes before the database does)."""
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
        await self.prepared.aclose()

    # --- rows -------------------------------------------------------------------------

    async def _row(self, conn: AsyncConnection, workspace_id: str, lorebook_id: str) -> Any:
        if "\x00" in lorebook_id:
            raise NotFound(f"lorebook {lorebook_id!r} not found")
        row = (
            await conn.execute(
                sa.select(lorebooks)
                .where(lorebooks.c.id == lorebook_id)
                .where(lorebooks.c.workspace_id == workspace_id)
            )
        ).first()
        if row is None:
            raise NotFound(f"lorebook {lorebook_id} not found")
        return row

    async def _entries(self, conn: AsyncConnection, lorebook_id: str) -> list[Any]:
        query = (
            sa.select(lorebook_entries)
            .where(lorebook_entries.c.lorebook_id == lorebook_id)
            .order_by(lorebook_entries.c.seq)
        )
        return list((await conn.execute(query)).all())

    async def _entry_row(self, conn: AsyncConnection, lorebook_id: str, uid: str) -> Any:
        if "\x00" in uid:
            raise NotFound(f"entry {uid!r} not found in lorebook {lorebook_id}")
        row = (
            await conn.execute(
                sa.select(lorebook_entries)
                .where(lorebook_entries.c.lorebook_id == lorebook_id)
                .where(lorebook_entries.c.uid == uid)
            )
        ).first()
        if row is None:
            raise NotFound(f"entry {uid} not found in lorebook {lorebook_id}")
        return row

    async def _bump(self, conn: AsyncConnection, row: Any, **values: Any) -> int:
        """Bump the book's version with a change; the new version."""
        version = await conn.scalar(
            lorebooks.update()
            .where(lorebooks.c.id == row.id)
            .values(version=lorebooks.c.version + 1, updated_at=_now(), **values)
            .returning(lorebooks.c.version)
        )
        return int(version)

    async def _summary(self, workspace_id: str, lorebook_id: str) -> JSON:
        async with self.db.read() as conn:
            return _summary(await self._row(conn, workspace_id, lorebook_id))


async def _entry_texts(conn: AsyncConnection, lorebook_id: str) -> list[str]:
    """A book's stored entries as JSON text, in order, read READ_BATCH at a time."""
    query = (
        sa.select(sa.cast(lorebook_entries.c.data, sa.Text))
        .where(lorebook_entries.c.lorebook_id == lorebook_id)
        .order_by(lorebook_entries.c.seq)
    )
    texts: list[str] = []
    result = await conn.stream(query)
    async for batch in result.partitions(READ_BATCH):
        texts.extend(text for (text,) in batch)
    return texts


def _import_result(
    book_id: str, name: str, fmt: str, entries: int, world_id: str | None
) -> JSON:
    return {"id": book_id, "name": name, "format": fmt, "entries": entries, "world_id": world_id}


async def _insert_entries(
    conn: AsyncConnection, workspace_id: str, book_id: str, book: Book
) -> None:
    rows = [
        {
            "lorebook_id": book_id,
            "uid": entry.uid,
            "workspace_id": workspace_id,
            "seq": seq,
            "data": entry_to_json(entry),
            "raw": raw,
        }
        for seq, (entry, raw) in enumerate(zip(book.entries, book.raw_entries, strict=True))
    ]
    for start in range(0, len(rows), INSERT_BATCH):
        await conn.execute(lorebook_entries.insert(), rows[start : start + INSERT_BATCH])


def _budget(settings: JSON, books: Sequence[PreparedBook]) -> int | None:
    """The session's lorebook budget (tokens): its own setting, else the largest a book sets."""
    own = settings.get("lorebook_budget")
    if isinstance(own, int) and not isinstance(own, bool) and own > 0:
        return own
    budgets = [b.settings.token_budget for b in books if b.settings.token_budget]
    return max(budgets) if budgets else None


def describe(outcome: Outcome) -> JSON:
    """An activation as the dry-run route reports it."""
    return {
        "activated": [
            {
                "ref": f"{a.book_id}/{a.entry.uid}",
                "uid": a.entry.uid,
                "comment": a.entry.comment,
                "reason": a.reason,
                "step": a.step,
                "matched": list(a.matched),
                "position": a.entry.position.value,
                "content": a.entry.content,
            }
            for a in outcome.activated
        ],
        "cut": [{"ref": s.ref, "uid": s.uid, "why": s.why} for s in outcome.cut],
        "rejected": [{"ref": s.ref, "uid": s.uid, "why": s.why} for s in outcome.rejected],
        "steps": outcome.steps,
    }


__all__ = ["Lorebooks", "describe", "window"]
