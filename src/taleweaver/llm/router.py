"""The model router: which model runs a task, and what happens when it fails.

Each task (narrate, extract, safety, summarize, embed) has a chain of models,
first choice first; a session or a character may put its own choice in front.
A call goes down the chain: a provider whose circuit is open is skipped, a
retryable failure is tried again after a backoff (or the provider's
Retry-After), any other failure moves on to the next model. Once a model has
streamed text to the caller there is no going back: a later failure is the
caller's error, so a reply never mixes two models' words. Every call that used
tokens is written to the usage ledger with its cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from taleweaver.domain.errors import InvalidInput, ModelError, ModelUnavailable
from taleweaver.domain.prompt import ChatMessage
from taleweaver.llm.base import (
    ChatModel,
    Prefillable,
    ReplyText,
    Warmable,
    WritesChoices,
    as_backend,
)
from taleweaver.llm.breaker import CircuitBreaker
from taleweaver.llm.budgets import Budgets, BudgetStatus
from taleweaver.llm.deadline import Deadlines, Watch, close
from taleweaver.llm.health import probe, unserved
from taleweaver.llm.ledger import Outcome, UsageLedger, UsageRecord
from taleweaver.llm.pricing import cost_usd, estimate_prompt_tokens, estimate_tokens
from taleweaver.llm.retry import RetryPolicy
from taleweaver.llm.routing import CallScope, Completion, Provider, RoutedModel
from taleweaver.llm.telemetry import call_span, end_call, observe_call
from taleweaver.llm.types import TASKS, Task, Usage
from taleweaver.observability import observe_fallback, observe_retry
from taleweaver.observability.tracing import fail

__all__ = [
    "CHAT_TASKS",
    "BoundModel",
    "ModelRouter",
    "served_by",
    "structured_choices",
    "task_model",
]

log = logging.getLogger(__name__)

CHAT_TASKS: tuple[Task, ...] = tuple(t for t in TASKS if t != "embed")
# A client error says the request or the configuration is wrong, not that the
# provider is unwell: it moves on down the chain but does not trip the breaker.
_UNHEALTHY_CLIENT_ERRORS = frozenset({408, 409, 425, 429})


class ModelRouter:
    """Routes each task's calls over its chain of models; is itself a `ChatModel`
    (narration, no scope) so that it can stand wherever one model could."""

    def __init__(
        self,
        models: Mapping[str, RoutedModel],
        routes: Mapping[str, Sequence[str]],
        *,
        ledger: UsageLedger | None = None,
        budgets: Budgets | None = None,
        health_timeout: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.models = dict(models)
        self.routes = {task: list(chain) for task, chain in routes.items()}
        for task, chain in self.routes.items():
            for alias in chain:
                if alias not in self.models:
                    raise ValueError(f"route {task} names {alias!r}, which is not a model")
        self.providers: dict[str, Provider] = {}
        for routed in self.models.values():
            self.providers.setdefault(routed.provider.name, routed.provider)
        self.ledger = ledger
        self.budgets = budgets
        self.health_timeout = health_timeout
        self._sleep = sleep
        narrators = self.routes.get("narrate") or []
        self.name = self.models[narrators[0]].name if narrators else "no model"

    @classmethod
    def single(
        cls,
        model: ChatModel,
        *,
        ledger: UsageLedger | None = None,
        budgets: Budgets | None = None,
        deadlines: Deadlines | None = None,
    ) -> ModelRouter:
        """A model handed in directly serves every chat task as it is: no retries,
        no breaker; deadlines and accounting still apply."""
        backend = as_backend(model)
        provider_name, _, model_id = model.name.partition(":")
        provider = Provider(
            name=provider_name,
            kind="direct",
            check=backend.check,
            close=backend.aclose,
            breaker=CircuitBreaker(failures=2**31),
            retry=RetryPolicy(attempts=1),
            deadlines=deadlines or Deadlines(),
        )
        routed = RoutedModel(model.name, model.name, provider, model_id or model.name, backend)
        routes: dict[str, list[str]] = {t: [model.name] for t in CHAT_TASKS}
        return cls({model.name: routed}, routes, ledger=ledger, budgets=budgets)

    # --- choosing ---------------------------------------------------------------------------

    def chain(self, task: Task, scope: CallScope | None = None) -> list[RoutedModel]:
        """The models that may serve `task` for `scope`, in the order they are tried."""
        aliases = list(self.routes.get(task) or [])
        choice = scope.overrides.get(task) if scope is not None else None
        if choice:
            if choice not in self.models:
                known = ", ".join(sorted(self.models))
                raise InvalidInput(
                    f"this session asks for model {choice!r} to {task}, which is not "
                    f"configured (configured: {known})"
                )
            aliases = [choice, *(a for a in aliases if a != choice)]
        return [self.models[alias] for alias in aliases]

    def bind(self, task: Task, scope: CallScope | None = None) -> BoundModel:
        return BoundModel(self, task, scope or CallScope())

    # --- as a ChatModel -----------------------------------------------------------------------

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int) -> AsyncIterator[str]:
        return self.bind("narrate").stream(messages, max_tokens=max_tokens)

    async def check(self) -> None:
        """`ModelUnavailable` unless every chat task has a model whose provider answers."""
        problem = self.unserved(await self.health())
        if problem is not None:
            raise ModelUnavailable(problem)

    async def warm(self) -> None:
        """Load every model that must be loaded before it answers (local ones)."""
        loads = []
        for routed in self.models.values():
            chat: object = routed.chat  # any backend may also be Warmable
            if isinstance(chat, Warmable):
                loads.append(chat.warm())
        await asyncio.gather(*loads)

    @property
    def prefills(self) -> bool:
        """Whether any model here can evaluate a prompt's opening ahead (`prefill`)."""
        return any(isinstance(routed.chat, Prefillable) for routed in self.models.values())

    async def aclose(self) -> None:
        for provider in self.providers.values():
            try:
                await provider.close()
            except Exception:  # closing must go on for the others
                log.exception("closing provider %s failed", provider.name)
        if self.ledger is not None:
            await self.ledger.flush()

    # --- calling -------------------------------------------------------------------------------

    async def complete(
        self,
        task: Task,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        scope: CallScope | None = None,
    ) -> Completion:
        """A whole reply at once, for tasks that need no streaming (extract, summarize...)."""
        model = self.bind(task, scope)
        text = "".join([piece async for piece in model.stream(messages, max_tokens=max_tokens)])
        return Completion(text, model.name)

    async def _stream(
        self, bound: BoundModel, messages: Sequence[ChatMessage], max_tokens: int
    ) -> AsyncGenerator[str, None]:
        # One generator over the whole chain, with each attempt's loop inline: every
        # layer between the socket and the caller costs time on every token.
        if self.budgets is not None:
            await self.budgets.enforce(bound.scope.workspace_id, bound.scope.session_id)
        failures: list[ModelError] = []
        for routed in bound.chain:
            chat, provider = routed.chat, routed.provider
            assert chat is not None, f"{routed.alias} is not a chat model"
            tokens = min(max_tokens, routed.max_tokens or max_tokens)
            attempt = 0
            while True:
                attempt += 1
                if not provider.breaker.allow():
                    failures.append(_circuit_open(routed))
                    break
                reply = ReplyText()
                outcome: Outcome = "failed"
                failure: ModelError | None = None
                call = call_span(routed, bound.task, bound.scope, "chat", tokens)
                items = chat.generate(messages, max_tokens=tokens)
                watch = Watch(provider.deadlines, routed.name)
                clock = watch.clock
                chars = 0
                try:
                    # Once a token: `watch.next` inlined, the count kept in a local.
                    # `waiting` is set only while this waits on the model, so the
                    # time the caller spends on a token is never the model's.
                    try:
                        watch.waiting = clock()
                        async for item in items:
                            watch.waiting = None
                            watch.got_first = True
                            if type(item) is str:
                                if item:
                                    if not chars:
                                        bound.name = routed.name
                                        reply.saw_text = True
                                    chars += len(item)
                                    yield item
                            else:
                                reply.take(item)
                            watch.waiting = clock()
                    except asyncio.CancelledError as exc:
                        watch.raise_if_fired(exc)
                        raise
                    finally:
                        watch.waiting = None
                    reply.text_chars = chars
                    rest = _rest_of(routed, reply)
                    if rest is not None:
                        bound.name = routed.name
                        yield rest
                    outcome = "ok"
                except ModelError as exc:
                    _count(provider, exc)
                    fail(call, exc)
                    if reply.saw_text:  # the caller has the start of this model's reply
                        raise
                    failure = exc
                except BaseException:  # cancelled, or the caller stopped reading
                    outcome = "cancelled"
                    provider.breaker.release()
                    raise
                finally:
                    watch.stop()
                    await close(items)
                    reply.text_chars = max(reply.text_chars, chars)
                    end_call(call, self._account(routed, bound, messages, reply, outcome))
                if failure is None:
                    provider.breaker.success()
                    return
                delay = _retry_delay(provider, attempt, failure)
                log.warning(
                    "%s failed to %s (try %d)%s: %s",
                    routed.name,
                    bound.task,
                    attempt,
                    f", again in {delay:.2f} s" if delay is not None else "",
                    failure.detail,
                )
                if delay is None:
                    failures.append(failure)
                    observe_fallback(provider.name, bound.task)
                    break
                observe_retry(provider.name, bound.task)
                await self._sleep(delay)
        raise _exhausted(bound.task, failures)

    def _account(
        self,
        routed: RoutedModel,
        bound: BoundModel,
        messages: Sequence[ChatMessage],
        reply: ReplyText,
        outcome: Outcome,
    ) -> Usage | None:
        """Count and record one call; its usage (estimated when the provider said
        nothing), or None when nothing came back."""
        reported = reply.finish.usage if reply.finish is not None else None
        used_chars = reply.text_chars + sum(len(r) for r in reply.reasoning)
        if reported is None and not used_chars and outcome != "ok":
            observe_call(routed, bound.task, outcome, None)
            return None  # nothing came back: nothing to pay for
        usage = reported or Usage(estimate_prompt_tokens(messages), estimate_tokens(used_chars))
        observe_call(routed, bound.task, outcome, usage)
        if self.ledger is not None:
            self._record(routed, bound.task, bound.scope, usage, outcome, reported is None)
        return usage

    def _record(
        self,
        routed: RoutedModel,
        task: str,
        scope: CallScope,
        usage: Usage,
        outcome: Outcome,
        estimated: bool,
    ) -> None:
        assert self.ledger is not None
        self.ledger.record_soon(
            UsageRecord(
                workspace_id=scope.workspace_id,
                session_id=scope.session_id,
                turn_id=scope.turn_id,
                task=task,
                provider=routed.provider.name,
                model=routed.alias,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=cost_usd(routed.price, usage),
                outcome=outcome,
                estimated=estimated,
            )
        )

    async def embed(
        self, texts: Sequence[str], *, scope: CallScope | None = None
    ) -> list[list[float]]:
        """Vectors for `texts` from the embed route, with the same fallbacks and retries."""
        scope = scope or CallScope()
        chain = self.chain("embed", scope)
        if not chain:
            raise ModelUnavailable("no embedding model is configured: set routes.embed")
        if self.budgets is not None:
            await self.budgets.enforce(scope.workspace_id, scope.session_id)
        failures: list[ModelError] = []
        for routed in chain:
            embedder, provider = routed.embedder, routed.provider
            assert embedder is not None, f"{routed.alias} is not an embedding model"
            attempt = 0
            while True:
                attempt += 1
                if not provider.breaker.allow():
                    failures.append(_circuit_open(routed))
                    break
                try:
                    async with asyncio.timeout(provider.deadlines.total):
                        result = await embedder.embed(texts)
                except TimeoutError:
                    provider.breaker.failure()
                    total = provider.deadlines.total
                    failures.append(ModelUnavailable(f"{routed.name} took over {total:g} s"))
                    break
                except ModelError as exc:
                    _count(provider, exc)
                    delay = _retry_delay(provider, attempt, exc)
                    if delay is None:
                        failures.append(exc)
                        break
                    await self._sleep(delay)
                    continue
                except BaseException:
                    provider.breaker.release()
                    raise
                provider.breaker.success()
                usage = result.usage or Usage(estimate_tokens(sum(map(len, texts))), 0)
                observe_call(routed, "embed", "ok", usage)
                if self.ledger is not None:
                    self._record(routed, "embed", scope, usage, "ok", result.usage is None)
                return result.vectors
        raise _exhausted("embed", failures)

    # --- what users see -------------------------------------------------------------------------

    async def budget_status(self, scope: CallScope) -> list[BudgetStatus]:
        if self.budgets is None or not self.budgets.configured:
            return []
        return await self.budgets.status(scope.workspace_id, scope.session_id)

    async def health(self) -> dict[str, dict[str, Any]]:
        """Each provider's state: its check, how long it took, and its breaker."""
        names = list(self.providers)
        reports = await asyncio.gather(
            *(
                probe(
                    self.providers[name],
                    [a for a, m in self.models.items() if m.provider.name == name],
                    self.health_timeout,
                )
                for name in names
            )
        )
        return dict(zip(names, reports, strict=True))

    def unserved(self, health: Mapping[str, Mapping[str, Any]]) -> str | None:
        """Given `health()`, why some chat task has no working model, or None."""
        chat_routes: dict[str, list[str]] = {t: self.routes.get(t) or [] for t in CHAT_TASKS}
        providers = {alias: m.provider.name for alias, m in self.models.items()}
        return unserved(chat_routes, providers, health)

    def describe(self) -> dict[str, Any]:
        """The models and routes, as the API and CLI show them (no secrets)."""
        models = [
            {
                "alias": alias,
                "name": routed.name,
                "provider": routed.provider.name,
                "kind": routed.provider.kind,
                "model": routed.model,
                "type": "chat" if routed.chat is not None else "embedding",
                "price": {
                    "input_usd_per_mtok": routed.price.input,
                    "output_usd_per_mtok": routed.price.output,
                },
                "tasks": [t for t in TASKS if alias in (self.routes.get(t) or [])],
            }
            for alias, routed in self.models.items()
        ]
        return {"models": models, "routes": {t: list(self.routes.get(t) or []) for t in TASKS}}


