"""Character Card V3 decorators: `@@name value` lines at the top of an entry's content.

They are applied when a book is prepared, to the entry as activation sees it;
the stored content keeps them, so exports are unchanged. Known decorators are
taken off the inserted text; the first line that is not one ends them. A
`@@@` line is a fallback, used only when the decorator before it was not.
"""

from __future__ import annotations

from dataclasses import replace

from taleweaver.domain.lorebook.model import Entry, Logic, Position, Role

KNOWN = (
    "activate_only_after",
    "activate_only_every",
    "keep_activate_after_match",
    "dont_activate_after_match",
    "depth",
    "instruct_depth",
    "reverse_depth",
    "role",
    "scan_depth",
    "is_greeting",
    "position",
    "ignore_on_max_context",
    "additional_keys",
    "exclude_keys",
    "is_user_icon",
    "activate",
    "dont_activate",
    "disable_ui_prompt",
)
_ROLES = {"system": Role.SYSTEM, "user": Role.USER, "assistant": Role.ASSISTANT}


def _number(value: str) -> int | None:
    return int(value) if value.strip().isdigit() else None


def _apply(entry: Entry, name: str, value: str) -> Entry | None:
    """The entry with one decorator applied, or None when it cannot be (a fallback may)."""
    if name == "activate":
        return replace(entry, constant=True)
    if name == "dont_activate":
        return replace(entry, enabled=False)
    if name == "depth":
        depth = _number(value)
        return None if depth is None else replace(entry, position=Position.AT_DEPTH, depth=depth)
    if name == "scan_depth":
        depth = _number(value)
        return None if depth is None else replace(entry, scan_depth=depth)
    if name == "role":
        role = _ROLES.get(value.strip().lower())
        return None if role is None else replace(entry, role=role)
    if name == "additional_keys":
        extra = tuple(k.strip() for k in value.split(",") if k.strip())
        return replace(entry, keys=entry.keys + extra)
    if name == "exclude_keys":
        excluded = tuple(k.strip() for k in value.split(",") if k.strip())
        return replace(entry, secondary_keys=excluded, selective=True, logic=Logic.NOT_ANY)
    return entry  # known, kept off the text, not acted on


def apply_decorators(entry: Entry) -> Entry:
    """The entry as its decorators make it (itself when its content has none)."""
    if not entry.content.startswith("@@"):
        return entry
    lines = entry.content.split("\n")
    current = entry
    previous_applied = True
    taken = 0
    for line in lines:
        fallback = line.startswith("@@@")
        body = line[3:] if fallback else line[2:] if line.startswith("@@") else None
        if body is None:
            break
        name, _, value = body.strip().partition(" ")
        if name not in KNOWN:
            break
        taken += 1
        if fallback and previous_applied:
            continue
        applied = _apply(current, name, value)
        previous_applied = applied is not None
        if applied is not None:
            current = applied
    return replace(current, content="\n".join(lines[taken:]))
