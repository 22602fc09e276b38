"""Tables for therapy (profiles, goals, assessments, progress).

Revision ID: 0010
Revises: 0009
"""

from alembic import op

from taleweaver.store.schema import metadata
from taleweaver.store.therapy_schema import TABLES

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=TABLES)


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=list(reversed(TABLES)))
