"""The characters' context source: what a companion session's narrator is told.

For a session whose settings list `character_ids`, recall receives the speaking
character's card (description, personality, scenario, system prompt), example
messages, post-history instructions and relationship state, every text with its
macros expanded. In a group chat it also names whose turn it is, and why.
"""

from __future__ import annotations

import random

from taleweaver.characters.service import Characters
from taleweaver.characters.tone import Relationship
from taleweaver.domain.characters import Card, CardMember, pick_speaker
from taleweaver.domain.lorebook import ActiveCharacter
from taleweaver.domain.macros import MacroContext, expand
from taleweaver.domain.pipeline import ContextPiece, Placement, RecallQuery
from taleweaver.domain.session_settings import persona

SOURCE = "character"
# (card field, how it is introduced, placement, priority, order, core). Core pieces
# are the character itself: they go in whatever the budget, each cut at
# MAX_PIECE_CHARS so that one huge card cannot crowd out the whole history.
CARD_FIELDS: list[tuple[str, str, Placement, int, int, bool]] = [
    ("system_prompt", "<text>", "system", 100, 0, True),
    ("description", "{{char}}'s description:\n<text>", "system", 95, 1, True),
    ("personality", "{{char}}'s personality: <text>", "system", 90, 2, True),
    ("scenario", "Scenario: <text>", "system", 85, 3, True),
    ("mes_example", "Examples of how {{char}} speaks:\n<text>", "before_history", 40, 0, False),
    ("post_history_instructions", "<text>", "after_history", 80, 0, True),
]
MAX_PIECE_CHARS = 6000
# Other group members are introduced with at most this much of their description.
MEMBER_BLURB_CHARS = 300


def _ids(settings: object) -> list[str]:
    found = settings.get("character_ids") if isinstance(settings, dict) else None
    if not isinstance(found, list):
        return []
    return [c for c in dict.fromkeys(found) if isinstance(c, str) and c]


def _level(value: float) -> str:
    if value >= 80:
        return "very high"
    if value >= 60:
        return "high"
    if value > 40:
        return "moderate"
    return "low" if value > 20 else "very low"


def relationship_text(state: Relationship) -> str:
    return (
        "{{char}}'s relationship with {{user}}: "
        f"affinity {state.affinity:.0f}/100 ({_level(state.affinity)}), "
        f"trust {state.trust:.0f}/100 ({_level(state.trust)}), "
        f"current mood: {state.mood}. Let this colour {{{{char}}}}'s tone."
    )


def _speaker(present: list[str], cards: dict[str, Card], query: RecallQuery) -> tuple[int, str]:
    """(index in `present` of who speaks this turn, why)."""
    if len(present) == 1:
        return 0, "the session's character"
    members = [
        CardMember(c, cards[c].name, str(cards[c].data.get("nickname") or "")) for c in present
    ]
    return pick_speaker(members, query.current_text, query.turn_number)


