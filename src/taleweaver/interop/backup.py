"""Backing up and restoring a whole instance, while it keeps running.

An archive is a zip with `manifest.json` (format, app version, dialect, Alembic
revision, row counts, a SHA-256 per entry) and the data:
- SQLite: `database.sqlite`, a copy made with SQLite's online backup API, which
  is consistent while writers keep committing;
- PostgreSQL: `tables/<name>.jsonl`, every table read in one SERIALIZABLE READ
  ONLY DEFERRABLE transaction, so all tables show the same instant.

Restore checks every checksum and that the archive's schema revision is the code's
head, refuses an instance that already holds data unless forced, and is all or
nothing: SQLite gets a complete new file renamed over the old one, PostgreSQL one
transaction (migrations included, DDL being transactional there).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver import __version__
from taleweaver.auth import LOCAL_USER_ID
from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.events import JSON
from taleweaver.interop import bounded_json
from taleweaver.interop import rows as tablerows
from taleweaver.interop.archive import SafeZip, backup_limits
from taleweaver.store import migrate
from taleweaver.store.database import Database
from taleweaver.store.schema import events, users

FORMAT = "taleweaver-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_ENTRY = "database.sqlite"
_CHUNK = 1000
# Rows inserted at once are held at once: an asset row can be tens of MiB.
_CHUNK_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BackupReport:
    path: Path
    manifest: JSON

    @property
    def rows(self) -> int:
        return sum(int(t["rows"]) for t in self.manifest["tables"].values())


def sqlite_path(db: Database) -> Path:
    database = make_url(db.url).database
    if not database or database == ":memory:":
        raise InvalidInput("an in-memory SQLite database cannot be backed up or restored")
    return Path(database)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(dialect: str, revision: str | None) -> JSON:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "app_version": __version__,
        "dialect": dialect,
        "alembic_revision": revision,
        "created_at": datetime.now(UTC).isoformat(),
        "tables": {},
        "entries": {},
    }


# --- backup ---------------------------------------------------------------------------


async def backup(db: Database, out: Path) -> BackupReport:
    """Write a consistent archive of the whole instance to `out` (atomically)."""
    out, partial = _destination(out)
    try:
        if db.dialect == "sqlite":
            manifest = await asyncio.to_thread(_backup_sqlite, sqlite_path(db), partial)
        else:
            manifest = await _backup_postgres(db, partial)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return BackupReport(out, manifest)


def _destination(out: Path) -> tuple[Path, Path]:
    """Where the archive goes, and where it is written until complete."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    return out, out.with_name(out.name + ".partial")


def _backup_sqlite(source: Path, out: Path) -> JSON:
    if not source.exists():
        raise InvalidInput(f"no database at {source}")
    with tempfile.TemporaryDirectory(dir=out.parent) as work:
        copy = Path(work) / SQLITE_ENTRY
        src = sqlite3.connect(source)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)  # all pages in one step: one consistent read snapshot
            dst.execute("PRAGMA journal_mode=DELETE")  # a standalone file, no -wal beside it
            revision, counts = _sqlite_facts(dst)
        finally:
            dst.close()
            src.close()
        manifest = _manifest("sqlite", revision)
        manifest["tables"] = {name: {"rows": n} for name, n in counts.items()}
        manifest["entries"] = {SQLITE_ENTRY: _sha256(copy)}
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(copy, SQLITE_ENTRY)
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
    return manifest


def _sqlite_facts(conn: sqlite3.Connection) -> tuple[str | None, dict[str, int]]:
    known = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    revision = None
    if "alembic_version" in known:
        found = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = found[0] if found else None
    counts = {
        t.name: int(conn.execute(f'SELECT count(*) FROM "{t.name}"').fetchone()[0])
        for t in tablerows.tables()
        if t.name in known
    }
    return revision, counts


async def _backup_postgres(db: Database, out: Path) -> JSON:
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(
            isolation_level="SERIALIZABLE", postgresql_readonly=True, postgresql_deferrable=True
        )
        async with conn.begin():
            revision = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
            manifest = _manifest("postgresql", revision)
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                for table in tablerows.tables():
                    entry = f"tables/{table.name}.jsonl"
                    digest = hashlib.sha256()
                    count = 0
                    with archive.open(entry, "w") as sink:
                        query = sa.select(table).order_by(*tablerows.order_by(table))
                        result = await conn.stream(query)
                        async for partition in result.partitions(_CHUNK):
                            block = "".join(
                                json.dumps(tablerows.encode(table, r._mapping)) + "\n"
                                for r in partition
                            ).encode()
                            digest.update(block)
                            sink.write(block)
                            count += len(partition)
                    manifest["tables"][table.name] = {"rows": count}
                    manifest["entries"][entry] = digest.hexdigest()
                archive.writestr(MANIFEST, json.dumps(manifest, indent=2))
    return manifest


