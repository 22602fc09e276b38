"""Each package's public surface is exactly its `__all__`: every public name at a
package's root is declared there, and everything declared is there (as httpx
checks its own root)."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import taleweaver

PACKAGES = sorted(
    info.name
    for info in pkgutil.walk_packages(taleweaver.__path__, "taleweaver.")
    if info.ispkg and ".migrations" not in info.name  # Alembic's, not an API
)


@pytest.mark.parametrize("name", PACKAGES)
def test_a_packages_public_names_are_its_all(name: str) -> None:
    package = importlib.import_module(name)
    declared = getattr(package, "__all__", None)
    assert declared is not None, f"{name} declares no __all__"
    # A package may import a name on first use (PEP 562): every declared one must
    # resolve, and then sits in the package's namespace like an eager import.
    for attr in declared:
        getattr(package, attr)
    public = {
        attr
        for attr, value in vars(package).items()
        if not attr.startswith("_")
        and not isinstance(value, types.ModuleType)  # submodules are reached by name
        and attr != "annotations"  # from __future__
    }
    assert sorted(public) == sorted(declared)
    assert len(set(declared)) == len(declared), f"{name} declares a name twice"
