"""Rolling session summaries, layered, as the narrator sees them."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["summaries"])
