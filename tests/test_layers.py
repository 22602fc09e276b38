"""Imports point down the layers of DESIGN.md, and capabilities meet through each
other's package interfaces (or domain types), never each other's modules.

The same rules as ../shared/tools/layers.py, checked on every run of the suite.
"""

from __future__ import annotations

import ast
import sys
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
    "studio": 2,
    "terminals": 2,
    "files": 2,
    "auth": 2,
    "jobs": 2,
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


# --- each capability owns its parts (issue #11) ------------------------------------------------


def _modules_of(area_name: str) -> list[Path]:
    return [p for p in MODULES if p.relative_to(PACKAGE).parts[0] == area_name]


# Pure computation a domain rule may use beside the standard library (no I/O in them).
DOMAIN_LIBRARIES = {"rapidfuzz"}
# Standard modules that reach outside the process: domain rules never do.
IO_MODULES = {
    "asyncio",
    "http",
    "importlib",
    "io",
    "os",
    "pathlib",
    "shutil",
    "socket",
    "sqlite3",
    "subprocess",
    "tempfile",
    "urllib",
}


@pytest.mark.parametrize("path", _modules_of("domain"), ids=_id)
def test_domain_imports_only_domain_and_pure_libraries(path: Path) -> None:
    outside = []
    for line, target in imports(path):
        top = target.split(".")[0]
        if top == "taleweaver":
            ok = area(target) == "domain"
        else:
            ok = (
                top == "__future__"
                or top in DOMAIN_LIBRARIES
                or (top in sys.stdlib_module_names and top not in IO_MODULES)
            )
        if not ok:
            outside.append(f"{_id(path)}:{line}: domain imports {target}")
    assert outside == [], "domain/ is pure models and rules: no I/O, nothing above it"


def test_the_pipeline_contracts_live_in_domain() -> None:
    """Capabilities implement context sources, extractors and continuity checkers, and
    the engine calls them: the contracts are domain types, owned by neither."""
    from taleweaver.domain import pipeline

    for name in ("ContextSource", "Extractor", "ContinuityChecker", "RecallQuery"):
        assert name in pipeline.__all__
    assert not (PACKAGE / "memory" / "context.py").exists()
    assert not (PACKAGE / "memory" / "seams.py").exists()


# Routes parse, authenticate and call the engine (DESIGN.md, transports): beside the
# API's own modules they import the engine, domain types, the access policy (auth),
# the metrics exposition (observability) and settings; never the store or a
# capability, whose services they reach through the engine.
ROUTE_IMPORTS = {"api", "engine", "domain", "auth", "observability", "config"}


ROUTES = [p for p in _modules_of("api") if p.relative_to(PACKAGE).parts[1] == "routes"]


@pytest.mark.parametrize("path", ROUTES, ids=_id)
def test_routes_import_only_the_engine_and_domain(path: Path) -> None:
    reaching = [
        f"{_id(path)}:{line}: a route imports {target}; reach it through the engine"
        for line, target in imports(path)
        if target.split(".")[0] == "taleweaver"
        and (there := area(target)) is not None
        and there not in ROUTE_IMPORTS
    ]
    assert reaching == []


# Where the engine may name each capability (path under engine/): its wiring
# (engine.py) builds them all, and a service that fronts one names its own. The turn
# pipeline (pipeline, kinds, turns, context, stages) calls models and the safety
# checker, and meets every other capability through domain/pipeline.py; a kind a
# capability brings (therapy's) is provided at wiring time, not named in kinds.py.
ENGINE_NAMES = {
    "llm": None,  # models: anywhere in the engine
    "safety": {"engine.py", "pipeline.py", "stages/safety.py"},
    "auth": {"engine.py", "flags.py"},
    "realtime": {"engine.py", "live.py"},
    "memory": {
        "engine.py",
        "conversations.py",
        "interop.py",
        "prefill.py",
        "session_lorebooks.py",
    },
    "characters": {"engine.py", "conversations.py", "interop.py"},
    "interop": {"interop.py", "export.py", "chat_import.py"},
    "therapy": {"engine.py"},
    "studio": {"engine.py"},
    "terminals": {"engine.py"},
    "files": {"engine.py", "file_assist.py"},  # a file's assistant proposes through it
    "jobs": {"engine.py", "jobs.py"},
}


def test_every_capability_has_its_place_in_the_engine() -> None:
    assert set(ENGINE_NAMES) == CAPABILITIES


@pytest.mark.parametrize("path", _modules_of("engine"), ids=_id)
def test_the_engine_names_a_capability_only_where_it_is_wired(path: Path) -> None:
    where = "/".join(path.relative_to(PACKAGE / "engine").parts)
    naming = [
        f"engine/{where}:{line}: imports {target}; wire it in engine.py, or meet in domain/"
        for line, target in imports(path)
        if (there := area(target)) in ENGINE_NAMES
        and (allowed := ENGINE_NAMES[there]) is not None
        and where not in allowed
    ]
    assert naming == []


TRANSPORT_LIBRARIES = {"fastapi", "starlette", "uvicorn"}


@pytest.mark.parametrize("path", _modules_of("cli"), ids=_id)
def test_the_cli_imports_no_transport(path: Path) -> None:
    """`taleweaver serve` starts the server through taleweaver.server; every other
    command talks to the engine directly."""
    transport = [
        f"{_id(path)}:{line}: the CLI imports {target}"
        for line, target in imports(path)
        if area(target) == "api" or target.split(".")[0] in TRANSPORT_LIBRARIES
    ]
    assert transport == []


def test_only_the_server_entry_and_the_api_import_the_api() -> None:
    outside = [
        f"{path.relative_to(PACKAGE)}:{line}: imports {target}"
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in {"api", "server.py"}
        for line, target in imports(path)
        if area(target) == "api"
    ]
    assert outside == []
