"""A session's table: who plays it together, as what, and whose input goes next.

The table is an event stream of its own (`table_stream(session_id)`), beside the
session's: seating people never races a turn's commit on the session's version.
Deciding who may act is pure: `Table.admit` says whether an input runs now, waits
for the game master, or is refused, and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from taleweaver.domain.errors import Conflict, Forbidden, InvalidInput
from taleweaver.domain.events import JSON, NewEvent, RecordedEvent

MAX_CHARACTER = 80
MAX_PENDING = 20  # proposals waiting for the game master, per table


class Role(StrEnum):
    GAME_MASTER = "game_master"
    PLAYER = "player"
    OBSERVER = "observer"


class Policy(StrEnum):
    FREE = "free"  # anyone seated as player (or the game master) acts any time
    ROUND_ROBIN = "round_robin"  # players in the order they sat down, one input each
    GM_APPROVES = "gm_approves"  # a player's input waits until the game master approves it


class TableEvent(StrEnum):
    OPENED = "table.opened"
    SEATED = "table.seated"  # joined, or role / character changed
    LEFT = "table.left"
    POLICY_SET = "table.policy_set"
    PROPOSED = "table.proposed"
    DECIDED = "table.decided"
    ACTED = "table.acted"  # an input became a turn


def table_stream(session_id: str) -> str:
    return f"table:{session_id}"


@dataclass(frozen=True, slots=True)
class Seat:
    user_id: str
    role: Role
    character: str | None = None

    def to_dict(self) -> JSON:
        return {"user_id": self.user_id, "role": str(self.role), "character": self.character}


@dataclass(frozen=True, slots=True)
class Proposal:
    id: str
    user_id: str
    text: str

    def to_dict(self) -> JSON:
        return {"id": self.id, "user_id": self.user_id, "text": self.text}


@dataclass(frozen=True, slots=True)
class Admission:
    """What an input becomes: a turn now, or a proposal for the game master."""

    runs_now: bool


@dataclass(frozen=True, slots=True)
class Table:
    session_id: str
    version: int = 0
    policy: Policy = Policy.FREE
    seats: dict[str, Seat] = field(default_factory=dict)  # in the order people sat down
    pending: dict[str, Proposal] = field(default_factory=dict)
    last_player: str | None = None  # round robin: who acted last

    @property
    def opened(self) -> bool:
        return self.version > 0

    @property
    def players(self) -> list[str]:
        return [s.user_id for s in self.seats.values() if s.role == Role.PLAYER]

    def next_player(self) -> str | None:
        """Round robin: the player after the one who acted last, in seating order."""
        players = self.players
        if not players:
            return None
        if self.last_player not in players:
            return players[0]
        return players[(players.index(self.last_player) + 1) % len(players)]

    def role_of(self, user_id: str) -> Role | None:
        seat = self.seats.get(user_id)
        return seat.role if seat is not None else None

    def admit(self, user_id: str) -> Admission:
        """May `user_id` send an input now, under the table's policy?"""
        role = self.role_of(user_id)
        if role is None:
            raise Forbidden("you are not seated at this table: ask its game master")
        if role == Role.OBSERVER:
            raise Forbidden("observers watch the table; they do not act")
        if role == Role.GAME_MASTER:
            return Admission(runs_now=True)
        if self.policy == Policy.ROUND_ROBIN:
            expected = self.next_player()
            if expected != user_id:
                raise Conflict(f"not your turn: the table waits for {expected}")
        if self.policy == Policy.GM_APPROVES:
            if len(self.pending) >= MAX_PENDING:
                raise Conflict("the game master has too many inputs waiting already")
            return Admission(runs_now=False)
        return Admission(runs_now=True)

    def require_game_master(self, user_id: str) -> None:
        if self.role_of(user_id) != Role.GAME_MASTER:
            raise Forbidden("only the table's game master may do that")

    def to_dict(self) -> JSON:
        return {
            "session_id": self.session_id,
            "version": self.version,
            "policy": str(self.policy),
            "seats": [s.to_dict() for s in self.seats.values()],
            "pending": [p.to_dict() for p in self.pending.values()],
            "next": self.next_player() if self.policy == Policy.ROUND_ROBIN else None,
        }


def parse_role(value: object) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise InvalidInput(f"role must be one of {', '.join(Role)}") from None


def parse_policy(value: object) -> Policy:
    try:
        return Policy(str(value))
    except ValueError:
        raise InvalidInput(f"policy must be one of {', '.join(Policy)}") from None


def parse_character(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value.strip()) <= MAX_CHARACTER:
        raise InvalidInput(f"character must be a name of 1 to {MAX_CHARACTER} characters")
    return value.strip()


# --- events ----------------------------------------------------------------------------


def opened(game_master: str, policy: Policy) -> NewEvent:
    return NewEvent(TableEvent.OPENED, {"game_master": game_master, "policy": str(policy)})


def seated(seat: Seat) -> NewEvent:
    return NewEvent(TableEvent.SEATED, seat.to_dict())


def left(user_id: str) -> NewEvent:
    return NewEvent(TableEvent.LEFT, {"user_id": user_id})


def policy_set(policy: Policy) -> NewEvent:
    return NewEvent(TableEvent.POLICY_SET, {"policy": str(policy)})


def proposed(proposal: Proposal) -> NewEvent:
    return NewEvent(TableEvent.PROPOSED, proposal.to_dict())


def decided(proposal_id: str, approved: bool) -> NewEvent:
    return NewEvent(TableEvent.DECIDED, {"proposal_id": proposal_id, "approved": approved})


def acted(user_id: str, turn_id: str) -> NewEvent:
    return NewEvent(TableEvent.ACTED, {"user_id": user_id, "turn_id": turn_id})


def fold(session_id: str, events: Iterable[RecordedEvent], onto: Table | None = None) -> Table:
    """The table after `events` (applied to `onto`, when given, else to a fresh one)."""
    table = onto if onto is not None else Table(session_id)
    for event in events:
        table = apply(table, event.type, event.payload)
        table = replace(table, version=event.version)
    return table


def apply(table: Table, kind: str, data: JSON) -> Table:
    seats, pending = dict(table.seats), dict(table.pending)
    if kind == TableEvent.OPENED:
        gm = Seat(str(data["game_master"]), Role.GAME_MASTER)
        return replace(table, policy=Policy(data["policy"]), seats={gm.user_id: gm})
    if kind == TableEvent.SEATED:
        seat = Seat(str(data["user_id"]), Role(data["role"]), data.get("character"))
        seats[seat.user_id] = seat  # a new seat goes last; a changed one keeps its place
        return replace(table, seats=seats)
    if kind == TableEvent.LEFT:
        seats.pop(str(data["user_id"]), None)
        return replace(table, seats=seats)
    if kind == TableEvent.POLICY_SET:
        return replace(table, policy=Policy(data["policy"]), last_player=None)
    if kind == TableEvent.PROPOSED:
        proposal = Proposal(str(data["id"]), str(data["user_id"]), str(data["text"]))
        pending[proposal.id] = proposal
        return replace(table, pending=pending)
    if kind == TableEvent.DECIDED:
        pending.pop(str(data["proposal_id"]), None)
        return replace(table, pending=pending)
    if kind == TableEvent.ACTED:
        user_id = str(data["user_id"])
        if table.role_of(user_id) == Role.PLAYER:
            return replace(table, last_player=user_id)
        return table
    return table  # a later version's event: this one does not know it
