"""Dependency aliases every route uses.

Dependencies are `async def`: FastAPI runs a plain `def` dependency in a worker thread,
a needless hop on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from taleweaver.api.logs import correlation_id
from taleweaver.domain.events import EventMetadata
from taleweaver.engine import Engine


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def metadata_for(user_id: str) -> EventMetadata:
    """Who caused the events a request writes, and under which correlation id."""
    return EventMetadata(actor=user_id, correlation_id=correlation_id.get())


EngineDep = Annotated[Engine, Depends(get_engine)]
