"""Building the router from the model configuration: one pooled client per
provider, one adapter per model, each provider with its own breaker and policies."""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from taleweaver.domain.errors import InvalidInput
from taleweaver.llm.anthropic import ANTHROPIC_URL, AnthropicModel, anthropic_headers
from taleweaver.llm.base import ChatBackend, Embedder, as_backend
from taleweaver.llm.breaker import CircuitBreaker
from taleweaver.llm.budgets import Budgets
from taleweaver.llm.config import (
    BUILTIN_PROVIDER_KINDS,
    ModelCatalog,
    ModelSettings,
    ProviderSettings,
    RouterSettings,
)
from taleweaver.llm.deadline import Deadlines
from taleweaver.llm.embedded import EmbeddedModel
from taleweaver.llm.http import make_client
from taleweaver.llm.ledger import UsageLedger
from taleweaver.llm.ollama import OLLAMA_URL, OllamaEmbeddings, OllamaModel, list_ollama_models
from taleweaver.llm.openai_compat import (
    OpenAICompatibleModel,
    OpenAIEmbeddings,
    bearer,
    list_openai_models,
)
from taleweaver.llm.retry import RetryPolicy
from taleweaver.llm.router import CHAT_TASKS, ModelRouter
from taleweaver.llm.routing import Provider, RoutedModel
from taleweaver.llm.scripted import ScriptedModel
from taleweaver.llm.text_completion import TextCompletionModel

__all__ = [
    "OPENAI_URL",
    "PROVIDER_KINDS",
    "BuiltProvider",
    "ProviderFactory",
    "ProviderParts",
    "build_router",
    "check_provider_kinds",
    "register_provider_kind",
    "resolve_routes",
]

OPENAI_URL = "https://api.openai.com/v1"
_BUNDLED = "SmolLM2-135M-Instruct"

ChatFactory = Callable[[str, ModelSettings], ChatBackend]
EmbedFactory = Callable[[str, ModelSettings], Embedder]


@dataclass(slots=True)
class BuiltProvider:
    """One configured provider: its record for the router, and how it makes the
    chat model (and the embedder, for kinds that have one) of each model on it."""

    provider: Provider
    chat: ChatFactory
    embed: EmbedFactory | None = None


