"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from taleweaver import __version__, observability
from taleweaver.api import docs, problems
from taleweaver.api.guard import InputGuard, check_path_ids
from taleweaver.api.headers import SecurityHeaders
from taleweaver.api.metrics import HTTPMetrics
from taleweaver.api.middleware import RequestContext
from taleweaver.api.ratelimit import RateLimits
from taleweaver.api.routes import (
    auth,
    characters,
    files,
    flags,
    health,
    interop,
    jobs,
    lorebooks,
    oidc,
    openai,
    safety,
    sessions,
    studio,
    studio_work,
    summaries,
    terminals,
    therapy,
    turns,
    users,
    workspaces,
    world,
)
from taleweaver.api.routes import live as live_routes
from taleweaver.api.routes import models as model_routes
from taleweaver.api.routes import plugins as plugin_routes
from taleweaver.api.routes import secrets as secret_routes
from taleweaver.api.security import LoginMode
from taleweaver.api.spans import ServerSpans
from taleweaver.api.webapp import BUILT, WebApp
from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.engine.engine import database_from_settings
from taleweaver.engine.gauges import worker_gauges
from taleweaver.llm import ChatModel
from taleweaver.observability.errors import configure_error_tracking
from taleweaver.observability.tracing import active as tracing_active
from taleweaver.observability.tracing import configure_tracing
from taleweaver.plugins import BuiltIn, load_plugins
from taleweaver.store.serving import hold_for_serving


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    model: ChatModel | None = None,
    webapp: Path = BUILT,
) -> FastAPI:
    """Build the app; it opens its own engine from `settings` (and `model`, when
    given) unless an engine is handed in. `webapp` is the built front-end's folder."""
    settings = settings or Settings()
    # Loaded before the engine: their routers are part of the app being built.
    plugins = engine.plugins if engine is not None else load_plugins(settings.required_plugins)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = engine is None
        lease = None
        if owned:
            # A server of this database: restore must wait for it to stop. Held before
            # Engine.open, which migrates and writes, so that a server started during
            # a restore refuses before it has written anything.
            db = database_from_settings(settings)
            try:
                lease = await hold_for_serving(db)
                app.state.engine = await Engine.open(
                    settings, model=model, plugins=plugins, database=db
                )
            except BaseException:
                if lease is not None:
                    await lease.release()
                await db.dispose()
                raise
        else:
            app.state.engine = engine
        # A local model loads while the server already answers; /readyz says "loading".
        app.state.engine.warm_up()
        await app.state.engine.jobs.start()  # and picks up jobs a restart interrupted
        try:
            async with worker_gauges(app.state.engine):  # several worker processes only
                yield
        finally:
            await app.state.rate_limits.close()
            try:
                if owned:
                    await app.state.engine.close()  # its last writes (usage) under the hold
            finally:
                if lease is not None:
                    await lease.release()

    app = FastAPI(
        title="Taleweaver",
        version=__version__,
        summary="Persistent AI narrative sessions: stories, companions, world-building.",
        lifespan=lifespan,
        dependencies=[Depends(check_path_ids)],
        docs_url=None,  # served from local files by api/docs.py
        redoc_url=None,  # ReDoc would come from a CDN
        # FastAPI's own telemetry would put URL queries (search words) on its spans and
        # rejected input in its logs: ServerSpans traces requests instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.login_mode = LoginMode()
    app.state.rate_limits = RateLimits(
        settings.rate_limit,
        settings.login_rate_limit,
        settings.redis_url,
        key_prefix=settings.redis_key_prefix,
    )
    problems.install(app)
    problems.document(app)
    docs.install(app)
    # Routes are matched in order: the hot path (turns, then sessions) goes first.
    for module in (turns, sessions):
        app.include_router(module.router, responses=problems.ERROR_RESPONSES)
    app.include_router(health.router, responses=problems.documented(500))
    for module in (auth, oidc, users, workspaces, flags):
        app.include_router(module.router, responses=problems.ERROR_RESPONSES)
    app.include_router(model_routes.router, responses=problems.ERROR_RESPONSES)
    app.include_router(secret_routes.router, responses=problems.ERROR_RESPONSES)
    for module in (
        world,
        studio,
        studio_work,
        lorebooks,
        summaries,
        characters,
        interop,
        safety,
        therapy,
    ):
        app.include_router(module.router, responses=problems.ERROR_RESPONSES)
    app.include_router(jobs.router, responses=problems.ERROR_RESPONSES)
    for module in (files, terminals):  # file-editor and terminal sessions (#20)
        app.include_router(module.router, responses=problems.ERROR_RESPONSES)
    app.include_router(openai.router)  # errors in OpenAI's shape, not problem+json
    app.router.routes.append(live_routes.route)  # the WebSocket (see its module)
    # The plugins route is built in, included through the hook as a plugin's router is.
    plugins.add_builtin("api", BuiltIn(routers=[plugin_routes.router]))
    for _, routers in plugins.each("api_routers"):
        for router in routers:
            app.include_router(router, responses=problems.ERROR_RESPONSES)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PATCH", "PUT", "DELETE"],
            allow_headers=[
                "authorization",
                "content-type",
                "x-csrf-token",
                "x-workspace",
                "x-request-id",
                "last-event-id",
            ],
        )
    app.add_middleware(WebApp, directory=webapp)
    observability.enable(settings.metrics)
    configure_tracing()
    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None
    configure_error_tracking(dsn, release=__version__, environment=settings.sentry_environment)
    if settings.metrics:
        app.add_middleware(HTTPMetrics)  # outside the web app: its files count as unmatched
    # Inside RequestContext: bodies are size-checked first, and refusals carry the id.
    app.add_middleware(InputGuard)
    app.add_middleware(
        RequestContext,
        max_body_bytes=settings.max_body_bytes,
        upload_bytes=settings.max_upload_bytes,
    )
    if tracing_active():  # around RequestContext: its log line is inside the span
        app.add_middleware(ServerSpans)
    app.add_middleware(SecurityHeaders)  # outermost: on the 413s RequestContext sends too
    return app
