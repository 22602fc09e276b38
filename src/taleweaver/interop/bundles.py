"""A workspace as a portable bundle, and a bundle imported into a workspace.

A bundle is a zip: `manifest.json`, `events.jsonl` (every stream of the workspace
in commit order: sessions, worlds, whatever else lives in the event log) and
`tables/<name>.jsonl` for each feature table keyed by `workspace_id` that events
do not derive (characters, assets, lorebooks...; found in the schema metadata, so
tables added later are carried too). Accounts, memberships, secrets (sealed with
this instance's keys), usage and the audit chain stay with the instance.

Ids: preserved when none of the bundle's ids exist in the target instance (a
restore into a new instance), remapped to fresh ones otherwise (a copy beside the
original); `ids=` forces either. Remapping replaces every occurrence of an old id
(stream ids, message ids, primary keys of feature rows) in payloads and rows. The
workspace id is always the target's. Events keep their recorded time and
metadata, so export → import → export gives the same content (ids aside when
remapped). The import is one transaction: a bad bundle writes nothing.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver import __version__
from taleweaver.domain.errors import ConcurrencyConflict, Conflict, InvalidInput, NotFound
from taleweaver.domain.events import JSON, CopiedEvent, NewEvent, RecordedEvent
from taleweaver.domain.json_values import find_unstorable
from taleweaver.domain.sessions import EventType
from taleweaver.interop import bounded_json
from taleweaver.interop import rows as tablerows
from taleweaver.interop.archive import SafeZip, bundle_limits
from taleweaver.interop.limits import check_size, gc_paused, release
from taleweaver.interop.readmodel import project_new_stream
from taleweaver.store import migrate
from taleweaver.store.events import EventStore
from taleweaver.store.schema import events, workspaces

FORMAT = "taleweaver-workspace"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EVENTS = "events.jsonl"
IdMode = Literal["auto", "preserve", "remap"]
# A NUL or a UTF-16 surrogate can only reach a parsed line through a \u escape
# (raw control characters are not JSON); pairs are fine, the walk tells them apart.
_MAYBE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")

# Tables with a workspace_id that a bundle leaves out: the event log and its read
# models (rebuilt from the events), and what belongs to the instance, not the story.
INSTANCE_TABLES = frozenset(
    {
        "workspaces",
        "events",
        "snapshots",
        "sessions",
        "messages",
        "memberships",
        "assignments",
        "secrets",
        "audit_log",
        "api_keys",
        "model_usage",
        "users",
        "identities",
        "login_sessions",
        # Background jobs: this instance's work (and exports' own files), not the story.
        "jobs",
    }
)


def feature_tables() -> list[sa.Table]:
    return [
        t
        for t in tablerows.tables()
        if "workspace_id" in t.columns and t.name not in INSTANCE_TABLES
    ]


@dataclass(slots=True)
class Bundle:
    manifest: JSON
    events: list[JSON] = field(default_factory=list)
    tables: dict[str, list[JSON]] = field(default_factory=dict)


# --- export ---------------------------------------------------------------------------


async def export_workspace(store: EventStore, workspace_id: str) -> bytes:
    with gc_paused():  # collections over every event read so far: see gc_paused
        return await _export(store, workspace_id)


async def _export(store: EventStore, workspace_id: str) -> bytes:
    db = store.db
    async with db.read() as conn:
        found = (
            await conn.execute(sa.select(workspaces).where(workspaces.c.id == workspace_id))
        ).first()
        if found is None:
            raise NotFound(f"workspace {workspace_id} not found")
        streams = [
            r[0]
            for r in await conn.execute(
                sa.select(events.c.stream_id)
                .where(events.c.workspace_id == workspace_id)
                .group_by(events.c.stream_id)
                .order_by(sa.func.min(events.c.position))
            )
        ]
        tables: dict[str, list[JSON]] = {}
        for table in feature_tables():
            query = (
                sa.select(table)
                .where(table.c.workspace_id == workspace_id)
                .order_by(*tablerows.order_by(table))
            )
            tables[table.name] = [
                tablerows.encode(table, r._mapping) for r in await conn.execute(query)
            ]
    recorded: list[RecordedEvent] = []
    try:
        for stream_id in streams:
            # A page at a time: a long chat read in one go holds the event loop.
            page = await store.read_stream(stream_id, limit=_EXPORT_PAGE)
            recorded += page
            while len(page) == _EXPORT_PAGE:
                page = await store.read_stream(
                    stream_id, after=page[-1].version, limit=_EXPORT_PAGE
                )
                recorded += page
        # Serialising and zipping every event takes seconds: not on the event loop.
        return await asyncio.to_thread(
            _zip, workspace_id, found.name, len(streams), recorded, tables
        )
    finally:
        await asyncio.to_thread(release, recorded)


_EXPORT_PAGE = 500


def _zip(
    workspace_id: str,
    name: str,
    streams: int,
    recorded: list[RecordedEvent],
    tables: dict[str, list[JSON]],
) -> bytes:
    recorded.sort(key=lambda e: e.position)
    manifest: JSON = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "app_version": __version__,
        "alembic_revision": migrate.head_revision(),
        "exported_at": datetime.now(UTC).isoformat(),
        "workspace": {"id": workspace_id, "name": name},
        "streams": streams,
        "events": len(recorded),
        "tables": {table: len(rows) for table, rows in tables.items()},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
        # A block at a time: encoding the whole text at once holds the GIL, and so
        # the event loop, for as long as that takes (150 ms for 160,000 events).
        with archive.open(EVENTS, "w") as sink:
            for start in range(0, len(recorded), 1000):
                block = recorded[start : start + 1000]
                sink.write("".join(json.dumps(_event_line(e)) + "\n" for e in block).encode())
        for table, rows in tables.items():
            archive.writestr(f"tables/{table}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return buffer.getvalue()


def _event_line(event: RecordedEvent) -> JSON:
    return {
        "stream_id": event.stream_id,
        "version": event.version,
        "type": event.type,
        "schema_version": event.schema_version,
        "payload": event.payload,
        "metadata": event.metadata,
        "recorded_at": event.recorded_at.isoformat(),
    }


# --- reading --------------------------------------------------------------------------


def read_bundle(data: bytes) -> Bundle:
    """The bundle's contents, inflated within the archive limits (CPU-bound: callers
    on an event loop run it in a thread)."""
    check_size(data, "bundle")
    with SafeZip(data, bundle_limits()) as archive:
        if MANIFEST not in archive.names():
            raise InvalidInput("not a workspace bundle: it has no manifest.json")
        manifest = archive.read_json(MANIFEST)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise InvalidInput("not a workspace bundle: the manifest names another format")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise InvalidInput(f"bundle format version {manifest.get('format_version')} is unknown")
        bundle = Bundle(manifest)
        bundle.events = [_check_event(e) for e in _jsonl(archive, EVENTS)]
        for name in archive.names():
            if name.startswith("tables/") and name.endswith(".jsonl"):
                table = name.removeprefix("tables/").removesuffix(".jsonl")
                if table in INSTANCE_TABLES:
                    raise InvalidInput(f"a bundle may not carry the {table} table")
                tablerows.table_named(table)  # unknown here: refused before it is read
                bundle.tables[table] = list(_jsonl(archive, name))
    return bundle


def _jsonl(archive: SafeZip, name: str) -> Iterable[JSON]:
    for number, line in archive.lines(name):
        if not line.strip():
            continue
        value = bounded_json.loads(line, f"{name} line {number}")
        if not isinstance(value, dict):
            raise InvalidInput(f"{name} line {number} is not an object")
        if _MAYBE_UNSTORABLE.search(line):  # only escapes can carry them: walk those lines
            problem = find_unstorable(value, max_depth=bounded_json.MAX_DEPTH)
            if problem is not None:
                raise InvalidInput(f"{name} line {number}: {problem}")
        yield value


def _check_event(line: JSON) -> JSON:
    needed = {"stream_id": str, "version": int, "type": str, "payload": dict, "recorded_at": str}
    for key, kind in needed.items():
        if not isinstance(line.get(key), kind):
            raise InvalidInput(f"an event in the bundle lacks a valid '{key}'")
    return line


# --- import ---------------------------------------------------------------------------


def _replace_ids(value: Any, ids: dict[str, str]) -> Any:
    """`value` with every id in `ids` replaced, in place: it is the bundle's own
    parsed JSON, and a copy would double what an import holds in memory."""
    if not ids:
        return value
    if isinstance(value, str):
        return ids.get(value, value)
    if isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = _replace_ids(item, ids)
    elif isinstance(value, dict):
        for key, item in value.items():
            value[key] = _replace_ids(item, ids)
    return value


def _new_ids(bundle: Bundle) -> dict[str, str]:
    """A fresh id for every id in the bundle that is unique across an instance.

    A stream named `<kind>:<id>` (a world's) follows its id, so the stream and
    the rows keyed by the id still meet after remapping."""
    mapping: dict[str, str] = {}
    for name, rows in bundle.tables.items():
        table = tablerows.table_named(name)
        keys = [c.name for c in table.primary_key.columns if c.name != "workspace_id"]
        if len(keys) == 1 and isinstance(table.columns[keys[0]].type, sa.String):
            for row in rows:
                if row.get(keys[0]) is not None:
                    mapping.setdefault(str(row[keys[0]]), uuid.uuid4().hex)
    for line in bundle.events:
        message_ids = line["payload"].get("message_ids")
        if isinstance(message_ids, dict):
            for value in message_ids.values():
                mapping.setdefault(str(value), uuid.uuid4().hex)
    for line in bundle.events:
        stream = line["stream_id"]
        if stream in mapping:
            continue
        prefix, colon, rest = stream.rpartition(":")
        if colon and rest:
            mapping[stream] = f"{prefix}:{mapping.setdefault(rest, uuid.uuid4().hex)}"
        else:
            mapping[stream] = uuid.uuid4().hex
    return mapping


def _claimed_ids(bundle: Bundle) -> list[tuple[sa.Column[Any], list[str]]]:
    """(column, ids) for every id in the bundle that must be unique across an instance."""
    claimed: list[tuple[sa.Column[Any], list[str]]] = [
        (events.c.stream_id, sorted({line["stream_id"] for line in bundle.events}))
    ]
    for name, rows in bundle.tables.items():
        table = tablerows.table_named(name)
        keys = [c for c in table.primary_key.columns if c.name != "workspace_id"]
        if len(keys) != 1 or not rows or not isinstance(keys[0].type, sa.String):
            continue
        values = sorted({str(r[keys[0].name]) for r in rows if r.get(keys[0].name) is not None})
        claimed.append((keys[0], values))
    return claimed


async def _taken(conn: AsyncConnection, bundle: Bundle) -> bool:
    for column, values in await asyncio.to_thread(_claimed_ids, bundle):
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            if await conn.scalar(sa.select(column).where(column.in_(chunk))):
                return True
    return False


@dataclass(frozen=True, slots=True)
class ImportReport:
    workspace_id: str
    ids: str
    streams: int
    events: int
    rows: dict[str, int]
    sessions: list[str]

    def to_dict(self) -> JSON:
        return {
            "workspace_id": self.workspace_id,
            "ids": self.ids,
            "streams": self.streams,
            "events": self.events,
            "rows": self.rows,
            "sessions": self.sessions,
        }


async def import_workspace(
    store: EventStore, workspace_id: str, data: bytes, *, ids: IdMode = "auto"
) -> ImportReport:
    with gc_paused():  # a bundle is millions of acyclic dicts: see gc_paused
        return await _import(store, workspace_id, data, ids)


async def _import(store: EventStore, workspace_id: str, data: bytes, ids: IdMode) -> ImportReport:
    # Every step that walks the whole bundle (inflating, parsing, remapping, building
    # rows, freeing it all) runs in a thread: on a large bundle each takes seconds,
    # and on the event loop every other request would wait for it.
    bundle = await asyncio.to_thread(read_bundle, data)
    recorded: list[RecordedEvent] = []
    try:
        remap, counts = await _write(store, workspace_id, bundle, ids, recorded)
        streams, sessions = await asyncio.to_thread(_streams_and_sessions, recorded)
        return ImportReport(
            workspace_id,
            "remapped" if remap else "preserved",
            streams,
            len(recorded),
            counts,
            sessions,
        )
    finally:  # however the import ended: see release
        await asyncio.to_thread(release, recorded, bundle.events, *bundle.tables.values())


async def _write(
    store: EventStore,
    workspace_id: str,
    bundle: Bundle,
    ids: IdMode,
    recorded: list[RecordedEvent],
) -> tuple[bool, dict[str, int]]:
    """Store the bundle in one transaction; (whether ids were remapped, rows per
    table). `recorded` receives the appended events."""
    carried = {t.name: t for t in feature_tables()}
    for name in bundle.tables:
        if name not in carried:
            tablerows.table_named(name)  # unknown here: "from another version"
            raise InvalidInput(f"a bundle may not carry the {name} table")
    tables = {name: t for name, t in carried.items() if name in bundle.tables}  # parents first
    db = store.db
    async with db.write() as conn:
        await db.lock(conn)
        if (
            await conn.scalar(sa.select(workspaces.c.id).where(workspaces.c.id == workspace_id))
            is None
        ):
            raise NotFound(f"workspace {workspace_id} not found")
        taken = await _taken(conn, bundle)
        if ids == "preserve" and taken:
            raise Conflict(
                "the bundle's ids already exist in this instance: import with remapped ids"
            )
        remap = ids == "remap" or (ids == "auto" and taken)
        mapping = await asyncio.to_thread(_new_ids, bundle) if remap else {}
        await _append(conn, store, workspace_id, bundle.events, mapping, recorded)
        counts: dict[str, int] = {}
        for name, table in tables.items():
            rows = await asyncio.to_thread(
                _table_rows, table, bundle.tables[name], mapping, workspace_id
            )
            counts[name] = len(rows)
            try:
                for start in range(0, len(rows), 1000):
                    await conn.execute(table.insert(), rows[start : start + 1000])
            except sa.exc.IntegrityError as exc:
                raise Conflict(
                    f"the bundle's {name} rows cannot be stored here: {exc.orig}"
                ) from exc
    return remap, counts


def _table_rows(
    table: sa.Table, rows: list[JSON], mapping: dict[str, str], workspace_id: str
) -> list[JSON]:
    return [
        tablerows.decode(table, _replace_ids(r, mapping) | {"workspace_id": workspace_id})
        for r in rows
    ]


def _streams_and_sessions(recorded: Sequence[RecordedEvent]) -> tuple[int, list[str]]:
    sessions = sorted({e.stream_id for e in recorded if e.type == EventType.SESSION_CREATED})
    return len({e.stream_id for e in recorded}), sessions


async def _append(
    conn: AsyncConnection,
    store: EventStore,
    workspace_id: str,
    lines: Sequence[JSON],
    mapping: dict[str, str],
    recorded: list[RecordedEvent],
) -> None:
    """Append the bundle's events through the store, with their own times and
    metadata, in their order, into `recorded`, then build the session read models
    from them in the same transaction."""
    copies = await asyncio.to_thread(_copies, lines, mapping, workspace_id)
    try:
        # A chunk per call, so the loop serves other requests between chunks. The
        # transaction and the write lock span them all: positions stay gap-free.
        for start in range(0, len(copies), _APPEND_CHUNK):
            chunk = copies[start : start + _APPEND_CHUNK]
            recorded += await store.append_copies(conn, workspace_id=workspace_id, copies=chunk)
    except ConcurrencyConflict as exc:
        raise Conflict("the bundle's streams already exist here: import with remapped ids") from exc
    finally:
        await asyncio.to_thread(release, copies)
    for stream in (await asyncio.to_thread(_by_stream, recorded)).values():
        try:
            await project_new_stream(conn, stream, store.sealer)
        except (KeyError, TypeError, ValueError, AttributeError, sa.exc.StatementError) as exc:
            if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
                raise  # the database went away: not the bundle's fault
            # The log takes any payload; its read models need theirs whole (a
            # session.created without its workspace, a turn without its number).
            said = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            reason = f"an event lacks {said}" if isinstance(exc, KeyError) else said
            raise InvalidInput(
                f"the bundle's stream {stream[0].stream_id} has events its read models "
                f"cannot hold: {reason}"
            ) from exc


_APPEND_CHUNK = 500


def _copies(lines: Sequence[JSON], mapping: dict[str, str], workspace_id: str) -> list[CopiedEvent]:
    """The bundle's events as the store appends them, ids remapped in place."""
    copies: list[CopiedEvent] = []
    versions: dict[str, int] = {}
    for line in lines:
        stream_id = str(mapping.get(line["stream_id"], line["stream_id"]))
        version = int(line["version"])
        if version != versions.get(stream_id, 0) + 1:
            raise InvalidInput(f"stream {line['stream_id']} in the bundle skips a version")
        versions[stream_id] = version
        payload = _replace_ids(line["payload"], mapping)
        if "workspace_id" in payload:
            payload["workspace_id"] = workspace_id
        try:
            at = datetime.fromisoformat(line["recorded_at"])
        except ValueError as exc:
            raise InvalidInput(f"bad recorded_at in the bundle: {line['recorded_at']!r}") from exc
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        new = NewEvent(line["type"], payload, int(line.get("schema_version") or 1))
        meta = line.get("metadata")
        copies.append(
            CopiedEvent(stream_id, version, new, meta if isinstance(meta, dict) else {}, at)
        )
    return copies


def _by_stream(recorded: Sequence[RecordedEvent]) -> dict[str, list[RecordedEvent]]:
    by_stream: dict[str, list[RecordedEvent]] = {}
    for event in recorded:
        by_stream.setdefault(event.stream_id, []).append(event)
    return by_stream
