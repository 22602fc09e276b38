"""Plugins: third-party packages that add to Taleweaver through declared hooks."""

from taleweaver.plugins.builtin import BuiltIn
from taleweaver.plugins.hookspecs import PROCESS_WIDE, hookimpl
from taleweaver.plugins.manager import (
    GROUP,
    PluginInfo,
    Plugins,
    RequiredPluginFailed,
    load_plugins,
)

__all__ = [
    "GROUP",
    "PROCESS_WIDE",
    "BuiltIn",
    "PluginInfo",
    "Plugins",
    "RequiredPluginFailed",
    "hookimpl",
    "load_plugins",
]
