"""The migrations build exactly the tables the models declare, on SQLite and PostgreSQL.

Each migration spells out the tables it made (none reads the live schema modules,
which describe the head); so an empty database upgraded through all of them must
match the models, and a model changed without a migration, or a migration that
drifts from its model, shows here as a difference.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

import taleweaver.store
from taleweaver.store import migrate
from taleweaver.store.database import Database
from taleweaver.store.schema import metadata
from tests.conftest import POSTGRES_URL, need_postgres

# Every table module registers on the one MetaData: import them all, so that a
# table no code path has imported yet is still compared.
for _module in pkgutil.iter_modules(taleweaver.store.__path__):
    if _module.name == "schema" or _module.name.endswith("_schema"):
        importlib.import_module(f"taleweaver.store.{_module.name}")

VERSIONS = migrate.MIGRATIONS / "versions"

_FTS5_TABLES = {
    f"{table}{shadow}"
    for table in ("messages_fts", "world_fts")
    for shadow in ("", "_data", "_idx", "_content", "_docsize", "_config")
}

# What an upgraded database has that the models do not declare, per dialect; the
# comparison must report exactly these, so an entry that stops applying fails too.
EXPECTED: dict[str, set[tuple[str, ...]]] = {
    "sqlite": {
        # Full-text search, made by raw SQL in 0001 and 0005 and fed by triggers:
        # FTS5 virtual tables and the shadow tables SQLite keeps for each.
        *(("remove_table", table) for table in _FTS5_TABLES),
        # SQLite enforces no VARCHAR length, so 0004 and 0012 widen these columns to
        # Text on PostgreSQL only; the length left on SQLite is never checked.
        ("modify_type", "sessions", "title", "VARCHAR(length=200)", "Text()"),
        ("modify_type", "safety_webhooks", "secret", "VARCHAR(length=128)", "Text()"),
    },
    "postgresql": {
        # Full-text search, made by raw SQL in 0001, 0004 and 0005: generated
        # tsvector columns with GIN indexes.
        ("remove_column", "messages", "search"),
        ("remove_index", "messages", "ix_messages_search"),
        ("remove_column", "world_entities", "search"),
        ("remove_index", "world_entities", "ix_world_entities_search"),
    },
}


def _key(diff: Any) -> tuple[str, ...]:
    """One autogenerate difference as a readable, comparable tuple."""
    if isinstance(diff, list):  # column modifications come grouped, one per column
        assert len(diff) == 1, diff
        diff = diff[0]
    kind = diff[0]
    if kind in ("add_table", "remove_table"):
        return (kind, diff[1].name)
    if kind in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        return (kind, diff[1].table.name, str(diff[1].name))
    if kind in ("add_fk", "remove_fk"):
        fk = diff[1]
        columns = ",".join(fk.column_keys)
        target = ",".join(element.target_fullname for element in fk.elements)
        return (kind, fk.table.name, f"{columns} -> {target} ondelete={fk.ondelete}")
    if kind in ("add_column", "remove_column"):
        return (kind, diff[2], diff[3].name)
    if kind.startswith("modify_"):  # type, nullable, default, comment
        return (kind, diff[2], diff[3], repr(diff[5]), repr(diff[6]))
    return ("unforeseen", repr(diff))


def _differences(sync: sa.Connection) -> set[tuple[str, ...]]:
    context = MigrationContext.configure(
        sync, opts={"compare_type": True, "compare_server_default": True}
    )
    return {_key(diff) for diff in compare_metadata(context, metadata)}


async def _downgrade(engine: AsyncEngine, revision: str) -> None:
    """As migrate.upgrade, the other way."""
    async with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        await conn.run_sync(lambda sync: command.downgrade(migrate._config(sync), revision))


async def _postgres(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def empty(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database of its own with nothing in it; on PostgreSQL a fresh database, not a
    schema, so that nothing outside the migrations' reach can be compared."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
        try:
            yield db
        finally:
            await db.dispose()
        return
    need_postgres()
    name = f"tw_migrations_{uuid.uuid4().hex[:12]}"
    await _postgres(f"CREATE DATABASE {name}")
    try:
        db = Database(make_url(POSTGRES_URL).set(database=name).render_as_string(False))
        try:
            yield db
        finally:
            await db.dispose()
    finally:
        await _postgres(f"DROP DATABASE {name} WITH (FORCE)")


async def _assert_matches_models(db: Database) -> None:
    async with db.engine.connect() as conn:
        found = await conn.run_sync(_differences)
    expected = EXPECTED[db.engine.dialect.name]
    unexpected, gone = sorted(found - expected), sorted(expected - found)
    assert not unexpected, "the migrated schema differs from the models:\n" + "\n".join(
        map(str, unexpected)
    )
    assert not gone, "expected differences are gone, update EXPECTED:\n" + "\n".join(map(str, gone))


async def test_an_empty_database_upgraded_to_head_matches_the_models(empty: Database) -> None:
    await migrate.upgrade(empty.engine)

    assert await migrate.current_revision(empty.engine) == migrate.HEAD
    await _assert_matches_models(empty)


def _leftovers(sync: sa.Connection) -> dict[str, list[str]]:
    inspector = sa.inspect(sync)
    found = {
        "tables": [name for name in inspector.get_table_names() if name != "alembic_version"],
        "views": inspector.get_view_names(),
    }
    if sync.dialect.name == "sqlite":
        rows = sync.exec_driver_sql(
            "SELECT type || ' ' || name FROM sqlite_master "
            "WHERE tbl_name != 'alembic_version' ORDER BY name"
        )
        found["sqlite_master"] = [str(row[0]) for row in rows]
    else:
        found["sequences"] = inspector.get_sequence_names()
    return found


async def test_downgrading_to_base_leaves_nothing_and_upgrades_again(empty: Database) -> None:
    await migrate.upgrade(empty.engine)

    await _downgrade(empty.engine, "base")

    assert await migrate.current_revision(empty.engine) is None
    async with empty.engine.connect() as conn:
        leftovers = await conn.run_sync(_leftovers)
    assert {kind: names for kind, names in leftovers.items() if names} == {}
    # And nothing left behind gets in the way of doing it all again.
    await migrate.upgrade(empty.engine)
    await _assert_matches_models(empty)


def _reads_live_schema(path: Path) -> list[str]:
    """What in a migration file imports the application or creates tables from a
    MetaData: either would make it change when the models change."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("taleweaver"):
            found.append(f"from {node.module} import")
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.startswith("taleweaver")]
        elif isinstance(node, ast.Attribute) and node.attr in ("create_all", "drop_all"):
            found.append(node.attr)
    return found


def test_no_migration_reads_the_live_models() -> None:
    files = sorted(VERSIONS.glob("[0-9]*.py"))
    assert files
    found = {path.name: _reads_live_schema(path) for path in files}
    assert {name: uses for name, uses in found.items() if uses} == {}
