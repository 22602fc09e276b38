"""narrate: stream the reply from the model; a story reply ends with choices.

The same stage writes a reply again when output safety asks for a rewrite
(`rewrite`): the new reply streams, splits its choices and tags and is checked
again exactly like the first one.

A story reply that ends without 2 to 4 options, from a model whose server
decodes under a JSON schema, gets them from a second short call under that
schema (`choice_schema`): the prose has streamed by then, so nothing the player
watches waits for it, and the options are guaranteed by structure, not hoped for.

A reply that starts repeating itself (a small model's loop) is stopped there and
written once more with the model told to repeat less (`ReplyShape.retry`); if
that one loops too, it is kept up to where the repetition began. The shape of
the reply (choices wanted, the kind's brief for small models) rides beside the
call for the adapters that can use it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from taleweaver.domain.choices import ChoiceStreamSplitter, split_tags
from taleweaver.domain.errors import BudgetExceeded, ModelError
from taleweaver.domain.flags import LOOP_RETRY
from taleweaver.domain.json_values import UNSTORABLE_CHARS
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.repetition import LoopDetector
from taleweaver.domain.sessions import SessionState
from taleweaver.engine.context import TurnContext
from taleweaver.engine.models import call_scope
from taleweaver.llm import ChatModel, ModelRouter, task_model
from taleweaver.llm.base import Prefillable
from taleweaver.llm.choice_schema import CHOICE_TOKENS, CHOICES_REQUEST, read_choices
from taleweaver.llm.router import served_by, structured_choices
from taleweaver.llm.shape import Brief, ReplyShape, shaped

log = logging.getLogger(__name__)

LOOP_RETRY_REASON = "the reply repeated itself; writing it again"
# What a reply offers at most when its model can be held to the options schema.
MAX_STRUCTURED_CHOICES = 4

BriefPrompt = Callable[[SessionState], Brief]


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
        brief: BriefPrompt | None = None,
    ) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self.with_choices = with_choices
        self.tagged_choices = tagged_choices
        self.brief = brief

    async def run(self, ctx: TurnContext) -> None:
        await self._write(ctx, self.model, ctx.prompt)

    async def rewrite(self, ctx: TurnContext, note: ChatMessage, model: ChatModel) -> None:
        """Write the reply again with `note` after the prompt, replacing the one in `ctx`."""
        ctx.emit("rewrite", {"reason": note.content})
        await self._write(ctx, model, [*ctx.prompt, note])

    async def prefill(self, ctx: TurnContext) -> None:
        """Let the narrator's model evaluate `ctx.prompt` but its last message (the
        player's words) ahead of the turn that sends it, where the model can: a local
        model then reads only the player's words when the turn comes."""
        model = task_model(self.model, "narrate", call_scope(ctx))
        if isinstance(model, Prefillable):
            with shaped(self._shape(ctx)):
                await model.prefill(ctx.prompt[:-1])

    def _shape(self, ctx: TurnContext) -> ReplyShape:
        brief = self.brief(ctx.session) if self.brief is not None else None
        return ReplyShape(choices=self.with_choices, brief=brief)

    async def _write(self, ctx: TurnContext, route: ChatModel, prompt: list[ChatMessage]) -> None:
        scope = call_scope(ctx)
        shape = self._shape(ctx)
        # The session's or character's model when it chose one; the route's otherwise.
        model = task_model(route, "narrate", scope)
        # With the loop_retry flag off, a looping first try is kept as a retry would be.
        retry = ctx.flags.enabled(LOOP_RETRY)
        if await self._stream(ctx, model, prompt, shape, stop_on_loop=retry):
            ctx.emit("rewrite", {"reason": LOOP_RETRY_REASON})
            ctx.tokens = 0
            model = task_model(route, "narrate", scope)
            await self._stream(ctx, model, prompt, replace(shape, retry=True), stop_on_loop=False)
        await self._budgets(ctx, route)

    async def _stream(
        self,
        ctx: TurnContext,
        model: ChatModel,
        prompt: list[ChatMessage],
        shape: ReplyShape,
        *,
        stop_on_loop: bool,
    ) -> bool:
        """Stream one reply into `ctx`; True when it looped and was stopped for a retry.

        Without `stop_on_loop`, a looping reply is read to its end (its choices come
        last) but shown and kept only up to where it started repeating.
        """
        ctx.model_name = model.name
        splitter = ChoiceStreamSplitter() if self.with_choices else None
        loops = LoopDetector()
        raw: list[str] = []
        with shaped(shape):
            stream = model.stream(prompt, max_tokens=self.max_tokens)
            try:
                async for piece in stream:
                    ctx.tokens += 1
                    if UNSTORABLE_CHARS.search(piece):  # NUL, lone surrogate: no store keeps it
                        piece = UNSTORABLE_CHARS.sub("", piece)
                    raw.append(piece)
                    shown = splitter.feed(piece) if splitter else piece
                    if not shown or loops.looping:
                        continue
                    if loops.feed(shown):
                        if stop_on_loop:
                            return True
                        continue
                    ctx.emit("token", {"text": shown})
            finally:
                # Stopped early (a loop): the model stops now, before any retry asks it.
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()
        ctx.model_name = model.name  # after a fallback: the model that told it
        ctx.choices, ctx.choice_tags = [], []
        if splitter is None:
            ctx.reply_text = "".join(raw).strip()
        else:
            rest, parsed = splitter.finish()
            if rest and not loops.looping and not loops.feed(rest):
                ctx.emit("token", {"text": rest})
            ctx.reply_text, ctx.choices = parsed.prose, parsed.choices
            if self.tagged_choices:
                ctx.choices, ctx.choice_tags = split_tags(ctx.choices)
        if loops.looping:
            ctx.reply_text = loops.kept().strip()
        writer = served_by(model)
        if self.with_choices and not self.tagged_choices and structured_choices(writer):
            await self._structured_choices(ctx, writer, prompt)
        self._settle(ctx, model)
        return False

    async def _structured_choices(
        self, ctx: TurnContext, model: ChatModel, prompt: list[ChatMessage]
    ) -> None:
        """2 to 4 options: the first four of a longer list, or, where the reply gave
        fewer than two, those of a second call that the server decodes under the
        options schema. Its failure costs the options, never the reply."""
        if len(ctx.choices) > MAX_STRUCTURED_CHOICES:
            ctx.choices = ctx.choices[:MAX_STRUCTURED_CHOICES]
            return
        if len(ctx.choices) >= 2 or not ctx.reply_text:
            return
        asked = [
            *prompt,
            ChatMessage("assistant", ctx.reply_text),
            ChatMessage("user", CHOICES_REQUEST),
        ]
        pieces: list[str] = []
        with shaped(ReplyShape(choices_only=True)):
            stream = model.stream(asked, max_tokens=CHOICE_TOKENS)
            try:
                async for piece in stream:
                    ctx.tokens += 1
                    pieces.append(piece)
            except (ModelError, BudgetExceeded) as exc:
                log.warning("%s wrote no options for the reply: %s", model.name, exc.detail)
                return
            finally:
                close = getattr(stream, "aclose", None)
                if close is not None:
                    await close()
        ctx.choices = read_choices("".join(pieces)) or ctx.choices

    def _settle(self, ctx: TurnContext, model: ChatModel) -> None:
        if not ctx.reply_text:
            if ctx.choices:  # a reply that is only choices still reads as a reply
                ctx.reply_text = "What do you do?"
            else:
                raise ModelError(f"{model.name} returned an empty reply")
        if self.with_choices:
            ctx.emit("choices", {"choices": _numbered(ctx.choices)})

    async def _budgets(self, ctx: TurnContext, route: ChatModel) -> None:
        scope = call_scope(ctx)
        if isinstance(route, ModelRouter):
            for budget in await route.budget_status(scope):
                if budget.level != "ok":
                    ctx.emit("budget", budget.to_dict())


def _numbered(choices: list[str]) -> list[dict[str, object]]:
    return [{"number": i, "text": text} for i, text in enumerate(choices, start=1)]
