"""Taleweaver's own features, registered through the same hooks as a plugin's.

Each layer that owns built-in features registers one `BuiltIn` under its own name
(`taleweaver:engine`, `taleweaver:api`, `taleweaver:cli`), holding what it adds;
its hooks run first, so built-ins come before any plugin's additions and a plugin
cannot take a built-in's name. Built-ins are never failed or disabled per workspace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taleweaver.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    import click
    from fastapi import APIRouter

    from taleweaver.domain.formats import Exporter, Importer
    from taleweaver.domain.pipeline import ContextSource
    from taleweaver.engine.kinds import KindSpec
    from taleweaver.llm.build import ProviderFactory
    from taleweaver.safety import SafetyDetector
    from taleweaver.store.repository import CommitListener

PREFIX = "taleweaver:"


@dataclass(slots=True)
class BuiltIn:
    """What one layer adds through the hooks; every hook returns its part as given."""

    kinds: Mapping[str, KindSpec] = field(default_factory=dict)
    sources: Sequence[ContextSource] = ()
    providers: Mapping[str, ProviderFactory] = field(default_factory=dict)
    detectors: Sequence[SafetyDetector] = ()
    importer_formats: Mapping[str, Importer] = field(default_factory=dict)
    exporter_formats: Mapping[str, Exporter] = field(default_factory=dict)
    listeners: Sequence[CommitListener] = ()
    commands: Sequence[click.Command] = ()
    routers: Sequence[APIRouter] = ()

    @hookimpl(tryfirst=True)
    def session_kinds(self) -> Mapping[str, KindSpec]:
        return self.kinds

    @hookimpl(tryfirst=True)
    def context_sources(self) -> Sequence[ContextSource]:
        return self.sources

    @hookimpl(tryfirst=True)
    def model_providers(self) -> Mapping[str, ProviderFactory]:
        return self.providers

    @hookimpl(tryfirst=True)
    def safety_detectors(self) -> Sequence[SafetyDetector]:
        return self.detectors

    @hookimpl(tryfirst=True)
    def importers(self) -> Mapping[str, Importer]:
        return self.importer_formats

    @hookimpl(tryfirst=True)
    def exporters(self) -> Mapping[str, Exporter]:
        return self.exporter_formats

    @hookimpl(tryfirst=True)
    def event_listeners(self) -> Sequence[CommitListener]:
        return self.listeners

    @hookimpl(tryfirst=True)
    def cli_commands(self) -> Sequence[click.Command]:
        return self.commands

    @hookimpl(tryfirst=True)
    def api_routers(self) -> Sequence[APIRouter]:
        return self.routers


def is_builtin(name: str) -> bool:
    return name.startswith(PREFIX)
