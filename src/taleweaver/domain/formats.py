"""Session export and file import formats: the contracts the `exporters` and
`importers` hooks return, and what each side hands the other. Pure data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from taleweaver.domain.events import JSON

__all__ = ["Exporter", "ImportedSession", "ImportedTurn", "Importer", "SessionExport"]


@dataclass(frozen=True, slots=True)
class SessionExport:
    """One session as an exporter sees it: its view, its messages and its events
    (each as JSON, oldest first), and the name its player goes by."""

    session: JSON
    messages: list[JSON]
    events: list[JSON]
    player: str = "You"


@dataclass(frozen=True, slots=True)
class Exporter:
    """A session export format: what it is served as, and how it is written."""

    media_type: str
    suffix: str
    render: Callable[[SessionExport], str]
    description: str = ""
    # Other names the format answers to ("md" for "markdown").
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportedTurn:
    """One exchange: what the player said (None: the reply came unprompted) and the reply."""

    player: str | None
    reply: str


@dataclass(frozen=True, slots=True)
class ImportedSession:
    """What an importer read from a file: a new session, its turns in order."""

    title: str
    turns: Sequence[ImportedTurn]
    kind: str = "companion"
    settings: JSON = field(default_factory=dict)


class Importer(Protocol):
    """A file format that becomes a new session."""

    description: str

    def sniff(self, data: bytes, filename: str | None) -> bool:
        """Whether `data` is in this format (cheap: it is asked of every import)."""
        ...

    def read(self, data: bytes) -> ImportedSession:
        """The session in the file; `InvalidInput` saying what is wrong otherwise."""
        ...
