"""Which session a stateless chat client's conversation continues (migration 0013).

OpenAI-style clients hold no session id: a conversation is known by a fingerprint
of its opening (`domain.conversation.fingerprint`), scoped to its workspace, its
caller and what it talks to. Nothing of the story is stored here, only a digest.
"""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Stamp, metadata

__all__ = ["client_conversations"]

client_conversations = sa.Table(
    "client_conversations",
    metadata,
    sa.Column(
        "workspace_id", Id, sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    # What the client named as its model: `character/{id}`, `world/{id}`.
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("session_id", Id, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
)
