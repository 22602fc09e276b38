"""A command that fails for a reason nobody foresaw says so in one line, naming the
command and its file, and exits 1; `--debug` (or TALEWEAVER_DEBUG) shows the traceback."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from taleweaver.cli.main import cli
from taleweaver.interop import backup
from tests.conftest import copy_sqlite_template


def in_process(data_dir: Path, *args: str, debug: str | None = None) -> Result:
    env = {
        "TALEWEAVER_DATA_DIR": str(data_dir),
        "TALEWEAVER_MODEL": "scripted",
        "TALEWEAVER_DEBUG": debug,
    }
    return CliRunner().invoke(
        cli, list(args), env=env, catch_exceptions=False, prog_name="taleweaver"
    )


@pytest.fixture
def data_dir(tmp_path: Path, sqlite_template: Path) -> Path:
    copy_sqlite_template(sqlite_template, tmp_path / "data" / "taleweaver.db")
    return tmp_path / "data"


def test_a_file_that_cannot_be_written_is_one_line_naming_it(
    data_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "no-such-folder" / "bundle.zip"

    ran = in_process(data_dir, "export", "workspace", "-o", str(target))

    assert ran.exit_code == 1
    assert ran.stderr.splitlines() == [
        f"error: taleweaver export workspace {target}: FileNotFoundError: "
        "No such file or directory (--debug shows the traceback)"
    ]


@pytest.mark.parametrize(
    ("failure", "said"),
    [
        (zipfile.BadZipFile("File is not a zip file"), "BadZipFile: File is not a zip file"),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "UnicodeDecodeError"),
        (RecursionError("maximum recursion depth exceeded"), "RecursionError: maximum"),
        (MemoryError(), "MemoryError: out of memory"),
        (PermissionError(13, "Permission denied", "/x/b.zip"), "/x/b.zip: PermissionError"),
    ],
    ids=["bad-zip", "not-utf8", "recursion", "memory", "permission"],
)
def test_an_unforeseen_failure_is_one_line_naming_the_command_and_file(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    said: str,
) -> None:
    archive = tmp_path / "b.zip"
    archive.write_bytes(b"PK")

    async def failing(*_: Any, **__: Any) -> Any:
        raise failure

    monkeypatch.setattr(backup, "restore", failing)
    ran = in_process(data_dir, "restore", str(archive))

    assert ran.exit_code == 1
    [line] = ran.stderr.splitlines()
    assert line.startswith("error: taleweaver restore ") and said in line, line
    if not isinstance(failure, OSError):
        assert f"restore {archive}: " in line
    assert "Traceback" not in ran.output


@pytest.mark.parametrize("switch", ["flag", "environment"])
def test_debug_shows_the_traceback(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    archive = tmp_path / "b.zip"
    archive.write_bytes(b"PK")

    async def failing(*_: Any, **__: Any) -> Any:
        raise zipfile.BadZipFile("File is not a zip file")

    monkeypatch.setattr(backup, "restore", failing)
    args = ["--debug"] if switch == "flag" else []
    with pytest.raises(zipfile.BadZipFile):  # the runner re-raises what would be printed
        in_process(data_dir, *args, "restore", str(archive), debug="1" if args == [] else None)
