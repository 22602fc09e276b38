"""Schema migrations, run programmatically on the application's own engine.

Alembic is imported only where a migration runs or a revision is read through it:
it costs a CLI command most of its start-up, and an up-to-date database needs none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision, known without loading Alembic's script directory; a test
# holds it equal to the head Alembic finds in migrations/versions.
HEAD = "0019"


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate in one transaction (SQLite's DDL included: it would otherwise
    autocommit statement by statement and leave a half-made schema on failure)."""
    from alembic import command

    async with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        await conn.run_sync(lambda sync: command.upgrade(_config(sync), revision))


async def upgrade_if_behind(engine: AsyncEngine) -> bool:
    """Migrate to the head unless the database is there already; whether it ran."""
    if await _recorded_revisions(engine) == {HEAD}:
        return False
    await upgrade(engine)
    return True


async def _recorded_revisions(engine: AsyncEngine) -> set[str]:
    """The revisions in Alembic's version table (none on a fresh database), read
    with plain SQL for the same answer as Alembic's, at none of its import cost."""

    def read(sync: Connection) -> set[str]:
        if not inspect(sync).has_table("alembic_version"):
            return set()
        rows = sync.execute(text("SELECT version_num FROM alembic_version"))
        return {str(row[0]) for row in rows}

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
