"""`taleweaver --version` and `--help` start without the heavy libraries, and the
help lines of lazily imported commands match the commands' own."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from taleweaver.cli.main import _FEATURES, _SESSION_FEATURES

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


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["sessions", "--help"]])
def test_starting_the_cli_imports_no_heavy_library(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.splitlines()[-1])
    loaded = {m for m in modules for heavy in HEAVY if m == heavy or m.startswith(heavy + ".")}
    assert loaded == set()


@pytest.mark.parametrize("name", [*_FEATURES, *_SESSION_FEATURES])
def test_a_lazy_commands_help_line_is_its_own(name: str) -> None:
    lazy = {**_FEATURES, **_SESSION_FEATURES}[name]
    command = lazy.load()
    assert isinstance(command, click.Command)
    assert lazy.short_help == command.get_short_help_str(limit=10**6)
