"""`taleweaver --version`, `--help` and every command's `--help` start without the
heavy libraries, and the help lines of lazily imported commands match the
commands' own."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from taleweaver.cli.main import _FEATURES, _SESSION_FEATURES, cli
from taleweaver.cli.options import DEFAULT_WORKSPACE
from taleweaver.store.schema import DEFAULT_WORKSPACE_ID

HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "pydantic",
    "httpx",
    "numpy",
    "onnxruntime",
    "llama_cpp",
    "taleweaver.engine",
)

PROBE = """
import json, sys
from taleweaver.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="taleweaver")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


# Commands whose module still imports a heavy library at its top.
STILL_HEAVY = {
    "doctor": "cli/doctor.py imports taleweaver.config (pydantic, and SQLAlchemy, httpx "
    "and numpy through llm.config) at module level",
}


def heavy_imports(args: list[str]) -> set[str]:
    """The heavy modules `taleweaver ARGS` has imported by the time it exits."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.splitlines()[-1])
    return {m for m in modules for heavy in HEAVY if m == heavy or m.startswith(heavy + ".")}


@pytest.mark.parametrize(
    "args", [["--version"], ["--help"], ["sessions", "--help"], ["sessions", "lorebooks", "--help"]]
)
def test_starting_the_cli_imports_no_heavy_library(args: list[str]) -> None:
    assert heavy_imports(args) == set()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=STILL_HEAVY[name]))
        if name in STILL_HEAVY
        else name
        for name in cli.list_commands(click.Context(cli))
    ],
)
def test_a_commands_help_imports_no_heavy_library(name: str) -> None:
    assert heavy_imports([name, "--help"]) == set()


def test_the_cli_default_workspace_is_the_stores() -> None:
    assert DEFAULT_WORKSPACE == DEFAULT_WORKSPACE_ID


@pytest.mark.parametrize("name", [*_FEATURES, *_SESSION_FEATURES])
def test_a_lazy_commands_help_line_is_its_own(name: str) -> None:
    lazy = {**_FEATURES, **_SESSION_FEATURES}[name]
    command = lazy.load()
    assert isinstance(command, click.Command)
    assert lazy.short_help == command.get_short_help_str(limit=10**6)
