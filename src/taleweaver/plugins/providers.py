"""Model provider kinds through the `model_providers` hook: the built-in ones and
those plugins add become configurable, process-wide, before any router is built."""

from __future__ import annotations

import re

from taleweaver.domain.errors import InvalidInput
from taleweaver.plugins.builtin import BuiltIn
from taleweaver.plugins.manager import Plugins

# As `[providers.X] kind` accepts (llm.config.KindName).
_KIND = re.compile(r"[a-z][a-z0-9_-]{0,39}")


def register_providers(plugins: Plugins) -> None:
    """Register every provider kind the hook returns (the built-in kinds first); a
    plugin whose kind is malformed or a built-in's name is failed, not the process."""
    # Imported here: the providers bring httpx, which `taleweaver plugins list` never needs.
    from taleweaver.llm.build import PROVIDER_KINDS, register_provider_kind
    from taleweaver.llm.config import BUILTIN_PROVIDER_KINDS

    builtin = {kind: PROVIDER_KINDS[kind] for kind in sorted(BUILTIN_PROVIDER_KINDS)}
    plugins.add_builtin("models", BuiltIn(providers=builtin))
    for name, kinds in plugins.each("model_providers"):
        for kind, factory in dict(kinds).items():
            try:
                if not isinstance(kind, str) or not _KIND.fullmatch(kind):
                    raise InvalidInput(f"provider kind {kind!r}: 1-40 of a-z, 0-9, '_', '-'")
                register_provider_kind(kind, factory)
            except InvalidInput as exc:
                plugins.fail(name, "", exc)
                break
