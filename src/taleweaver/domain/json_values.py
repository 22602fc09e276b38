"""What a JSON value may hold to be stored alike on SQLite and PostgreSQL.

PostgreSQL refuses a NUL character in text and JSON; SQLite stores a lone UTF-16
surrogate but can never read it back as UTF-8; neither stores NaN or Infinity as
JSON. One walk finds the first such thing (or a nesting deeper than a cap), so the
HTTP edge and every importer refuse the same values with the same words.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_FREE_JSON_BYTES",
    "MAX_FREE_JSON_DEPTH",
    "UNSTORABLE_CHARS",
    "Unstorable",
    "find_unstorable",
    "free_json_problem",
    "has_unstorable_text",
    "strip_unstorable",
]

# Deep enough for any document Taleweaver or the formats it imports write (a world
# export, a lorebook, a card nest well under 16), shallow enough to walk cheaply.
MAX_DEPTH = 64
UNSTORABLE_CHARS = re.compile("[\x00\ud800-\udfff]")
# Free-form JSON a client stores (session and world settings): bounded further, to
# what a settings object plausibly needs, however it arrives (a body, an import).
MAX_FREE_JSON_DEPTH = 16
MAX_FREE_JSON_BYTES = 32 * 1024


class Unstorable(ValueError):
    """A value that cannot be stored; `where` is its path, `what` the reason."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}" if where else what)
        self.where = where
        self.what = what


def has_unstorable_text(text: str) -> bool:
    return UNSTORABLE_CHARS.search(text) is not None


def _text_problem(text: str) -> str | None:
    found = UNSTORABLE_CHARS.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "holds a NUL character (\\u0000), which cannot be stored"
    return "holds an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text"


def find_unstorable(
    value: object, *, max_depth: int = MAX_DEPTH, text: bool = True
) -> Unstorable | None:
    """The first NUL, lone surrogate (in a key or a string; unless `text` is False),
    non-finite number or nesting deeper than `max_depth` in `value`, or None.
    Iterative: no depth can exhaust the stack."""
    stack: list[tuple[object, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str) and text:
            problem = _text_problem(item)
            if problem is not None:
                return Unstorable(where, problem)
        elif isinstance(item, float):
            if not math.isfinite(item):
                return Unstorable(where, "is not a finite number (NaN and Infinity are not JSON)")
        elif isinstance(item, dict | list):
            if depth >= max_depth:
                return Unstorable(where, f"nests deeper than {max_depth} levels")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and text:
                    problem = _text_problem(key)
                    if problem is not None:
                        return Unstorable(where, f"a key {problem}")
                stack.append((child, path, depth + 1))
    return None


def free_json_problem(value: object) -> str | None:
    """Why `value` cannot be stored as free-form JSON (unstorable, nested deeper than
    MAX_FREE_JSON_DEPTH, or longer than MAX_FREE_JSON_BYTES), or None."""
    wrong = find_unstorable(value, max_depth=MAX_FREE_JSON_DEPTH)
    if wrong is not None:
        return str(wrong)
    if len(json.dumps(value, separators=(",", ":"))) > MAX_FREE_JSON_BYTES:
        return f"must be at most {MAX_FREE_JSON_BYTES} bytes as JSON"
    return None


def strip_unstorable(value: Any) -> tuple[Any, int]:
    """`value` with every NUL and lone surrogate removed from its strings and keys,
    and how many were removed: for foreign files, which may carry them. Check the
    depth first (`find_unstorable(..., text=False)`): this walk recurses."""
    if isinstance(value, str):
        cleaned, count = UNSTORABLE_CHARS.subn("", value)
        return cleaned, count
    if isinstance(value, list):
        items = [strip_unstorable(item) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    if isinstance(value, dict):
        removed = 0
        result: dict[Any, Any] = {}
        for key, item in value.items():
            clean_key, in_key = strip_unstorable(key)
            clean_item, in_item = strip_unstorable(item)
            result[clean_key] = clean_item
            removed += in_key + in_item
        return result, removed
    return value, 0
