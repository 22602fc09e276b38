"""`taleweaver` commands for imports, exports, workspace bundles and backups."""

from __future__ import annotations

import sys
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from taleweaver.cli.formats import EXPORT_FORMAT
from taleweaver.cli.options import WORKSPACE
from taleweaver.domain.errors import AlreadyImported, TaleweaverError
from taleweaver.domain.events import JSON, EventMetadata

# The engine, the database and the settings (SQLAlchemy, pydantic) are imported
# where a command runs, so that `--help` starts in a blink (tests/test_cli_lazy.py).
if TYPE_CHECKING:
    from taleweaver.config import Settings
    from taleweaver.engine import Engine
    from taleweaver.interop.backup import BackupReport

CLI_ACTOR = "cli"
T = TypeVar("T")


def _settings() -> Settings:
    from taleweaver.cli.main import _settings as settings

    return settings()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    # cli.main imports this module while it loads: borrow its helpers lazily.
    from taleweaver.cli.main import _run as run

    return run(coro)


def _engine(settings: Settings) -> AbstractAsyncContextManager[Engine]:
    from taleweaver.cli.admin import _engine as engine

    return engine(settings)


_WORKSPACE = WORKSPACE


@click.command("backup")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
def backup_cmd(output: Path | None) -> None:
    """Back up the whole instance (safe while the server runs)."""
    if output is None:
        output = Path(f"taleweaver-backup-{datetime.now(UTC):%Y%m%d-%H%M%S}.zip")

    from taleweaver.engine.engine import database_from_settings
    from taleweaver.interop import backup as backups

    async def run(settings: Settings, out: Path) -> BackupReport:
        db = database_from_settings(settings)
        try:
            return await backups.backup(db, out)
        finally:
            await db.dispose()

    report = _run(run(_settings(), output))
    tables = report.manifest["tables"]
    click.echo(
        f"backed up {report.rows} rows in {len(tables)} tables "
        f"({report.manifest['dialect']}, schema {report.manifest['alembic_revision']}) "
        f"to {report.path}"
    )


