"""A stateless chat client's history, matched against a session's stored turns.

OpenAI-style clients resend the whole conversation with every request. Only the
newest user message is new; the rest either matches what the session holds, or
the user changed it in their client (edited a line, asked for another reply),
which becomes an edit, a regenerate or a branch here: never an overwrite.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from taleweaver.domain.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class ClientMessage:
    role: str  # "system", "user" or "assistant" (tool roles are read as user text)
    content: str


@dataclass(frozen=True, slots=True)
class Exchange:
    """One player line and the reply to it, as stored or as the client shows it."""

    user: str
    assistant: str


class PlanKind(StrEnum):
    SAY = "say"  # the history matches: the new line is the next turn
    REGENERATE = "regenerate"  # the client asked again for the last reply
    EDIT = "edit"  # the client changed the last line
    BRANCH = "branch"  # the client changed an earlier exchange: fork there


@dataclass(frozen=True, slots=True)
class Plan:
    kind: PlanKind
    text: str
    # BRANCH: how many stored exchanges still match, and the client's exchanges after them.
    keep: int = 0
    replay: tuple[Exchange, ...] = ()


def dialogue(messages: list[ClientMessage]) -> tuple[list[Exchange], str]:
    """The client's exchanges and its newest user line. System messages and a leading
    greeting (assistant lines before the first user line) are the client's own
    framing, not turns; consecutive lines of one role are joined."""
    turns = [m for m in messages if m.role != "system"]
    while turns and turns[0].role == "assistant":
        turns = turns[1:]
    if not turns or turns[-1].role != "user":
        raise InvalidInput("the last message must be the user's")
    merged: list[ClientMessage] = []
    for message in turns:
        if merged and merged[-1].role == message.role:
            joined = f"{merged[-1].content}\n\n{message.content}"
            merged[-1] = ClientMessage(message.role, joined)
        else:
            merged.append(message)
    newest = merged.pop().content.strip()
    if not newest:
        raise InvalidInput("the last user message is empty")
    exchanges = [
        Exchange(merged[i].content.strip(), merged[i + 1].content.strip())
        for i in range(0, len(merged) - 1, 2)
    ]
    return exchanges, newest


def plan(stored: list[Exchange], messages: list[ClientMessage]) -> Plan:
    """What the client's request means against the stored exchanges."""
    client, newest = dialogue(messages)
    matching = 0
    for ours, theirs in zip(stored, client, strict=False):
        if not _same(ours, theirs):
            break
        matching += 1
    if matching == len(client) == len(stored):
        return Plan(PlanKind.SAY, newest)
    if matching == len(client) == len(stored) - 1:
        if _same_text(stored[-1].user, newest):
            return Plan(PlanKind.REGENERATE, newest)
        return Plan(PlanKind.EDIT, newest)
    return Plan(PlanKind.BRANCH, newest, keep=matching, replay=tuple(client[matching:]))


def fingerprint(scope: str, messages: list[ClientMessage]) -> str:
    """Names a conversation by its first user line (and greeting, if the client shows
    one) within `scope` (workspace, caller and target): what every later request of
    the same conversation resends unchanged."""
    opening: list[str] = []
    for message in messages:
        if message.role == "system":
            continue
        opening.append(f"{message.role}:{_normal(message.content)}")
        if message.role == "user":
            break
    digest = hashlib.sha256(scope.encode())
    for line in opening:
        digest.update(b"\x00" + line.encode())
    return digest.hexdigest()


def _same(ours: Exchange, theirs: Exchange) -> bool:
    return _same_text(ours.user, theirs.user) and _same_text(ours.assistant, theirs.assistant)


def _same_text(a: str, b: str) -> bool:
    return _normal(a) == _normal(b)


def _normal(text: str) -> str:
    # Clients trim, rewrap and re-space replies they show; none of that is an edit.
    return " ".join(text.split())
