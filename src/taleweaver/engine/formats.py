"""The export and import formats an engine offers: the built-in ones and those
plugins add (`exporters`, `importers` hooks), each with the plugin it comes from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON
from taleweaver.domain.formats import Exporter, Importer
from taleweaver.plugins.builtin import is_builtin

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
# Exported from the raw event log rather than through the hook (see export.py).
CHAT_JSONL = ("jsonl", "sillytavern")


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Found(Generic[T]):
    name: str
    plugin: str
    handler: T


def _offered_by(plugin: str) -> str:
    """Who a listing says offers a format: `taleweaver` for every built-in one."""
    return "taleweaver" if is_builtin(plugin) else plugin


class Formats:
    def __init__(self) -> None:
        self._exporters: dict[str, Found[Exporter]] = {}
        self._importers: dict[str, Found[Importer]] = {}
        self._aliases: dict[str, str] = {}

    def _check(self, name: str, taken: set[str]) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(f"format {name!r}: 1-40 lowercase letters, digits, '_' or '-'")
        if name in taken:
            raise InvalidInput(f"format {name!r} is offered already")

    def add_exporter(self, plugin: str, name: str, exporter: Exporter) -> None:
        taken = {*self._exporters, *self._aliases, *CHAT_JSONL}
        for each in (name, *exporter.aliases):
            self._check(each, taken)
        self._exporters[name] = Found(name, plugin, exporter)
        self._aliases |= dict.fromkeys(exporter.aliases, name)

    def add_importer(self, plugin: str, name: str, importer: Importer) -> None:
        self._check(name, set(self._importers))
        self._importers[name] = Found(name, plugin, importer)

    def export_names(self) -> list[str]:
        return sorted({*self._exporters, *self._aliases, *CHAT_JSONL})

    def exporter(self, name: str) -> Found[Exporter]:
        """The exporter called `name` (or by an alias); InvalidInput naming them all."""
        key = name.lower()
        found = self._exporters.get(self._aliases.get(key, key))
        if found is None:
            raise InvalidInput(
                f"unknown export format {name!r}: use one of {', '.join(self.export_names())}"
            )
        return found

    def importer(self, name: str) -> Found[Importer]:
        found = self._importers.get(name.lower())
        if found is None:
            known = ", ".join(["sillytavern", *sorted(self._importers)])
            raise InvalidInput(f"unknown import format {name!r}: use one of {known}")
        return found

    def sniff(self, data: bytes, filename: str | None) -> Found[Importer] | None:
        """The first importer that recognises the file (a plugin's that raises does not)."""
        for found in self._importers.values():
            try:
                if found.handler.sniff(data, filename):
                    return found
            except Exception:  # a plugin's guess must not fail an import
                continue
        return None

    def describe(self) -> JSON:
        """Every format, for the formats route and `taleweaver plugins formats`."""
        export: list[JSON] = [
            {
                "name": f.name,
                "aliases": list(f.handler.aliases),
                "media_type": f.handler.media_type,
                "suffix": f.handler.suffix,
                "description": f.handler.description,
                "plugin": _offered_by(f.plugin),
            }
            for f in self._exporters.values()
        ]
        export.append(
            {
                "name": "jsonl",
                "aliases": ["sillytavern"],
                "media_type": "application/x-ndjson",
                "suffix": "jsonl",
                "description": "SillyTavern chat JSONL, swipes included",
                "plugin": "taleweaver",
            }
        )
        imports: list[JSON] = [
            {
                "name": "sillytavern",
                "description": "SillyTavern chat JSONL",
                "plugin": "taleweaver",
            }
        ]
        imports += [
            {"name": f.name, "description": f.handler.description, "plugin": _offered_by(f.plugin)}
            for f in self._importers.values()
        ]
        return {"export": export, "import": imports}