class BoundModel:
    """One task's model for one scope: a `ChatModel` whose `name` is the first
    choice until a model has streamed, then the model that actually served."""

    def __init__(self, router: ModelRouter, task: Task, scope: CallScope) -> None:
        self.router = router
        self.task = task
        self.scope = scope
        self.chain = router.chain(task, scope)
        self.name = self.chain[0].name if self.chain else "no model"

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int) -> AsyncIterator[str]:
        return self.router._stream(self, messages, max_tokens)

    async def check(self) -> None:
        await self.router.check()

    async def prefill(self, messages: Sequence[ChatMessage]) -> None:
        """The first choice evaluates the prompt's opening ahead, where it can (a local
        model); nothing is sent to any other, so nothing is paid for."""
        chat: object = self.chain[0].chat if self.chain else None  # any backend may be one
        if isinstance(chat, Prefillable):
            await chat.prefill(messages)

    async def aclose(self) -> None:
        return None  # the router owns the connections


def task_model(model: ChatModel, task: Task, scope: CallScope) -> ChatModel:
    """The model that runs `task` for `scope`: routed when `model` is a router, else
    the model itself (a bare model, as tests hand in, serves every task)."""
    if isinstance(model, ModelRouter):
        return model.bind(task, scope)
    return model


def served_by(model: ChatModel) -> ChatModel:
    """The model that served `model`'s last reply, alone: a follow-up about that
    reply goes to the model that wrote it, with no fallback to another."""
    if not isinstance(model, BoundModel):
        return model
    pinned = BoundModel(model.router, model.task, model.scope)
    pinned.chain = [r for r in model.chain if r.name == model.name][:1] or model.chain[:1]
    return pinned


