"""`taleweaver doctor`: what is wrong with this installation, and how to fix it.

Every check runs even when an earlier one fails (a bad key file and an unreachable
provider are both worth knowing at once), except that nothing runs without
settings that load. Exit code: 0 all well, 1 something must be fixed, 2 the
settings themselves are wrong.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

if TYPE_CHECKING:  # its import is pydantic's and the store's: not for `doctor --help`
    from taleweaver.config import Settings

Status = Literal["ok", "warn", "fail"]

# Below these the database or the logs may fill the disk in the middle of a session.
DISK_FAIL_BYTES = 200 * 1024 * 1024
DISK_WARN_BYTES = 2 * 1024 * 1024 * 1024
TIMEOUT_S = 10.0
MODEL_TIMEOUT_S = 60.0  # a local model loads its weights on the first call


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


async def check_data_dir(settings: Settings) -> list[Check]:
    path = settings.data_dir
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK):
            return [_ok("data dir", f"{path} does not exist yet; the server will make it")]
        return [
            Check(
                "data dir",
                "fail",
                f"{path} does not exist and {parent} is not writable",
                f"create it (mkdir -p {path}) as the user the server runs as, "
                "or set TALEWEAVER_DATA_DIR",
            )
        ]
    if not path.is_dir():
        return [Check("data dir", "fail", f"{path} is not a directory", "set TALEWEAVER_DATA_DIR")]
    if not os.access(path, os.W_OK | os.X_OK):
        return [
            Check(
                "data dir",
                "fail",
                f"{path} is not writable by this user",
                f"chown it to the server's user, or chmod u+rwx {path}",
            )
        ]
    checks = [_ok("data dir", f"{path} is writable")]
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO) & ~stat.S_IXOTH & ~stat.S_IXGRP:
        checks.append(
            Check(
                "data dir",
                "warn",
                f"{path} is readable by other users (it holds the database and keys)",
                f"chmod 700 {path}",
            )
        )
    return checks


async def check_disk(settings: Settings) -> list[Check]:
    path = next(p for p in (settings.data_dir, *settings.data_dir.parents) if p.exists())
    free = shutil.disk_usage(path).free
    shown = f"{free / 1024**3:.1f} GiB free at {path}"
    if free < DISK_FAIL_BYTES:
        return [Check("disk", "fail", shown, "free some space: the database cannot grow")]
    if free < DISK_WARN_BYTES:
        return [Check("disk", "warn", shown, "free some space before the database fills it")]
    return [_ok("disk", shown)]


async def check_database(settings: Settings) -> list[Check]:
    from taleweaver.store import migrate
    from taleweaver.store.database import Database, redacted_url, sqlite_url

    url = settings.database_url or sqlite_url(settings.data_dir)
    shown = redacted_url(url)
    if url.startswith("sqlite") and not (settings.data_dir / "taleweaver.db").exists():
        return [_ok("database", f"{shown} will be created when the server starts")]
    try:
        db = Database(url)
    except Exception as exc:  # a malformed URL: say which part
        return [Check("database", "fail", f"{shown}: {exc}", "fix TALEWEAVER_DATABASE_URL")]
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await db.ping()
            current = await migrate.current_revision(db.engine)
    except Exception as exc:
        return [
            Check(
                "database",
                "fail",
                f"cannot reach {shown}: {_reason(exc)}",
                "check the host, port, user and password in TALEWEAVER_DATABASE_URL, "
                "and that the database server is running",
            )
        ]
    finally:
        await db.dispose()
    head = migrate.head_revision()
    if current == head:
        return [_ok("database", f"{shown} reachable, schema at {head} (latest)")]
    behind = f"{shown} reachable, schema at {current or 'nothing'}, this version needs {head}"
    if settings.auto_migrate:
        return [_ok("database", behind + "; the server migrates it at start")]
    return [Check("database", "fail", behind, "run `taleweaver db upgrade`")]


async def check_keys(settings: Settings) -> list[Check]:
    from taleweaver.domain.errors import TaleweaverError
    from taleweaver.store.keys import DEFAULT_KEY_FILE, ENV_NAME, open_key_ring

    keys = settings.encryption_keys
    postgres = (settings.database_url or "").startswith("postgres")
    try:
        ring, file = open_key_ring(
            keys=keys.get_secret_value() if keys is not None else None,
            key_file=settings.key_file,
            data_dir=settings.data_dir,
            create_missing=False,
        )
        ids = ring.key_ids
    except (TaleweaverError, OSError) as exc:
        return [Check("encryption keys", "fail", _reason(exc), f"fix {ENV_NAME} or the key file")]
    if file is None:
        return [_ok("encryption keys", f"{len(ids)} key(s) from {ENV_NAME}")]
    if settings.key_file is not None and not file.exists():
        return [
            Check(
                "encryption keys",
                "fail",
                f"the key file {file.path} (TALEWEAVER_KEY_FILE) does not exist",
                "restore it from your backup, or correct TALEWEAVER_KEY_FILE; without it "
                "encrypted provider keys and sensitive workspaces cannot be read",
            )
        ]
    if not file.exists():
        if postgres:
            return [
                Check(
                    "encryption keys",
                    "warn",
                    f"no key: neither {ENV_NAME} nor a key file is set",
                    "create one with `taleweaver keys rotate` and give every replica the "
                    f"same {ENV_NAME}: provider keys and sensitive workspaces need it",
                )
            ]
        return [_ok("encryption keys", f"none yet; {DEFAULT_KEY_FILE} is made on first need")]
    checks = [_ok("encryption keys", f"{len(ids)} key(s) in {file.path}")]
    if file.path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        checks.append(
            Check(
                "encryption keys",
                "warn",
                f"{file.path} is readable by other users",
                f"chmod 600 {file.path}",
            )
        )
    return checks


async def check_redis(settings: Settings) -> list[Check]:
    if not settings.redis_url:
        return [_ok("redis", "not configured (one server: counters stay in memory)")]
    import redis.asyncio as aioredis

    from taleweaver.store.database import redacted_url

    shown = redacted_url(settings.redis_url)
    client = aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
    )
    try:
        await client.ping()
    except Exception as exc:
        return [
            Check(
                "redis",
                "fail",
                f"cannot reach {shown}: {_reason(exc)}",
                "start Redis or correct TALEWEAVER_REDIS_URL (replicas share limits and "
                "live events through it)",
            )
        ]
    finally:
        await client.aclose()
    return [_ok("redis", f"{shown} answers")]


async def check_models(settings: Settings) -> list[Check]:
    from taleweaver.cli.models import try_models

    try:
        async with asyncio.timeout(MODEL_TIMEOUT_S):
            trials = await try_models(settings, (), max_tokens=4)
    except Exception as exc:
        reason = _reason(exc, MODEL_TIMEOUT_S)
        return [Check("models", "fail", reason, "check the [models] configuration")]
    checks: list[Check] = []
    for trial in trials:
        if trial.ok:
            checks.append(_ok(f"model {trial.alias}", f"answered in {trial.elapsed_ms:.0f} ms"))
        else:
            checks.append(
                Check(
                    f"model {trial.alias}",
                    "fail",
                    trial.detail,
                    "check the provider's base URL, that it is running, and its API key "
                    "(`taleweaver models list` shows what is configured)",
                )
            )
    return checks


async def check_plugins(settings: Settings) -> list[Check]:
    from taleweaver.plugins import load_plugins

    plugins = load_plugins()  # required or not, each is reported here rather than raised
    # Every hook that needs no engine to call: one that raises fails its plugin here.
    for hook in (
        "session_kinds",
        "model_providers",
        "safety_detectors",
        "importers",
        "exporters",
        "event_listeners",
        "cli_commands",
        "api_routers",
    ):
        list(plugins.each(hook))
    required = set(settings.required_plugins)
    checks = [
        Check(
            f"plugin {info.name}",
            "fail" if info.name in required else "warn",
            info.error,
            "fix or uninstall the plugin"
            + (" (the server does not start without it)" if info.name in required else ""),
        )
        for info in plugins.failed()
    ]
    known = {info.name for info in plugins.infos}
    checks += [
        Check(
            f"plugin {name}",
            "fail",
            "required but not installed",
            "install it, or take it out of TALEWEAVER_REQUIRED_PLUGINS",
        )
        for name in sorted(required - known)
    ]
    loaded = [info.name for info in plugins.infos if info.status == "loaded"]
    if loaded or not checks:
        checks.append(
            _ok("plugins", f"loaded: {', '.join(loaded)}" if loaded else "none installed")
        )
    return checks


def _reason(exc: BaseException, limit_s: float = TIMEOUT_S) -> str:
    """One line for the report; `limit_s` is the timeout the failed check ran under."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {limit_s:g} s"
    detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
    return str(detail).splitlines()[0]


