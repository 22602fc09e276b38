"""Who and what an entry is for: SillyTavern's character filters and generation triggers.

A character filter lists names and tags: an entry that has one activates only
when the speaking character's name (and, if tags are listed, one of its tags)
is listed, or with `exclude`, only when neither is. Where no character speaks
(a story session), an include filter by name never lets its entry activate, and
tags are not checked at all (as in SillyTavern, which skips the tag check when
there is no character). Triggers restrict an entry to generation types;
a turn's action maps onto them as `generation_types` says.
"""

from __future__ import annotations

from dataclasses import dataclass

from taleweaver.domain.lorebook.model import Entry


@dataclass(frozen=True, slots=True)
class ActiveCharacter:
    """The character who speaks this turn, as character filters see it."""

    # The card's name and the name `{{char}}` stands for (the same, without a nickname).
    names: tuple[str, ...]
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(n.strip().casefold() for n in self.names))
        object.__setattr__(self, "tags", tuple(t.strip().casefold() for t in self.tags))


# A turn's action -> the SillyTavern generation types it counts as.
_ACTION_TYPES: dict[str, frozenset[str]] = {
    "say": frozenset({"normal"}),
    "choose": frozenset({"normal"}),
    "edit": frozenset({"normal"}),
    "continue": frozenset({"continue"}),
    "regenerate": frozenset({"regenerate", "swipe"}),
}
NORMAL = frozenset({"normal"})


def generation_types(action: str | None) -> frozenset[str]:
    """The generation types a turn of this action is (a turn of no known action: normal)."""
    return _ACTION_TYPES.get(action or "", NORMAL)


def has_character_filter(entry: Entry) -> bool:
    return bool(entry.character_filter_names or entry.character_filter_tags)


def _listed(wanted: tuple[str, ...], have: tuple[str, ...]) -> bool:
    return any(w.strip().casefold() in have for w in wanted)


def character_block(entry: Entry, character: ActiveCharacter | None) -> str | None:
    """Why the entry's character filter keeps it out this turn, or None."""
    names, tags = entry.character_filter_names, entry.character_filter_tags
    if not (names or tags):
        return None
    if character is None:
        # SillyTavern compares names with the (absent) character's, and skips the tag
        # check when there is no character: only an include filter by name keeps out.
        if names and not entry.character_filter_exclude:
            return "for a character; none speaks"
        return None
    if entry.character_filter_exclude:
        if names and _listed(names, character.names):
            return "character filter excludes this character"
        if tags and _listed(tags, character.tags):
            return "character filter excludes this character's tags"
        return None
    if names and not _listed(names, character.names):
        return "character filter is for other characters"
    if tags and not _listed(tags, character.tags):
        return "character filter is for other tags"
    return None


def trigger_block(entry: Entry, generation: frozenset[str]) -> str | None:
    """Why the entry's triggers keep it out of this kind of generation, or None."""
    if not entry.triggers or generation.intersection(entry.triggers):
        return None
    return f"triggers only on {', '.join(entry.triggers)}"
