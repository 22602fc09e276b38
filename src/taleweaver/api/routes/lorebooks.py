"""Lorebooks: keyword-activated context, imported and exported in the formats users bring."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["lorebooks"])
