"""`taleweaver`: serve, play, db, sessions."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from taleweaver.cli.formats import EXPORT_FORMAT
from taleweaver.cli.lazy import LazyCommand, LazyGroup
from taleweaver.domain.errors import TaleweaverError
from taleweaver.domain.sessions import SessionKind

if TYPE_CHECKING:
    from taleweaver.config import Settings

T = TypeVar("T")


def _settings() -> Settings:
    # Settings pull in pydantic and the model catalogue: only commands that run need them.
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from taleweaver.config import Settings

    try:
        return Settings()
    except (ValidationError, SettingsError) as exc:
        click.echo(f"configuration error: {_config_problem(exc)}", err=True)
        sys.exit(2)


def _config_problem(exc: Exception) -> str:
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        message = error["msg"].removeprefix("Value error, ").replace("\n", "\n    ")
        lines.append(f"\n  {where}: {message}")
    return "".join(lines)


def _feature(name: str, short_help: str) -> LazyCommand:
    return LazyCommand(f"taleweaver.cli.{name}", short_help)


# Imported only when run (see cli/lazy.py); the help lines match each command's own.
_FEATURES = {
    "backup": _feature(
        "interop_cmd:backup_cmd", "Back up the whole instance (safe while the server runs)."
    ),
    "characters": _feature(
        "characters_cmd:characters", "Character cards (PNG, JSON, CHARX) and companions."
    ),
    "doctor": _feature(
        "doctor:doctor",
        "Check configuration, database, keys, models, Redis and disk; say what to fix.",
    ),
    "export": _feature(
        "interop_cmd:export_group",
        "Export a session (Markdown, text, JSON, SillyTavern JSONL) or a workspace.",
    ),
    "import": _feature(
        "interop_cmd:import_cmd",
        "Import files, or every file in a folder: SillyTavern chats (JSONL), character "
        "cards (PNG, JSON, CHARX), lorebooks (SillyTavern, V3, NovelAI) and workspace bundles.",
    ),
    "plugins": _feature(
        "plugins_cmd:plugins",
        "Installed plugins (name, version, hooks, status) and the commands they add.",
    ),
    "restore": _feature(
        "interop_cmd:restore_cmd",
        "Restore a backup into this instance's database (refused while a server runs on it).",
    ),
    "safety": _feature(
        "safety_cmd:safety",
        "Crisis detection: evaluate the layers, train the learned detector, check a text.",
    ),
    "therapy": _feature("therapy_cmd:therapy", "The therapeutic layer: retention and exports."),
    "world": _feature(
        "world_cmd:world", "World bibles: import, export, continuity checks (default workspace)."
    ),
}
_SESSION_FEATURES = {
    "lorebooks": _feature(
        "session_lorebooks_cmd:lorebooks",
        "The lorebooks a session consults: its own, in order, then its world's.",
    ),
}


class _Root(LazyGroup):
    """Every command's failure as one line on stderr and exit status 1: a user
    meets a message, not a traceback (`--debug` shows it)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: it prints them and picks the status
        except TaleweaverError as exc:
            click.echo(f"error: {exc.detail}", err=True)
            ctx.exit(1)
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"error: {_unexpected(exc)} (--debug shows the traceback)", err=True)
            ctx.exit(1)


def _unexpected(exc: Exception) -> str:
    """What failed: the command, the file it was given or failed on, and why."""
    command = None
    files: list[str] = []
    trace = exc.__traceback__
    while trace is not None:  # the innermost command's context, with its arguments
        found = trace.tb_frame.f_locals.get("ctx")
        if isinstance(found, click.Context):
            command = found
        trace = trace.tb_next
    if command is not None:
        for value in command.params.values():
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, Path):
                    files.append(str(item))
    why = str(exc).splitlines()[0][:300] if str(exc) else ""
    if isinstance(exc, OSError) and exc.filename is not None:
        files = [str(exc.filename)]
        why = exc.strerror or why
    elif isinstance(exc, MemoryError):
        why = why or "out of memory"
    where = " ".join([command.command_path if command else "taleweaver", *files])
    return f"{where}: {type(exc).__name__}: {why}" if why else f"{where}: {type(exc).__name__}"


