"""Response bodies of search, imports and exports (interop, #5)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from taleweaver.api.schemas import SearchHit, SessionPublic


class SearchContext(BaseModel):
    """A message next to a search hit, so a hit reads in context."""

    id: str
    turn_number: int
    role: Literal["player", "narrator"]
    content: str


class SearchResult(SearchHit):
    session_kind: str
    created_at: datetime
    context: list[SearchContext] = Field(
        default_factory=list, description="The hit and the messages on each side of it."
    )


class ImportCounts(BaseModel):
    format: str = Field(default="sillytavern", description="The format the file was read as.")
    messages: int
    turns: int
    stripped: int = Field(
        default=0,
        description="NUL and unpaired-surrogate characters removed from the file: no "
        "database stores them.",
    )


class ChatImported(SessionPublic):
    imported: ImportCounts


class BundleImported(BaseModel):
    workspace_id: str
    ids: Literal["preserved", "remapped"]
    streams: int
    events: int
    rows: dict[str, int]
    sessions: list[str]


class ImportResult(BaseModel):
    """What `POST /workspaces/{id}/import` made of each recognised file."""

    format: str
    result: dict[str, Any]
