"""Characters and companions: cards, relationship state, greetings, group chats."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["characters"])