@click.group(cls=_Root, lazy=_FEATURES)
@click.version_option(package_name="taleweaver")
@click.option(
    "--debug",
    is_flag=True,
    envvar="TALEWEAVER_DEBUG",
    help="On an unexpected error, show the traceback instead of one line.",
)
def cli(debug: bool) -> None:
    """Taleweaver: persistent AI narrative sessions."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Run the HTTP API (and print where it listens)."""
    from taleweaver import server
    from taleweaver.cli.admin import access_notice

    settings = _settings().model_copy(update={"bind_host": host})
    server.configure_logging(settings)
    notice = _run(access_notice(settings))
    app = server.create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"Taleweaver {click.style('serving', bold=True)} on http://{shown}:{port}")
    click.echo(f"  API docs: http://{shown}:{port}/docs    model: {settings.resolved_model()}")
    click.echo(f"  data: {settings.data_dir}    database: {_database_shown(settings)}")
    for line in notice:
        click.echo(f"  {line}")
    server.run(app, host=host, port=port)


def _database_shown(settings: Settings) -> str:
    from taleweaver.store.database import redacted_url, sqlite_url

    return redacted_url(settings.database_url or sqlite_url(settings.data_dir))


@cli.command()
@click.option("--session", "session_id", help="Continue this session instead of a new one.")
@click.option("--title", default="A new story", show_default=True)
@click.option("--premise", default=None, help="What the story is about.")
@click.option("--character", default=None, help="Chat with this character (id or name) instead.")
@click.option("--world", "world_id", default=None, help="Set the story in this world (id).")
@click.option(
    "--as", "persona", default=None, help="Your name in the story ({{user}}) and its exports."
)
def play(
    session_id: str | None,
    title: str,
    premise: str | None,
    character: str | None,
    world_id: str | None,
    persona: str | None,
) -> None:
    """Play an interactive story, or chat with a character, in the terminal.

    Type what you do, or a choice's number; /help lists the commands (/continue,
    /regenerate, /edit TEXT, /quit). Ctrl-C stops the narrator's current reply;
    Ctrl-D leaves.
    """
    from taleweaver.cli.play import Start, run_play

    start = Start(session_id, title, premise, character, world_id, persona)
    sys.exit(run_play(_settings(), start))


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from taleweaver.cli.admin import upgrade

    revision = _run(upgrade(_settings()))
    click.echo(f"database at revision {revision}")


@db.command("wait")
@click.option("--timeout", "timeout_s", default=300.0, show_default=True, help="Seconds to wait.")
def db_wait(timeout_s: float) -> None:
    """Wait until another process has migrated the database to this version's schema
    (a replica's start-up, where one job migrates); exit 1 if it does not in time."""
    from taleweaver.cli.admin import wait_for_schema

    if not _run(wait_for_schema(_settings(), timeout_s)):
        raise click.ClickException(
            f"the database is not at this version's schema after {timeout_s:g} s"
        )
    click.echo("database schema is current")


@cli.group(cls=LazyGroup, lazy=_SESSION_FEATURES)
def sessions() -> None:
    """List, export and delete sessions."""


@sessions.command("list")
@click.option("--kind", type=click.Choice([kind.value for kind in SessionKind]))
@click.option("--archived/--active", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def sessions_list(kind: str | None, archived: bool | None, as_json: bool) -> None:
    """List sessions, pinned and most recent first."""
    from taleweaver.cli.admin import list_sessions

    rows = _run(list_sessions(_settings(), kind=kind, archived=archived))
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, default=str))
        else:
            pin = "*" if row["pinned"] else " "
            turns = int(row["turn_count"])
            counted = f"{turns:>5} {'turn ' if turns == 1 else 'turns'}"
            when = str(row.get("updated_at") or "")[:16]  # "YYYY-MM-DD HH:MM", UTC
            click.echo(f"{pin} {row['id']}  {when}  {row['kind']:<9} {counted}  {row['title']}")
    if not rows and not as_json:
        click.echo("no sessions yet: start one with `taleweaver play`")


@sessions.command("delete")
@click.argument("session_id")
@click.option("--yes", is_flag=True, help="Do not ask first.")
def sessions_delete(session_id: str, yes: bool) -> None:
    """Delete a session (asks first; a backup still holds it)."""
    from taleweaver.cli.admin import delete_session

    if not yes:
        click.confirm(f"Delete session {session_id}?", abort=True)
    title = _run(delete_session(_settings(), session_id))
    click.echo(f"deleted {session_id} ({title})")


@sessions.command("export")
@click.argument("session_id")
@click.option("--workspace", default="local", show_default=True, help="Workspace id.")
@EXPORT_FORMAT
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
def sessions_export(session_id: str, workspace: str, fmt: str, output: Path | None) -> None:
    """Export a session: Markdown, text, JSON with its events, or a SillyTavern chat."""
    from taleweaver.cli.interop_cmd import write_session_export

    write_session_export(workspace, session_id, fmt, output)


@cli.group()
def users() -> None:
    """Accounts on this instance."""


