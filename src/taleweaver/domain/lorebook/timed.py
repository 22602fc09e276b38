"""Timed effects (sticky, cooldown, delay), counted in messages as SillyTavern does.

The state is per session: for each entry (`<book id>.<uid>`) with an effect
running, when it started and ends, as chat lengths. A sticky entry stays active
until its end; an entry on cooldown cannot activate until its end (a sticky
entry's cooldown starts when the sticky period ends); a delayed entry cannot
activate before the chat holds `delay` messages. An effect that starts at or
after the current chat length was set by a turn that was discarded
(regenerated, cancelled), so it is dropped, unless it is a cooldown that
followed a sticky period.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taleweaver.domain.events import JSON
from taleweaver.domain.lorebook.model import Entry

KINDS = ("sticky", "cooldown")


@dataclass(slots=True)
class TimedCheck:
    """The state after expiring effects, and which entries are sticky or cooling down."""

    state: JSON
    sticky: set[str] = field(default_factory=set)
    cooldown: set[str] = field(default_factory=set)


def _effect(clock: int, length: int, protected: bool) -> JSON:
    return {"start": clock, "end": clock + length, "protected": protected}


def _valid(effect: Any) -> bool:
    return (
        isinstance(effect, dict)
        and isinstance(effect.get("start"), int)
        and isinstance(effect.get("end"), int)
    )


def check(state: JSON, clock: int, lookup: Callable[[str], Entry | None]) -> TimedCheck:
    """Expire what has run out at chat length `clock`, as a new state (the old is kept)."""
    fresh: JSON = {kind: {} for kind in KINDS}
    result = TimedCheck(fresh)
    for kind in KINDS:
        stored = state.get(kind)
        for key, effect in (stored if isinstance(stored, dict) else {}).items():
            if not _valid(effect):
                continue
            if clock <= effect["start"] and not effect.get("protected"):
                continue
            entry = lookup(key)
            if entry is None:
                # The entry is gone (or its book is not active now): keep the effect
                # until it would have ended.
                if clock < effect["end"]:
                    fresh[kind][key] = effect
                continue
            if not getattr(entry, kind):
                continue
            if clock >= effect["end"]:
                if kind == "sticky" and entry.cooldown:
                    fresh["cooldown"][key] = _effect(clock, entry.cooldown, True)
                    result.cooldown.add(key)
                continue
            if key in fresh[kind] and kind == "cooldown":
                continue  # a cooldown just started by an ended sticky period wins
            fresh[kind][key] = effect
            (result.sticky if kind == "sticky" else result.cooldown).add(key)
    return result


def record(state: JSON, clock: int, activated: list[tuple[str, Entry]]) -> JSON:
    """Start the sticky and cooldown periods of newly activated entries."""
    for key, entry in activated:
        for kind in KINDS:
            length = getattr(entry, kind)
            if length and key not in state[kind]:
                state[kind][key] = _effect(clock, length, False)
    return state


def delayed(entry: Entry, clock: int) -> bool:
    return bool(entry.delay) and clock < entry.delay