@click.command("restore")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an instance that already holds data.")
def restore_cmd(archive: Path, force: bool) -> None:
    """Restore a backup into this instance's database (refused while a server runs on it).

    A `taleweaver play` holds the database as a server does: restore refuses while
    one runs too."""
    from taleweaver.engine.engine import database_from_settings
    from taleweaver.interop import backup as backups
    from taleweaver.store.serving import maintenance

    async def run(settings: Settings) -> JSON:
        db = database_from_settings(settings)
        try:
            async with maintenance(db, "restore"):
                return await backups.restore(db, archive, force=force)
        finally:
            await db.dispose()

    manifest = _run(run(_settings()))
    rows = sum(int(t["rows"]) for t in manifest["tables"].values())
    click.echo(f"restored {rows} rows from {archive} (made {manifest['created_at']})")


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_WORKSPACE
@click.option("--title", default=None, help="Title for an imported chat.")
@click.option(
    "--ids",
    type=click.Choice(["auto", "preserve", "remap"]),
    default="auto",
    show_default=True,
    help="Workspace bundles: keep their ids, or give everything new ones.",
)
@click.option(
    "--on-duplicate",
    type=click.Choice(["ask", "update", "copy", "skip"]),
    default="ask",
    show_default=True,
    help="A lorebook imported before: refuse and say so (ask), replace its entries, "
    "keep both, or leave it.",
)
def import_cmd(
    paths: tuple[Path, ...], workspace: str, title: str | None, ids: str, on_duplicate: str
) -> None:
    """Import files, or every file in a folder: SillyTavern chats (JSONL),
    character cards (PNG, JSON, CHARX), lorebooks (SillyTavern, V3, NovelAI) and
    workspace bundles. The kind is recognised from the content."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not found:
                click.echo(f"no files in {path}", err=True)
                sys.exit(1)
            files.extend(found)
        else:
            files.append(path)
    results = _run(_import_files(_settings(), files, workspace, title, ids, on_duplicate))
    failed = 0
    for file, outcome in results:
        if isinstance(outcome, str):
            failed += 1
            click.echo(f"{file}: error: {outcome}", err=True)
        else:
            kind, made = outcome
            click.echo(f"{file}: {kind}: {_describe(made)}")
    if failed:
        sys.exit(1)


def _describe(made: JSON) -> str:
    if "imported" in made and "id" in made:
        counts = made["imported"]
        return f"session {made['id']} ({counts['messages']} messages, {counts['turns']} turns)"
    if "events" in made and "streams" in made:
        return f"{made['streams']} streams, {made['events']} events, ids {made['ids']}"
    name = made.get("name") or made.get("title")
    said = f"{made.get('id', '')} {name or ''}".strip() or "done"
    duplicate = made.get("duplicate")
    if duplicate:  # a re-import: say what became of it
        done = {"update": "updated", "copy": "copied", "skip": "skipped"}[duplicate["outcome"]]
        said += f" ({done}: {duplicate['match']} as {duplicate['of']})"
    return said


async def _import_files(
    settings: Settings,
    files: list[Path],
    workspace: str,
    title: str | None,
    ids: str,
    on_duplicate: str = "ask",
) -> list[tuple[Path, tuple[str, JSON] | str]]:
    from taleweaver.auth import LOCAL_USER_ID
    from taleweaver.interop import detect

    done: list[tuple[Path, tuple[str, JSON] | str]] = []
    meta = EventMetadata(actor=CLI_ACTOR)
    async with _engine(settings) as engine:
        for file in files:
            try:
                data = file.read_bytes()
                # A plugin's format (or taleweaver-json) first: the built-in sniffing
                # refuses a file it does not know before import_file could ask them.
                ours = engine.formats.sniff(data, file.name) is None
                kind = detect.sniff(data, file.name) if ours else None
                if kind == detect.CHAT:
                    made = await engine.interop.import_chat(
                        workspace, data, title=title, owner_id=LOCAL_USER_ID, metadata=meta
                    )
                    done.append((file, (kind, made)))
                elif kind == detect.BUNDLE:
                    report = await engine.interop.import_workspace(
                        workspace,
                        data,
                        ids=ids,  # type: ignore[arg-type]
                    )
                    done.append((file, (kind, report.to_dict())))
                else:
                    done.append(
                        (
                            file,
                            await engine.interop.import_file(
                                workspace,
                                data,
                                filename=file.name,
                                owner_id=LOCAL_USER_ID,
                                metadata=meta,
                                on_duplicate=on_duplicate,  # type: ignore[arg-type]
                            ),
                        )
                    )
            except AlreadyImported as exc:
                found = exc.existing
                done.append(
                    (
                        file,
                        f"already imported ({found['match']} as '{found['name']}', "
                        f"id {found['id']}): run again with --on-duplicate update, copy or skip",
                    )
                )
            except TaleweaverError as exc:
                done.append((file, exc.detail))
            except OSError as exc:
                done.append((file, str(exc)))
    return done


@click.group("export")
def export_group() -> None:
    """Export a session (Markdown, text, JSON, SillyTavern JSONL) or a workspace."""


@export_group.command("session")
@click.argument("session_id")
@_WORKSPACE
@EXPORT_FORMAT
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
def export_session_cmd(session_id: str, workspace: str, fmt: str, output: Path | None) -> None:
    """One session; jsonl is a SillyTavern chat with every swipe."""
    write_session_export(workspace, session_id, fmt, output)


def write_session_export(workspace: str, session_id: str, fmt: str, output: Path | None) -> None:
    """`export session` and `sessions export`: one way, one set of format names."""

    async def run(settings: Settings) -> str:
        async with _engine(settings) as engine:
            return await engine.interop.export_session(workspace, session_id, fmt)

    text = _run(run(_settings()))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@export_group.command("workspace")
@_WORKSPACE
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def export_workspace_cmd(workspace: str, output: Path) -> None:
    """The workspace as a bundle that `taleweaver import` takes back without loss."""

    async def run(settings: Settings) -> bytes:
        async with _engine(settings) as engine:
            return await engine.interop.export_workspace(workspace)

    output.write_bytes(_run(run(_settings())))
    click.echo(f"wrote {output}", err=True)


commands: list[click.Command] = [backup_cmd, restore_cmd, import_cmd, export_group]
