"""Liveness, readiness and metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.responses import Response

from taleweaver.api.deps import EngineDep
from taleweaver.api.security import PUBLIC, requires
from taleweaver.engine.gauges import engine_snapshot
from taleweaver.observability import exposition, record_snapshot

log = logging.getLogger(__name__)

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


@router.get(
    "/metrics",
    dependencies=[requires(PUBLIC)],
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(engine: EngineDep) -> Response:
    """Prometheus metrics (`taleweaver_*`); labels never carry user content or ids."""
    try:
        record_snapshot(await engine_snapshot(engine))
    except Exception:  # a scrape still answers with what is counted in memory
        log.exception("reading the server's gauges for /metrics failed")
    body, content_type = exposition()
    return Response(body, media_type=content_type)
