"""The real app over loopback HTTP on SQLite or on a PostgreSQL database of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import httpx
import pytest

from taleweaver.config import Settings
from taleweaver.llm import ChatModel
from tests.conftest import POSTGRES_URL, LoopbackServer, need_postgres

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def on_backend(backend: str, settings: Settings) -> Iterator[Settings]:
    """`settings` as they are (SQLite), or pointing at a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield settings
        return
    need_postgres()
    name = f"tw_api_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    try:
        yield settings.model_copy(
            update={"database_url": POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"}
        )
    finally:
        asyncio.run(_admin(f"DROP DATABASE {name} WITH (FORCE)"))


@contextmanager
def client_for(settings: Settings, model: ChatModel | None = None) -> Iterator[httpx.Client]:
    with (
        LoopbackServer(settings, model) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as client,
    ):
        yield client


def cli_env(settings: Settings) -> dict[str, str | None]:
    """The environment a `taleweaver` command run against `settings` gets."""
    return {
        "TALEWEAVER_DATA_DIR": str(settings.data_dir),
        "TALEWEAVER_MODEL": "scripted",
        "TALEWEAVER_DATABASE_URL": settings.database_url,
        "TALEWEAVER_CONFIG": None,
    }
