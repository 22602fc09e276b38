"""The therapeutic layer: profiles, goals, assessments, progress."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["therapy"])
