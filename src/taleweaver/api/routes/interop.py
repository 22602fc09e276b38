"""Imports, exports, chat files, workspace bundles and backups."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["interop"])
