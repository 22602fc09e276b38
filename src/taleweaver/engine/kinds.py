"""Session kinds: each is a system prompt and a configuration of the same stages.

The engine's own kinds are declared here. A capability that brings a kind (therapy)
provides it when the engine is assembled (`Engine._wire_features`), and a plugin's
kind is registered from its hook: the engine names no capability to know its kinds.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from taleweaver.domain.errors import Conflict
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind, SessionState, admit_kind
from taleweaver.engine.stages.narrate import BriefPrompt
from taleweaver.engine.stages.recall import SystemPrompt
from taleweaver.llm.shape import Brief


def _premise(state: SessionState) -> str:
    return str(state.settings.get("premise") or f"An adventure titled '{state.title}'.")


def _story_prompt(state: SessionState) -> str:
    premise = _premise(state)
    return (
        "You are the narrator of an interactive story. Write in second person, present "
        "tense, two short paragraphs at most. Keep names, places and facts consistent "
        "with everything said before. Never act or speak for the player.\n"
        f"Premise: {premise}\n"
        "End every reply with a line 'Choices:' followed by two to four numbered "
        "options, one per line, like:\nChoices:\n1. Open the door\n2. Walk away"
    )


# Scenes of one exchange, for small models: they copy the shape of what they see, and
# its nouns too, so each story gets one of several scenes (always the same one for a
# premise, which keeps the prompt's prefix and so the model's cache stable).
def _scene(action: str, prose: str, *choices: str) -> tuple[ChatMessage, ChatMessage]:
    options = "\n".join(f"{n}. {choice}" for n, choice in enumerate(choices, 1))
    return ChatMessage("user", action), ChatMessage("assistant", f"{prose}\n\nChoices:\n{options}")


_STORY_EXAMPLES = (
    _scene(
        "I step inside the old station.",
        "Rain drums on the tin roof. A lamp flickers over an empty bench, and far away "
        "a train whistle sounds. On the ticket desk lies a brass key.",
        "Take the key",
        "Wait on the bench",
        "Walk along the tracks",
    ),
    _scene(
        "I climb the hill behind the farm.",
        "Wind bends the long grass around you. At the top stands a crooked oak, and "
        "something glints between its roots. Below, smoke rises from a chimney.",
        "Dig between the roots",
        "Go back down to the farm",
    ),
    _scene(
        "I open the cellar door.",
        "Cold air smelling of earth rushes up the steps. A candle stub burns on a "
        "barrel, still warm, and somewhere in the dark a chain rattles once.",
        "Pick up the candle",
        "Call out into the dark",
        "Shut the door again",
    ),
    _scene(
        "I wade out to the sandbank.",
        "The tide pulls at your knees. Gulls circle a wooden crate half buried in the "
        "sand, its lid marked with a faded red star.",
        "Pry open the crate",
        "Wave at the gulls",
        "Wade back before the tide turns",
    ),
)


def story_example(premise: str) -> tuple[ChatMessage, ...]:
    """The example scene a story with this premise is shown (stable across turns)."""
    return _STORY_EXAMPLES[zlib.crc32(premise.encode()) % len(_STORY_EXAMPLES)]


def _story_brief(state: SessionState) -> Brief:
    """The story prompt for a small model: short, concrete, one example to copy."""
    premise = _premise(state)
    return Brief(
        replaces=_story_prompt(state),
        system=(
            "You narrate an interactive story. Reply with two to four short sentences "
            "in second person, present tense: what the player sees and what happens "
            "next. Do not repeat yourself.\n"
            f"Story: {premise}"
        ),
        example=story_example(premise),
    )


def _companion_prompt(state: SessionState) -> str:
    character = state.settings.get("character") or {}
    name = character.get("name") or "Companion"
    persona = character.get("description") or "A warm, curious conversational partner."
    return (
        f"You are {name}. Stay in character and reply as {name} would, in a natural, "
        f"conversational voice. Never speak for the user.\nPersona: {persona}"
    )


def _studio_prompt(state: SessionState) -> str:
    world = state.settings.get("world") or state.title
    return (
        "You are a world-building assistant for a tabletop campaign. Help design "
        "factions, places, characters and history; be concrete and consistent with "
        f"what was established earlier. The world: {world}"
    )


def _file_prompt(state: SessionState) -> str:
    path = state.settings.get("path") or "the file"
    return (
        f"You are an editing assistant for the text file '{path}'. Its current text is "
        "given below. The user's message is an instruction to change it. Reply with "
        "the complete new text of the file in one fenced code block (```), or with a "
        "unified diff against the current text (with @@ hunk headers) in one fenced "
        "block, and nothing else: no commentary. Change only what the instruction asks."
    )


@dataclass(frozen=True, slots=True)
class KindSpec:
    system_prompt: SystemPrompt
    with_choices: bool
    # Options come annotated with a leading `[tag]`, kept apart from what is shown.
    tagged_choices: bool = False
    # The prompt for small local models, where the kind has one.
    brief: BriefPrompt | None = None
    # The reply's token limit, where the kind needs another than the configured one.
    max_reply_tokens: int | None = None


# Every kind the process can run: the engine's own, then those capabilities provide
# and plugins register as the engine is assembled.
KINDS: dict[SessionKind, KindSpec] = {
    SessionKind.STORY: KindSpec(_story_prompt, with_choices=True, brief=_story_brief),
    SessionKind.COMPANION: KindSpec(_companion_prompt, with_choices=False),
    SessionKind.STUDIO: KindSpec(_studio_prompt, with_choices=False),
    # A file's assistant: the file's text comes from its context source (`files`).
    SessionKind.FILE: KindSpec(_file_prompt, with_choices=False, max_reply_tokens=8192),
}


def provide_kind(kind: SessionKind, spec: KindSpec) -> None:
    """Configure a built-in kind that a capability brings (therapy's): the engine
    calls this while wiring the capability; the same spec again changes nothing."""
    KINDS[kind] = spec


def kind_spec(kind: SessionKind) -> KindSpec:
    """How the pipeline runs a session of `kind`."""
    spec = KINDS.get(kind)
    if spec is None:
        raise Conflict(
            f"session kind {str(kind)!r} is not configured: the capability that brings it "
            "was not wired into this engine"
        )
    return spec


def register_kind(name: str, spec: KindSpec) -> SessionKind:
    """Add a plugin's kind: sessions may be created with it and its turns run
    through the one pipeline, configured by `spec`."""
    kind = admit_kind(name)
    KINDS[kind] = spec
    return kind
