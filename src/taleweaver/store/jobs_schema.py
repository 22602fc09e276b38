"""Background jobs' records (migration 0016), owned by `taleweaver.jobs`.

The queue library only carries "run job X" to a worker; what a job is, where it
stands and what it made live here, so that any replica can show, cancel or resume
it. A job belongs to its workspace and goes with it; bundles leave jobs out.
"""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Json, Stamp, metadata

__all__ = ["jobs"]

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column(
        "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("kind", sa.String(64), nullable=False),
    # queued, running, succeeded, failed or cancelled (domain.jobs.JobStatus).
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("params", Json, nullable=False),
    sa.Column("progress", sa.Float, nullable=False),
    sa.Column("message", sa.String(500), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("result", Json, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # A file the job made, to download (a workspace bundle).
    sa.Column("artifact", sa.LargeBinary, nullable=True),
    sa.Column("artifact_type", sa.String(100), nullable=True),
    sa.Column("artifact_name", sa.String(200), nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    # The worker running it, and until when its claim holds unless renewed: a
    # replica that dies leaves a lease that runs out, and the job is queued again.
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", Stamp, nullable=True),
    # A retry waits until run_after; kicked_at says when it was last handed to the
    # queue (null: it must be, by whichever replica's poller gets there first).
    sa.Column("run_after", Stamp, nullable=True),
    sa.Column("kicked_at", Stamp, nullable=True),
    sa.Column("created_by", Id, nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Column("started_at", Stamp, nullable=True),
    sa.Column("finished_at", Stamp, nullable=True),
    sa.Index("ix_jobs_workspace_created", "workspace_id", "created_at"),
    sa.Index("ix_jobs_status", "status"),
)