def check_provider_kinds(catalog: ModelCatalog) -> None:
    """Refuse a configured provider whose kind is neither built in nor added by an
    installed plugin, naming both lists (and the likely intended kind)."""
    for name, cfg in catalog.providers.items():
        if cfg.kind in PROVIDER_KINDS:
            continue
        builtin = ", ".join(sorted(BUILTIN_PROVIDER_KINDS))
        added = ", ".join(sorted(set(PROVIDER_KINDS) - BUILTIN_PROVIDER_KINDS)) or "none"
        close = difflib.get_close_matches(cfg.kind, list(PROVIDER_KINDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidInput(
            f"providers.{name}.kind: {cfg.kind!r} is no provider kind{hint}; built in: "
            f"{builtin}; added by installed plugins: {added}"
        )


def build_router(catalog: ModelCatalog, *, ledger: UsageLedger | None = None) -> ModelRouter:
    check_provider_kinds(catalog)
    built = {name: _provider(name, cfg, catalog.router) for name, cfg in catalog.providers.items()}
    routes = resolve_routes(catalog)
    embedding = set(routes["embed"])
    models: dict[str, RoutedModel] = {}
    for alias, cfg in catalog.models.items():
        maker = built[cfg.provider]
        routed = RoutedModel(
            alias=alias,
            name=f"{cfg.provider}:{cfg.model or alias}",
            provider=maker.provider,
            model=cfg.model,
            price=cfg.price,
            max_tokens=cfg.max_tokens,
        )
        if alias in embedding:
            if maker.embed is None:  # a plugin's kind (the settings refuse built-in ones)
                raise InvalidInput(
                    f"routes.embed: {alias!r} is on provider {cfg.provider!r} "
                    f"({maker.provider.kind}), which has no embeddings"
                )
            routed.embedder = maker.embed(routed.name, cfg)
        if alias not in embedding or any(alias in routes[t] for t in CHAT_TASKS):
            routed.chat = maker.chat(routed.name, cfg)
            routed.name = routed.chat.name
        models[alias] = routed
    budgets = Budgets(catalog.budgets, ledger) if ledger is not None else None
    return ModelRouter(
        models,
        routes,
        ledger=ledger,
        budgets=budgets,
        health_timeout=catalog.router.health_timeout,
    )


def resolve_routes(catalog: ModelCatalog) -> dict[str, list[str]]:
    """Each task's chain: its own, else `default`, else narration's, else the first
    chat model. Embeddings only ever use their own route."""
    routes = catalog.routes
    embed = list(routes.embed)
    first = next((a for a in catalog.models if a not in embed), None)
    fallback = list(routes.default or routes.narrate or ([first] if first else []))
    resolved: dict[str, list[str]] = {
        task: list(getattr(routes, task) or fallback) for task in CHAT_TASKS
    }
    resolved["embed"] = embed
    return resolved


def _policies(
    cfg: ProviderSettings, defaults: RouterSettings
) -> tuple[Deadlines, RetryPolicy, CircuitBreaker]:
    timeouts = cfg.timeouts or defaults.timeouts
    retry = cfg.retry or defaults.retry
    breaker = cfg.breaker or defaults.breaker
    return (
        Deadlines(timeouts.first_token, timeouts.idle, timeouts.total),
        RetryPolicy(
            attempts=retry.attempts,
            base_delay=retry.base_delay,
            max_delay=retry.max_delay,
            jitter=retry.jitter,
            max_retry_after=retry.max_retry_after,
        ),
        CircuitBreaker(
            failures=breaker.failures,
            window=breaker.window,
            cooldown=breaker.cooldown,
            half_open_probes=breaker.half_open_probes,
        ),
    )


@dataclass(frozen=True, slots=True)
class ProviderParts:
    """What every kind of provider is built from: its name and settings, the policies
    it runs under, its credentials, and a pooled HTTP client on request."""

    name: str
    cfg: ProviderSettings
    deadlines: Deadlines
    retry: RetryPolicy
    breaker: CircuitBreaker
    connect_timeout: float
    key: str | None  # the API key, if any
    extra: dict[str, str]  # extra headers, as configured
    secrets: tuple[str, ...]  # every value errors and logs must never show

    def provider(
        self, check: Callable[[], Awaitable[object]], close: Callable[[], Awaitable[None]]
    ) -> Provider:
        return Provider(
            name=self.name,
            kind=self.cfg.kind,
            check=check,
            close=close,
            breaker=self.breaker,
            retry=self.retry,
            deadlines=self.deadlines,
        )

    def client(self, base_url: str, headers: dict[str, str]) -> httpx.AsyncClient:
        # The read timeout is only a backstop under the router's own deadlines.
        return make_client(
            base_url,
            headers=headers | self.extra,
            connect_timeout=self.connect_timeout,
            read_timeout=self.deadlines.total,
        )


ProviderFactory = Callable[[ProviderParts], BuiltProvider]


def _provider(name: str, cfg: ProviderSettings, defaults: RouterSettings) -> BuiltProvider:
    deadlines, retry, breaker = _policies(cfg, defaults)
    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else None
    extra = {header: value.get_secret_value() for header, value in cfg.headers.items()}
    parts = ProviderParts(
        name=name,
        cfg=cfg,
        deadlines=deadlines,
        retry=retry,
        breaker=breaker,
        connect_timeout=(cfg.timeouts or defaults.timeouts).connect,
        key=key,
        extra=extra,
        secrets=tuple(v for v in (key, *extra.values()) if v),
    )
    return PROVIDER_KINDS[cfg.kind](parts)  # check_provider_kinds found it


def _openai(parts: ProviderParts) -> BuiltProvider:
    cfg, name, secrets = parts.cfg, parts.name, parts.secrets
    http = parts.client(cfg.base_url or OPENAI_URL, bearer(parts.key))

    def chat(shown: str, model: ModelSettings) -> ChatBackend:
        if model.template is not None:
            return TextCompletionModel(
                model=model.model,
                template=model.template,
                client=http,
                secrets=secrets,
                name=shown,
                include_usage=cfg.include_usage,
                temperature=model.temperature,
                options=model.options,
            )
        return OpenAICompatibleModel(
            model=model.model,
            client=http,
            secrets=secrets,
            name=shown,
            include_usage=cfg.include_usage,
            temperature=model.temperature,
            options=model.options,
            structured_output=cfg.structured_output,
        )

    def embed(shown: str, model: ModelSettings) -> Embedder:
        return OpenAIEmbeddings(client=http, model=model.model, name=shown, secrets=secrets)

    return BuiltProvider(
        parts.provider(lambda: list_openai_models(http, name, secrets), http.aclose), chat, embed
    )


def _anthropic(parts: ProviderParts) -> BuiltProvider:
    cfg, name, secrets = parts.cfg, parts.name, parts.secrets
    http = parts.client(
        cfg.base_url or ANTHROPIC_URL, anthropic_headers(parts.key, cfg.anthropic_version)
    )

    async def check() -> None:
        await AnthropicModel(model="", client=http, secrets=secrets, name=name).check()

    def chat(shown: str, model: ModelSettings) -> ChatBackend:
        return AnthropicModel(
            model=model.model,
            client=http,
            secrets=secrets,
            name=shown,
            temperature=model.temperature,
            options=model.options,
        )

    return BuiltProvider(parts.provider(check, http.aclose), chat)


def _ollama(parts: ProviderParts) -> BuiltProvider:
    cfg, name, secrets = parts.cfg, parts.name, parts.secrets
    http = parts.client(cfg.base_url or OLLAMA_URL, bearer(parts.key))

    def chat(shown: str, model: ModelSettings) -> ChatBackend:
        return OllamaModel(
            model=model.model,
            client=http,
            secrets=secrets,
            name=shown,
            keep_alive=cfg.keep_alive,
            temperature=model.temperature,
            options=model.options,
            structured_output=cfg.structured_output,
        )

    def embed(shown: str, model: ModelSettings) -> Embedder:
        return OllamaEmbeddings(
            client=http, model=model.model, name=shown, secrets=secrets, keep_alive=cfg.keep_alive
        )

    return BuiltProvider(
        parts.provider(lambda: list_ollama_models(http, name, secrets), http.aclose), chat, embed
    )


def _closing(local: list[ChatBackend]) -> Callable[[], Awaitable[None]]:
    """Closes the in-process models a provider made (they hold no shared client)."""

    async def close() -> None:
        for model in local:
            await model.aclose()

    return close


def _embedded(parts: ProviderParts) -> BuiltProvider:
    cfg, name = parts.cfg, parts.name
    local: list[ChatBackend] = []

    async def check() -> None:
        # The models made on this provider say whether they are loading or failed.
        for made in local or [EmbeddedModel(cfg.model_path)]:
            await made.check()

    def chat(shown: str, model: ModelSettings) -> ChatBackend:
        stem = model.model or (Path(cfg.model_path).stem if cfg.model_path else _BUNDLED)
        made = EmbeddedModel(
            cfg.model_path,
            context_tokens=cfg.context_tokens,
            threads=cfg.threads,
            temperature=0.7 if model.temperature is None else model.temperature,
            name=f"{name}:{stem}",
        )
        local.append(made)
        return made

    return BuiltProvider(parts.provider(check, _closing(local)), chat)


def _scripted(parts: ProviderParts) -> BuiltProvider:
    cfg, name = parts.cfg, parts.name
    local: list[ChatBackend] = []

    async def check() -> None:
        return None

    def chat(shown: str, model: ModelSettings) -> ChatBackend:
        # Unnamed, a scripted model is called after its provider ("scripted").
        label = shown if model.model else name
        made = as_backend(ScriptedModel(token_delay=cfg.token_delay_ms / 1000, name=label))
        local.append(made)
        return made

    return BuiltProvider(parts.provider(check, _closing(local)), chat)


# Provider kind -> how to build one: the built-in kinds (registered by the engine
# through the `model_providers` hook too), and those plugins add.
PROVIDER_KINDS: dict[str, ProviderFactory] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "ollama": _ollama,
    "embedded": _embedded,
    "scripted": _scripted,
}


def register_provider_kind(kind: str, factory: ProviderFactory) -> None:
    """Make `kind` configurable (`[providers.X] kind = ...`), built by `factory`; a
    built-in kind is not replaced by another factory."""
    if kind in BUILTIN_PROVIDER_KINDS and PROVIDER_KINDS.get(kind) is not factory:
        raise InvalidInput(f"provider kind {kind!r} is built in")
    PROVIDER_KINDS[kind] = factory
