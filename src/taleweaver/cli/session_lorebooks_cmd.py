"""`taleweaver sessions lorebooks`: the books a session consults, attached, detached
and reordered (default workspace)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from taleweaver.cli.options import DEFAULT_WORKSPACE as DEFAULT_WORKSPACE_ID
from taleweaver.domain.events import JSON, EventMetadata

if TYPE_CHECKING:  # heavy: imported where a command runs, not for its --help
    from taleweaver.config import Settings

CLI_ACTOR = EventMetadata(actor="cli")


async def _change(settings: Settings, session_id: str, how: str, *args: Any) -> list[JSON]:
    from taleweaver.cli.admin import _engine

    async with _engine(settings) as engine:
        books = engine.session_lorebooks
        if how == "list":
            return await books.books(DEFAULT_WORKSPACE_ID, session_id)
        if how == "attach":
            lorebook_id, position = args
            return await books.attach(
                DEFAULT_WORKSPACE_ID, session_id, lorebook_id, position=position, metadata=CLI_ACTOR
            )
        if how == "detach":
            return await books.detach(DEFAULT_WORKSPACE_ID, session_id, *args, metadata=CLI_ACTOR)
        return await books.reorder(DEFAULT_WORKSPACE_ID, session_id, *args, metadata=CLI_ACTOR)


def _show(books: list[JSON]) -> None:
    for number, book in enumerate(books, start=1):
        entries = f"{book['entries']} entr{'y' if book['entries'] == 1 else 'ies'}"
        click.echo(f"{number}. {book['id']}  {book['name']}  ({entries}, {book['attached']})")
    if not books:
        click.echo("no lorebooks: attach one with `taleweaver sessions lorebooks attach`")


def _do(session_id: str, how: str, *args: Any) -> None:
    from taleweaver.cli.main import _run, _settings

    _show(_run(_change(_settings(), session_id, how, *args)))


@click.group()
def lorebooks() -> None:
    """The lorebooks a session consults: its own, in order, then its world's."""


@lorebooks.command("list")
@click.argument("session_id")
def list_cmd(session_id: str) -> None:
    """List the session's lorebooks in the order activation reads them."""
    _do(session_id, "list")


@lorebooks.command("attach")
@click.argument("session_id")
@click.argument("lorebook_id")
@click.option(
    "--position", type=click.IntRange(min=0), default=None, help="0 is first; default: last."
)
def attach_cmd(session_id: str, lorebook_id: str, position: int | None) -> None:
    """Attach a lorebook to the session (or move one already attached)."""
    _do(session_id, "attach", lorebook_id, position)


@lorebooks.command("detach")
@click.argument("session_id")
@click.argument("lorebook_id")
def detach_cmd(session_id: str, lorebook_id: str) -> None:
    """Detach one of the session's own lorebooks."""
    _do(session_id, "detach", lorebook_id)


@lorebooks.command("order")
@click.argument("session_id")
@click.argument("lorebook_ids", nargs=-1, required=True)
def order_cmd(session_id: str, lorebook_ids: tuple[str, ...]) -> None:
    """Put the session's own lorebooks in this order (name each once)."""
    _do(session_id, "order", list(lorebook_ids))
