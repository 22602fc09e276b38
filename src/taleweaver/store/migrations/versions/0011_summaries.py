"""Tables for rolling session summaries (layered: summaries of summaries).

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from taleweaver.store.schema import metadata
from taleweaver.store.summaries_schema import summaries, summary_progress

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = [summaries, summary_progress]


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=TABLES)


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=list(reversed(TABLES)))
