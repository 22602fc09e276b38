"""A session's settings: the checks every writer applies, and its lorebook list.

Settings are free-form JSON a client stores, except for the keys the engine
reads: `lorebook_ids` (the session's own books, in the order they are consulted),
`world_id` (whose books are consulted after them) and `user_name` (the player's
name in this session: `{{user}}` and exports; unset, the account's display name).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON

MAX_SETTINGS_BYTES = 16 * 1024
MAX_BOOK_ID = 64
MAX_BOOKS = 64


def merge_ids(*lists: Iterable[str]) -> list[str]:
    """The ids of every list in turn, each once, in the order first seen."""
    return list(dict.fromkeys(i for ids in lists for i in ids))


def book_ids(settings: JSON) -> list[str]:
    """The session's own lorebooks, in order (what a stored setting holds)."""
    listed = settings.get("lorebook_ids")
    return [i for i in listed if isinstance(i, str)] if isinstance(listed, list) else []


def check_book_ids(value: object) -> list[str]:
    """A `lorebook_ids` setting as a caller sent it: a list of ids, each once."""
    if not isinstance(value, list) or not all(
        isinstance(i, str) and 0 < len(i) <= MAX_BOOK_ID and "\x00" not in i for i in value
    ):
        raise InvalidInput(
            f"settings.lorebook_ids must be a list of lorebook ids (1 to {MAX_BOOK_ID} characters)"
        )
    ids = merge_ids(value)
    if len(ids) > MAX_BOOKS:
        raise InvalidInput(f"a session has at most {MAX_BOOKS} lorebooks")
    return ids


def persona(settings: JSON) -> str | None:
    """The player's name this session sets (`user_name`), if any."""
    name = settings.get("user_name")
    return name.strip() if isinstance(name, str) and name.strip() else None


def check_settings(settings: JSON) -> JSON:
    """The settings, checked: their size, and the keys the engine reads."""
    checked = dict(settings)
    if "lorebook_ids" in checked:
        checked["lorebook_ids"] = check_book_ids(checked["lorebook_ids"])
    world = checked.get("world_id")
    if world is not None and (not isinstance(world, str) or not 0 < len(world) <= MAX_BOOK_ID):
        raise InvalidInput(f"settings.world_id must be a world id (1 to {MAX_BOOK_ID} characters)")
    if len(json.dumps(checked)) > MAX_SETTINGS_BYTES:
        raise InvalidInput(f"settings must be at most {MAX_SETTINGS_BYTES} bytes of JSON")
    return checked


__all__ = [
    "MAX_SETTINGS_BYTES",
    "book_ids",
    "check_book_ids",
    "check_settings",
    "merge_ids",
    "persona",
]
