"""Every hook a plugin may implement; each returns what the plugin adds (or nothing).

A plugin is a module or object with functions marked `@hookimpl` and named as below;
it may take fewer arguments than the spec names. Hooks marked "declared" are part of
the contract already but not yet consulted by the engine (docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click
    from fastapi import APIRouter

    from taleweaver.domain.pipeline import ContextSource
    from taleweaver.engine import Engine
    from taleweaver.engine.kinds import KindSpec
    from taleweaver.llm import ChatModel
    from taleweaver.store.repository import CommitListener

PROJECT = "taleweaver"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def session_kinds() -> Mapping[str, KindSpec]:
    """Session kinds by name, each a system prompt and a configuration of the one pipeline."""
    raise NotImplementedError


@hookspec
def context_sources(engine: Engine) -> Sequence[ContextSource]:
    """Context sources that recall asks for pieces of every turn's prompt."""
    raise NotImplementedError


@hookspec
def model_providers() -> Mapping[str, type[ChatModel]]:
    """Model host kinds by name (declared: the router does not consult it yet)."""
    raise NotImplementedError


@hookspec
def safety_detectors() -> Sequence[object]:
    """Extra crisis or content detectors (declared: the safety service does not consult it yet)."""
    raise NotImplementedError


@hookspec
def importers() -> Mapping[str, object]:
    """File importers by format name (declared: interop does not consult it yet)."""
    raise NotImplementedError


@hookspec
def exporters() -> Mapping[str, object]:
    """Session exporters by format name (declared: interop does not consult it yet)."""
    raise NotImplementedError


@hookspec
def event_listeners() -> Sequence[CommitListener]:
    """Async callables told of every batch of events once its transaction has committed."""
    raise NotImplementedError


@hookspec
def cli_commands() -> Sequence[click.Command]:
    """Click commands, run as `taleweaver plugins <name>`."""
    raise NotImplementedError


@hookspec
def api_routers() -> Sequence[APIRouter]:
    """FastAPI routers the server includes after its own routes."""
    raise NotImplementedError
