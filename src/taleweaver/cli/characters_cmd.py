"""`taleweaver characters …`: list, import and export character cards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from taleweaver.cli.options import WORKSPACE
from taleweaver.domain.errors import TaleweaverError
from taleweaver.domain.events import JSON

if TYPE_CHECKING:  # heavy: imported where a command runs, not for its --help
    from taleweaver.config import Settings
    from taleweaver.engine import Engine

T = TypeVar("T")
CLI_ACTOR = "cli"


def _settings() -> Settings:
    # cli.main imports this module while it loads: borrow its helpers lazily.
    from taleweaver.cli.main import _settings as settings

    return settings()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    from taleweaver.cli.main import _run as run

    return run(coro)


def _engine(settings: Settings) -> AbstractAsyncContextManager[Engine]:
    from taleweaver.cli.admin import _engine as engine

    return engine(settings)


_WORKSPACE = WORKSPACE


@click.group()
def characters() -> None:
    """Character cards (PNG, JSON, CHARX) and companions."""


@characters.command("list")
@_WORKSPACE
@click.option("--tag", default=None, help="Only characters with this tag.")
@click.option("--name", default=None, help="Only characters whose name contains this.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def list_cmd(workspace: str, tag: str | None, name: str | None, as_json: bool) -> None:
    """List the workspace's characters, oldest first."""

    async def run(settings: Settings) -> list[JSON]:
        async with _engine(settings) as engine:
            return await engine.characters.list(workspace, tag=tag, name=name)

    for row in _run(run(_settings())):
        if as_json:
            click.echo(json.dumps(row, default=str))
        else:
            tags = ", ".join(row["tags"])
            click.echo(f"{row['id']}  {row['name']}  [{row['format']} {row['spec']}]  {tags}")


@characters.command("import")
@_WORKSPACE
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--on-duplicate",
    type=click.Choice(["ask", "update", "copy", "skip"]),
    default="ask",
    show_default=True,
    help="A card imported before: refuse and say so (ask), replace its card, keep both, "
    "or leave it.",
)
def import_cmd(workspace: str, files: tuple[str, ...], on_duplicate: str) -> None:
    """Import card files; each is checked on its own and a bad one stops nothing else."""

    async def run(settings: Settings) -> int:
        failed = 0
        async with _engine(settings) as engine:
            for name in files:
                path = Path(name)
                try:
                    data = await asyncio.to_thread(path.read_bytes)
                    made = await engine.characters.import_card(
                        workspace,
                        data,
                        filename=path.name,
                        on_duplicate=on_duplicate,  # type: ignore[arg-type]
                        actor=CLI_ACTOR,
                    )
                except (TaleweaverError, OSError) as exc:  # reported; the other files go on
                    failed += 1
                    detail = exc.detail if isinstance(exc, TaleweaverError) else str(exc)
                    click.echo(f"{path.name}: refused: {detail}", err=True)
                    continue
                again = made.get("duplicate")
                said = f" ({again['outcome']}: {again['match']})" if again else ""
                click.echo(f"{path.name}: {made['id']}  {made['name']}{said}")
        return failed

    failed = _run(run(_settings()))
    if failed:
        raise SystemExit(1)


@characters.command("export")
@_WORKSPACE
@click.argument("character_id")
@click.option(
    "--format", "fmt", type=click.Choice(["png", "json", "charx"]), default="png", show_default=True
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def export_cmd(workspace: str, character_id: str, fmt: str, output: Path) -> None:
    """Write a character out as a card file."""

    async def run(settings: Settings) -> bytes:
        async with _engine(settings) as engine:
            return await engine.characters.export_card(workspace, character_id, fmt)

    output.write_bytes(_run(run(_settings())))
    click.echo(f"wrote {output}")


commands: list[click.Command] = [characters]
