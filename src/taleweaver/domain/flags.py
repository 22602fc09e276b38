"""Feature flags: the known switches a workspace may turn for a staged rollout.

A flag is a named change of turn behaviour with a default; a workspace's admins
set it on or off, and clearing it brings the default back. A turn reads its
workspace's flags once, when it starts (`FlagSet`), so flipping one never changes
a turn already running. Only the flags listed here exist: any other name is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from taleweaver.domain.errors import InvalidInput

LOOP_RETRY = "loop_retry"
# `plugin:<name>`: an installed plugin, on unless its workspace turns it off.
PLUGIN_PREFIX = "plugin:"
WORLD_EXTRACTION = "world_extraction"
TRACE_CONTENT = "trace_content"


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    description: str
    default: bool


FLAGS: Mapping[str, Flag] = MappingProxyType(
    {
        flag.name: flag
        for flag in (
            Flag(
                LOOP_RETRY,
                "A reply that starts repeating itself is stopped and written once more"
                " (off: it is kept up to where the repetition began).",
                True,
            ),
            Flag(
                WORLD_EXTRACTION,
                "After each reply, world facts are extracted for review and checked"
                " against canon (off: neither runs).",
                True,
            ),
            Flag(
                TRACE_CONTENT,
                "A turn's trace carries the player's words and the reply, for debugging"
                " (off: spans carry no text). Refused in a sensitive workspace.",
                False,
            ),
        )
    }
)


def plugin_flag(plugin: str) -> Flag:
    """The flag that turns an installed plugin off (or on again) in a workspace."""
    return Flag(
        PLUGIN_PREFIX + plugin,
        f"Plugin {plugin}: its session kinds, context sources, safety detectors, event"
        " listeners, importers and exporters serve this workspace (off: none of them do;"
        " its model providers, commands and routes are process-wide).",
        True,
    )


def known_flag(name: str) -> Flag:
    """The flag of that name; InvalidInput (422) naming the known ones otherwise."""
    flag = FLAGS.get(name)
    if flag is None:
        names = ", ".join(sorted(FLAGS))
        raise InvalidInput(f"unknown feature flag {name!r}; known flags: {names}")
    return flag


@dataclass(frozen=True, slots=True)
class FlagSet:
    """The flags one turn runs with: a workspace's settings over the defaults."""

    settings: Mapping[str, bool] = field(default_factory=dict)

    def enabled(self, name: str) -> bool:
        flag = known_flag(name)
        return self.settings.get(name, flag.default)

    def plugin_enabled(self, plugin: str) -> bool:
        """Whether the workspace lets the plugin of that name serve it (the default)."""
        return self.settings.get(PLUGIN_PREFIX + plugin, True)


DEFAULT_FLAGS = FlagSet()
