"""The world bible's vocabulary and rules: entities, facts, relations, entries, story
time, retrieval fusion and continuity checks. Pure: no I/O."""

from taleweaver.domain.world.model import (
    BUILTIN_TYPES,
    MAX_NAME,
    EntityStatus,
    WorldEvent,
    check_transition,
    clean_aliases,
    clean_name,
    clean_tags,
    clean_type,
    stream_id,
)
from taleweaver.domain.world.storytime import StoryTime, clean_time, overlaps, time_key

__all__ = [
    "BUILTIN_TYPES",
    "MAX_NAME",
    "EntityStatus",
    "StoryTime",
    "WorldEvent",
    "check_transition",
    "clean_aliases",
    "clean_name",
    "clean_tags",
    "clean_time",
    "clean_type",
    "overlaps",
    "stream_id",
    "time_key",
]
