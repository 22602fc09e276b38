"""Background jobs as the rest of the code sees them: a job's record, its states, and
the retry rule. The queue that runs them is `taleweaver.jobs`; this is pure data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from taleweaver.domain.events import JSON

__all__ = [
    "TERMINAL",
    "Artifact",
    "Job",
    "JobPage",
    "JobResult",
    "JobStatus",
    "backoff_seconds",
]


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A job in one of these never changes again.
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class Artifact:
    """A file a job made (a workspace bundle), kept with its record to download."""

    data: bytes
    media_type: str
    filename: str


@dataclass(frozen=True, slots=True)
class JobResult:
    """What a job's handler returns: a small JSON result, and optionally a file."""

    result: JSON
    artifact: Artifact | None = None


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    kind: str
    workspace_id: str
    status: JobStatus
    params: JSON
    progress: float  # 0..1
    message: str  # what the job is doing now, in a few words
    attempts: int  # runs started (an orderly shutdown gives its run back)
    max_attempts: int
    result: JSON | None
    error: str | None  # the last failure, kept while a retry waits
    artifact_name: str | None  # a downloadable file, when the job made one
    cancel_requested: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    run_after: datetime | None  # a retry waits until then

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class JobPage:
    items: list[Job]
    total: int


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """How long a job waits after its `attempt`-th failed run: doubling from `base`,
    at most `cap` (1, 2, 4, 8 ... times base)."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))