def structured_choices(model: ChatModel) -> bool:
    """Whether `model` (a route: its first choice) writes a choices-only call under
    the options schema."""
    chat: object = model
    if isinstance(model, BoundModel):
        chat = model.chain[0].chat if model.chain else None
    return isinstance(chat, WritesChoices) and chat.structured_choices


def _rest_of(routed: RoutedModel, reply: ReplyText) -> str | None:
    """What is left to say once the stream ended: a reply only reasoned (thinking
    models), or an error when the stream never finished or said nothing."""
    if reply.finish is None:
        raise ModelError(f"{routed.name} ended without finishing", retryable=True)
    rest = reply.leftover()
    if not reply.saw_text:
        raise ModelError(f"{routed.name} finished ({reply.finish.reason}) without any text")
    return rest


def _retry_delay(provider: Provider, attempt: int, error: ModelError) -> float | None:
    if not error.retryable:
        return None
    return provider.retry.delay(attempt, error.retry_after)


def _count(provider: Provider, error: ModelError) -> None:
    status = error.status
    if status is not None and 400 <= status < 500 and status not in _UNHEALTHY_CLIENT_ERRORS:
        provider.breaker.release()
    else:
        provider.breaker.failure()


def _circuit_open(routed: RoutedModel) -> ModelUnavailable:
    wait = routed.provider.breaker.retry_in()
    return ModelUnavailable(
        f"{routed.name} skipped: provider {routed.provider.name} keeps failing "
        f"(next try in {wait:.0f} s)"
    )


def _exhausted(task: str, failures: list[ModelError]) -> ModelError:
    if not failures:
        return ModelUnavailable(f"no model is configured to {task}")
    if len(failures) == 1:
        return failures[0]
    detail = f"no model could {task}: " + "; ".join(f.detail for f in failures)
    if all(isinstance(f, ModelUnavailable) for f in failures):
        return ModelUnavailable(detail)
    return ModelError(detail)
