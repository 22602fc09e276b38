"""The figures a scrape reads from the server's own state rather than counting as
they happen: open crises, waiting jobs, breakers, connections and sessions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from taleweaver.llm import ModelRouter
from taleweaver.llm.breaker import BreakerState
from taleweaver.observability import Snapshot
from taleweaver.store.database import Database
from taleweaver.store.safety_schema import safety_deliveries, safety_flags

if TYPE_CHECKING:
    from taleweaver.engine.engine import Engine

# Webhook deliveries to therapists are the background job a stuck worker delays.
WEBHOOK_QUEUE = "safety_webhooks"


async def engine_snapshot(engine: Engine) -> Snapshot:
    watching = engine.live.watching()
    return await snapshot(
        engine.db,
        engine.router,
        watching,
        sum(watching.values()),
        engine.turns.running_sessions(),
    )


async def snapshot(
    db: Database,
    router: ModelRouter | None,
    watched_sessions: Iterable[str],
    live_connections: int,
    running_sessions: Iterable[str],
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
    breakers: tuple[tuple[str, bool], ...] = ()
    if router is not None:
        breakers = tuple(
            (name, provider.breaker.state is BreakerState.OPEN)
            for name, provider in router.providers.items()
        )
    return Snapshot(
        crises_open=int(crises[0]),
        oldest_crisis_s=_age(now, crises[1]),
        jobs=((WEBHOOK_QUEUE, int(jobs[0]), _age(now, jobs[1])),),
        breakers_open=breakers,
        live_connections=live_connections,
        active_sessions=len(set(watched_sessions) | set(running_sessions)),
        pool_in_use=db.connections_in_use(),
    )


def _age(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:  # SQLite hands back naive UTC stamps
        then = then.replace(tzinfo=UTC)
    return max(0.0, (now - then).total_seconds())
