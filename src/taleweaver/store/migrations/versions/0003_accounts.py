"""Accounts, workspace roles, login sessions, API keys, audit log, encrypted secrets.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from taleweaver.store.schema import (
    api_keys,
    assignments,
    audit_log,
    identities,
    instance_state,
    login_sessions,
    memberships,
    metadata,
    secrets,
    users,
)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = [
    users,
    identities,
    memberships,
    assignments,
    login_sessions,
    api_keys,
    audit_log,
    instance_state,
    secrets,
]


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=TABLES)
    op.create_index("ix_memberships_user", "memberships", ["user_id"])
    op.create_index("ix_api_keys_user", "api_keys", ["user_id"])
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(
            sa.Column("sensitive", sa.Boolean, nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("owner_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("owner_id")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("sensitive")
    metadata.drop_all(op.get_bind(), tables=list(reversed(TABLES)))
