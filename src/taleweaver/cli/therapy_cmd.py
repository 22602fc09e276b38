"""`taleweaver therapy ...`: retention purges (for cron) and a player's export."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

import click

from taleweaver.cli.options import DEFAULT_WORKSPACE as DEFAULT_WORKSPACE_ID
from taleweaver.domain.events import JSON

if TYPE_CHECKING:  # heavy: imported where a command runs, not for its --help
    from taleweaver.config import Settings
    from taleweaver.therapy import PurgeReport


@click.group()
def therapy() -> None:
    """The therapeutic layer: retention and exports."""


async def _purge(settings: Settings, at: datetime | None) -> PurgeReport:
    from taleweaver.cli.admin import _engine

    async with _engine(settings) as engine:
        return await engine.therapy.purge(at=at)


async def _export(settings: Settings, workspace_id: str, user_id: str) -> JSON:
    from taleweaver.cli.admin import _engine

    async with _engine(settings) as engine:
        return await engine.therapy.export(workspace_id, user_id, actor="cli")


@therapy.command("purge")
@click.option(
    "--now",
    "at",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    default=None,
    help="Purge as if it were this time (UTC); default: now.",
)
def purge(at: datetime | None) -> None:
    """Delete therapy records older than each player's retention period.

    Run it daily, e.g. from cron: `15 3 * * * taleweaver therapy purge`. Each run
    writes a `therapy.purged` audit event per workspace.
    """
    from taleweaver.cli.main import _run, _settings

    report = _run(_purge(_settings(), at))
    removed = ", ".join(f"{table} {count}" for table, count in sorted(report.deleted.items()))
    click.echo(f"checked {report.players} player(s); deleted: {removed or 'nothing'}")


@therapy.command("export")
@click.argument("user_id")
@click.option("--workspace", default=DEFAULT_WORKSPACE_ID, show_default=True)
def export(user_id: str, workspace: str) -> None:
    """Print everything stored about a player as JSON."""
    from taleweaver.cli.main import _run, _settings

    click.echo(json.dumps(_run(_export(_settings(), workspace, user_id)), default=str, indent=2))


commands: list[click.Command] = [therapy]
