"""`taleweaver therapy purge|export`, run as cron and a user run them: a real process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from taleweaver.auth import LOCAL_USER_ID
from taleweaver.config import Settings
from taleweaver.domain.therapy import Instrument, ProfileInput
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from tests.test_cli import cli_env

SCRIPT = Path(sys.executable).with_name("taleweaver")

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason=f"the console script is not installed at {SCRIPT}"
)


def therapy(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "therapy", *args],
        env=cli_env(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _records(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, model="scripted")
    engine = await Engine.open(settings, model=ScriptedModel())
    try:
        consent = ProfileInput(therapy_data=True, retention_days=30)
        await engine.therapy.put_profile("local", LOCAL_USER_ID, consent, actor=LOCAL_USER_ID)
        await engine.therapy.create_goal("local", LOCAL_USER_ID, title="Rest well")
        await engine.therapy.take_assessment("local", LOCAL_USER_ID, Instrument.GAD7, [1] * 7)
    finally:
        await engine.close()


def test_purge_keeps_records_within_retention_and_deletes_older_ones(tmp_path: Path) -> None:
    asyncio.run(_records(tmp_path))
    kept = therapy(tmp_path, "purge")
    assert kept.returncode == 0, kept.stderr
    assert "checked 1 player(s)" in kept.stdout
    assert "therapy_goals 0" in kept.stdout
    purged = therapy(tmp_path, "purge", "--now", "2100-01-01")
    assert purged.returncode == 0, purged.stderr
    assert "therapy_assessments 1" in purged.stdout and "therapy_goals 1" in purged.stdout
    exported = therapy(tmp_path, "export", LOCAL_USER_ID)
    assert exported.returncode == 0, exported.stderr
    data = json.loads(exported.stdout)
    assert data["goals"] == [] and data["assessments"] == []
    assert data["profile"]["retention_days"] == 30


def test_purge_refuses_a_date_it_cannot_read(tmp_path: Path) -> None:
    bad = therapy(tmp_path, "purge", "--now", "next tuesday")
    assert bad.returncode == 2 and "next tuesday" in bad.stderr
