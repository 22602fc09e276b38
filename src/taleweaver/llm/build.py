"""Building the router from the model configuration: one pooled client per
provider, one adapter per model, each provider with its own breaker and policies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from taleweaver.llm.anthropic import ANTHROPIC_URL, AnthropicModel, anthropic_headers
from taleweaver.llm.base import ChatBackend, Embedder, as_backend
from taleweaver.llm.breaker import CircuitBreaker
from taleweaver.llm.budgets import Budgets
from taleweaver.llm.config import ModelCatalog, ModelSettings, ProviderSettings, RouterSettings
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

__all__ = ["OPENAI_URL", "build_router", "resolve_routes"]

OPENAI_URL = "https://api.openai.com/v1"
_BUNDLED = "SmolLM2-135M-Instruct"

ChatFactory = Callable[[str, ModelSettings], ChatBackend]
EmbedFactory = Callable[[str, ModelSettings], Embedder]


@dataclass(slots=True)
class _Built:
    provider: Provider
    chat: ChatFactory
    embed: EmbedFactory | None = None


def build_router(catalog: ModelCatalog, *, ledger: UsageLedger | None = None) -> ModelRouter:
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
            assert maker.embed is not None  # the configuration check refused this
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


def _provider(name: str, cfg: ProviderSettings, defaults: RouterSettings) -> _Built:
    deadlines, retry, breaker = _policies(cfg, defaults)
    connect = (cfg.timeouts or defaults.timeouts).connect
    key = cfg.api_key.get_secret_value() if cfg.api_key is not None else None
    extra = {header: value.get_secret_value() for header, value in cfg.headers.items()}
    secrets = tuple(v for v in (key, *extra.values()) if v)

    def provider(
        check: Callable[[], Awaitable[object]], close: Callable[[], Awaitable[None]]
    ) -> Provider:
        return Provider(
            name=name,
            kind=cfg.kind,
            check=check,
            close=close,
            breaker=breaker,
            retry=retry,
            deadlines=deadlines,
        )

    def client(base_url: str, headers: dict[str, str]) -> httpx.AsyncClient:
        # The read timeout is only a backstop under the router's own deadlines.
        return make_client(
            base_url,
            headers=headers | extra,
            connect_timeout=connect,
            read_timeout=deadlines.total,
        )

    if cfg.kind == "openai":
        http = client(cfg.base_url or OPENAI_URL, bearer(key))

        def openai_chat(shown: str, model: ModelSettings) -> ChatBackend:
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

        def openai_embed(shown: str, model: ModelSettings) -> Embedder:
            return OpenAIEmbeddings(client=http, model=model.model, name=shown, secrets=secrets)

        return _Built(
            provider(lambda: list_openai_models(http, name, secrets), http.aclose),
            openai_chat,
            openai_embed,
        )

    if cfg.kind == "anthropic":
        http = client(cfg.base_url or ANTHROPIC_URL, anthropic_headers(key, cfg.anthropic_version))

        async def anthropic_check() -> None:
            await AnthropicModel(model="", client=http, secrets=secrets, name=name).check()

        def anthropic_chat(shown: str, model: ModelSettings) -> ChatBackend:
            return AnthropicModel(
                model=model.model,
                client=http,
                secrets=secrets,
                name=shown,
                temperature=model.temperature,
                options=model.options,
            )

        return _Built(provider(anthropic_check, http.aclose), anthropic_chat)

    if cfg.kind == "ollama":
        http = client(cfg.base_url or OLLAMA_URL, bearer(key))

        def ollama_chat(shown: str, model: ModelSettings) -> ChatBackend:
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

        def ollama_embed(shown: str, model: ModelSettings) -> Embedder:
            return OllamaEmbeddings(
                client=http,
                model=model.model,
                name=shown,
                secrets=secrets,
                keep_alive=cfg.keep_alive,
            )

        return _Built(
            provider(lambda: list_ollama_models(http, name, secrets), http.aclose),
            ollama_chat,
            ollama_embed,
        )

    local: list[ChatBackend] = []

    async def close_local() -> None:
        for model in local:
            await model.aclose()

    if cfg.kind == "embedded":

        async def embedded_check() -> None:
            # The models made on this provider say whether they are loading or failed.
            for made in local or [EmbeddedModel(cfg.model_path)]:
                await made.check()

        def embedded_chat(shown: str, model: ModelSettings) -> ChatBackend:
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

        return _Built(provider(embedded_check, close_local), embedded_chat)

    async def scripted_check() -> None:
        return None

    def scripted_chat(shown: str, model: ModelSettings) -> ChatBackend:
        # Unnamed, a scripted model is called after its provider ("scripted").
        label = shown if model.model else name
        made = as_backend(ScriptedModel(token_delay=cfg.token_delay_ms / 1000, name=label))
        local.append(made)
        return made

    return _Built(provider(scripted_check, close_local), scripted_chat)