class CharacterSource:
    name = SOURCE

    def __init__(self, characters: Characters) -> None:
        self.characters = characters

    async def _present(self, query: RecallQuery) -> tuple[list[str], dict[str, Card]]:
        """The session's characters that exist, in its order, and their cards."""
        ids = _ids(query.settings)
        if not ids:
            return [], {}
        cards = await self.characters.cards(query.workspace_id, ids)
        return [c for c in ids if c in cards], cards

    async def speaker(self, query: RecallQuery) -> ActiveCharacter | None:
        """Who speaks this turn, as lorebook character filters see them; None in a
        session with no character."""
        present, cards = await self._present(query)
        if not present:
            return None
        card = cards[present[_speaker(present, cards, query)[0]]]
        tags = [t for t in card.data.get("tags") or [] if isinstance(t, str)]
        return ActiveCharacter(names=(card.name, card.display_name), tags=tuple(tags))

    async def gather(self, query: RecallQuery) -> list[ContextPiece]:
        present, cards = await self._present(query)
        if not present:
            return []
        speaker, why = _speaker(present, cards, query)
        character_id = present[speaker]
        card = cards[character_id]
        user = persona(query.settings) or await self.characters.user_name(query.player_id)
        macros = MacroContext(
            char=card.display_name,
            user=user,
            seed=query.session_id,
            rng=random.Random(f"{query.session_id}:{query.turn_number}"),
        )
        pieces = self._card_pieces(character_id, card, macros, why)
        if not isinstance(query.settings.get("character"), dict):
            # A session made by hand: the companion kind's prompt does not name anyone.
            pieces.append(
                ContextPiece(
                    text=f"You are {card.display_name}. Stay in character.",
                    source=SOURCE,
                    ref=f"{character_id}:role",
                    reason=f"who the narrator plays ({why})",
                    priority=100,
                    placement="system",
                    order=-1,
                    ignore_budget=True,
                )
            )
        if query.player_id is not None:
            pieces.append(await self._relationship(query, character_id, macros))
        if len(present) > 1:
            pieces += self._group_pieces(present, cards, speaker, macros, user, why)
        return pieces

    def _card_pieces(
        self, character_id: str, card: Card, macros: MacroContext, why: str
    ) -> list[ContextPiece]:
        pieces = []
        for key, label, placement, priority, order, core in CARD_FIELDS:
            raw = str(card.data.get(key) or "")
            if not raw.strip():
                continue
            text = expand(label.replace("<text>", raw), macros).strip()
            detail: dict[str, object] = {}
            if len(text) > MAX_PIECE_CHARS:
                detail["truncated_from"] = len(text)
                text = text[:MAX_PIECE_CHARS].rstrip() + "…"
            if text:
                pieces.append(
                    ContextPiece(
                        text=text,
                        source=SOURCE,
                        ref=f"{character_id}:{key}",
                        reason=f"{key} of {card.name} ({why})",
                        priority=priority,
                        placement=placement,
                        order=order,
                        ignore_budget=core,
                        detail=detail,
                    )
                )
        return pieces

    async def _relationship(
        self, query: RecallQuery, character_id: str, macros: MacroContext
    ) -> ContextPiece:
        assert query.player_id is not None
        book = self.characters.relationships
        # A session first seen now (made by hand, or a fork) counts from this turn on:
        # a fork's copied turns were counted in the session they came from.
        await book.link(
            query.workspace_id,
            query.session_id,
            character_id,
            query.player_id,
            checkpoint=max(0, query.turn_number - 1),
        )
        state = await book.state(query.workspace_id, character_id, query.player_id)
        return ContextPiece(
            text=expand(relationship_text(state), macros),
            source=SOURCE,
            ref=f"{character_id}:relationship",
            reason="relationship state with the player",
            priority=70,
            placement="system",
            order=4,
            detail={"affinity": state.affinity, "trust": state.trust, "mood": state.mood},
        )

    def _group_pieces(
        self,
        present: list[str],
        cards: dict[str, Card],
        speaker: int,
        macros: MacroContext,
        user: str,
        why: str,
    ) -> list[ContextPiece]:
        speaking = cards[present[speaker]]
        others = []
        for index, character_id in enumerate(present):
            if index == speaker:
                continue
            other = cards[character_id]
            own = MacroContext(char=other.display_name, user=user, seed=macros.seed, rng=macros.rng)
            blurb = expand(other.data["description"], own).strip()[:MEMBER_BLURB_CHARS]
            others.append(
                f"- {other.display_name}: {blurb}" if blurb else f"- {other.display_name}"
            )
        return [
            ContextPiece(
                text="This is a group chat. Also present:\n" + "\n".join(others),
                source=SOURCE,
                ref="group:members",
                reason="the other characters of the group chat",
                priority=60,
                placement="system",
                order=5,
            ),
            ContextPiece(
                text=(
                    f"Reply as {speaking.display_name} only, in {speaking.display_name}'s voice; "
                    "do not write lines for the other characters or for the user."
                ),
                source=SOURCE,
                ref=f"{present[speaker]}:turn",
                reason=why,
                priority=100,
                placement="after_history",
                order=1,
                ignore_budget=True,
                detail={"speaker": present[speaker]},
            ),
        ]
