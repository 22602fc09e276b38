"""Models and what they cost: the configured models and routes, each provider's
health, token and cost usage per workspace and session, and budgets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from taleweaver.api.dates import DATE_RANGE, UtcDateTime
from taleweaver.api.deps import EngineDep
from taleweaver.api.security import Access, requires
from taleweaver.auth import Action
from taleweaver.engine import Engine

router = APIRouter(prefix="/api/v1", tags=["models"])


class Price(BaseModel):
    input_usd_per_mtok: float
    output_usd_per_mtok: float


class ModelPublic(BaseModel):
    alias: str
    name: str
    provider: str
    kind: str
    model: str
    type: Literal["chat", "embedding"]
    price: Price
    tasks: list[str]


class ModelsPublic(BaseModel):
    models: list[ModelPublic]
    routes: dict[str, list[str]]


class ProviderHealth(BaseModel):
    status: Literal["ok", "error"]
    kind: str
    models: list[str]
    breaker: str | None = None
    latency_ms: float
    detail: str | None = None


class ModelsHealth(BaseModel):
    status: Literal["ok", "error"]
    detail: str | None = None
    providers: dict[str, ProviderHealth]


class UsageTotals(BaseModel):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float


class TaskUsage(UsageTotals):
    task: str


class ModelUsage(UsageTotals):
    model: str
    provider: str


class SessionUsageRow(UsageTotals):
    session_id: str | None


class Budget(BaseModel):
    scope: Literal["workspace", "session"]
    period: str
    limit_usd: float
    spent_usd: float
    remaining_usd: float
    warn_at: float
    level: Literal["ok", "warning", "exceeded"]


class SessionUsage(BaseModel):
    session_id: str
    totals: UsageTotals
    by_task: list[TaskUsage]
    by_model: list[ModelUsage]
    budgets: list[Budget]


class WorkspaceUsage(BaseModel):
    workspace_id: str
    since: datetime | None
    totals: UsageTotals
    by_task: list[TaskUsage]
    by_model: list[ModelUsage]
    by_session: list[SessionUsageRow]
    budgets: list[Budget]


@router.get("/models")
async def list_models(
    engine: EngineDep, access: Annotated[Access, requires(Action.WORKSPACE_READ)]
) -> ModelsPublic:
    """The configured models, their prices, and each task's chain of models."""
    return ModelsPublic.model_validate(engine.describe_models())


@router.get(
    "/models/health",
    response_model=ModelsHealth,
    responses={503: {"model": ModelsHealth, "description": "Some task has no working model"}},
)
async def models_health(
    engine: EngineDep, access: Annotated[Access, requires(Action.WORKSPACE_READ)]
) -> JSONResponse:
    """Each provider's check and circuit breaker; 503 when some task has no working model."""
    readiness = await engine.model_readiness()
    body = ModelsHealth.model_validate(
        {
            "status": readiness["status"],
            "detail": readiness.get("detail"),
            "providers": readiness["providers"],
        }
    )
    return JSONResponse(body.model_dump(mode="json"), 200 if body.status == "ok" else 503)


@router.get("/usage")
async def workspace_usage(
    engine: EngineDep,
    access: Annotated[Access, requires(Action.USAGE_READ)],
    since: Annotated[
        UtcDateTime | None, Query(description=f"Only calls from then on ({DATE_RANGE}).")
    ] = None,
) -> WorkspaceUsage:
    """Tokens and cost in this workspace: totals, per task, model and session; budgets."""
    workspace = access.workspace_id
    ledger = engine.usage
    return WorkspaceUsage(
        workspace_id=workspace,
        since=since,
        totals=UsageTotals(**(await ledger.totals(workspace, since=since)).to_dict()),
        by_task=[TaskUsage(**r) for r in await ledger.breakdown(workspace, "task", since=since)],
        by_model=[ModelUsage(**r) for r in await ledger.breakdown(workspace, "model", since=since)],
        by_session=[
            SessionUsageRow(**r)
            for r in await ledger.breakdown(workspace, "session_id", since=since, limit=50)
        ],
        budgets=await _budgets(engine, workspace, None),
    )


@router.get("/sessions/{session_id}/usage")
async def session_usage(
    session_id: str,
    engine: EngineDep,
    access: Annotated[Access, requires(Action.USAGE_READ)],
) -> SessionUsage:
    """Tokens and cost of one session, per task and model, and its budgets."""
    workspace = access.workspace_id
    await engine.sessions.get(workspace, session_id)  # 404 unless it is this workspace's
    ledger = engine.usage
    return SessionUsage(
        session_id=session_id,
        totals=UsageTotals(**(await ledger.totals(workspace, session_id=session_id)).to_dict()),
        by_task=[
            TaskUsage(**r) for r in await ledger.breakdown(workspace, "task", session_id=session_id)
        ],
        by_model=[
            ModelUsage(**r)
            for r in await ledger.breakdown(workspace, "model", session_id=session_id)
        ],
        budgets=await _budgets(engine, workspace, session_id),
    )


async def _budgets(engine: Engine, workspace: str, session_id: str | None) -> list[Budget]:
    if engine.budgets is None:
        return []
    found = await engine.budgets.status(workspace, session_id)
    return [Budget(**b.to_dict()) for b in found]
