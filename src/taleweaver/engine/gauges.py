"""The figures a scrape reads from the server's own state rather than counting as
they happen: open crises, waiting jobs, budgets, breakers, connections and sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from taleweaver.llm import ModelRouter
from taleweaver.llm.breaker import BreakerState
from taleweaver.llm.config import BudgetSettings
from taleweaver.observability import (
    ProcessFigures,
    Snapshot,
    record_process,
    retire_process,
    several_workers,
)
from taleweaver.store.database import Database
from taleweaver.store.safety_schema import safety_deliveries, safety_flags

if TYPE_CHECKING:
    from taleweaver.engine.engine import Engine

log = logging.getLogger(__name__)

# Webhook deliveries to therapists are the background job a stuck worker delays.
WEBHOOK_QUEUE = "safety_webhooks"
# How stale another worker's own figures may be in a scrape (several workers only).
REFRESH_S = 5.0


async def engine_snapshot(engine: Engine) -> Snapshot:
    limits = engine.budgets.limits if engine.budgets is not None else None
    return await snapshot(engine.db, engine_figures(engine), limits)


def engine_figures(engine: Engine) -> ProcessFigures:
    watching = engine.live.watching()
    return process_figures(
        engine.db,
        engine.router,
        watching,
        sum(watching.values()),
        engine.turns.running_sessions(),
    )


@contextlib.asynccontextmanager
async def worker_gauges(engine: Engine, every_s: float = REFRESH_S) -> AsyncIterator[None]:
    """With several worker processes, keep this worker's own figures current for
    scrapes another worker answers, and take them out when it stops. With one
    process, nothing: the scrape reads them itself."""
    if not several_workers():
        yield
        return
    refresher = asyncio.create_task(_refresh(engine, every_s), name="worker gauges")
    try:
        yield
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        retire_process()


async def _refresh(engine: Engine, every_s: float) -> None:
    while True:
        try:
            record_process(engine_figures(engine))
        except Exception:  # a gauge left stale must not stop the worker
            log.exception("refreshing this worker's gauges failed")
        await asyncio.sleep(every_s)


def process_figures(
    db: Database,
    router: ModelRouter | None,
    watched_sessions: Iterable[str],
    live_connections: int,
    running_sessions: Iterable[str],
) -> ProcessFigures:
    """Read in memory, no I/O: cheap enough to take every few seconds."""
    breakers: tuple[tuple[str, bool], ...] = ()
    if router is not None:
        breakers = tuple(
            (name, provider.breaker.state is BreakerState.OPEN)
            for name, provider in router.providers.items()
        )
    return ProcessFigures(
        breakers_open=breakers,
        live_connections=live_connections,
        active_sessions=len(set(watched_sessions) | set(running_sessions)),
        pool_in_use=db.connections_in_use(),
    )


async def snapshot(
    db: Database, figures: ProcessFigures, budgets: BudgetSettings | None = None
) -> Snapshot:
    now = datetime.now(UTC)
    async with db.read() as conn:
        crises = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.min(safety_flags.c.created_at)).where(
                    safety_flags.c.status == "open"
                )
            )
        ).one()
        jobs = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.min(safety_deliveries.c.created_at)).where(
                    safety_deliveries.c.status == "pending"
                )
            )
        ).one()
    return Snapshot(
        crises_open=int(crises[0]),
        oldest_crisis_s=_age(now, crises[1]),
        jobs=((WEBHOOK_QUEUE, int(jobs[0]), _age(now, jobs[1])),),
        budgets=_limits(budgets),
        process=figures,
    )


def _limits(budgets: BudgetSettings | None) -> tuple[tuple[str, float], ...]:
    if budgets is None:
        return ()
    scoped = (("workspace", budgets.workspace_usd), ("session", budgets.session_usd))
    return tuple((scope, limit) for scope, limit in scoped if limit is not None)


def _age(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:  # SQLite hands back naive UTC stamps
        then = then.replace(tzinfo=UTC)
    return max(0.0, (now - then).total_seconds())
