"""Tables for lorebooks.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from taleweaver.store.lorebook_schema import TABLES
from taleweaver.store.schema import metadata

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=TABLES)


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=list(reversed(TABLES)))
