"""`taleweaver world`: import, export and check a world bible."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from taleweaver.cli.options import DEFAULT_WORKSPACE as DEFAULT_WORKSPACE_ID
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON, EventMetadata
from taleweaver.domain.json_values import find_unstorable
from taleweaver.interop import bounded_json

if TYPE_CHECKING:  # heavy: imported where a command runs, not for its --help
    from taleweaver.config import Settings

CLI_ACTOR = EventMetadata(actor="cli")


def _is_lorebook(data: Any) -> bool:
    """SillyTavern World Info, NovelAI lorebooks and lorebook_v3 files."""
    if not isinstance(data, dict):
        return False
    if data.get("spec") == "lorebook_v3" or "lorebookVersion" in data:
        return True
    return isinstance(data.get("entries"), (dict, list)) and data.get("format") is None


async def _import(
    settings: Settings, data: JSON, world_id: str | None, filename: str | None = None
) -> JSON:
    from taleweaver.cli.admin import _engine
    from taleweaver.memory.lorebook.formats import parse_lorebook
    from taleweaver.memory.lorebook.reimport import file_stem

    async with _engine(settings) as engine:
        if _is_lorebook(data):
            lorebooks: Any = getattr(engine, "lorebooks", None)
            if lorebooks is None:
                raise InvalidInput("lorebook import is not available in this build")
            # Read first: a book that is refused must not leave its new world behind.
            parse_lorebook(data, fallback=file_stem(filename))
            if world_id is None:  # named as the book is: its own name, else its file's
                name = data.get("name") if isinstance(data.get("name"), str) else None
                created = await engine.world.bible.create_world(
                    DEFAULT_WORKSPACE_ID,
                    name=(name or "").strip() or file_stem(filename) or "Lorebook",
                    meta=CLI_ACTOR,
                )
                world_id = str(created["id"])
            result: JSON = await lorebooks.import_book(
                DEFAULT_WORKSPACE_ID, data, world_id=world_id, filename=filename, actor="cli"
            )
            return {"lorebook": result, "world_id": world_id}
        return await engine.world.import_(DEFAULT_WORKSPACE_ID, data, CLI_ACTOR, world_id=world_id)


async def _export(settings: Settings, world_id: str) -> JSON:
    from taleweaver.cli.admin import _engine

    async with _engine(settings) as engine:
        return await engine.world.export(DEFAULT_WORKSPACE_ID, world_id)


async def _check(settings: Settings, world_id: str) -> list[JSON]:
    from taleweaver.cli.admin import _engine

    async with _engine(settings) as engine:
        return await engine.world.continuity.run(DEFAULT_WORKSPACE_ID, world_id, CLI_ACTOR)


@click.group()
def world() -> None:
    """World bibles: import, export, continuity checks (default workspace)."""


@world.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--world", "world_id", default=None, help="Import into this existing world.")
def import_cmd(file: Path, world_id: str | None) -> None:
    """Import a Taleweaver world export, or a lorebook (SillyTavern, NovelAI, V3)."""
    from taleweaver.cli.main import _run, _settings

    try:
        # Bounded: a file nesting 100,000 levels is an error, not a RecursionError.
        data = bounded_json.loads(file.read_bytes(), str(file))
        problem = find_unstorable(data)  # what the HTTP edge refuses, refused alike
        if problem is not None:
            raise InvalidInput(f"{file}: {problem}")
    except InvalidInput as exc:
        click.echo(f"error: {exc.detail}", err=True)
        sys.exit(1)
    result = _run(_import(_settings(), data, world_id, file.name))
    shown = result.get("world_id") or result.get("id")
    click.echo(f"imported into world {shown}")


@world.command("export")
@click.argument("world_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def export_cmd(world_id: str, output: Path | None) -> None:
    """Write a world as JSON (to stdout, or to a file)."""
    from taleweaver.cli.main import _run, _settings

    text = json.dumps(_run(_export(_settings(), world_id)), indent=2, ensure_ascii=False)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {output}")


@world.command("check")
@click.argument("world_id")
def check_cmd(world_id: str) -> None:
    """Check a world's continuity; exit status 1 when it contradicts itself."""
    from taleweaver.cli.main import _run, _settings

    findings = _run(_check(_settings(), world_id))
    for finding in findings:
        click.echo(f"[{finding['kind']}] {finding['summary']}  (finding {finding['id']})")
        for cite in finding["citations"]:
            refs = ", ".join(json.dumps(r, sort_keys=True) for r in cite.get("source_refs") or [])
            what = cite.get("fact_id") or cite.get("entity_id") or cite.get("artifact_id")
            click.echo(
                f"    - {cite['kind']} {what}: {_cited(cite)}" + (f"  from {refs}" if refs else "")
            )
    click.echo(f"{len(findings)} finding(s)")
    if any(f["kind"] == "contradiction" for f in findings):
        sys.exit(1)


def _cited(cite: JSON) -> str:
    if cite["kind"] == "fact":
        return f"{cite.get('entity')}.{cite['attribute']} = {cite['value']!r}"
    if cite["kind"] == "entity":
        return str(cite.get("name"))
    return str(cite.get("text") or cite.get("payload") or "")


commands: list[click.Command] = [world]
