"""Wiring what the hooks return into the engine: kinds, context sources, safety
detectors, importers and exporters, event listeners. Taleweaver's own features come
through the same hooks (registered as `taleweaver:engine`, before any plugin's).

What a plugin adds here serves a workspace only while its flag `plugin:<name>` is on
there (the default): its kinds cannot be created, and its sources, detectors and
listeners skip the turns and commits, of a workspace that turned it off.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.events import RecordedEvent
from taleweaver.domain.pipeline import ContextPiece, ContextSource, RecallQuery
from taleweaver.domain.safety import Assessment
from taleweaver.domain.sessions import SessionKind
from taleweaver.engine.flags import WorkspaceFlags
from taleweaver.engine.kinds import provide_kind, register_kind
from taleweaver.plugins import PROCESS_WIDE
from taleweaver.plugins.builtin import is_builtin

if TYPE_CHECKING:
    from taleweaver.engine.engine import Engine
    from taleweaver.store.repository import CommitListener

log = logging.getLogger(__name__)


class PluginGate:
    """Whether a workspace lets a plugin serve it: its flag `plugin:<name>`, read at
    each use (one fast query), so a change holds from the next turn on."""

    def __init__(self, flags: WorkspaceFlags) -> None:
        self.flags = flags

    async def enabled(self, workspace_id: str, plugin: str) -> bool:
        if is_builtin(plugin):
            return True
        return (await self.flags.read(workspace_id)).plugin_enabled(plugin)

    async def require(self, workspace_id: str, plugin: str) -> None:
        """Conflict (409) where the workspace turned the plugin off."""
        if not await self.enabled(workspace_id, plugin):
            raise Conflict(
                f"plugin {plugin} is turned off in this workspace "
                f"(its flag plugin:{plugin}; an admin can turn it on)"
            )


class _GatedSource:
    def __init__(self, source: ContextSource, plugin: str, gate: PluginGate) -> None:
        self.name = source.name
        self.source, self.plugin, self.gate = source, plugin, gate

    async def gather(self, query: RecallQuery) -> list[ContextPiece]:
        if not await self.gate.enabled(query.workspace_id, self.plugin):
            return []
        return await self.source.gather(query)


class _Subject(Protocol):
    @property
    def workspace_id(self) -> str: ...


class _Detector(Protocol):
    name: str

    async def assess(self, subject: Any) -> Assessment | None: ...


class _GatedDetector:
    def __init__(self, detector: _Detector, plugin: str, gate: PluginGate) -> None:
        self.name = detector.name
        self.detector, self.plugin, self.gate = detector, plugin, gate

    async def assess(self, subject: _Subject) -> Assessment | None:
        if not await self.gate.enabled(subject.workspace_id, self.plugin):
            return None
        return await self.detector.assess(subject)


def _listener(plugin: str, listener: CommitListener, gate: PluginGate) -> CommitListener:
    """A plugin's listener, for the workspaces that let it serve them; its failure is
    logged: the events are committed already, and an integration's trouble must not
    fail the turn that wrote them."""

    async def listen(events: Sequence[RecordedEvent]) -> None:
        try:
            if events and not await gate.enabled(events[0].workspace_id, plugin):
                return
            await listener(events)
        except Exception:
            log.exception("event listener of plugin %s failed", plugin)

    return listen


def wire_plugins(engine: Engine, gate: PluginGate) -> None:
    """Call every hook the engine consults and put what it returns in place."""
    plugins = engine.plugins
    owners: dict[str, str] = {}  # a plugin's kind -> the plugin
    for name, kinds in plugins.each("session_kinds"):
        try:
            for kind, spec in dict(kinds).items():
                if is_builtin(name) and kind in {k.value for k in SessionKind}:
                    provide_kind(SessionKind(kind), spec)
                else:
                    owners[str(register_kind(kind, spec))] = name
        except InvalidInput as exc:
            plugins.fail(name, "", exc)

    async def kind_allowed(workspace_id: str, kind: SessionKind) -> None:
        if (owner := owners.get(str(kind))) is not None:
            await gate.require(workspace_id, owner)

    engine.sessions.kind_checks.append(kind_allowed)
    for name, sources in plugins.each("context_sources", engine=engine):
        engine.caps.context_sources += [
            source if is_builtin(name) else _GatedSource(source, name, gate) for source in sources
        ]
    detectors = engine.safety.checker.detectors
    for name, found in plugins.each("safety_detectors"):
        detectors += [d if is_builtin(name) else _GatedDetector(d, name, gate) for d in found]
    for name, exporters in plugins.each("exporters"):
        try:
            for fmt, exporter in dict(exporters).items():
                engine.formats.add_exporter(name, fmt, exporter)
        except InvalidInput as exc:
            plugins.fail(name, "", exc)
    for name, importers in plugins.each("importers"):
        try:
            for fmt, importer in dict(importers).items():
                engine.formats.add_importer(name, fmt, importer)
        except InvalidInput as exc:
            plugins.fail(name, "", exc)
    for name, listeners in plugins.each("event_listeners"):
        engine.repository.committed += [
            listener if is_builtin(name) else _listener(name, listener, gate)
            for listener in listeners
        ]


@dataclass(frozen=True, slots=True)
class PluginState:
    """An installed plugin as a workspace sees it."""

    name: str
    version: str
    hooks: tuple[str, ...]
    status: str
    error: str
    # Whether it serves this workspace (its flag `plugin:<name>`, on by default).
    enabled: bool
    # Its hooks whose additions serve every workspace whatever the flag says.
    process_wide: tuple[str, ...]


async def plugin_states(engine: Engine, workspace_id: str) -> list[PluginState]:
    flags = await engine.flags.read(workspace_id)
    return [
        PluginState(
            info.name,
            info.version,
            info.hooks,
            info.status,
            info.error,
            flags.plugin_enabled(info.name),
            tuple(hook for hook in info.hooks if hook in PROCESS_WIDE),
        )
        for info in engine.plugins.infos
    ]
