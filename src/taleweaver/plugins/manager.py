"""Finding, loading and calling plugins: one plugin failing is reported, never fatal,
unless the settings name it as required."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import Any, Literal

import pluggy

from taleweaver.domain.errors import TaleweaverError
from taleweaver.plugins import hookspecs
from taleweaver.plugins.builtin import PREFIX, BuiltIn, is_builtin

log = logging.getLogger(__name__)

GROUP = "taleweaver.plugins"


class RequiredPluginFailed(TaleweaverError):
    """A plugin the settings require is missing or failed to load."""


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    version: str
    hooks: tuple[str, ...]
    status: Literal["loaded", "failed"]
    error: str = ""


class Plugins:
    """The process's plugins: what loaded (with its hooks) and what failed (with why)."""

    def __init__(self, required: Collection[str] = ()) -> None:
        # Plugins the server must not start without (TALEWEAVER_REQUIRED_PLUGINS).
        self.required = frozenset(required)
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] = {}

    @property
    def infos(self) -> list[PluginInfo]:
        """The installed plugins (Taleweaver's own registrations left out)."""
        return [info for info in self._infos.values() if not is_builtin(info.name)]

    def loaded(self) -> list[str]:
        """The names of the installed plugins that loaded and have not failed since."""
        return [info.name for info in self.infos if info.status == "loaded"]

    def add_builtin(self, layer: str, builtin: BuiltIn) -> None:
        """Register a layer's own features through the hooks (once per layer)."""
        name = PREFIX + layer
        if not self.manager.has_plugin(name):
            self.register(builtin, name)

    def failed(self) -> list[PluginInfo]:
        return [info for info in self._infos.values() if info.status == "failed"]

    def register(self, plugin: object, name: str, version: str = "") -> None:
        """Register `plugin`; a hook that does not match its spec fails it here."""
        if is_builtin(name) and not isinstance(plugin, BuiltIn):
            problem = ValueError(f"a plugin's name cannot start with {PREFIX!r}")
            self.fail(name, version, problem)
            raise problem
        try:
            self.manager.register(plugin, name=name)
        except Exception as exc:
            if self.manager.has_plugin(name):  # pluggy may stop half-way through
                self.manager.unregister(name=name)
            self.fail(name, version, exc)
            raise
        callers = self.manager.get_hookcallers(plugin) or []
        if unknown := sorted(c.name for c in callers if c.spec is None):
            # A misspelt hook would otherwise never be called, silently.
            self.manager.unregister(name=name)
            problem = ValueError(f"unknown hook(s): {', '.join(unknown)}")
            self.fail(name, version, problem)
            raise problem
        hooks = tuple(sorted(caller.name for caller in callers))
        self._infos[name] = PluginInfo(name, version, hooks, "loaded")

    def fail(self, name: str, version: str, exc: BaseException) -> None:
        """Mark `name` failed; raises `RequiredPluginFailed` if it is required."""
        log.error("plugin %s failed: %s: %s", name, type(exc).__name__, exc)
        known = self._infos.get(name)
        error = f"{type(exc).__name__}: {exc}"
        if known is not None:
            self._infos[name] = replace(known, status="failed", error=error)
        else:
            self._infos[name] = PluginInfo(name, version, (), "failed", error)
        if name in self.required:
            raise RequiredPluginFailed(f"required plugin {name} failed: {error}") from exc

    def each(self, hook: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """(plugin name, result) of every loaded plugin implementing `hook`, called one
        at a time so that one raising is marked failed and the others still count."""
        caller = getattr(self.manager.hook, hook)
        for impl in reversed(caller.get_hookimpls()):  # registration order
            name = impl.plugin_name
            known = self._infos.get(name)
            if known is not None and known.status == "failed":
                continue
            try:
                result = impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception as exc:
                if is_builtin(name):
                    raise  # Taleweaver's own: a bug to see, not a plugin to set aside
                self.fail(name, "", exc)
                continue
            if result is not None:
                yield name, result


def load_plugins(required: Collection[str] = ()) -> Plugins:
    """Every plugin of the `taleweaver.plugins` entry-point group, loaded and registered.

    A plugin that raises is logged and listed as failed; raises `RequiredPluginFailed`
    only for one in `required` (or one of those that is not installed at all).
    """
    plugins = Plugins(required)
    for point in entry_points(group=GROUP):
        version = point.dist.version if point.dist is not None else ""
        try:
            plugin = point.load()
        except Exception as exc:
            plugins.fail(point.name, version, exc)
            continue
        try:
            plugins.register(plugin, point.name, version)
        except RequiredPluginFailed:
            raise
        except Exception:
            continue  # registered as failed
    loaded = {info.name for info in plugins.infos}
    if missing := sorted(set(required) - loaded):
        raise RequiredPluginFailed(f"required plugin(s) not installed: {', '.join(missing)}")
    return plugins
