"""Webhook secrets are stored sealed: the column widens to fit a ciphertext.

A sealed secret (`tw1:<key id>:<base64>`) outgrows VARCHAR(128), which PostgreSQL
enforces; SQLite does not, so there nothing changes. Rows already there keep their
plaintext secret, which still signs: a migration has no keys to seal with, and
`taleweaver keys rotate` seals them (`keys status` counts them until then).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "safety_webhooks",
            "secret",
            type_=sa.Text,
            existing_type=sa.String(128),
            existing_nullable=False,
        )


def downgrade() -> None:
    # Sealed secrets do not fit back: a downgrade would fail on them, so it refuses
    # plainly instead of truncating a value into one that no longer opens.
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        longest = bind.execute(sa.text("SELECT max(length(secret)) FROM safety_webhooks"))
        if (longest.scalar() or 0) > 128:
            raise RuntimeError(
                "sealed webhook secrets do not fit the old column: delete the webhooks "
                "(their owners register them again) before downgrading"
            )
        op.alter_column(
            "safety_webhooks",
            "secret",
            type_=sa.String(128),
            existing_type=sa.Text,
            existing_nullable=False,
        )
