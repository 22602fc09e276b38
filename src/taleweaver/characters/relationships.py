"""Relationship state per (character, user): a projection of committed companion turns.

Nothing runs in the background. Whenever the state is read (the API, or recall
gathering a companion's context) the projection first catches up: it reads the
player's committed messages after each linked session's checkpoint, folds them
through the tone heuristic and moves the checkpoint, in one transaction whose
conditional update makes two replicas catching up at once count a turn once.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import sqlalchemy as sa

from taleweaver.characters.storage import now
from taleweaver.characters.tone import Relationship, fold
from taleweaver.domain.events import JSON
from taleweaver.store.characters_schema import character_sessions, relationships
from taleweaver.store.database import Database
from taleweaver.store.queries import Queries

log = logging.getLogger(__name__)

PAGE = 500


class Relationships:
    def __init__(self, db: Database, queries: Queries) -> None:
        self.db = db
        self.queries = queries
        # (character, session) pairs known to be linked, to spare a write per turn.
        self._linked: set[tuple[str, str]] = set()

    async def link(
        self,
        workspace_id: str,
        session_id: str,
        character_id: str,
        user_id: str,
        *,
        checkpoint: int = 0,
    ) -> None:
        """Count this session's turns towards (character, user) from `checkpoint` on."""
        if (character_id, session_id) in self._linked:
            return
        async with self.db.write() as conn:
            await self.db.lock(conn)
            exists = await conn.scalar(
                sa.select(character_sessions.c.session_id).where(
                    character_sessions.c.character_id == character_id,
                    character_sessions.c.session_id == session_id,
                )
            )
            if exists is None:
                await conn.execute(
                    character_sessions.insert().values(
                        character_id=character_id,
                        session_id=session_id,
                        workspace_id=workspace_id,
                        user_id=user_id,
                        checkpoint=checkpoint,
                    )
                )
        self._linked.add((character_id, session_id))

    async def state(self, workspace_id: str, character_id: str, user_id: str) -> Relationship:
        """The caught-up state (the starting state when they have never talked)."""
        async with self.db.read() as conn:
            links = (
                await conn.execute(
                    sa.select(character_sessions.c.session_id, character_sessions.c.checkpoint)
                    .where(
                        character_sessions.c.character_id == character_id,
                        character_sessions.c.user_id == user_id,
                        character_sessions.c.workspace_id == workspace_id,
                    )
                    .order_by(character_sessions.c.session_id)
                )
            ).all()
        for session_id, checkpoint in links:
            await self._catch_up(workspace_id, character_id, user_id, session_id, checkpoint)
        return await self._read(workspace_id, character_id, user_id)

    async def view(self, workspace_id: str, character_id: str, user_id: str) -> JSON:
        found = await self.state(workspace_id, character_id, user_id)
        return {"character_id": character_id, "user_id": user_id} | asdict(found)

    async def _read(self, workspace_id: str, character_id: str, user_id: str) -> Relationship:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    sa.select(relationships).where(
                        relationships.c.character_id == character_id,
                        relationships.c.user_id == user_id,
                        relationships.c.workspace_id == workspace_id,
                    )
                )
            ).first()
        if row is None:
            return Relationship()
        return Relationship(row.affinity, row.trust, row.mood, list(row.recent), row.turns)

    async def _catch_up(
        self, workspace_id: str, character_id: str, user_id: str, session_id: str, checkpoint: int
    ) -> None:
        texts: list[str] = []
        reached = checkpoint
        while True:
            page = await self.queries.messages(session_id, after_turn=reached, limit=PAGE)
            if not page:
                break
            texts += [m["content"] for m in page if m["role"] == "player"]
            reached = max(m["turn_number"] for m in page)
            if len(page) < PAGE:
                break
        if reached == checkpoint:
            return
        async with self.db.write() as conn:
            await self.db.lock(conn)
            moved = await conn.execute(
                character_sessions.update()
                .where(
                    character_sessions.c.character_id == character_id,
                    character_sessions.c.session_id == session_id,
                    character_sessions.c.checkpoint == checkpoint,
                )
                .values(checkpoint=reached)
            )
            if moved.rowcount == 0:
                log.debug("relationship %s/%s: caught up elsewhere", character_id, user_id)
                return
            key = (relationships.c.character_id == character_id) & (
                relationships.c.user_id == user_id
            )
            row = (await conn.execute(sa.select(relationships).where(key))).first()
            state = (
                Relationship()
                if row is None
                else Relationship(row.affinity, row.trust, row.mood, list(row.recent), row.turns)
            )
            for text in texts:
                state = fold(state, text)
            values = {
                "affinity": state.affinity,
                "trust": state.trust,
                "mood": state.mood,
                "recent": state.recent,
                "turns": state.turns,
                "updated_at": now(),
            }
            if row is None:
                await conn.execute(
                    relationships.insert().values(
                        character_id=character_id,
                        user_id=user_id,
                        workspace_id=workspace_id,
                        **values,
                    )
                )
            else:
                await conn.execute(relationships.update().where(key).values(values))
