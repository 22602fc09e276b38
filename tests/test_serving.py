"""A running server, or `taleweaver play`, holds its database: `taleweaver restore`
refuses while it does, on SQLite and PostgreSQL; neither starts writing while a
restore runs; and a server killed with -9 leaves nothing that blocks."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pexpect
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from taleweaver.api.app import create_app
from taleweaver.cli.main import cli
from taleweaver.config import Settings
from taleweaver.domain.errors import Conflict
from taleweaver.engine.engine import database_from_settings
from taleweaver.store.database import Database
from taleweaver.store.serving import hold_for_serving, maintenance
from tests.conftest import LoopbackServer
from tests.served import BACKENDS, on_backend
from tests.served import cli_env as served_env
from tests.test_cli import PROMPT, SCRIPT, _as_from_a_shell, finish, start_serving, stop_serving


def invoke(settings: Settings, *args: str) -> Result:
    env: dict[str, str | None] = {
        "TALEWEAVER_DATA_DIR": str(settings.data_dir),
        "TALEWEAVER_MODEL": "scripted",
        "TALEWEAVER_DATABASE_URL": settings.database_url,
        "TALEWEAVER_CONFIG": None,
    }
    return CliRunner().invoke(cli, list(args), env=env)


def refusal(pid: int) -> str:
    return (
        f"error: a Taleweaver server is running on this database (pid {pid}): stop it "
        f"first (Ctrl-C where it runs, or `kill {pid}`), then run restore again\n"
    )


def user_env(settings: Settings) -> dict[str, str]:
    """The environment of a user running `taleweaver` against `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALEWEAVER_")}
    env.update({k: v for k, v in served_env(settings).items() if v is not None})
    return env | {"TALEWEAVER_SCRIPTED_TOKEN_DELAY_MS": "0", "PYTHONUNBUFFERED": "1"}


async def table_names(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())


def sessions_titled(client: httpx.Client) -> list[str]:
    response = client.get("/api/v1/sessions")
    assert response.status_code == 200, response.text
    return sorted(s["title"] for s in response.json()["items"])


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_restore_is_refused_while_a_server_holds_the_database(
    backend: str, settings: Settings, tmp_path: Path
) -> None:
    with on_backend(backend, settings) as on:
        refused_then_restored(on, tmp_path / "before.zip")


def refused_then_restored(settings: Settings, archive: Path) -> None:
    with LoopbackServer(settings, None) as server, httpx.Client(base_url=server.base_url) as client:
        client.post("/api/v1/sessions", json={"kind": "story", "title": "Kept"})
        assert invoke(settings, "backup", "-o", str(archive)).exit_code == 0
        client.post("/api/v1/sessions", json={"kind": "story", "title": "Made after"})

        refused = invoke(settings, "restore", "--force", str(archive))

        assert refused.exit_code == 1
        assert refused.output == refusal(os.getpid())
        # Nothing was replaced: the server still sees, and writes, its own data.
        client.post("/api/v1/sessions", json={"kind": "story", "title": "Made later"})
        assert sessions_titled(client) == ["Kept", "Made after", "Made later"]

    restored = invoke(settings, "restore", "--force", str(archive))
    assert restored.exit_code == 0, restored.output
    with LoopbackServer(settings, None) as server, httpx.Client(base_url=server.base_url) as client:
        assert sessions_titled(client) == ["Kept"]


def test_a_server_killed_with_sigkill_does_not_block_restore(
    settings: Settings, tmp_path: Path
) -> None:
    archive = tmp_path / "backup.zip"
    assert invoke(settings, "backup", "-o", str(archive)).exit_code == 0
    running = start_serving(settings.data_dir)
    try:
        refused = invoke(settings, "restore", "--force", str(archive))
        assert refused.output == refusal(running.process.pid)

        running.process.send_signal(signal.SIGKILL)
        running.process.wait(timeout=10)
    finally:
        stop_serving(running.process)

    restored = invoke(settings, "restore", "--force", str(archive))
    assert restored.exit_code == 0, restored.output
    assert restored.output.startswith("restored ")


@pytest.mark.dialects
async def test_a_server_cannot_start_while_a_restore_has_the_database(
    database: Database,
) -> None:
    async with maintenance(database, "restore"):
        with pytest.raises(Conflict, match="a restore is replacing this database"):
            await hold_for_serving(database)
    lease = await hold_for_serving(database)  # and once it is done, it can
    await lease.release()


@pytest.mark.dialects
async def test_servers_share_the_database_and_each_blocks_restore_until_it_stops(
    database: Database,
) -> None:
    first, second = await hold_for_serving(database), await hold_for_serving(database)
    await first.release()
    with pytest.raises(Conflict, match=f"pid {os.getpid()}") as refused:
        async with maintenance(database, "restore"):
            pass
    assert socket.gethostname() not in str(refused.value)  # this host's pid: no host named
    await second.release()
    async with maintenance(database, "restore"):
        pass


@pytest.mark.parametrize("backend", BACKENDS)
def test_restore_is_refused_while_play_holds_the_database(
    backend: str, settings: Settings, tmp_path: Path
) -> None:
    with on_backend(backend, settings) as on:
        archive = tmp_path / "before.zip"
        child: Any = pexpect.spawn(
            str(SCRIPT),
            ["play"],
            env=user_env(on),
            encoding="utf-8",
            timeout=15,
            preexec_fn=_as_from_a_shell,
        )
        try:
            child.expect(PROMPT)
            assert invoke(on, "backup", "-o", str(archive)).exit_code == 0  # safe meanwhile

            refused = invoke(on, "restore", "--force", str(archive))

            assert refused.exit_code == 1
            assert refused.output == (
                f"error: `taleweaver play` is running on this database (pid {child.pid}): "
                f"stop it first (/quit where it runs, or `kill {child.pid}`), "
                "then run restore again\n"
            )
            child.sendline("I look around")  # the player's story is still written
            child.expect(PROMPT)
            child.sendline("/quit")
            assert finish(child) == 0
        finally:
            child.close(force=True)

        restored = invoke(on, "restore", "--force", str(archive))
        assert restored.exit_code == 0, restored.output


@pytest.mark.parametrize("backend", BACKENDS)
def test_neither_server_nor_play_writes_while_a_restore_has_the_database(
    backend: str, settings: Settings, tmp_path: Path
) -> None:
    fresh = settings.model_copy(update={"data_dir": tmp_path / "fresh"})
    with on_backend(backend, fresh) as on:
        asyncio.run(refused_during_restore(on))


async def refused_during_restore(settings: Settings) -> None:
    db = database_from_settings(settings)
    try:
        async with maintenance(db, "restore"):
            app = create_app(settings)
            with pytest.raises(Conflict, match="start the server when it finishes"):
                async with app.router.lifespan_context(app):
                    pass
            play = await asyncio.create_subprocess_exec(
                str(SCRIPT),
                "play",
                env=user_env(settings),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(play.communicate(), 30)
            assert play.returncode == 1
            assert err.decode() == (
                "error: a restore is replacing this database right now: "
                "start `taleweaver play` when it finishes\n"
            )
        # Both refused before migrating: the fresh database has no tables at all.
        assert await table_names(db) == []
    finally:
        await db.dispose()
