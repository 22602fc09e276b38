"""A session's aggregate state, folded from its events.

The state is small on purpose: flags, counters and the last turn (the only turn
that regenerate, edit and choices act on). The full history lives in the
messages read model, so opening a session never needs every reply in memory.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.events import JSON, NewEvent, RecordedEvent


class SessionKind(StrEnum):
    STORY = "story"
    COMPANION = "companion"
    STUDIO = "studio"
    THERAPY = "therapy"
    FILE = "file"  # a file's assistant: each turn proposes a change to the file

    @classmethod
    def _missing_(cls, value: object) -> SessionKind | None:
        # A kind a plugin added (see `admit_kind`) is a member like the built-in ones.
        if isinstance(value, str) and value in _ADMITTED:
            member = str.__new__(cls, value)
            member._name_ = value.upper()
            member._value_ = value
            return cls._value2member_map_.setdefault(value, member)  # type: ignore[return-value]
        return None


_ADMITTED: set[str] = set()
_KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,19}")


def admit_kind(name: str) -> SessionKind:
    """Make `name` a SessionKind (a plugin's kind); built-in names cannot be taken."""
    if not _KIND_NAME.fullmatch(name):
        raise InvalidInput("a session kind is 1-20 lowercase letters, digits or '_'")
    if name in {kind.value for kind in SessionKind}:  # iterates the built-in ones only
        raise InvalidInput(f"session kind {name!r} is built in")
    _ADMITTED.add(name)
    return SessionKind(name)


def known_kind(value: str) -> SessionKind:
    """A stored session's kind; one whose plugin is no longer installed is a clear
    refusal (409), not a crash, and the session stays as it was."""
    try:
        return SessionKind(value)
    except ValueError:
        raise Conflict(
            f"this session's kind {value!r} comes from a plugin that is not installed: "
            "install it again to open the session"
        ) from None


class EventType(StrEnum):
    SESSION_CREATED = "session.created"
    SESSION_RENAMED = "session.renamed"
    SESSION_PINNED = "session.pinned"
    SESSION_ARCHIVED = "session.archived"
    # Carries the whole new settings object (attaching a lorebook is one of these).
    SESSION_SETTINGS_CHANGED = "session.settings_changed"
    SESSION_DELETED = "session.deleted"
    TURN_COMMITTED = "turn.committed"
    TURN_REGENERATED = "turn.regenerated"
    TURN_EDITED = "turn.edited"
    # The player chose which telling of the last reply the story goes on from.
    TURN_SELECTED = "turn.selected"
    TURN_CANCELLED = "turn.cancelled"
    TURN_FAILED = "turn.failed"


# Events that change what the story says; a fork copies exactly these.
HISTORY_EVENTS = frozenset(
    {
        EventType.TURN_COMMITTED,
        EventType.TURN_REGENERATED,
        EventType.TURN_EDITED,
        EventType.TURN_SELECTED,
    }
)

MAX_TITLE_LENGTH = 200


def validate_title(title: str) -> str:
    cleaned = title.strip()
    if not cleaned:
        raise InvalidInput("title must not be empty")
    if len(cleaned) > MAX_TITLE_LENGTH:
        raise InvalidInput(f"title must be at most {MAX_TITLE_LENGTH} characters")
    return cleaned


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Which sessions a listing shows (every field left None matches any)."""

    kind: str | None = None
    archived: bool | None = None
    pinned: bool | None = None
    owners: frozenset[str] | None = None  # only sessions these users started


@dataclass(slots=True)
class Reply:
    text: str
    choices: list[str] = field(default_factory=list)
    # Per choice, the kind's annotation (see KindSpec.tagged_choices); empty if none.
    choice_tags: list[str | None] = field(default_factory=list)


@dataclass(slots=True)
class LastTurn:
    turn_id: str
    number: int
    input_text: str | None
    replies: list[Reply]
    active: int = 0
    # The annotation of the option the player chose, when the kind tags options.
    input_tag: str | None = None

    @property
    def reply(self) -> Reply:
        return self.replies[self.active]


@dataclass(slots=True)
class SessionState:
    id: str
    workspace_id: str = ""
    kind: SessionKind = SessionKind.STORY
    title: str = ""
    settings: JSON = field(default_factory=dict)
    pinned: bool = False
    archived: bool = False
    deleted: bool = False
    version: int = 0
    turn_count: int = 0
    last_turn: LastTurn | None = None
    forked_from: JSON | None = None

    def apply(self, event: RecordedEvent) -> None:
        """Fold one event into the state (events arrive in version order)."""
        p = event.payload
        kind = event.type
        if kind == EventType.SESSION_CREATED:
            self.workspace_id = p["workspace_id"]
            self.kind = known_kind(p["kind"])
            self.title = p["title"]
            self.settings = dict(p.get("settings") or {})
            self.forked_from = p.get("forked_from")
        elif kind == EventType.SESSION_RENAMED:
            self.title = p["title"]
        elif kind == EventType.SESSION_PINNED:
            self.pinned = bool(p["pinned"])
        elif kind == EventType.SESSION_ARCHIVED:
            self.archived = bool(p["archived"])
        elif kind == EventType.SESSION_SETTINGS_CHANGED:
            self.settings = dict(p["settings"])
        elif kind == EventType.SESSION_DELETED:
            self.deleted = True
        elif kind == EventType.TURN_COMMITTED:
            self.turn_count = p["number"]
            self.last_turn = LastTurn(
                turn_id=p["turn_id"],
                number=p["number"],
                input_text=p["input"]["text"],
                replies=[_reply(p["reply"])],
                input_tag=p["input"].get("tag"),
            )
        elif kind in (EventType.TURN_REGENERATED, EventType.TURN_EDITED):
            last = self.last_turn
            # A regenerate or edit is a turn of its own (its own turn_id) that
            # rewrites the last turn, which it names by number.
            if last is not None and last.number == p["number"]:
                if kind == EventType.TURN_EDITED:
                    last.input_text = p["input_text"]
                last.replies.append(_reply(p["reply"]))
                last.active = len(last.replies) - 1
        elif kind == EventType.TURN_SELECTED:
            last = self.last_turn
            if last is not None and last.number == p["number"]:
                last.active = p["active"]
        self.version = event.version

    def copy(self) -> SessionState:
        """An independent copy to fold new events into (`apply` replaces settings and
        mutates only the last turn, so that is all that needs copying)."""
        last = self.last_turn
        if last is not None:
            last = replace(last, replies=list(last.replies))
        return replace(self, last_turn=last)

    def to_snapshot(self) -> JSON:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_snapshot(cls, data: JSON) -> SessionState:
        values: dict[str, Any] = dict(data)
        values["kind"] = known_kind(values["kind"])
        last = values.get("last_turn")
        if last is not None:
            values["last_turn"] = LastTurn(
                turn_id=last["turn_id"],
                number=last["number"],
                input_text=last["input_text"],
                replies=[_reply(r) for r in last["replies"]],
                active=last["active"],
                input_tag=last.get("input_tag"),
            )
        return cls(**values)


def select_telling(state: SessionState, active: int) -> NewEvent | None:
    """The event that makes telling `active` (0-based) of the last reply the one the
    story goes on from; None when it already is. Only the last reply has tellings to
    choose between: earlier ones are fixed by what was played after them."""
    last = state.last_turn
    if last is None:
        raise InvalidInput("this session has no reply yet")
    count = len(last.replies)
    if not 0 <= active < count:
        raise InvalidInput(f"the last reply has {count} telling(s): choose 0 to {count - 1}")
    if active == last.active:
        return None
    return NewEvent(EventType.TURN_SELECTED, {"number": last.number, "active": active})


def _reply(data: JSON) -> Reply:
    return Reply(
        text=data["text"],
        choices=list(data.get("choices") or []),
        choice_tags=list(data.get("choice_tags") or []),
    )
