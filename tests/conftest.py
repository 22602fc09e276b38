"""Fixtures: real databases (SQLite file, PostgreSQL), engines, a loopback server."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from taleweaver.api import create_app
from taleweaver.config import Settings
from taleweaver.domain.events import EventMetadata
from taleweaver.engine import Engine
from taleweaver.llm import ChatModel, ScriptedModel
from taleweaver.store import migrate
from taleweaver.store.database import Database

POSTGRES_URL = os.environ.get(
    "TALEWEAVER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
META = EventMetadata(actor="test", correlation_id="test-correlation")


def _postgres_reason() -> str | None:
    """None when the test PostgreSQL answers, else why it does not."""

    async def probe() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}"
    return None


_PG_REASON = _postgres_reason()


@dataclass
class DatabaseSpec:
    """How to reach one isolated test database (a PostgreSQL schema of its own)."""

    backend: str
    url: str
    connect_args: dict[str, Any]

    def open(self) -> Database:
        return Database(self.url, connect_args=self.connect_args)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseSpec]:
    if request.param == "sqlite":
        yield DatabaseSpec("sqlite", f"sqlite:///{tmp_path / 'test.db'}", {})
        return
    if _PG_REASON is not None:
        pytest.skip(_PG_REASON)
    schema = f"tw_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE SCHEMA {schema}"))
    try:
        yield DatabaseSpec("postgresql", POSTGRES_URL, {"server_settings": {"search_path": schema}})
    finally:
        asyncio.run(run(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture
async def database(db_spec: DatabaseSpec) -> AsyncIterator[Database]:
    db = db_spec.open()
    await migrate.upgrade(db.engine)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", model="scripted", scripted_token_delay_ms=0)


@pytest.fixture
async def make_engine(
    db_spec: DatabaseSpec, settings: Settings
) -> AsyncIterator[Callable[..., Any]]:
    """Open engines on the test database; several model a cluster of replicas."""
    opened: list[Engine] = []

    async def make(model: ChatModel | None = None, **kwargs: Any) -> Engine:
        engine = await Engine.open(
            settings, model=model or ScriptedModel(), database=db_spec.open(), **kwargs
        )
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        await engine.close()


@pytest.fixture
async def engine(make_engine: Callable[..., Any]) -> Engine:
    result: Engine = await make_engine()
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LoopbackServer:
    """The real app under uvicorn on 127.0.0.1, in a thread of its own."""

    def __init__(self, settings: Settings, model: ChatModel | None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        app = create_app(settings, model=model)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        with httpx.Client(base_url=self.base_url) as client:
            for _ in range(500):
                try:
                    if client.get("/healthz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                threading.Event().wait(0.01)
        raise RuntimeError("the test server did not start")

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def serve(settings: Settings) -> Iterator[Callable[..., httpx.Client]]:
    """Start the app on loopback (optionally with a given model); yield a client."""
    stack: list[tuple[LoopbackServer, httpx.Client]] = []

    def start(model: ChatModel | None = None, **overrides: Any) -> httpx.Client:
        server = LoopbackServer(settings.model_copy(update=overrides), model)
        server.__enter__()
        client = httpx.Client(base_url=server.base_url, timeout=30)
        stack.append((server, client))
        return client

    yield start
    for server, client in stack:
        client.close()
        server.__exit__()
