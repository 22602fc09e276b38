"""The model configuration: providers, models, routes, router policies and budgets.

Plain pydantic models with no I/O. `taleweaver.config.Settings` reads them from
the TOML file named by TALEWEAVER_CONFIG and from TALEWEAVER_* variables
(`TALEWEAVER_PROVIDERS__CLOUD__API_KEY=...`); `llm.build` turns them into a router.
Unknown keys are refused, so a typo is an error at start-up, not a silent default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlparse

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from taleweaver.llm.templates import TemplateName

__all__ = [
    "BUILTIN_PROVIDER_KINDS",
    "EMBEDDING_KINDS",
    "BreakerSettings",
    "BudgetSettings",
    "ModelCatalog",
    "ModelSettings",
    "Price",
    "ProviderKind",
    "ProviderSettings",
    "RetrySettings",
    "RouteSettings",
    "RouterSettings",
    "TimeoutSettings",
    "catalog_problems",
]

# The kinds Taleweaver brings; a plugin adds more (`model_providers`), so a configured
# kind is any such name here and is checked against what is registered when the
# router is built (llm.build.PROVIDER_KINDS), where an unknown one is refused.
ProviderKind = Literal["openai", "anthropic", "ollama", "embedded", "scripted"]
BUILTIN_PROVIDER_KINDS = frozenset(get_args(ProviderKind))
KindName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]
EMBEDDING_KINDS = frozenset({"openai", "ollama"})
_REMOTE_KINDS = frozenset({"openai", "anthropic", "ollama"})

Seconds = Annotated[float, Field(gt=0)]
Dollars = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TimeoutSettings(_Strict):
    """Seconds. `first_token`: from the request to the first token (or reasoning);
    `idle`: between tokens; `total`: the whole reply."""

    connect: Seconds = 10.0
    first_token: Seconds = 60.0
    idle: Seconds = 60.0
    total: Seconds = 600.0


class RetrySettings(_Strict):
    attempts: Annotated[int, Field(ge=1, le=10)] = 3
    base_delay: Annotated[float, Field(ge=0)] = 0.5
    max_delay: Annotated[float, Field(ge=0)] = 8.0
    jitter: Annotated[float, Field(ge=0, le=1)] = 0.5
    max_retry_after: Annotated[float, Field(ge=0)] = 20.0


class BreakerSettings(_Strict):
    failures: Annotated[int, Field(ge=1)] = 5
    window: Seconds = 60.0
    cooldown: Seconds = 30.0
    half_open_probes: Annotated[int, Field(ge=1)] = 1


class RouterSettings(_Strict):
    """Defaults for every provider; a provider may override each part."""

    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    health_timeout: Seconds = 5.0


class ProviderSettings(_Strict):
    # A built-in kind (ProviderKind) or one an installed plugin adds.
    kind: KindName
    base_url: str | None = None
    api_key: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeouts: TimeoutSettings | None = None
    retry: RetrySettings | None = None
    breaker: BreakerSettings | None = None
    # openai: ask for token usage at the end of the stream (`stream_options`).
    include_usage: bool = True
    # openai, ollama: ask for a story reply's missing options under a JSON schema
    # (`response_format` / `format`); off for a server that refuses those fields.
    structured_output: bool = True
    # ollama: how long the server keeps the model loaded ("10m", -1 for ever).
    keep_alive: str | int | None = None
    anthropic_version: str = "2023-06-01"
    # embedded: a GGUF file (default: the bundled model), context and threads.
    model_path: Path | None = None
    context_tokens: Annotated[int, Field(ge=256)] = 4096
    threads: int | None = None
    # scripted: delay between tokens.
    token_delay_ms: Annotated[float, Field(ge=0)] = 0.0


class Price(_Strict):
    """US dollars per million tokens."""

    input: Dollars = 0.0
    output: Dollars = 0.0


class ModelSettings(_Strict):
    provider: str
    # The provider's id for the model ("gpt-4o-mini", "llama3.1:8b").
    model: str = ""
    # Set for a base model on a text-completion endpoint: the instruct format.
    template: TemplateName | None = None
    temperature: float | None = None
    # A cap on reply length for this model, below what the task asks for.
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    # Extra request fields (OpenAI: top_p...; Ollama: `options` such as num_ctx).
    options: dict[str, Any] = Field(default_factory=dict)
    price: Price = Field(default_factory=Price)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Chain = Annotated[list[str], BeforeValidator(_as_list)]


class RouteSettings(_Strict):
    """Each task names a model or a fallback chain of models, first choice first.
    A chat task without a route uses `default`; with no `default`, the first model."""

    default: Chain = Field(default_factory=list)
    narrate: Chain = Field(default_factory=list)
    extract: Chain = Field(default_factory=list)
    safety: Chain = Field(default_factory=list)
    summarize: Chain = Field(default_factory=list)
    embed: Chain = Field(default_factory=list)


class BudgetSettings(_Strict):
    """Spending limits in US dollars: a workspace's per calendar month (UTC), a
    session's over its life. At `warn_at` of a limit turns carry a warning; at the
    limit, model calls stop."""

    workspace_usd: Annotated[float, Field(gt=0)] | None = None
    session_usd: Annotated[float, Field(gt=0)] | None = None
    warn_at: Annotated[float, Field(gt=0, le=1)] = 0.8


class ModelCatalog(BaseModel):
    """Everything the router is built from, already checked by `catalog_problems`."""

    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    routes: RouteSettings = Field(default_factory=RouteSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)


def catalog_problems(
    providers: dict[str, ProviderSettings],
    models: dict[str, ModelSettings],
    routes: RouteSettings,
) -> list[str]:
    """Every inconsistency between providers, models and routes, as a sentence each."""
    problems: list[str] = []
    known_providers = ", ".join(sorted(providers)) or "none"
    for name, provider in providers.items():
        if provider.base_url is not None:
            url = urlparse(provider.base_url)
            if url.scheme not in ("http", "https") or not url.netloc:
                problems.append(
                    f"providers.{name}.base_url: {provider.base_url!r} is not an http(s) URL"
                )
    for alias, model in models.items():
        host = providers.get(model.provider)
        if host is None:
            problems.append(
                f"models.{alias}.provider: {model.provider!r} is not a configured provider "
                f"(configured: {known_providers})"
            )
            continue
        if host.kind in _REMOTE_KINDS and not model.model:
            problems.append(
                f"models.{alias}.model: give the {host.kind} provider's id for it "
                '(for example model = "llama3.1:8b")'
            )
        if model.template is not None and host.kind != "openai":
            problems.append(
                f"models.{alias}.template: instruct templates need an OpenAI-compatible "
                f"text-completion endpoint, but provider {model.provider!r} is {host.kind}"
            )
    known_models = ", ".join(sorted(models)) or "none"
    for task, chain in routes.model_dump().items():
        for alias in chain:
            named = models.get(alias)
            if named is None:
                problems.append(
                    f"routes.{task}: {alias!r} is not a configured model "
                    f"(configured: {known_models})"
                )
                continue
            kind = providers[named.provider].kind if named.provider in providers else None
            # A plugin's kind says whether it embeds when the router is built.
            builtin = kind in BUILTIN_PROVIDER_KINDS
            if task == "embed" and builtin and kind not in EMBEDDING_KINDS:
                problems.append(
                    f"routes.embed: {alias!r} is on provider {named.provider!r} ({kind}), "
                    "which has no embeddings endpoint"
                )
    return problems
