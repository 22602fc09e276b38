"""Choosing models from settings, and who a turn's model calls are for."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput
from taleweaver.engine.context import TurnContext
from taleweaver.llm import TASKS, CallScope, ChatModel, ModelCatalog, ModelRouter, UsageLedger
from taleweaver.llm.budgets import Budgets
from taleweaver.llm.config import ModelSettings, ProviderSettings, RouteSettings
from taleweaver.llm.deadline import Deadlines


def model_from_settings(settings: Settings) -> ChatModel:
    """The one model the older single-model settings (TALEWEAVER_MODEL) describe."""
    # Providers load when a model is wanted: they bring httpx (and more) into
    # processes, such as most CLI commands, that never call one.
    from taleweaver.llm import EmbeddedModel, OpenAICompatibleModel, ScriptedModel

    choice = settings.resolved_model()
    if choice == "scripted":
        return ScriptedModel(token_delay=settings.scripted_token_delay_ms / 1000)
    if choice == "openai":
        _require_openai_url(settings)
        assert settings.openai_base_url is not None
        return OpenAICompatibleModel(
            base_url=settings.openai_base_url,
            model=settings.openai_model,
            api_key=settings.openai_api_key,
        )
    return EmbeddedModel()


def catalog_from_settings(settings: Settings) -> ModelCatalog:
    """Every model the settings describe: the configured ones, or the single model
    that TALEWEAVER_MODEL (or its absence) names, as a catalog of one."""
    choice = settings.resolved_model()
    if choice == "configured":
        if not settings.models:
            raise InvalidInput(
                "TALEWEAVER_MODEL=configured needs models: add [models.NAME] to the file "
                "TALEWEAVER_CONFIG names"
            )
        return ModelCatalog(
            providers=settings.providers,
            models=settings.models,
            routes=settings.routes,
            router=settings.router,
            budgets=settings.budgets,
        )
    if choice == "scripted":
        provider = ProviderSettings(
            kind="scripted", token_delay_ms=settings.scripted_token_delay_ms
        )
    elif choice == "openai":
        _require_openai_url(settings)
        key = SecretStr(settings.openai_api_key) if settings.openai_api_key else None
        # Usage in the stream is left off: not every server behind this variable takes it.
        provider = ProviderSettings(
            kind="openai", base_url=settings.openai_base_url, api_key=key, include_usage=False
        )
    else:
        provider = ProviderSettings(kind="embedded")
    model = ModelSettings(
        provider=choice, model=settings.openai_model if choice == "openai" else ""
    )
    return ModelCatalog(
        providers={choice: provider},
        models={choice: model},
        routes=RouteSettings(default=[choice]),
        router=settings.router,
        budgets=settings.budgets,
    )


def router_from_settings(
    settings: Settings, ledger: UsageLedger, *, model: ChatModel | None = None
) -> ModelRouter:
    """The router over the configured models, or over `model` alone when one is
    handed in (tests, benchmarks, CLI commands that never generate)."""
    if model is not None:
        timeouts = settings.router.timeouts
        return ModelRouter.single(
            model,
            ledger=ledger,
            budgets=Budgets(settings.budgets, ledger),
            deadlines=Deadlines(timeouts.first_token, timeouts.idle, timeouts.total),
        )
    from taleweaver.llm.build import build_router  # every provider: see model_from_settings

    return build_router(catalog_from_settings(settings), ledger=ledger)


def call_scope(ctx: TurnContext) -> CallScope:
    return CallScope(
        workspace_id=ctx.session.workspace_id,
        session_id=ctx.session.id,
        turn_id=ctx.turn_id,
        overrides=model_overrides(ctx.session.settings),
    )


def model_overrides(settings: dict[str, Any]) -> dict[str, str]:
    """The session's own model choices: `models` ({task: model}) in its settings,
    then its character's `model` (narration) or `models`, which win."""
    chosen: dict[str, str] = {}
    chosen |= _choices(settings.get("models"), "models")
    character = settings.get("character")
    if isinstance(character, dict):
        if isinstance(character.get("model"), str):
            chosen["narrate"] = character["model"]
        chosen |= _choices(character.get("models"), "character.models")
    return chosen


def _choices(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidInput(f"session setting {where} must map tasks to model names")
    unknown = [task for task in value if task not in TASKS]
    if unknown:
        raise InvalidInput(
            f"session setting {where} names {unknown[0]!r}, which is not a task "
            f"(tasks: {', '.join(TASKS)})"
        )
    return dict(value)


def _require_openai_url(settings: Settings) -> None:
    if not settings.openai_base_url:
        raise InvalidInput(
            "TALEWEAVER_MODEL=openai needs TALEWEAVER_OPENAI_BASE_URL "
            "(for example http://127.0.0.1:11434/v1 for Ollama)"
        )
