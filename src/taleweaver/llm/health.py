"""Provider health: each provider's check, timed and bounded, with its breaker's
state; and whether every task still has a model that answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from taleweaver.domain.errors import ModelError, ModelLoading
from taleweaver.llm.routing import Provider

__all__ = ["probe", "unserved"]


async def probe(provider: Provider, models: Sequence[str], within: float) -> dict[str, Any]:
    """The provider's state; a check reports, it never raises."""
    report: dict[str, Any] = {
        "kind": provider.kind,
        "models": sorted(models),
        "breaker": str(provider.breaker.state),
    }
    started = time.perf_counter()
    try:
        async with asyncio.timeout(within):
            await provider.check()
    except TimeoutError:
        report |= {"status": "error", "detail": f"no answer in {within:g} s"}
    except ModelLoading as exc:  # on its way: not ready yet, and not broken
        report |= {"status": "loading", "detail": exc.detail}
    except ModelError as exc:
        report |= {"status": "error", "detail": exc.detail}
    except Exception as exc:  # whatever went wrong, it is "not ok", said without internals
        report |= {"status": "error", "detail": type(exc).__name__}
    else:
        report["status"] = "ok"
    report["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return report


def unserved(
    routes: Mapping[str, Sequence[str]],
    provider_of: Mapping[str, str],
    health: Mapping[str, Mapping[str, Any]],
) -> str | None:
    """Why some task has no model whose provider answers, or None when all do."""
    for task, chain in routes.items():
        states = [health[provider_of[alias]] for alias in chain]
        if chain and not any(state["status"] == "ok" for state in states):
            details = "; ".join(
                f"{alias}: {state.get('detail', 'down')}"
                for alias, state in zip(chain, states, strict=True)
            )
            return f"no model can {task}: {details}"
    return None
