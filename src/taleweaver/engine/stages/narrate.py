"""narrate: stream the reply from the model; a story reply ends with choices.

The same stage writes a reply again when output safety asks for a rewrite
(`rewrite`): the new reply streams, splits its choices and tags and is checked
again exactly like the first one.
"""

from __future__ import annotations

from taleweaver.domain.choices import ChoiceStreamSplitter, split_tags
from taleweaver.domain.errors import ModelError
from taleweaver.domain.prompt import ChatMessage
from taleweaver.engine.context import TurnContext
from taleweaver.engine.models import call_scope
from taleweaver.llm import ChatModel, ModelRouter, task_model


class Narrate:
    name = "narrate"
    runs_when_halted = False

    def __init__(
        self,
        model: ChatModel,
        *,
        max_tokens: int,
        with_choices: bool,
        tagged_choices: bool = False,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.with_choices = with_choices
        self.tagged_choices = tagged_choices

    async def run(self, ctx: TurnContext) -> None:
        await self._write(ctx, self.model, ctx.prompt)

    async def rewrite(self, ctx: TurnContext, note: ChatMessage, model: ChatModel) -> None:
        """Write the reply again with `note` after the prompt, replacing the one in `ctx`."""
        ctx.emit("rewrite", {"reason": note.content})
        await self._write(ctx, model, [*ctx.prompt, note])

    async def _write(self, ctx: TurnContext, route: ChatModel, prompt: list[ChatMessage]) -> None:
        scope = call_scope(ctx)
        # The session's or character's model when it chose one; the route's otherwise.
        model = task_model(route, "narrate", scope)
        ctx.model_name = model.name
        splitter = ChoiceStreamSplitter() if self.with_choices else None
        raw: list[str] = []
        async for piece in model.stream(prompt, max_tokens=self.max_tokens):
            ctx.tokens += 1
            raw.append(piece)
            shown = splitter.feed(piece) if splitter else piece
            if shown:
                ctx.emit("token", {"text": shown})
        ctx.model_name = model.name  # after a fallback: the model that told it
        ctx.choices, ctx.choice_tags = [], []
        if splitter is None:
            ctx.reply_text = "".join(raw).strip()
        else:
            rest, parsed = splitter.finish()
            if rest:
                ctx.emit("token", {"text": rest})
            ctx.reply_text, ctx.choices = parsed.prose, parsed.choices
            if self.tagged_choices:
                ctx.choices, ctx.choice_tags = split_tags(ctx.choices)
        if not ctx.reply_text:
            if ctx.choices:  # a reply that is only choices still reads as a reply
                ctx.reply_text = "What do you do?"
            else:
                raise ModelError(f"{model.name} returned an empty reply")
        if self.with_choices:
            ctx.emit("choices", {"choices": _numbered(ctx.choices)})
        if isinstance(route, ModelRouter):
            for budget in await route.budget_status(scope):
                if budget.level != "ok":
                    ctx.emit("budget", budget.to_dict())


def _numbered(choices: list[str]) -> list[dict[str, object]]:
    return [{"number": i, "text": text} for i, text in enumerate(choices, start=1)]
