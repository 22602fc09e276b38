"""Instruct templates: a chat as the one prompt string a base or instruct model
expects on a text-completion endpoint, and the sequences that end its turn.

The beginning-of-text token is left out on purpose: llama.cpp, vLLM and
KoboldCpp add it themselves, and a second one degrades the output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from taleweaver.domain.prompt import ChatMessage

__all__ = ["TEMPLATES", "InstructTemplate", "StopTrimmer", "TemplateName"]

TemplateName = Literal["chatml", "llama3", "alpaca", "mistral", "gemma"]


@dataclass(frozen=True, slots=True)
class InstructTemplate:
    name: str
    render: Callable[[Sequence[ChatMessage]], str]
    stop: tuple[str, ...]


def _system_first(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """For formats with no system role: the system text opens the first user turn."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    if not system:
        return rest
    if rest and rest[0].role == "user":
        return [ChatMessage("user", f"{system}\n\n{rest[0].content}"), *rest[1:]]
    return [ChatMessage("user", system), *rest]


def _chatml(messages: Sequence[ChatMessage]) -> str:
    turns = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages)
    return f"{turns}<|im_start|>assistant\n"


def _llama3(messages: Sequence[ChatMessage]) -> str:
    turns = "".join(
        f"<|start_header_id|>{m.role}<|end_header_id|>\n\n{m.content}<|eot_id|>" for m in messages
    )
    return f"{turns}<|start_header_id|>assistant<|end_header_id|>\n\n"


def _alpaca(messages: Sequence[ChatMessage]) -> str:
    parts = [f"{m.content}\n\n" for m in messages if m.role == "system"]
    for m in messages:
        if m.role == "user":
            parts.append(f"### Instruction:\n{m.content}\n\n")
        elif m.role == "assistant":
            parts.append(f"### Response:\n{m.content}\n\n")
    parts.append("### Response:\n")
    return "".join(parts)


def _mistral(messages: Sequence[ChatMessage]) -> str:
    parts = []
    for m in _system_first(messages):
        if m.role == "user":
            parts.append(f"[INST] {m.content} [/INST]")
        else:
            parts.append(f"{m.content}</s>")
    return "".join(parts)


def _gemma(messages: Sequence[ChatMessage]) -> str:
    turns = "".join(
        f"<start_of_turn>{'model' if m.role == 'assistant' else 'user'}\n{m.content}<end_of_turn>\n"
        for m in _system_first(messages)
    )
    return f"{turns}<start_of_turn>model\n"


TEMPLATES: dict[str, InstructTemplate] = {
    "chatml": InstructTemplate("chatml", _chatml, ("<|im_end|>", "<|im_start|>")),
    "llama3": InstructTemplate("llama3", _llama3, ("<|eot_id|>", "<|start_header_id|>")),
    "alpaca": InstructTemplate("alpaca", _alpaca, ("### Instruction:", "### Response:")),
    "mistral": InstructTemplate("mistral", _mistral, ("</s>", "[INST]")),
    "gemma": InstructTemplate("gemma", _gemma, ("<end_of_turn>", "<start_of_turn>")),
}


class StopTrimmer:
    """Cuts streamed text at the first stop sequence, for servers that send it back.

    Text that could be the start of a stop sequence is held until the next piece
    shows whether it is one.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.stopped = False
        self._held = ""

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        buffer = self._held + text
        cuts = [i for i in (buffer.find(s) for s in self.stops) if i >= 0]
        if cuts:
            self.stopped = True
            self._held = ""
            return buffer[: min(cuts)]
        keep = 0
        for size in range(
            min(len(buffer), max((len(s) for s in self.stops), default=1) - 1), 0, -1
        ):
            tail = buffer[-size:]
            if any(s.startswith(tail) for s in self.stops):
                keep = size
                break
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held
