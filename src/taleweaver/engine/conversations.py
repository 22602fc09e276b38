"""Stateless chat clients mapped onto sessions, so each request is one turn.

An OpenAI-style client resends its whole history. Here that history finds its
session (named by the client, or by a fingerprint of its opening), and is matched
against the session's stored exchanges (`domain.conversation.plan`): the new user
line becomes a turn request for the one pipeline, a changed last line an edit, a
second request for the same line a regenerate, and a change further back a branch
(a fork at the last exchange both agree on, the client's version of what follows
recorded into it). Nothing already stored is overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from taleweaver.characters import Characters
from taleweaver.domain.conversation import (
    ClientMessage,
    Exchange,
    PlanKind,
    fingerprint,
    plan,
)
from taleweaver.domain.errors import NotFound
from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.domain.sessions import Reply, SessionKind
from taleweaver.domain.turn_record import MessageIds, TurnInput, TurnRecord
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine.outcome import new_id
from taleweaver.engine.sessions import Sessions
from taleweaver.memory.world import WorldMemory
from taleweaver.store.conversations_schema import client_conversations
from taleweaver.store.database import Database

PAGE = 500  # messages read per query while rebuilding a session's exchanges


@dataclass(frozen=True, slots=True)
class Target:
    """What a client named as its model: `session/ID`, `character/ID`, `world/ID`,
    or `model/ALIAS` (a configured model, as a plain chat with memory and safety)."""

    kind: str
    id: str

    @classmethod
    def parse(cls, model: str) -> Target | None:
        kind, _, ident = model.partition("/")
        if kind in ("session", "character", "world", "model") and ident:
            return cls(kind, ident)
        return None

    def __str__(self) -> str:
        return f"{self.kind}/{self.id}"


# Who answers on a `model/ALIAS` conversation: the model itself, as an assistant.
PLAIN_ASSISTANT: JSON = {
    "name": "Assistant",
    "description": "A helpful, honest assistant who answers plainly.",
}


@dataclass(frozen=True, slots=True)
class Resolved:
    """The session a request continues and the turn it asks for."""

    session_id: str
    request: TurnRequest
    created: bool = False  # a new session was started for this conversation
    branched_from: str | None = None  # the session forked, when the client diverged


def render_reply(text: str, choices: list[str]) -> str:
    """A reply as a chat client shows it: the prose, then its numbered choices."""
    if not choices:
        return text
    listed = "\n".join(f"{i}. {choice}" for i, choice in enumerate(choices, 1))
    return f"{text}\n\n{listed}"


class Conversations:
    def __init__(
        self, db: Database, sessions: Sessions, characters: Characters, world: WorldMemory
    ) -> None:
        self.db = db
        self.sessions = sessions
        self.characters = characters
        self.world = world

    async def resolve(
        self,
        workspace_id: str,
        owner_id: str,
        target: Target,
        messages: list[ClientMessage],
        *,
        conversation: str | None,
        metadata: EventMetadata,
    ) -> Resolved:
        """Find or start the session and decide the turn. `target` session: checked
        for access by the caller; `conversation`: a client-chosen key (OpenAI's
        `user` field) instead of the fingerprint of the opening."""
        created = False
        if target.kind == "session":
            session_id = target.id
        else:
            scope = f"{workspace_id}\x00{owner_id}\x00{target}"
            key = (
                fingerprint(f"{scope}\x00key:{conversation}", [])
                if conversation
                else fingerprint(scope, messages)
            )
            found = await self._mapped(workspace_id, key)
            if found is None:
                found = await self._start(workspace_id, owner_id, target, metadata)
                await self._remember(workspace_id, key, target, found)
                created = True
            session_id = found
        stored = await self._exchanges(workspace_id, session_id)
        decided = plan(stored, messages)
        if decided.kind == PlanKind.SAY:
            return Resolved(session_id, _say(decided.text), created)
        if decided.kind == PlanKind.REGENERATE:
            return Resolved(session_id, TurnRequest(TurnAction.REGENERATE))
        if decided.kind == PlanKind.EDIT:
            edit = TurnRequest.build(action=TurnAction.EDIT, text=decided.text, choice=None)
            return Resolved(session_id, edit)
        fork = await self._branch(
            workspace_id, session_id, decided.keep, decided.replay, owner_id, metadata
        )
        if target.kind != "session":
            await self._remember(workspace_id, key, target, fork)
        return Resolved(fork, _say(decided.text), branched_from=session_id)

    async def _start(
        self, workspace_id: str, owner_id: str, target: Target, metadata: EventMetadata
    ) -> str:
        if target.kind == "character":
            return await self.characters.start_session(
                workspace_id, [target.id], owner_id=owner_id, metadata=metadata
            )
        if target.kind == "model":
            session = await self.sessions.create(
                workspace_id,
                kind=SessionKind.COMPANION,
                title=f"Chat with {target.id}"[:200],
                settings={"models": {"narrate": target.id}, "character": PLAIN_ASSISTANT},
                owner_id=owner_id,
                metadata=metadata,
            )
            return str(session["id"])
        world = await self.world.bible.world(workspace_id, target.id)
        settings: JSON = {"world_id": target.id}
        if isinstance(world.get("description"), str) and world["description"]:
            settings["premise"] = world["description"]
        session = await self.sessions.create(
            workspace_id,
            kind=SessionKind.STORY,
            title=f"A story in {world.get('name') or 'the world'}"[:200],
            settings=settings,
            owner_id=owner_id,
            metadata=metadata,
        )
        return str(session["id"])

    async def _mapped(self, workspace_id: str, key: str) -> str | None:
        query = sa.select(client_conversations.c.session_id).where(
            client_conversations.c.workspace_id == workspace_id,
            client_conversations.c.fingerprint == key,
        )
        async with self.db.read() as conn:
            session_id = (await conn.execute(query)).scalar()
        if session_id is None:
            return None
        try:
            session = await self.sessions.get(workspace_id, session_id)
        except NotFound:
            return None
        return None if session.get("deleted") else str(session_id)

    async def _remember(self, workspace_id: str, key: str, target: Target, session_id: str) -> None:
        now = datetime.now(UTC)
        table = client_conversations
        async with self.db.write() as conn:
            await conn.execute(
                sa.delete(table).where(
                    table.c.workspace_id == workspace_id, table.c.fingerprint == key
                )
            )
            await conn.execute(
                sa.insert(table).values(
                    workspace_id=workspace_id,
                    fingerprint=key,
                    target=str(target),
                    session_id=session_id,
                    created_at=now,
                    updated_at=now,
                )
            )

    async def _exchanges(self, workspace_id: str, session_id: str) -> list[Exchange]:
        """The session's exchanges as a client shows them, with each turn's turn number
        kept alongside for branching."""
        exchanges, _ = await self._numbered(workspace_id, session_id)
        return exchanges

    async def _numbered(
        self, workspace_id: str, session_id: str
    ) -> tuple[list[Exchange], list[int]]:
        rows: list[JSON] = []
        after = 0
        while True:
            page = await self.sessions.messages(
                workspace_id, session_id, after_turn=after, limit=PAGE
            )
            rows += page
            if len(page) < PAGE:
                break
            after = max(int(r["turn_number"]) for r in page) - 1
            rows = [r for r in rows if int(r["turn_number"]) <= after]
        exchanges: list[Exchange] = []
        numbers: list[int] = []
        turns: dict[int, dict[str, JSON]] = {}
        for row in rows:
            turns.setdefault(int(row["turn_number"]), {})[str(row["role"])] = row
        for number in sorted(turns):
            said, told = turns[number].get("player"), turns[number].get("narrator")
            reply = "" if told is None else render_reply(told["content"], told["choices"] or [])
            if said is None or not said["content"]:
                if exchanges:  # the narrator went on: the client shows it as more reply
                    last = exchanges[-1]
                    exchanges[-1] = Exchange(last.user, f"{last.assistant}\n\n{reply}")
                    numbers[-1] = number
                continue  # a greeting before any player line is the client's framing
            exchanges.append(Exchange(str(said["content"]), reply))
            numbers.append(number)
        return exchanges, numbers

    async def _branch(
        self,
        workspace_id: str,
        session_id: str,
        keep: int,
        replay: tuple[Exchange, ...],
        owner_id: str,
        metadata: EventMetadata,
    ) -> str:
        """A fork after the last exchange the client still agrees with, holding the
        client's own version of what it says came after."""
        _, numbers = await self._numbered(workspace_id, session_id)
        source = await self.sessions.repository.open(workspace_id, session_id)
        at_turn = numbers[keep - 1] if keep else _greeting_turns(numbers, source.turn_count)
        fork = await self.sessions.fork(
            workspace_id,
            session_id,
            at_turn=at_turn,
            title=None,
            owner_id=owner_id,
            metadata=metadata,
        )
        if replay:
            state = await self.sessions.repository.open(workspace_id, str(fork["id"]))
            events = [
                TurnRecord(
                    turn_id=new_id(),
                    number=state.turn_count + i,
                    action="say",
                    reply=Reply(exchange.assistant),
                    input=TurnInput(exchange.user),
                    message_ids=MessageIds(new_id(), new_id()),
                    model="client history",
                    details={"source": "chat client history"},
                ).to_event()
                for i, exchange in enumerate(replay, 1)
            ]
            await self.sessions.repository.commit(state, events, metadata)
        return str(fork["id"])


def _greeting_turns(numbers: list[int], turn_count: int) -> int:
    """Turns before the first exchange (a greeting) stay in a branch from the start."""
    return numbers[0] - 1 if numbers else turn_count


def _say(text: str) -> TurnRequest:
    return TurnRequest.build(action=TurnAction.SAY, text=text, choice=None)
