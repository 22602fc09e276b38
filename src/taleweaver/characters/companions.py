"""Starting a companion session with one or more characters, greeting included.

A greeting is written, not generated: it is the session's first `turn.committed`
event (turn 1, no player input, `"greeting": true`), appended through the
session repository in the same commit as `session.created`, so the messages
read model and the session state fold it like any turn, and a session never
exists without its greeting.
"""

from __future__ import annotations

import random
import uuid
from typing import TYPE_CHECKING

from taleweaver.domain.characters import choose_greeting
from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.events import JSON, EventMetadata, NewEvent
from taleweaver.domain.macros import MacroContext, expand
from taleweaver.domain.session_settings import check_book_ids, check_settings, merge_ids, persona
from taleweaver.domain.sessions import (
    EventType,
    Reply,
    SessionKind,
    SessionState,
    validate_title,
)
from taleweaver.domain.turn_record import MessageIds, TurnRecord
from taleweaver.domain.turns import SAFE
from taleweaver.store.repository import SessionRepository

if TYPE_CHECKING:
    from taleweaver.characters.service import Characters

MAX_CHARACTERS = 16


def greeting_event(character_id: str, index: int, text: str) -> NewEvent:
    record = TurnRecord(
        turn_id=uuid.uuid4().hex,
        number=1,
        # The closest of the turn actions: the narrator speaks, the player said nothing.
        action="continue",
        reply=Reply(text),
        message_ids=MessageIds(uuid.uuid4().hex, uuid.uuid4().hex),
        # Written by the character's author, not generated: nothing to check.
        safety_input=SAFE,
        safety_output=SAFE,
        context=[{"source": "character", "ref": character_id, "reason": f"greeting {index}"}],
        details={"greeting": True, "character_id": character_id},
    )
    return record.to_event()


class Companions:
    def __init__(self, characters: Characters, repository: SessionRepository) -> None:
        self.characters = characters
        self.repository = repository

    async def start(
        self,
        workspace_id: str,
        character_ids: list[str],
        *,
        owner_id: str | None,
        title: str | None = None,
        greeting: int | None = None,
        settings: JSON | None = None,
        metadata: EventMetadata,
    ) -> str:
        """Create the session (its greeting written as turn 1); returns its id."""
        ids = list(dict.fromkeys(character_ids))
        if not ids or len(ids) > MAX_CHARACTERS:
            raise InvalidInput(f"a companion session has 1 to {MAX_CHARACTERS} characters")
        cards = await self.characters.cards(workspace_id, ids)
        missing = [c for c in ids if c not in cards]
        if missing:
            raise NotFound(f"character {missing[0]} not found")
        first = cards[ids[0]]
        group = len(ids) > 1
        names = [cards[c].display_name for c in ids]
        given = dict(settings or {})
        own = check_book_ids(given["lorebook_ids"]) if "lorebook_ids" in given else []
        session_settings: JSON = given | {
            "character_ids": ids,
            # The caller's books first, then the characters' own.
            "lorebook_ids": merge_ids(own, await self.characters.lorebook_ids(workspace_id, ids)),
            # What the companion kind's own prompt names; the character source adds the rest.
            "character": {
                "name": " and ".join(names),
                "description": "As the character notes below describe.",
            },
        }
        check = self.characters.settings_check
        session_settings = (
            await check(workspace_id, session_settings)
            if check is not None
            else check_settings(session_settings)
        )
        session_id = uuid.uuid4().hex
        chosen = choose_greeting(first, index=greeting, seed=session_id, group=group)
        events = [
            NewEvent(
                EventType.SESSION_CREATED,
                {
                    "workspace_id": workspace_id,
                    "kind": str(SessionKind.COMPANION),
                    "title": validate_title(title or f"Chat with {', '.join(names)}"[:200]),
                    "settings": session_settings,
                    "owner_id": owner_id,
                },
            )
        ]
        if chosen is not None:
            index, text = chosen
            context = MacroContext(
                char=first.display_name,
                user=persona(given) or await self.characters.user_name(owner_id),
                seed=session_id,
                rng=random.Random(f"{session_id}:greeting"),
            )
            events.append(greeting_event(ids[0], index, expand(text, context)))
        await self.repository.commit(
            SessionState(id=session_id), events, metadata, workspace_id=workspace_id
        )
        if owner_id is not None:
            for character_id in ids:
                await self.characters.relationships.link(
                    workspace_id, session_id, character_id, owner_id
                )
        return session_id
