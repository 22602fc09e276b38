"""`taleweaver --version`, `--help` and every command's `--help` start without the
heavy libraries, and the help lines of lazily imported commands match the
commands' own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
STILL_HEAVY: dict[str, str] = {}


def imported(args: list[str], env: dict[str, str] | None = None) -> set[str]:
    """Every module `taleweaver ARGS` has imported by the time it exits."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def among(modules: set[str], packages: tuple[str, ...]) -> set[str]:
    return {m for m in modules for p in packages if m == p or m.startswith(p + ".")}


def heavy_imports(args: list[str]) -> set[str]:
    """The heavy modules `taleweaver ARGS` has imported by the time it exits."""
    return among(imported(args), HEAVY)


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


# What opening the engine leaves out until it is needed: migrations (the database is
# current), Redis (no URL), the model providers and what they bring (no turn runs),
# imports and exports, and the web stack (nothing is served).
ENGINE_UNUSED = (
    "alembic",
    "redis",
    "httpx",
    "numpy",
    "onnxruntime",
    "llama_cpp",
    "fastapi",
    "starlette",
    "uvicorn",
    "taleweaver.api",
    "taleweaver.engine.interop",
    "taleweaver.interop.bundles",
    "taleweaver.llm.build",
    "taleweaver.llm.anthropic",
    "taleweaver.llm.ollama",
    "taleweaver.llm.openai_compat",
    "taleweaver.llm.embedded",
    "taleweaver.llm.sentence",
    "taleweaver.llm.text_completion",
)


@pytest.mark.parametrize("command", [["sessions", "list"], ["characters", "list"]])
def test_a_command_on_an_up_to_date_database_opens_the_engine_lightly(
    command: list[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALEWEAVER_")}
    env["TALEWEAVER_DATA_DIR"] = str(tmp_path)
    assert "alembic" in imported(["db", "upgrade"], env)  # the probe sees a migration

    modules = imported(command, env)

    assert "taleweaver.engine.engine" in modules
    assert among(modules, ENGINE_UNUSED) == set()


def test_a_command_on_a_fresh_data_dir_still_migrates(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALEWEAVER_")}
    env["TALEWEAVER_DATA_DIR"] = str(tmp_path)

    assert "alembic" in imported(["sessions", "list"], env)
    assert "alembic" not in imported(["sessions", "list"], env)