# --- restore --------------------------------------------------------------------------


def read_manifest(archive: SafeZip) -> JSON:
    """The archive's manifest, once every entry matches its checksum (reads every
    entry through: callers on an event loop run it in a thread)."""
    if MANIFEST not in archive.names():
        raise InvalidInput("not a Taleweaver backup: it has no manifest.json")
    manifest = archive.read_json(MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInput("not a Taleweaver backup: the manifest names another format")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(
            f"backup format version {manifest.get('format_version')} is not supported "
            f"(this version reads {FORMAT_VERSION})"
        )
    entries = manifest.get("entries")
    if not isinstance(entries, dict) or not entries:
        raise InvalidInput("the backup's manifest lists no entries")
    names = set(archive.names()) - {MANIFEST}
    if names != set(entries):
        raise InvalidInput("the backup has entries its manifest does not list, or lacks some")
    for name, expected in entries.items():
        digest = hashlib.sha256()
        for block in archive.blocks(name):
            digest.update(block)
        if digest.hexdigest() != expected:
            raise InvalidInput(f"the backup is damaged or was altered: {name} fails its checksum")
    if not isinstance(manifest.get("tables"), dict) or manifest.get("dialect") not in (
        "sqlite",
        "postgresql",
    ):
        raise InvalidInput("the backup's manifest lacks its dialect or its table counts")
    head = migrate.head_revision()
    if manifest.get("alembic_revision") != head:
        raise InvalidInput(
            f"the backup's schema revision is {manifest.get('alembic_revision')!r} but this "
            f"version of Taleweaver is at {head!r}: restore it with the version that made it "
            "(then upgrade), or back up again with this one"
        )
    return manifest


async def restore(db: Database, path: Path, *, force: bool = False) -> JSON:
    """Restore an archive into `db` (the engine must not be running on it)."""
    with SafeZip(path, backup_limits()) as archive:
        manifest = await asyncio.to_thread(read_manifest, archive)
        held = await _held_data(db)
        if held and not force:
            raise Conflict(
                f"this instance already holds data ({held}); restore into an empty "
                "database, or pass --force to replace everything in it"
            )
        if db.dialect == "sqlite":
            await db.dispose()  # the file is about to be replaced under its connections
            await asyncio.to_thread(_restore_sqlite_file, archive, manifest, sqlite_path(db))
        else:
            async with db.engine.begin() as conn:
                await _restore_rows(conn, archive, manifest)
    return manifest


async def _held_data(db: Database) -> str | None:
    """What makes the instance non-empty, or None."""
    try:
        async with db.read() as conn:
            count = await conn.scalar(sa.select(sa.func.count()).select_from(events))
            accounts = await conn.scalar(
                sa.select(sa.func.count()).select_from(users).where(users.c.id != LOCAL_USER_ID)
            )
    except sa.exc.DBAPIError:
        return None  # no schema yet
    if not count and not accounts:
        return None
    return f"{count} events, {accounts} accounts"


def _restore_sqlite_file(archive: SafeZip, manifest: JSON, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        fresh = Path(work) / "restored.sqlite"
        if manifest["dialect"] == "sqlite":
            _check_room(archive, Path(work))
            with fresh.open("wb") as dst:
                archive.copy_to(SQLITE_ENTRY, dst)
            _check_sqlite(fresh)
        else:
            asyncio.run(_load_into_new_sqlite(archive, manifest, fresh))
        # A -wal left beside the old file would be replayed into the new one.
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(fresh, target)


def _check_room(archive: SafeZip, folder: Path) -> None:
    """The backup's database unzips into `folder` only if the disk holds it: found
    full part-way through, the disk would stay full for whatever else runs there."""
    info = archive.infos.get(SQLITE_ENTRY)  # missing: copy_to says so
    needed = info.file_size if info is not None else 0
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise InvalidInput(
            f"the backup's database unzips to {needed} bytes but {folder} has {free} free"
        )


def _check_sqlite(path: Path) -> None:
    """InvalidInput unless `path` is an SQLite database that passes its integrity check."""
    try:
        conn = sqlite3.connect(path)
        try:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
        raise InvalidInput(f"the backup's database cannot be read: {exc}") from exc
    if verdict != "ok":
        raise InvalidInput("the backup's database fails SQLite's integrity check")


async def _load_into_new_sqlite(archive: SafeZip, manifest: JSON, path: Path) -> None:
    db = Database(f"sqlite:///{path}")
    try:
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await _restore_rows(conn, archive, manifest)
    finally:
        await db.dispose()


async def _restore_rows(conn: AsyncConnection, archive: SafeZip, manifest: JSON) -> None:
    """Schema to head, every table emptied, then every row inserted: one transaction."""

    def upgrade(sync: sa.Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(migrate.MIGRATIONS))
        config.attributes["connection"] = sync
        command.upgrade(config, "head")

    await conn.run_sync(upgrade)
    known = tablerows.tables()
    for table in reversed(known):
        await conn.execute(table.delete())
    with _row_source(archive, manifest) as source:
        for table in known:
            batch: list[dict[str, Any]] = []
            held = 0
            for row, size in source(table):
                batch.append(row)
                held += size
                if len(batch) >= _CHUNK or held >= _CHUNK_BYTES:
                    await _insert(conn, table, batch)
                    batch, held = [], 0
            if batch:
                await _insert(conn, table, batch)
    if conn.dialect.name == "postgresql":
        await _reset_sequences(conn, known)


async def _insert(conn: AsyncConnection, table: sa.Table, batch: list[dict[str, Any]]) -> None:
    """Rows this database refuses (a NUL a SQLite instance held, a broken key) make
    the archive unfit here: a clear error, and the transaction rolls back."""
    try:
        await conn.execute(table.insert(), batch)
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise  # the database went away: not the archive's fault
        reason = str(exc.orig).splitlines()[0][:200]
        raise InvalidInput(
            f"the backup's {table.name} rows cannot be stored here: {reason}"
        ) from exc


class _RowSource:
    """Rows of each table from an archive, decoded for inserting."""

    def __init__(self, archive: SafeZip, manifest: JSON, work: Path) -> None:
        self.archive = archive
        self.engine: sa.Engine | None = None
        if manifest["dialect"] == "sqlite":
            copy = work / SQLITE_ENTRY
            _check_room(archive, work)
            with copy.open("wb") as dst:
                archive.copy_to(SQLITE_ENTRY, dst)
            _check_sqlite(copy)
            self.engine = sa.create_engine(f"sqlite:///{copy}")

    def __call__(self, table: sa.Table) -> Iterator[tuple[dict[str, Any], int]]:
        """(row, about how many bytes it holds)."""
        if self.engine is not None:
            with self.engine.connect() as conn:
                present = sa.inspect(conn).has_table(table.name)
                if not present:
                    return
                for row in conn.execute(sa.select(table).order_by(*tablerows.order_by(table))):
                    values = row._mapping
                    size = sum(len(v) for v in values.values() if isinstance(v, str | bytes))
                    yield tablerows.decode(table, tablerows.encode(table, values)), size
            return
        entry = f"tables/{table.name}.jsonl"
        if entry not in self.archive.names():
            return
        for number, line in self.archive.lines(entry):
            if not line.strip():
                continue
            # NaN is kept: a backup carries back whatever its instance held.
            data = bounded_json.loads(line, f"{entry} line {number}", allow_nan=True)
            if not isinstance(data, dict):
                raise InvalidInput(f"{entry} line {number} is not an object")
            yield tablerows.decode(table, data), len(line)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


@contextmanager
def _row_source(archive: SafeZip, manifest: JSON) -> Iterator[_RowSource]:
    with tempfile.TemporaryDirectory() as work:
        source = _RowSource(archive, manifest, Path(work))
        try:
            yield source
        finally:
            source.close()


async def _reset_sequences(conn: AsyncConnection, known: list[sa.Table]) -> None:
    """Serial columns continue after the restored rows, not from 1."""
    for table in known:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, sa.Integer):
            continue
        column = pk[0].name
        sequence = await conn.scalar(
            sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column}
        )
        if sequence:
            await conn.execute(
                sa.text(
                    f'SELECT setval(:s, COALESCE((SELECT MAX("{column}") FROM "{table.name}"), 0)'
                    f" + 1, false)"
                ),
                {"s": sequence},
            )
