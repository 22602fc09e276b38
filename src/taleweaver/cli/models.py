"""`taleweaver models list` and `taleweaver models test`: the configured models,
and whether each of them answers now."""

from __future__ import annotations

import asyncio
from typing import Any

from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput
from taleweaver.engine.models import catalog_from_settings
from taleweaver.llm import ModelRouter, build_router
from taleweaver.llm.trial import Trial, try_model
from taleweaver.plugins import load_plugins
from taleweaver.plugins.providers import register_providers


def _router(settings: Settings) -> ModelRouter:
    """The configured router, with the provider kinds installed plugins add."""
    register_providers(load_plugins())  # a failing plugin is `taleweaver doctor`'s to report
    return build_router(catalog_from_settings(settings))


async def describe_models(settings: Settings) -> dict[str, Any]:
    router = _router(settings)
    try:
        overview = router.describe()
        overview["providers"] = {
            name: {"kind": provider.kind} for name, provider in router.providers.items()
        }
        return overview
    finally:
        await router.aclose()


async def try_models(settings: Settings, aliases: tuple[str, ...], max_tokens: int) -> list[Trial]:
    router = _router(settings)
    try:
        unknown = [a for a in aliases if a not in router.models]
        if unknown:
            known = ", ".join(sorted(router.models))
            raise InvalidInput(f"no model is called {unknown[0]!r} (configured: {known})")
        chosen = [router.models[a] for a in aliases or tuple(router.models)]
        return list(await asyncio.gather(*(try_model(m, max_tokens=max_tokens) for m in chosen)))
    finally:
        await router.aclose()


def model_lines(overview: dict[str, Any]) -> list[str]:
    rows = [("ALIAS", "PROVIDER", "MODEL", "$/MTOK IN/OUT", "TASKS")]
    for m in overview["models"]:
        price = m["price"]
        rows.append(
            (
                m["alias"],
                f"{m['provider']} ({m['kind']})",
                m["model"] or "-",
                f"{price['input_usd_per_mtok']:g}/{price['output_usd_per_mtok']:g}",
                ", ".join(m["tasks"]) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, [*widths, 0], strict=True)).rstrip()
        for row in rows
    ]


def trial_line(trial: Trial, width: int) -> str:
    if not trial.ok:
        return f"{trial.alias.ljust(width)}  FAILED  {trial.detail}"
    timing = f"{trial.elapsed_ms / 1000:.2f} s"
    if trial.first_token_ms is not None:
        timing = f"first token {trial.first_token_ms:.0f} ms, {trial.pieces} pieces in {timing}"
    shown = trial.detail if len(trial.detail) <= 60 else trial.detail[:57] + "..."
    return f"{trial.alias.ljust(width)}  ok      {timing}: {shown!r}"
