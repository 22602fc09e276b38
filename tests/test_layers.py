"""Imports point down the layers of DESIGN.md, and capabilities meet through each
other's package interfaces (or domain types), never each other's modules.

The same rules as ../shared/tools/layers.py, checked on every run of the suite.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import taleweaver

PACKAGE = Path(taleweaver.__file__).parent

# Lower number = lower layer. A module may import its own layer's shared modules
# and any lower layer, never a higher one.
LAYERS: dict[str, int] = {
    "domain": 0,
    "store": 1,
    "observability": 1,
    "realtime": 2,
    "llm": 2,
    "memory": 2,
    "safety": 2,
    "therapy": 2,
    "characters": 2,
    "interop": 2,
    "auth": 2,
    "engine": 3,
    # Hooks speak the engine's types (kinds, context sources); the engine loads them.
    "plugins": 3,
    "api": 4,
    "cli": 4,
}
CAPABILITIES = {name for name, level in LAYERS.items() if level == 2}
MODULES = sorted(path for path in PACKAGE.rglob("*.py") if len(path.relative_to(PACKAGE).parts) > 1)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in a module of the package."""
    rel = path.relative_to(PACKAGE)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = ["taleweaver", *rel.parts[:-1]]
            base = base[: len(base) - (node.level - 1)]
            yield node.lineno, ".".join(base + ([node.module] if node.module else []))


def area(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "taleweaver" and len(parts) > 1 else None


def _id(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def test_every_package_has_a_layer() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages <= set(LAYERS), f"place {sorted(packages - set(LAYERS))} in LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=_id)
def test_imports_point_down_the_layers(path: Path) -> None:
    here = path.relative_to(PACKAGE).parts[0]
    upward = [
        f"{_id(path)}:{line}: {here} imports {target}"
        for line, target in imports(path)
        if (there := area(target)) in LAYERS and LAYERS[there] > LAYERS[here]
    ]
    assert upward == []


@pytest.mark.parametrize(
    "path", [p for p in MODULES if p.relative_to(PACKAGE).parts[0] in CAPABILITIES], ids=_id
)
def test_capabilities_use_each_others_package_interface_only(path: Path) -> None:
    here = path.relative_to(PACKAGE).parts[0]
    reaching = [
        f"{_id(path)}:{line}: {here} reaches into {target}; import what "
        f"{area(target)}/__init__.py exposes, or meet in domain/"
        for line, target in imports(path)
        if area(target) in CAPABILITIES - {here} and len(target.split(".")) > 2
    ]
    assert reaching == []
