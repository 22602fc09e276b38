"""Every hook a plugin may implement; each returns what the plugin adds (or nothing).

A plugin is a module or object with functions marked `@hookimpl` and named as below;
it may take fewer arguments than the spec names. Taleweaver's own features register
through the same hooks (`taleweaver.plugins.builtin`); docs/plugins.md says which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click
    from fastapi import APIRouter

    from taleweaver.domain.formats import Exporter, Importer
    from taleweaver.domain.pipeline import ContextSource
    from taleweaver.engine import Engine
    from taleweaver.engine.kinds import KindSpec
    from taleweaver.llm.build import ProviderFactory
    from taleweaver.safety import SafetyDetector
    from taleweaver.store.repository import CommitListener

PROJECT = "taleweaver"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# Hooks whose additions serve every workspace of the process alike: a workspace
# cannot turn them off (the others it can, with the flag `plugin:<name>`).
PROCESS_WIDE = frozenset({"model_providers", "cli_commands", "api_routers"})


@hookspec
def session_kinds() -> Mapping[str, KindSpec]:
    """Session kinds by name, each a system prompt and a configuration of the one pipeline."""
    raise NotImplementedError


@hookspec
def context_sources(engine: Engine) -> Sequence[ContextSource]:
    """Context sources that recall asks for pieces of every turn's prompt."""
    raise NotImplementedError


@hookspec
def model_providers() -> Mapping[str, ProviderFactory]:
    """Provider kinds by name, each a factory a configured `[providers.X] kind` builds with."""
    raise NotImplementedError


@hookspec
def safety_detectors() -> Sequence[SafetyDetector]:
    """Detectors that judge player input and narrator output beside the built-in layers."""
    raise NotImplementedError


@hookspec
def importers() -> Mapping[str, Importer]:
    """File importers by format name, each turning a file into a new session."""
    raise NotImplementedError


@hookspec
def exporters() -> Mapping[str, Exporter]:
    """Session exporters by format name, offered wherever export formats are."""
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
