"""World memory's read models (migration 0005): worlds, entities, facts, relations,
entries, vectors, the review queue and continuity findings.

All of them are projections of the `world:<id>` event streams (written in the
events' own transaction), except the review queue, which catches up from committed
turns, and vectors, which follow entities after their commit. Every row carries its
workspace. Keyword indexes are not tables here: a trigger-fed FTS5 table on SQLite
and a generated tsvector column on PostgreSQL (see the migration).
"""

from __future__ import annotations

import sqlalchemy as sa

from taleweaver.store.schema import Id, Json, Stamp, metadata

worlds = sa.Table(
    "worlds",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    # auto_accept_threshold, recall settings...
    sa.Column("settings", Json, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    # Bumped whenever a vector changes, so in-process vector caches know they are stale.
    sa.Column("vectors_version", sa.Integer, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Index("ix_worlds_workspace", "workspace_id", "name"),
)

world_entities = sa.Table(
    "world_entities",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("world_id", Id, primary_key=True),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("aliases", Json, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("tags", Json, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("source_refs", Json, nullable=False),
    # name, aliases, summary and tags as one text: what the keyword index reads.
    sa.Column("search_text", sa.Text, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Index("ix_world_entities_world_status", "world_id", "status"),
    sa.Index("ix_world_entities_world_name", "world_id", "name"),
)

world_facts = sa.Table(
    "world_facts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("world_id", Id, primary_key=True),
    sa.Column("entity_id", Id, nullable=False),
    sa.Column("attribute", sa.String(100), nullable=False),
    sa.Column("value", Json, nullable=False),
    # Story time (an integer or a sortable string; domain.world.storytime), None: open.
    sa.Column("valid_from", Json, nullable=True),
    sa.Column("valid_to", Json, nullable=True),
    sa.Column("source_refs", Json, nullable=False),
    # active, or superseded by a later fact.
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Index("ix_world_facts_entity", "world_id", "entity_id"),
)

world_relations = sa.Table(
    "world_relations",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("world_id", Id, primary_key=True),
    sa.Column("source_id", Id, nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("target_id", Id, nullable=False),
    sa.Column("source_refs", Json, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Index("ix_world_relations_source", "world_id", "source_id"),
    sa.Index("ix_world_relations_target", "world_id", "target_id"),
)

world_entries = sa.Table(
    "world_entries",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("world_id", Id, primary_key=True),
    # note, blueprint or recipe (a studio reply applied to the world).
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("tags", Json, nullable=False),
    # [[wiki link]] targets as written, and the entities they resolved to.
    sa.Column("links", Json, nullable=False),
    sa.Column("entity_ids", Json, nullable=False),
    sa.Column("source_refs", Json, nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Column("updated_by", sa.String(100), nullable=False),
    sa.Index("ix_world_entries_world", "world_id", "updated_at"),
)

world_vectors = sa.Table(
    "world_vectors",
    metadata,
    sa.Column("entity_id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("world_id", Id, primary_key=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    # sha256 of the embedded text: unchanged text is not embedded again.
    sa.Column("content_hash", sa.String(64), nullable=False),
    # float32, little-endian, `dim` of them.
    sa.Column("vector", sa.LargeBinary, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Index("ix_world_vectors_world", "world_id"),
)

world_artifacts = sa.Table(
    "world_artifacts",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("world_id", Id, nullable=False),
    sa.Column("session_id", Id, nullable=False),
    sa.Column("turn_id", Id, nullable=False),
    # The committed turn's global event position.
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("confidence", Json, nullable=False),
    sa.Column("extraction_version", sa.String(40), nullable=False),
    # pending, accepted, rejected
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("decision", Json, nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("reviewed_at", Stamp, nullable=True),
    sa.Column("reviewed_by", sa.String(100), nullable=True),
    sa.Index("ix_world_artifacts_queue", "world_id", "status", "position"),
)

world_findings = sa.Table(
    "world_findings",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("world_id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("entity_ids", Json, nullable=False),
    sa.Column("citations", Json, nullable=False),
    # open, resolved, ignored
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("resolution", Json, nullable=True),
    sa.Column("found_at", Stamp, nullable=False),
    sa.Column("resolved_at", Stamp, nullable=True),
)

TABLES = [
    worlds,
    world_entities,
    world_facts,
    world_relations,
    world_entries,
    world_vectors,
    world_artifacts,
    world_findings,
]
