"""Fixtures: real databases (SQLite file, PostgreSQL), engines, a loopback server."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
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


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() not in {"", "0", "false"}


def need_postgres() -> None:
    """Skip the calling test when the test PostgreSQL is unreachable; fail it on CI
    (the CI variable set), where a missing database must not pass as skipped tests."""
    if _PG_REASON is None:
        return
    if _on_ci():
        pytest.fail(f"{_PG_REASON} (CI is set: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(_PG_REASON)


REDIS_URL = os.environ.get("TALEWEAVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def need_redis() -> None:
    """As `need_postgres`, for the test Redis: skipped on a laptop, a failure on CI."""
    import redis

    try:
        with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3) as connection:
            connection.ping()
    except (redis.RedisError, OSError) as exc:
        reason = f"Redis at {REDIS_URL} is not reachable: {exc}"
        if _on_ci():
            pytest.fail(f"{reason} (CI is set: Redis tests must run)", pytrace=False)
        pytest.skip(reason)


# Test modules whose subject differs by database (SQL the store writes per dialect,
# locks, search indexes, sealing, backups, read models): their tests that take a
# database run on SQLite and on PostgreSQL. Everything else is dialect-neutral
# SQLAlchemy Core over these and runs on SQLite only. A test elsewhere can opt in
# with @pytest.mark.dialects.
DIALECT_MODULES = frozenset(
    {
        "test_store_contract",
        "test_pipeline",
        "test_interop_chats",
        "test_interop_bundles",
        "test_interop_search",
        "test_encryption",
        "test_accounts",
        "test_accounting",
        "test_backup",
        "test_world_recall",
        "test_world_review",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "dialects: run this test's database on SQLite and on PostgreSQL"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_spec" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    both = module in DIALECT_MODULES or metafunc.definition.get_closest_marker("dialects")
    backends: list[Any] = ["sqlite"]
    if both:
        backends.append(pytest.param("postgresql", marks=pytest.mark.postgres))
    metafunc.parametrize("db_spec", backends, indirect=True)


def worker_id() -> str:
    """This pytest-xdist worker's name ("gw0", ...), or "main" without workers."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@dataclass
class DatabaseSpec:
    """How to reach one isolated test database, already migrated to head (on
    PostgreSQL a schema of its own)."""

    backend: str
    url: str
    connect_args: dict[str, Any]

    def open(self) -> Database:
        return Database(self.url, connect_args=self.connect_args)


async def _postgres(sql: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _migrate_spec(spec: DatabaseSpec) -> None:
    db = spec.open()
    try:
        await migrate.upgrade(db.engine)
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per run (per worker); tests copy it."""
    path = tmp_path_factory.mktemp("template") / "migrated.db"
    asyncio.run(_migrate_spec(DatabaseSpec("sqlite", f"sqlite:///{path}", {})))
    assert not path.with_name(path.name + "-wal").exists(), "the template was not checkpointed"
    return path


def copy_sqlite_template(template: Path, target: Path) -> None:
    """Put a migrated database at `target`, as a first upgrade would have left it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)


@pytest.fixture
def db_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseSpec]:
    """A migrated database of this test's own: SQLite, or PostgreSQL for the
    modules in DIALECT_MODULES (see pytest_generate_tests)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        path = tmp_path / "test.db"
        copy_sqlite_template(request.getfixturevalue("sqlite_template"), path)
        yield DatabaseSpec("sqlite", f"sqlite:///{path}", {})
        return
    need_postgres()
    # A schema of its own, migrated: PostgreSQL copies a TEMPLATE database slower
    # (~0.45 s, every catalog page) than it runs the migrations into a schema (~0.3 s).
    schema = f"tw_{uuid.uuid4().hex[:12]}"
    spec = DatabaseSpec("postgresql", POSTGRES_URL, {"server_settings": {"search_path": schema}})
    asyncio.run(_postgres(f"CREATE SCHEMA {schema}"))
    try:
        asyncio.run(_migrate_spec(spec))
        yield spec
    finally:
        asyncio.run(_postgres(f"DROP SCHEMA {schema} CASCADE"))


@asynccontextmanager
async def empty_database(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A database with nothing in it, not even a schema revision."""
    if backend == "sqlite":
        db = Database(f"sqlite:///{tmp_path / f'empty-{uuid.uuid4().hex[:8]}.db'}")
        try:
            yield db
        finally:
            await db.dispose()
        return
    schema = f"tw_empty_{uuid.uuid4().hex[:12]}"
    await _postgres(f"CREATE SCHEMA {schema}")
    db = Database(POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})
    try:
        yield db
    finally:
        await db.dispose()
        await _postgres(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
async def database(db_spec: DatabaseSpec) -> AsyncIterator[Database]:
    db = db_spec.open()
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    """A data dir whose database is already migrated (what a first start leaves)."""
    data_dir = tmp_path / "data"
    copy_sqlite_template(sqlite_template, data_dir / "taleweaver.db")
    return Settings(data_dir=data_dir, model="scripted", scripted_token_delay_ms=0)


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


def _worker_ports() -> Iterator[int]:
    """Ports of this pytest-xdist worker's own: a band below the kernel's ephemeral
    range per worker, so two workers never pick the same one (the start within the
    band varies by process, for runs side by side)."""
    number = int(worker_id().removeprefix("gw"))
    low = 10000 + (number % 10) * 2000
    start = os.getpid() % 2000
    return itertools.cycle([*range(low + start, low + 2000), *range(low, low + start)])


_PORTS = _worker_ports() if worker_id().startswith("gw") else None


def free_port() -> int:
    """A loopback port no one listens on (from this worker's band, under xdist)."""
    if _PORTS is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port
    for _ in range(2000):
        candidate = next(_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    raise RuntimeError("no free port in this worker's band")


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
