"""The engine: storage, the model and the pipeline, wired once per process."""

from __future__ import annotations

import time
from dataclasses import replace

from taleweaver.auth import Accounts, AuditLog, Credentials
from taleweaver.config import Settings
from taleweaver.engine.models import model_from_settings
from taleweaver.engine.pipeline import Capabilities
from taleweaver.engine.sessions import Sessions
from taleweaver.engine.turns import TurnRunner
from taleweaver.llm import ChatModel
from taleweaver.store import migrate
from taleweaver.store.database import Database, sqlite_url
from taleweaver.store.events import EventStore
from taleweaver.store.queries import Queries
from taleweaver.store.repository import SessionRepository


def database_from_settings(settings: Settings) -> Database:
    url = settings.database_url
    if url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = sqlite_url(settings.data_dir)
    return Database(url)


class Engine:
    def __init__(self, db: Database, caps: Capabilities, repository: SessionRepository) -> None:
        self.db = db
        self.caps = caps
        self.repository = repository
        self.audit = AuditLog(db)
        self.accounts = Accounts(db, self.audit)
        self.credentials = Credentials(db, self.audit)
        self.sessions = Sessions(repository, caps.queries)
        self.turns = TurnRunner(repository, caps)

    @property
    def model(self) -> ChatModel:
        return self.caps.model

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        model: ChatModel | None = None,
        caps: Capabilities | None = None,
        database: Database | None = None,
    ) -> Engine:
        """Connect, migrate when allowed, and build the pipeline's capabilities."""
        db = database or database_from_settings(settings)
        if settings.auto_migrate:
            await migrate.upgrade(db.engine)
        queries = Queries(db)
        repository = SessionRepository(EventStore(db), queries)
        if caps is None:
            caps = Capabilities(
                model=model or model_from_settings(settings),
                queries=queries,
                max_reply_tokens=settings.max_reply_tokens,
                history_messages=settings.history_messages,
            )
        else:
            caps = replace(caps, queries=queries)
        engine = cls(db, caps, repository)
        if settings.auto_migrate:
            await engine.accounts.ensure_local_user()
        return engine

    async def readiness(self) -> dict[str, dict[str, object]]:
        """Each component's state, for /readyz."""
        report: dict[str, dict[str, object]] = {}
        started = time.perf_counter()
        try:
            await self.db.ping()
            report["database"] = {
                "status": "ok",
                "backend": self.db.dialect,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            }
        except Exception as exc:  # any driver failure means "not ready", reported as such
            report["database"] = {"status": "error", "detail": type(exc).__name__}
        try:
            await self.model.check()
            report["model"] = {"status": "ok", "name": self.model.name}
        except Exception as exc:
            report["model"] = {"status": "error", "name": self.model.name, "detail": str(exc)}
        return report

    async def close(self) -> None:
        await self.turns.shutdown()
        await self.model.aclose()
        await self.db.dispose()
