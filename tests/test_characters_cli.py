"""`taleweaver characters`: import files (a bad one refused, the rest kept), list, export."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from taleweaver.cli.main import cli
from tests.data.cards import factory as f


def test_import_list_and_export_from_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    env: dict[str, str | None] = {
        "TALEWEAVER_DATA_DIR": str(tmp_path / "data"),
        "TALEWEAVER_MODEL": "scripted",
        "TALEWEAVER_DATABASE_URL": None,  # unset: SQLite in the data dir
        "TALEWEAVER_CONFIG": None,
    }
    good = tmp_path / "aria.png"
    good.write_bytes(f.png_card(ccv3=f.v3_card()))
    bad = tmp_path / "broken.png"
    bad.write_bytes(f.png_card(ccv3=f.v3_card())[:-20])

    imported = runner.invoke(cli, ["characters", "import", str(good), str(bad)], env=env)

    assert imported.exit_code == 1
    assert "aria.png: " in imported.output and "Aria" in imported.output
    assert "broken.png: refused: not a valid PNG card" in imported.output
    listed = runner.invoke(cli, ["characters", "list", "--json"], env=env)
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [r["name"] for r in rows] == ["Aria"]
    out = tmp_path / "out.json"
    exported = runner.invoke(
        cli, ["characters", "export", rows[0]["id"], "--format", "json", "-o", str(out)], env=env
    )
    assert exported.exit_code == 0, exported.output
    assert json.loads(out.read_text())["data"]["name"] == "Aria"
