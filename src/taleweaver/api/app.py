"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from taleweaver import __version__
from taleweaver.api import problems
from taleweaver.api.middleware import RequestContext
from taleweaver.api.routes import health, sessions, turns
from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.llm import ChatModel


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    model: ChatModel | None = None,
) -> FastAPI:
    """Build the app; it opens its own engine from `settings` (and `model`, when
    given) unless an engine is handed in."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = engine is None
        app.state.engine = engine or await Engine.open(settings, model=model)
        try:
            yield
        finally:
            if owned:
                await app.state.engine.close()

    app = FastAPI(
        title="Taleweaver",
        version=__version__,
        summary="Persistent AI narrative sessions: stories, companions, world-building.",
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(health.router)
    app.include_router(sessions.router)
    app.include_router(turns.router)
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)
    return app
