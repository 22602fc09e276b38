"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from taleweaver.api.deps import EngineDep
from taleweaver.api.security import PUBLIC, requires

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[requires(PUBLIC)])
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", dependencies=[requires(PUBLIC)])
async def readyz(engine: EngineDep) -> JSONResponse:
    """Each component's state; 503 until every one of them is ok."""
    components = await engine.readiness()
    ready = all(c["status"] == "ok" for c in components.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "components": components},
        status_code=200 if ready else 503,
    )
