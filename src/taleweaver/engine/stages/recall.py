"""recall: build the context pack the narrator sees, within a budget, with a trace.

For now the pack is the system prompt plus recent history; world memory adds
lorebook entries, retrieval hits and summaries into the same pack and trace.
"""

from __future__ import annotations

from collections.abc import Callable

from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionState
from taleweaver.engine.context import TurnContext
from taleweaver.store.queries import Queries

CONTINUE_PROMPT = "(Continue the story from where it left off.)"

SystemPrompt = Callable[[SessionState], str]


class Recall:
    name = "recall"
    runs_when_halted = False

    def __init__(
        self,
        queries: Queries,
        system_prompt: SystemPrompt,
        *,
        history_messages: int = 40,
        budget_chars: int = 12_000,
    ) -> None:
        self.queries = queries
        self.system_prompt = system_prompt
        self.history_messages = history_messages
        self.budget_chars = budget_chars

    async def run(self, ctx: TurnContext) -> None:
        system = self.system_prompt(ctx.session)
        ctx.context_trace.append({"source": "system", "reason": f"{ctx.session.kind} prompt"})
        history = await self.queries.history(
            ctx.session.id, before_turn=ctx.number, limit=self.history_messages
        )
        current = ctx.input.text if ctx.input.text is not None else CONTINUE_PROMPT
        budget = self.budget_chars - len(system) - len(current)
        kept: list[ChatMessage] = []
        # Newest first, so the budget cuts the oldest messages.
        for message in reversed(history):
            cost = len(message["content"])
            ref = f"turn {message['turn_number']} {message['role']}"
            if cost > budget:
                ctx.context_trace.append({"source": "history", "ref": ref, "cut": "over budget"})
                continue
            budget -= cost
            kept.append(
                ChatMessage(
                    "user" if message["role"] == "player" else "assistant", message["content"]
                )
            )
            ctx.context_trace.append({"source": "history", "ref": ref, "reason": "recent"})
        ctx.prompt = [
            ChatMessage("system", system),
            *reversed(kept),
            ChatMessage("user", current),
        ]
