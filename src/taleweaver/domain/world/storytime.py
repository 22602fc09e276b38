"""Story time: when a fact holds inside the story, not when it was written.

A point in story time is either an integer (day 12, year 1042: whatever unit a
world counts in) or an ISO-like string that sorts as text ("1042-03-15",
"0003-spring"). One world should use one form; integers and strings do not
compare with each other, so a mixed pair is treated as possibly overlapping
(a continuity check would rather ask than miss).
`None` is open: since forever, or until further notice.
"""

from __future__ import annotations

from typing import Any

from taleweaver.domain.errors import InvalidInput

StoryTime = int | str | None
MAX_TIME_TEXT = 64


def clean_time(value: Any, what: str = "time") -> StoryTime:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be an integer or a sortable string")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_TIME_TEXT:
            raise InvalidInput(f"{what} must be at most {MAX_TIME_TEXT} characters")
        return text or None
    raise InvalidInput(f"{what} must be an integer or a sortable string")


def comparable(a: StoryTime, b: StoryTime) -> bool:
    return a is not None and b is not None and type(a) is type(b)


def time_key(value: StoryTime) -> tuple[int, int, str]:
    """A sort key: open start first, integers, then strings."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, int):
        return (1, value, "")
    return (2, 0, value)


def before(a: StoryTime, b: StoryTime) -> bool:
    """a strictly before b, when both are known and comparable."""
    if not comparable(a, b):
        return False
    assert a is not None and b is not None
    return a < b  # type: ignore[operator]


def overlaps(a_from: StoryTime, a_to: StoryTime, b_from: StoryTime, b_to: StoryTime) -> bool:
    """Whether [a_from, a_to) and [b_from, b_to) share a moment (open ends unbounded)."""
    # a ends before b starts, or b ends before a starts: no overlap.
    if comparable(a_to, b_from) and not before(b_from, a_to):
        return False
    return not (comparable(b_to, a_from) and not before(a_from, b_to))
