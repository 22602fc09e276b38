"""Tables for safety (flags, crisis events, content rules).

Revision ID: 0009
Revises: 0007
"""

from alembic import op

from taleweaver.store.safety_schema import (
    safety_content_rules,
    safety_deliveries,
    safety_flags,
    safety_preferences,
    safety_webhooks,
)
from taleweaver.store.schema import metadata

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = [
    safety_flags,
    safety_webhooks,
    safety_deliveries,
    safety_content_rules,
    safety_preferences,
]


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=TABLES)


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=list(reversed(TABLES)))
