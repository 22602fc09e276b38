"""Dependency aliases every route uses.

All are `async def`: FastAPI runs a plain `def` dependency in a worker thread,
a needless hop on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from taleweaver.api.logs import correlation_id
from taleweaver.domain.events import EventMetadata
from taleweaver.engine import Engine
from taleweaver.store.schema import DEFAULT_WORKSPACE_ID


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_workspace() -> str:
    # Until accounts land, everything lives in the single local workspace.
    return DEFAULT_WORKSPACE_ID


async def get_metadata() -> EventMetadata:
    return EventMetadata(actor="local-user", correlation_id=correlation_id.get())


EngineDep = Annotated[Engine, Depends(get_engine)]
WorkspaceDep = Annotated[str, Depends(get_workspace)]
MetadataDep = Annotated[EventMetadata, Depends(get_metadata)]