@users.command("create-admin")
@click.option("--email", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--name", "display_name", default=None)
def users_create_admin(email: str, password: str, display_name: str | None) -> None:
    """Create an instance administrator (also an owner of the default workspace)."""
    from taleweaver.cli.admin import create_admin

    user = _run(create_admin(_settings(), email, password, display_name))
    click.echo(f"created administrator {user['email']} ({user['id']})")


@users.command("set-name")
@click.argument("name")
@click.option("--email", default=None, help="The account to rename (default: this laptop's).")
def users_set_name(name: str, email: str | None) -> None:
    """Set a display name: who {{user}} is, and the player's name in chat exports."""
    from taleweaver.cli.admin import set_display_name

    user = _run(set_display_name(_settings(), name, email))
    click.echo(f"display name of {user['email']}: {user['display_name']}")


@cli.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; exit 1 at the first broken link."""
    from taleweaver.cli.admin import verify_audit

    result = _run(verify_audit(_settings()))
    if result.ok:
        click.echo(f"audit log intact: {result.entries} entries verified")
        return
    click.echo(f"audit log TAMPERED at entry {result.first_bad_seq}: {result.problem}", err=True)
    sys.exit(1)


@cli.group()
def models() -> None:
    """The configured models: list them, or check that each one answers."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_list(as_json: bool) -> None:
    """Each model with its provider, price and the tasks routed to it."""
    from taleweaver.cli.models import describe_models, model_lines

    overview = _run(describe_models(_settings()))
    if as_json:
        click.echo(json.dumps(overview, indent=2))
        return
    for line in model_lines(overview):
        click.echo(line)
    click.echo("")
    for task, chain in overview["routes"].items():
        click.echo(f"{task:<10} {' -> '.join(chain) or '-'}")


@models.command("test")
@click.argument("aliases", nargs=-1)
@click.option("--max-tokens", default=32, show_default=True, type=int)
def models_test(aliases: tuple[str, ...], max_tokens: int) -> None:
    """Ask each model (or the ones named) for a short reply; exit 1 if any fails."""
    from taleweaver.cli.models import trial_line, try_models

    trials = _run(try_models(_settings(), aliases, max_tokens))
    width = max((len(t.alias) for t in trials), default=0)
    for trial in trials:
        click.echo(trial_line(trial, width))
    if not all(t.ok for t in trials):
        sys.exit(1)


@cli.group()
def keys() -> None:
    """Encryption at rest: the keys in use, and rotating them without downtime."""


@keys.command("status")
def keys_status() -> None:
    """Where the keys come from, and how many stored values each table encrypts."""
    from taleweaver.cli.keys import key_status, status_lines

    for line in status_lines(_run(key_status(_settings()))):
        click.echo(line)


@keys.command("rotate")
@click.option(
    "--reencrypt-only",
    is_flag=True,
    help="Make no new key: re-encrypt under the current primary (after changing "
    "TALEWEAVER_ENCRYPTION_KEYS, or to finish an interrupted rotation).",
)
@click.option(
    "--grace",
    default=2.0,
    show_default=True,
    type=float,
    help="Seconds between writing the new key and re-encrypting.",
)
@click.option("--batch", default=200, show_default=True, type=click.IntRange(1, 10_000))
def keys_rotate(reencrypt_only: bool, grace: float, batch: int) -> None:
    """Make a new primary key and re-encrypt every stored value under it, while
    servers keep running; older keys leave the key file once nothing needs them."""
    from taleweaver.cli.keys import env_rotation, rotate_keys

    settings = _settings()
    if settings.encryption_keys is not None and not reencrypt_only:
        click.echo("keys come from the environment; set this on every replica first:")
        click.echo(env_rotation(settings))
        click.echo("then, once all run with it: taleweaver keys rotate --reencrypt-only")
        return
    done, unused = _run(
        rotate_keys(settings, new_primary=not reencrypt_only, grace=grace, batch=batch)
    )
    click.echo(f"primary key: {done.key_id}")
    counts = ", ".join(f"{table} {n}" for table, n in done.reencrypted.items())
    click.echo(f"re-encrypted: {counts}")
    if done.left_on_old_keys:
        click.echo(
            f"{done.left_on_old_keys} values are still under older keys (written during "
            "the rotation?): run `taleweaver keys rotate --reencrypt-only`; old keys kept",
            err=True,
        )
        sys.exit(1)
    if done.retired:
        click.echo(f"retired from the key file: {', '.join(done.retired)}")
    elif unused and settings.encryption_keys is not None:
        click.echo(f"no longer needed, drop from TALEWEAVER_ENCRYPTION_KEYS: {', '.join(unused)}")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except TaleweaverError as exc:
        click.echo(f"error: {exc.detail}", err=True)
        sys.exit(1)


def main() -> None:
    cli()
