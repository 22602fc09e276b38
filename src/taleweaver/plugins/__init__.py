"""Plugins: third-party packages that add to Taleweaver through declared hooks."""

from taleweaver.plugins.hookspecs import hookimpl
from taleweaver.plugins.manager import (
    GROUP,
    PluginInfo,
    Plugins,
    RequiredPluginFailed,
    load_plugins,
)

__all__ = ["GROUP", "PluginInfo", "Plugins", "RequiredPluginFailed", "hookimpl", "load_plugins"]
