"""What an import answers and takes about a file imported before (cards, lorebooks)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query
from pydantic import BaseModel, Field


class Reimport(BaseModel):
    of: str = Field(description="What this import matched.")
    match: Literal["same content", "same name"]
    outcome: Literal["update", "copy", "skip"]


OnDuplicateQuery = Annotated[
    Literal["update", "copy", "skip"] | None,
    Query(
        description="What to do when this was imported before (the same content, or the "
        "same name): replace what is there, keep both, or import nothing. Unset: such an "
        "import is a 409 whose body lists these choices."
    ),
]

__all__ = ["OnDuplicateQuery", "Reimport"]
