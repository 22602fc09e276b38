"""Safety: flagged sessions, crisis events, content rules."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["safety"])
