"""The crisis protocol's entry point, for every detector that can raise a crisis.

Turn safety raises it from the pipeline; the therapy layer raises it from an
assessment (a positive PHQ-9 item 9). One implementation runs the whole protocol:
pause, resources, flag, audit event, therapist webhook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

CrisisLevel = Literal["none", "low", "moderate", "high", "critical"]


@dataclass(frozen=True, slots=True)
class CrisisSignal:
    workspace_id: str
    # The person at risk (a session's player, or the one who took the assessment).
    user_id: str
    level: CrisisLevel
    categories: list[str]
    # What raised it: "turn", "assessment", ...
    source: str
    session_id: str | None = None
    # A reference to what raised it (a turn id, an assessment id).
    ref: str | None = None
    detail: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CrisisResponse:
    """What the person is shown: a supportive message with resources for their locale."""

    message: str
    resources: list[dict[str, str]]


class CrisisProtocol(Protocol):
    async def raise_crisis(self, signal: CrisisSignal) -> CrisisResponse: ...
