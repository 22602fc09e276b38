"""Upcasters: read events written under an older schema as the current one."""

from __future__ import annotations

from collections.abc import Callable

from taleweaver.domain.events import JSON

Upcaster = Callable[[JSON], JSON]


class Upcasters:
    """A chain per event type: version n → n + 1, applied until none is left."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, from_version: int, step: Upcaster) -> None:
        key = (event_type, from_version)
        if key in self._steps:
            raise ValueError(f"an upcaster for {event_type} v{from_version} exists already")
        self._steps[key] = step

    def upcast(self, event_type: str, version: int, payload: JSON) -> tuple[int, JSON]:
        while (step := self._steps.get((event_type, version))) is not None:
            payload = step(payload)
            version += 1
        return version, payload
