"""Collaborative sessions: the table's seats and policy, kept in the event store,
and the inputs of everyone seated turned into turns of the one pipeline.

An input that the policy admits runs as a turn exactly as a single player's does
(safety, memory and all); under `gm_approves` a player's input waits as a
proposal, and becomes that turn when the game master approves it. Every change is
an event on the table's stream, so any replica folds the same table and live
channels see it change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from taleweaver.domain import table as t
from taleweaver.domain.errors import ConcurrencyConflict, Conflict, InvalidInput, NotFound
from taleweaver.domain.events import EventMetadata, NewEvent, RecordedEvent
from taleweaver.domain.json_values import has_unstorable_text
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine.outcome import new_id
from taleweaver.engine.turns import TurnHandle, TurnRunner
from taleweaver.store.events import EventStore

MAX_INPUT = 4000
RETRIES = 5  # appends lost to a concurrent one, tried again on the fresh table

Announce = Callable[[Sequence[RecordedEvent]], Awaitable[None]]
# Starts a turn only if no replica runs one in the session (LiveSessions.exclusive).
Exclusive = Callable[[str, Callable[[], Awaitable[TurnHandle]]], Awaitable[TurnHandle]]


class Tables:
    def __init__(
        self, store: EventStore, runner: TurnRunner, announce: Announce, exclusive: Exclusive
    ) -> None:
        self.store = store
        self.runner = runner
        self.announce = announce  # wakes live channels on every replica
        self.exclusive = exclusive

    async def get(self, session_id: str) -> t.Table:
        events = await self.store.read_stream(t.table_stream(session_id))
        return t.fold(session_id, events)

    async def _change(
        self,
        workspace_id: str,
        session_id: str,
        user_id: str,
        decide: Callable[[t.Table], list[NewEvent]],
    ) -> t.Table:
        """Append what `decide` makes of the current table; on a concurrent change,
        decide again on the fresh one (the decision may differ: someone else's turn)."""
        for _ in range(RETRIES):
            table = await self.get(session_id)
            new_events = decide(table)
            if not new_events:
                return table
            try:
                async with self.store.db.write() as conn:
                    recorded = await self.store.append(
                        conn,
                        stream_id=t.table_stream(session_id),
                        workspace_id=workspace_id,
                        expected_version=table.version,
                        new_events=new_events,
                        metadata=EventMetadata(actor=user_id),
                    )
            except ConcurrencyConflict:
                continue
            await self.announce(recorded)
            return t.fold(session_id, recorded, onto=table)
        raise ConcurrencyConflict(t.table_stream(session_id), -1)

    # --- seating --------------------------------------------------------------------------

    async def open(
        self, workspace_id: str, session_id: str, user_id: str, policy: t.Policy
    ) -> t.Table:
        """Open the session's table with `user_id` as its game master (once)."""

        def decide(table: t.Table) -> list[NewEvent]:
            if not table.opened:
                return [t.opened(user_id, policy)]
            if table.role_of(user_id) != t.Role.GAME_MASTER:
                raise Conflict("this session's table is open already, with its game master")
            return []

        return await self._change(workspace_id, session_id, user_id, decide)

    async def seat(
        self,
        workspace_id: str,
        session_id: str,
        by: str,
        user_id: str,
        role: t.Role,
        character: str | None,
    ) -> t.Table:
        """Seat someone (an invitation: the game master does it), or change their
        role or character; anyone may change their own character."""

        def decide(table: t.Table) -> list[NewEvent]:
            _require_open(table)
            current = table.seats.get(user_id)
            own_character = by == user_id and current is not None and current.role == role
            if not own_character:
                table.require_game_master(by)
            if role == t.Role.GAME_MASTER and user_id != by:
                raise InvalidInput("a table has one game master")
            if current is not None and current.role == t.Role.GAME_MASTER != role:
                raise InvalidInput("the game master stays the game master")
            if current == t.Seat(user_id, role, character):
                return []
            return [t.seated(t.Seat(user_id, role, character))]

        return await self._change(workspace_id, session_id, by, decide)

    async def leave(self, workspace_id: str, session_id: str, by: str, user_id: str) -> t.Table:
        def decide(table: t.Table) -> list[NewEvent]:
            _require_open(table)
            if by != user_id:
                table.require_game_master(by)
            if table.role_of(user_id) == t.Role.GAME_MASTER:
                raise InvalidInput("the game master stays at the table")
            return [t.left(user_id)] if user_id in table.seats else []

        return await self._change(workspace_id, session_id, by, decide)

    async def set_policy(
        self, workspace_id: str, session_id: str, by: str, policy: t.Policy
    ) -> t.Table:
        def decide(table: t.Table) -> list[NewEvent]:
            _require_open(table)
            table.require_game_master(by)
            return [] if table.policy == policy else [t.policy_set(policy)]

        return await self._change(workspace_id, session_id, by, decide)

    # --- inputs ---------------------------------------------------------------------------

    async def say(
        self, workspace_id: str, session_id: str, user_id: str, text: str
    ) -> TurnHandle | t.Proposal:
        """An input from someone seated: a running turn, or a proposal that waits
        for the game master."""
        text = _clean(text)
        table = await self.get(session_id)
        _require_open(table)
        if table.admit(user_id).runs_now:
            return await self._turn(workspace_id, session_id, user_id, _say(table, user_id, text))
        proposal = t.Proposal(new_id(), user_id, text)

        def decide(current: t.Table) -> list[NewEvent]:
            if current.admit(user_id).runs_now:  # the policy changed meanwhile
                raise InvalidInput("the table's policy changed: send the input again")
            return [t.proposed(proposal)]

        await self._change(workspace_id, session_id, user_id, decide)
        return proposal

    async def decide(
        self, workspace_id: str, session_id: str, by: str, proposal_id: str, approved: bool
    ) -> TurnHandle | None:
        """The game master approves (the proposal runs as its author's turn) or
        turns down a waiting input."""
        table = await self.get(session_id)
        _require_open(table)
        table.require_game_master(by)
        proposal = table.pending.get(proposal_id)
        if proposal is None:
            raise NotFound(f"no input {proposal_id} is waiting at this table")
        handle = None
        if approved:
            request = _say(table, proposal.user_id, proposal.text)
            handle = await self._turn(workspace_id, session_id, proposal.user_id, request)

        def settle(current: t.Table) -> list[NewEvent]:
            if proposal_id not in current.pending:
                return []
            return [t.decided(proposal_id, approved)]

        await self._change(workspace_id, session_id, by, settle)
        return handle

    async def start(
        self,
        workspace_id: str,
        session_id: str,
        request: TurnRequest,
        metadata: EventMetadata,
        *,
        known_version: int | None = None,
    ) -> TurnHandle:
        """A turn from `POST .../turns`: as before where the session has no table;
        at a table, only if its policy lets this person act now (an input that
        would wait for the game master goes over the live channel)."""
        table = await self.get(session_id)
        if not table.opened:
            return await self.exclusive(
                session_id,
                lambda: self.runner.start(
                    workspace_id, session_id, request, metadata, known_version=known_version
                ),
            )
        if not table.admit(metadata.actor).runs_now:
            raise Conflict(
                "at this table the game master approves each input: send it as a"
                " 'say' frame over the live channel"
            )
        if request.text is not None:
            request = replace(request, text=_voiced(table, metadata.actor, request.text))
        return await self._turn(workspace_id, session_id, metadata.actor, request, metadata)

    async def _turn(
        self,
        workspace_id: str,
        session_id: str,
        user_id: str,
        request: TurnRequest,
        metadata: EventMetadata | None = None,
    ) -> TurnHandle:
        """Start the turn through the one pipeline, then note who acted (round robin
        moves on); a turn that cannot start (one is running) moves nothing."""
        meta = metadata or EventMetadata(actor=user_id)
        handle = await self.exclusive(
            session_id, lambda: self.runner.start(workspace_id, session_id, request, meta)
        )

        def note(current: t.Table) -> list[NewEvent]:
            return [t.acted(user_id, handle.turn_id)]

        await self._change(workspace_id, session_id, user_id, note)
        return handle


def _require_open(table: t.Table) -> None:
    if not table.opened:
        raise NotFound(f"session {table.session_id} has no table: its game master opens it")


def _clean(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("say something: the input is empty")
    if len(text) > MAX_INPUT:
        raise InvalidInput(f"an input is at most {MAX_INPUT} characters")
    if has_unstorable_text(text):  # whatever the transport let through
        raise InvalidInput(
            "the input holds a NUL character or an unpaired surrogate, which cannot be stored"
        )
    return text.strip()


def _voiced(table: t.Table, user_id: str, text: str) -> str:
    """The narrator answers the table: an input is told as its character's, when the
    player has one."""
    seat = table.seats.get(user_id)
    if seat is not None and seat.character:
        return f"{seat.character}: {text}"
    return text


def _say(table: t.Table, user_id: str, text: str) -> TurnRequest:
    return TurnRequest.build(action=None, text=_voiced(table, user_id, text), choice=None)
