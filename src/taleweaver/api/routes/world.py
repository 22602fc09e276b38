"""World memory: worlds, the world bible, lorebooks, recall traces, review, continuity."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["world"])
