"""The sample plugin really installed: pip builds and installs it into a fresh venv
that sees the project's packages, and that venv's `taleweaver plugins list` shows it
and its kind plays a turn whose context trace holds its source's piece."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from importlib.metadata import distribution
from importlib.util import find_spec
from pathlib import Path

import pytest

from tests.conftest import _on_ci as on_ci

SAMPLE = Path(__file__).parent.parent / "examples" / "taleweaver-sample-plugin"

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from taleweaver.config import Settings
    from taleweaver.domain.events import EventMetadata
    from taleweaver.domain.sessions import SessionKind
    from taleweaver.domain.turns import TurnRequest
    from taleweaver.engine import Engine
    from taleweaver.llm import ScriptedModel

    async def main() -> None:
        settings = Settings(data_dir=Path(sys.argv[1]), model="scripted")
        engine = await Engine.open(settings, model=ScriptedModel())
        try:
            meta = EventMetadata(actor="test")
            made = await engine.sessions.create(
                "local", kind=SessionKind("haiku"), title="Pond",
                settings={"season": "winter"}, metadata=meta,
            )
            request = TurnRequest.build(action=None, text="I kneel", choice=None)
            await (await engine.turns.start("local", made["id"], request, meta)).wait()
            events = await engine.sessions.events("local", made["id"], after=0, limit=100)
            [turn] = [e for e in events if e.type == "turn.committed"]
            print(json.dumps({"kind": made["kind"], "context": turn.payload["context"]}))
        finally:
            await engine.close()

    asyncio.run(main())
    """
)


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if on_ci():
            pytest.fail(f"{reason} (CI is set: the package test must run)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv whose own site-packages holds only what is installed into it; the
    project's environment is added as a site dir (so its `.pth` files count)."""
    _need(find_spec("flit_core") is not None, "flit_core (the sample's build backend) missing")
    root = tmp_path_factory.mktemp("plugin-venv") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(root)],
        check=True,
    )
    python = root / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    (Path(purelib) / "_taleweaver_project.pth").write_text(
        f"import site; site.addsitedir({ours!r})\n"
    )
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            str(SAMPLE),
        ],
        check=True,
        env=os.environ | {"PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    # The `taleweaver` command, as pip writes a console script for the installed
    # project: its entry point, run by this venv's python.
    [point] = [e for e in distribution("taleweaver").entry_points if e.name == "taleweaver"]
    module, func = point.value.split(":")
    script = root / "bin" / "taleweaver"
    script.write_text(f"#!{python}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
    script.chmod(0o755)
    return root


def test_the_installed_sample_shows_in_plugins_list(venv: Path) -> None:
    listed = subprocess.run(
        [venv / "bin" / "taleweaver", "plugins", "list"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "haiku  0.1.0  loaded  hooks: cli_commands, context_sources" in listed
    # Installed into the venv, not found through the project's environment.
    site = venv / "lib"
    assert list(site.glob("python*/site-packages/taleweaver_haiku-0.1.0.dist-info"))


def test_the_installed_samples_kind_plays_a_turn_with_its_source(
    venv: Path, tmp_path: Path
) -> None:
    import json

    run = subprocess.run(
        [venv / "bin" / "python", "-c", SCRIPT, str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["kind"] == "haiku"
    season = [piece for piece in found["context"] if piece.get("source") == "season"]
    assert season and season[0]["ref"] == "winter", found["context"]
