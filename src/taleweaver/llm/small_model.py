"""How a tiny local model (the bundled SmolLM2-135M) is asked for a story reply.

A 135M model left to itself loops, runs to the token cap and forgets to offer
choices. So it gets: sampling with repetition, frequency and presence penalties
(stronger on a retry after a loop), a short reply cap, stop sequences where its
prose turns into a list, the kind's brief prompt and example scene, and then
the choices written under a grammar that only lets through 2 to 4 numbered,
one-line options in the shape `domain.choices` parses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from taleweaver.domain.prompt import ChatMessage
from taleweaver.llm.shape import ReplyShape

__all__ = [
    "CHOICES_GRAMMAR",
    "CHOICES_LEAD",
    "CHOICES_TOKENS",
    "PROSE_STOPS",
    "REPLY_TOKENS",
    "SENTENCE_END_GRAMMAR",
    "SENTENCE_END_TOKENS",
    "Sampling",
    "sampling_for",
    "small_prompt",
]

# Prose first: a small model's few good sentences come early.
REPLY_TOKENS = 160
CHOICES_TOKENS = 72
# Where the model starts its own list (or the next turn): the grammar takes over there.
PROSE_STOPS = (
    "<|im_end|>",
    "<|im_start|>",
    "Choices:",
    "Options:",
    "\n1.",
    "\n1)",
    "\n- ",
    "\n* ",
)
# Prose that reaches its cap mid-sentence gets these last tokens to end the sentence.
SENTENCE_END_TOKENS = 24
SENTENCE_END_GRAMMAR = r"""
root ::= [^.!?\n<]{0,100} [.!?]
"""
CHOICES_LEAD = "\n\nChoices:\n"
# Each option: a capital, then 3 to 50 letters, spaces and light punctuation, on one line.
CHOICES_GRAMMAR = r"""
root   ::= "1. " option "\n2. " option ("\n3. " option ("\n4. " option)?)?
option ::= [A-Z] [a-zA-Z ,'-]{3,50}
"""


@dataclass(frozen=True, slots=True)
class Sampling:
    temperature: float
    repeat_penalty: float
    frequency_penalty: float
    presence_penalty: float
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.05

    def as_kwargs(self) -> dict[str, float | int]:
        return {
            "temperature": self.temperature,
            "repeat_penalty": self.repeat_penalty,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
        }


def sampling_for(shape: ReplyShape, temperature: float) -> Sampling:
    """The configured temperature with penalties; a retry after a loop repeats less."""
    if shape.retry:
        return Sampling(
            temperature=max(temperature, 0.8),
            repeat_penalty=1.35,
            frequency_penalty=0.7,
            presence_penalty=0.7,
        )
    return Sampling(
        temperature=temperature, repeat_penalty=1.18, frequency_penalty=0.3, presence_penalty=0.3
    )


def small_prompt(messages: Sequence[ChatMessage], shape: ReplyShape) -> list[ChatMessage]:
    """The prompt with the kind's brief in place of its long system prompt, and its
    example scene before the history; unchanged when the kind gave no brief."""
    brief = shape.brief
    if brief is None or not messages or messages[0].role != "system":
        return list(messages)
    system = messages[0].content
    if system.startswith(brief.replaces):
        system = brief.system + system[len(brief.replaces) :]
    return [ChatMessage("system", system), *brief.example, *messages[1:]]