CheckFn = Callable[["Settings"], Awaitable[list[Check]]]


async def diagnose(settings: Settings, *, models: bool = True) -> list[Check]:
    checks: list[CheckFn] = [
        check_data_dir,
        check_disk,
        check_database,
        check_keys,
        check_redis,
        check_plugins,
    ]
    if models:
        checks.append(check_models)
    found: list[Check] = []
    for check in checks:
        found.extend(await check(settings))
    return found


_MARK = {"ok": ("ok", "green"), "warn": ("WARN", "yellow"), "fail": ("FAIL", "red")}


@click.command()
@click.option("--no-models", is_flag=True, help="Skip asking each model for a short reply.")
def doctor(no_models: bool) -> None:
    """Check configuration, database, keys, models, Redis and disk; say what to fix."""
    from taleweaver.cli.main import _run, _settings

    settings = _settings()  # exits 2, naming the setting, when the settings are wrong
    checks = _run(diagnose(settings, models=not no_models))
    width = max(len(c.name) for c in checks)
    for check in checks:
        word, colour = _MARK[check.status]
        click.echo(
            f"{click.style(word.ljust(4), fg=colour, bold=True)}  {check.name.ljust(width)}  "
            f"{check.detail}"
        )
        if check.fix:
            click.echo(f"      {' ' * width}  fix: {check.fix}")
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    if failed:
        click.echo(f"\n{failed} problem(s) to fix" + (f", {warned} warning(s)" if warned else ""))
        sys.exit(1)
    click.echo("\nall well" + (f" ({warned} warning(s))" if warned else ""))
