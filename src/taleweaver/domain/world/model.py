"""Entities, their statuses and the events that change a world.

A world is an event stream (`world:<id>`); every change to it is one of the
`WorldEvent` types below, carrying who made it in the event metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

from taleweaver.domain.errors import InvalidInput

MAX_NAME = 200
MAX_SUMMARY = 20_000
MAX_ALIASES = 50
MAX_TAGS = 50
BUILTIN_TYPES = frozenset({"faction", "npc", "location", "event", "timeline_arc", "item"})
_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_TAG = re.compile(r"^[\w:/-]{1,60}$", re.UNICODE)


class EntityStatus(StrEnum):
    DRAFT = "draft"
    REVIEWED = "reviewed"
    CANON = "canon"
    DEPRECATED = "deprecated"


# Forward through review; deprecated can be revived only as a draft.
_TRANSITIONS: dict[EntityStatus, frozenset[EntityStatus]] = {
    EntityStatus.DRAFT: frozenset(
        {EntityStatus.REVIEWED, EntityStatus.CANON, EntityStatus.DEPRECATED}
    ),
    EntityStatus.REVIEWED: frozenset(
        {EntityStatus.DRAFT, EntityStatus.CANON, EntityStatus.DEPRECATED}
    ),
    EntityStatus.CANON: frozenset({EntityStatus.REVIEWED, EntityStatus.DEPRECATED}),
    EntityStatus.DEPRECATED: frozenset({EntityStatus.DRAFT}),
}


class WorldEvent(StrEnum):
    WORLD_CREATED = "world.created"
    WORLD_UPDATED = "world.updated"
    WORLD_DELETED = "world.deleted"
    ENTITY_CREATED = "entity.created"
    ENTITY_UPDATED = "entity.updated"
    ENTITY_DELETED = "entity.deleted"
    ENTITIES_MERGED = "entities.merged"
    FACT_ADDED = "fact.added"
    FACT_UPDATED = "fact.updated"
    FACT_REMOVED = "fact.removed"
    RELATION_ADDED = "relation.added"
    RELATION_REMOVED = "relation.removed"
    ENTRY_CREATED = "entry.created"
    ENTRY_UPDATED = "entry.updated"
    ENTRY_DELETED = "entry.deleted"
    ARTIFACT_REVIEWED = "artifact.reviewed"
    CONTINUITY_CHECKED = "continuity.checked"
    FINDING_RESOLVED = "finding.resolved"


def stream_id(world_id: str) -> str:
    return f"world:{world_id}"


def check_transition(current: str, wanted: str) -> EntityStatus:
    try:
        new = EntityStatus(wanted)
    except ValueError:
        raise InvalidInput(
            f"status {wanted!r} is not one of {', '.join(s.value for s in EntityStatus)}"
        ) from None
    old = EntityStatus(current)
    if new != old and new not in _TRANSITIONS[old]:
        raise InvalidInput(f"an entity cannot go from {old.value} to {new.value}")
    return new


def clean_name(name: str, what: str = "name") -> str:
    cleaned = " ".join(str(name).split())
    if not cleaned:
        raise InvalidInput(f"{what} must not be empty")
    if len(cleaned) > MAX_NAME:
        raise InvalidInput(f"{what} must be at most {MAX_NAME} characters")
    return cleaned


def clean_type(kind: str) -> str:
    """A built-in type or a user-defined one (lower-case letters, digits, '_')."""
    kind = str(kind).strip().lower()
    if not _TYPE.match(kind):
        raise InvalidInput(
            f"entity type {kind!r} must be lower-case letters, digits and '_' "
            f"(built in: {', '.join(sorted(BUILTIN_TYPES))})"
        )
    return kind


def clean_aliases(aliases: Iterable[str], name: str) -> list[str]:
    seen = {name.casefold()}
    kept: list[str] = []
    for alias in aliases:
        cleaned = clean_name(alias, "alias")
        if cleaned.casefold() not in seen:
            seen.add(cleaned.casefold())
            kept.append(cleaned)
    if len(kept) > MAX_ALIASES:
        raise InvalidInput(f"at most {MAX_ALIASES} aliases")
    return kept


def clean_tags(tags: Iterable[str]) -> list[str]:
    kept: list[str] = []
    for tag in tags:
        cleaned = str(tag).strip().lstrip("#").lower()
        if not _TAG.match(cleaned):
            raise InvalidInput(f"tag {tag!r} must be 1-60 letters, digits, '_', ':', '/', '-'")
        if cleaned not in kept:
            kept.append(cleaned)
    if len(kept) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags")
    return kept


def clean_summary(summary: str) -> str:
    text = str(summary).strip()
    if len(text) > MAX_SUMMARY:
        raise InvalidInput(f"summary must be at most {MAX_SUMMARY} characters")
    return text


def search_text(name: str, aliases: list[str], summary: str, tags: list[str]) -> str:
    """What the keyword index reads for an entity."""
    return "\n".join([name, " ".join(aliases), summary, " ".join(tags)])
