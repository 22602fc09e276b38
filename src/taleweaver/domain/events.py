"""Event records: what a stream holds and what an append takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventMetadata:
    """Who caused an event and as part of which request."""

    actor: str = "system"
    correlation_id: str | None = None

    def to_dict(self) -> JSON:
        return {"actor": self.actor, "correlation_id": self.correlation_id}


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended; the store assigns version and position."""

    type: str
    payload: JSON = field(default_factory=dict)
    schema_version: int = 1


@dataclass(frozen=True, slots=True)
class CopiedEvent:
    """An event recorded elsewhere (a restored bundle), appended with its own stream
    version, time and metadata; the store still assigns its global position."""

    stream_id: str
    version: int
    event: NewEvent
    metadata: JSON
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: versioned in its stream, positioned globally."""

    stream_id: str
    workspace_id: str
    version: int
    position: int
    type: str
    schema_version: int
    payload: JSON
    metadata: JSON
    recorded_at: datetime

    def to_dict(self) -> JSON:
        return {
            "stream_id": self.stream_id,
            "workspace_id": self.workspace_id,
            "version": self.version,
            "position": self.position,
            "type": self.type,
            "schema_version": self.schema_version,
            "payload": self.payload,
            "metadata": self.metadata,
            "recorded_at": self.recorded_at.isoformat(),
        }
