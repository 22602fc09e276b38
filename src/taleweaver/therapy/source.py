"""The therapy context source: for sessions of kind therapy, the player's profile,
their session goals and the current scene go into the narrator's system prompt."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from taleweaver.domain.events import JSON
from taleweaver.domain.pipeline import ContextPiece, RecallQuery
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.therapy import (
    ChoiceType,
    GoalStatus,
    parse_choice_tag,
    scene_for,
    world_params,
)
from taleweaver.store.schema import sessions
from taleweaver.store.therapy_schema import therapy_profiles
from taleweaver.therapy.profiles import profile_dict
from taleweaver.therapy.projection import session_goal_ids
from taleweaver.therapy.prompt import goal_text, profile_text, scene_text
from taleweaver.therapy.records import goals_in
from taleweaver.therapy.service import TherapyService

# The therapy guidance outranks lore and memories when the budget is short.
PRIORITY = 90


class TherapySource:
    name = "therapy"

    def __init__(self, service: TherapyService) -> None:
        self.service = service

    async def gather(self, query: RecallQuery) -> list[ContextPiece]:
        if query.kind != SessionKind.THERAPY:
            return []
        moved = _moved_a_goal(query)
        async with self.service.db.read() as conn:
            player, profile = await self._player(conn, query)
            if player is None or profile is None or not profile["consent"].get("therapy_data"):
                return []  # nothing is known, or may be used, about this player
            goals = [] if moved else await goals_in(conn, query.workspace_id, player)
        if moved:
            # Only a tagged choice changes what the narrator is told (the goals'
            # progress); everything else waits for the next read of the records.
            await self.service.projection.catch_up(
                query.workspace_id, player, session_id=query.session_id, settings=query.settings
            )
            goals = await self.service.records.goals(query.workspace_id, player)
        attached = session_goal_ids(query.settings)
        active = [g for g in goals if g["status"] == GoalStatus.ACTIVE]
        chosen = [g for g in goals if g["id"] in attached] or active
        progress = sum(g["progress"] for g in chosen) / len(chosen) if chosen else None
        scene = scene_for(query.turn_number, progress, world_params(query.settings).pace)
        # The goal the scene works on: the least advanced one still open.
        focus = sorted(
            (g for g in chosen if g["status"] == GoalStatus.ACTIVE),
            key=lambda g: (g["progress"], g["created_at"]),
        )
        pieces = [
            self._piece(profile_text(profile), "profile", "the player's preferences", order=0)
        ]
        pieces += [
            self._piece(goal_text(g), g["id"], f"session goal '{g['title']}'", order=1)
            for g in chosen
        ]
        pieces.append(
            self._piece(
                scene_text(scene, focus),
                f"scene:{scene}",
                f"turn {query.turn_number} is a {scene} scene"
                + (f" focused on goal '{focus[0]['title']}'" if focus else ""),
                order=2,
                detail={"scene": str(scene), "progress": progress},
            )
        )
        return pieces

    def _piece(
        self,
        text: str,
        ref: str,
        reason: str,
        *,
        order: int,
        detail: dict[str, object] | None = None,
    ) -> ContextPiece:
        return ContextPiece(
            text=text,
            source=self.name,
            ref=ref,
            reason=reason,
            priority=PRIORITY,
            placement="system",
            order=order,
            detail=detail or {},
        )

    async def _player(
        self, conn: AsyncConnection, query: RecallQuery
    ) -> tuple[str | None, JSON | None]:
        """Whose therapy this is (the session's owner, not whoever sent the turn) and
        their profile, in one read."""
        query_owner = (
            sa.select(sessions.c.owner_id, therapy_profiles)
            .select_from(
                sessions.outerjoin(
                    therapy_profiles,
                    sa.and_(
                        therapy_profiles.c.workspace_id == sessions.c.workspace_id,
                        therapy_profiles.c.user_id == sessions.c.owner_id,
                    ),
                )
            )
            .where(sessions.c.id == query.session_id, sessions.c.workspace_id == query.workspace_id)
        )
        found = (await conn.execute(query_owner)).first()
        if found is None or found.owner_id is None:
            return query.player_id, None
        if found.user_id is None:
            return found.owner_id, None
        return found.owner_id, profile_dict(found)


def _moved_a_goal(query: RecallQuery) -> bool:
    """Whether the player's last pick was an option tagged as working on a goal."""
    tag = query.last_choice_tag
    return tag is not None and parse_choice_tag(f"[{tag}] -").type != ChoiceType.NARRATIVE
