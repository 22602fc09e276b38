"""What the narrator of a therapy session is told: the kind's system prompt (from the
session's settings) and the player-specific guidance the context source adds."""

from __future__ import annotations

from collections.abc import Sequence

from taleweaver.domain.events import JSON
from taleweaver.domain.sessions import SessionState
from taleweaver.domain.therapy import GOAL_REF_CHARS, ChoiceType, SceneType, world_params

SCENE_GUIDANCE: dict[SceneType, str] = {
    SceneType.INTRODUCTION: "Introduce the world and the player's character gently; "
    "establish safety and a sense of agency.",
    SceneType.EXPLORATION: "Let the player explore; plant situations tied to their goals.",
    SceneType.CHALLENGE: "Present a manageable challenge that mirrors one goal, within the "
    "agreed intensity; offer at least one option that practises a coping skill.",
    SceneType.REFLECTION: "Slow down: invite the player to notice what they felt and chose, "
    "without judgement.",
    SceneType.THERAPEUTIC: "Offer a clear therapeutic moment (a reframe, a grounding "
    "exercise, a kind conversation) woven into the story.",
    SceneType.RESOLUTION: "Bring threads together and celebrate the progress made; leave "
    "the player with a sense of what they can carry forward.",
}


def therapy_prompt(state: SessionState) -> str:
    """The system prompt of a therapy session (the kind spec's prompt)."""
    world = world_params(state.settings)
    premise = state.settings.get("premise") or f"A gentle adventure titled '{state.title}'."
    lines = [
        "You are the narrator of a therapeutic text adventure. Write in second person, "
        "present tense, two short paragraphs at most, warm and non-judgemental. Never "
        "diagnose, never act or speak for the player, and never describe self-harm.",
        f"Premise: {premise}",
        f"World intensity: {world.intensity} of 5 (keep tension at or below it). "
        f"Pace: {world.pace}.",
    ]
    if world.focus_topics:
        lines.append("Themes to explore: " + ", ".join(world.focus_topics) + ".")
    if world.avoid_topics:
        lines.append("Never bring up: " + ", ".join(world.avoid_topics) + ".")
    kinds = ", ".join(f"[{c}]" for c in ChoiceType)
    lines.append(
        "End every reply with a line 'Choices:' followed by two to four numbered options. "
        f"Start each option with its type in brackets, one of {kinds}; for an option that "
        "works on a goal, add the goal's code, like:\nChoices:\n1. [narrative] Follow the "
        "river\n2. [emotional_regulation #a1b2c3] Pause and take three slow breaths"
    )
    return "\n".join(lines)


def profile_text(profile: JSON) -> str:
    approaches = ", ".join(profile["approaches"]) or "none chosen"
    text = (
        f"The player's preferred therapeutic approaches: {approaches}. "
        f"Their chosen intensity: {profile['intensity']} of 5; never go above it."
    )
    if profile["avoid_topics"]:
        text += " They asked to avoid: " + ", ".join(profile["avoid_topics"]) + "."
    return text


def goal_text(goal: JSON) -> str:
    return f"Goal #{goal['id'][:GOAL_REF_CHARS]}: {goal['title']} ({goal['progress']}% there)" + (
        f". {goal['description']}" if goal["description"] else ""
    )


def scene_text(scene: SceneType, goals: Sequence[JSON]) -> str:
    focus = f" Focus on goal #{goals[0]['id'][:GOAL_REF_CHARS]}." if goals else ""
    return f"This turn's scene: {scene}. {SCENE_GUIDANCE[scene]}{focus}"
