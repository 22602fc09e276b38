"""Content preferences as narrator context: the world's rules and the player's own."""

from __future__ import annotations

from taleweaver.domain.pipeline import ContextPiece, RecallQuery
from taleweaver.safety.content import ContentPreferences


class ContentPreferencesSource:
    """A `ContextSource`: system pieces that tell the narrator what to avoid or warn about."""

    name = "safety"

    def __init__(self, content: ContentPreferences) -> None:
        self.content = content

    async def gather(self, query: RecallQuery) -> list[ContextPiece]:
        prefs = await self.content.effective(query.workspace_id, query.world_id, query.player_id)
        where = "this world's" if prefs.scope != "workspace" else "the workspace's"
        pieces: list[ContextPiece] = []

        def add(ref: str, text: str, reason: str, priority: int) -> None:
            pieces.append(
                ContextPiece(
                    text=text,
                    source=self.name,
                    ref=ref,
                    reason=reason,
                    priority=priority,
                    placement="system",
                    ignore_budget=True,
                )
            )

        if prefs.forbidden:
            add(
                f"{prefs.scope}:forbidden",
                "Content rules: never depict or describe " + ", ".join(prefs.forbidden) + ".",
                f"{where} content rules forbid these topics",
                100,
            )
        if prefs.avoid_topics:
            add(
                "player:avoid_topics",
                "The player asked to avoid: "
                + ", ".join(prefs.avoid_topics)
                + ". Keep them out of the story entirely.",
                "the player's avoid topics (safety preferences)",
                100,
            )
        if prefs.trigger_warnings:
            add(
                "player:trigger_warnings",
                "Before a scene touches on "
                + ", ".join(prefs.trigger_warnings)
                + ", give the player a short content warning first.",
                "the player's trigger warnings (safety preferences)",
                90,
            )
        if prefs.content_warnings:
            add(
                f"{prefs.scope}:content_warnings",
                "This story may include: "
                + ", ".join(prefs.content_warnings)
                + ". Handle these with care.",
                f"{where} content warnings",
                50,
            )
        return pieces
