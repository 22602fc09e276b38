"""A running server holds its database: `taleweaver restore` refuses while it does,
on SQLite and PostgreSQL, and a server killed with -9 leaves nothing that blocks."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from taleweaver.cli.main import cli
from taleweaver.config import Settings
from taleweaver.domain.errors import Conflict
from taleweaver.store.database import Database
from taleweaver.store.serving import hold_for_serving, maintenance
from tests.conftest import LoopbackServer
from tests.served import on_backend
from tests.test_cli import start_serving, stop_serving


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
