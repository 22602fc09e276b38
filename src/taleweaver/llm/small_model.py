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
    "SMALL_SYSTEM_CHARS",
    "Sampling",
    "fit_system",
    "sampling_for",
    "small_prompt",
]

# A 135M model reads a 2,000-token card no better than a 600-token one, and every
# 1,000 tokens of prompt cost it 4 to 8 s on two cores: its system message (the
# kind's prompt and the card, lore and world pieces after it) is cut to this.
SMALL_SYSTEM_CHARS = 2400
# Paragraphs are shortened no further than this, so each keeps its gist.
_MIN_PARAGRAPH_CHARS = 160

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


def small_prompt(
    messages: Sequence[ChatMessage], shape: ReplyShape, system_chars: int | None = None
) -> list[ChatMessage]:
    """The prompt with the kind's brief in place of its long system prompt, and its
    example scene before the history; the system message within `system_chars`
    (None: as long as it is)."""
    if not messages or messages[0].role != "system":
        return list(messages)
    system = messages[0].content
    brief = shape.brief
    example: tuple[ChatMessage, ...] = ()
    if brief is not None:
        example = brief.example
        if system.startswith(brief.replaces):
            system = brief.system + system[len(brief.replaces) :]
    if system_chars is not None:
        system = fit_system(system, system_chars)
    return [ChatMessage("system", system), *example, *messages[1:]]


def fit_system(text: str, limit: int) -> str:
    """`text` within about `limit` characters: its longest paragraphs are shortened
    first, each to whole sentences where it can, so that every paragraph (the
    instructions, a description, a scenario) keeps its opening."""
    paragraphs = text.split("\n\n")
    if len(text) <= limit:
        return text
    cap = _water_level([len(p) for p in paragraphs], limit - 2 * (len(paragraphs) - 1))
    return "\n\n".join(p if len(p) <= cap else _shorten(p, cap) for p in paragraphs)


def _water_level(lengths: list[int], total: int) -> int:
    """The largest cap such that the lengths, each cut to it, sum to at most `total`
    (never below the floor that keeps a paragraph's gist)."""
    left, count = total, len(lengths)
    for length in sorted(lengths):
        if length * count > left:
            return max(left // count, _MIN_PARAGRAPH_CHARS)
        left -= length
        count -= 1
    return max(lengths)


def _shorten(paragraph: str, cap: int) -> str:
    """The paragraph's opening within `cap` characters: up to its last sentence end
    when that keeps half of it, else to its last whole word, marked cut."""
    head = paragraph[:cap]
    end = max(head.rfind(mark) for mark in (". ", "! ", "? ", ".\n"))
    if end >= cap // 2:
        return head[: end + 1]
    return head.rsplit(" ", 1)[0].rstrip(",;:") + "…"
