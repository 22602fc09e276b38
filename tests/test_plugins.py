"""Plugins: the sample package, really installed, adds a session kind that plays
through the API, a context source the turn's trace shows, an event listener and a
command; a plugin that fails is reported and stops nothing unless it is required."""

from __future__ import annotations

import importlib
import shutil
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import APIRouter

from taleweaver.api import create_app
from taleweaver.cli.doctor import check_plugins
from taleweaver.cli.main import cli
from taleweaver.config import Settings
from taleweaver.domain.events import RecordedEvent
from taleweaver.engine.kinds import KINDS
from taleweaver.plugins import Plugins, RequiredPluginFailed, hookimpl, load_plugins

SAMPLE = Path(__file__).parent.parent / "examples" / "taleweaver-sample-plugin"
API = "/api/v1"
Serve = Callable[..., httpx.Client]


@pytest.fixture(scope="module")
def sample_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample plugin laid out as an install leaves it: its package, and a dist-info
    whose metadata and entry points come from its pyproject.toml, for tests in this
    process (tests/test_plugin_package.py really pip-installs it, in a venv)."""
    pyproject = tomllib.loads((SAMPLE / "pyproject.toml").read_text())
    project = pyproject["project"]
    site = tmp_path_factory.mktemp("sample-site")
    package = pyproject["tool"]["flit"]["module"]["name"]
    shutil.copytree(SAMPLE / package, site / package)
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    groups = project["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in points.items())
            for group, points in groups.items()
        )
    )
    return site


@pytest.fixture
def installed(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The sample on the path, as if installed next to Taleweaver; its kind goes away after."""
    monkeypatch.syspath_prepend(str(sample_site))
    sample = importlib.import_module("taleweaver_haiku")
    sample.SEEN.clear()
    yield sample
    for kind in [kind for kind in KINDS if kind == "haiku"]:
        del KINDS[kind]


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed plugin whose module raises on import."""
    site = tmp_path / "broken-site"
    info = site / "taleweaver_broken-0.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: taleweaver-broken\nVersion: 0.2\n")
    (info / "entry_points.txt").write_text("[taleweaver.plugins]\nbroken = broken_plugin\n")
    (site / "broken_plugin.py").write_text("raise RuntimeError('no config for broken')\n")
    monkeypatch.syspath_prepend(str(site))


def test_plugins_list_shows_name_version_hooks_and_status(installed: Any) -> None:
    result = CliRunner().invoke(cli, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    assert (
        "haiku  0.1.0  loaded  hooks: cli_commands, context_sources, event_listeners, "
        "session_kinds" in result.output
    )


def test_a_plugins_command_runs_under_taleweaver_plugins(installed: Any) -> None:
    result = CliRunner().invoke(cli, ["plugins", "syllables", "an old silent pond"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "5"


def test_a_plugin_kind_plays_a_turn_with_its_context_source(installed: Any, serve: Serve) -> None:
    client = serve()
    created = client.post(
        f"{API}/sessions",
        json={"kind": "haiku", "title": "Pond", "settings": {"season": "winter"}},
    )
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    assert created.json()["kind"] == "haiku"
    turn = client.post(f"{API}/sessions/{session_id}/turns", json={"text": "I kneel by the pond"})
    assert turn.status_code == 201, turn.text
    events = client.get(f"{API}/sessions/{session_id}/events").json()
    committed = [e for e in events if e["type"] == "turn.committed"][-1]
    trace = committed["payload"]["context"]
    assert {"source": "system", "reason": "haiku prompt"} in trace
    season = [t for t in trace if t.get("source") == "season"]
    assert season and season[0]["ref"] == "winter", trace
    # The listener heard the session's creation and its turn, after they committed.
    assert installed.SEEN["session.created"] >= 1 and installed.SEEN["turn.committed"] >= 1
    # A kind no plugin added is still refused.
    unknown = client.post(f"{API}/sessions", json={"kind": "sonnet", "title": "No"})
    assert unknown.status_code == 422


def test_a_plugin_failing_at_load_is_reported_and_the_server_starts(
    broken: None, serve: Serve, settings: Settings
) -> None:
    client = serve()
    assert client.get("/healthz").status_code == 200
    result = CliRunner().invoke(cli, ["plugins", "list"])
    assert "broken  0.2  failed  hooks: -  error: RuntimeError: no config for broken" in (
        result.output
    )


async def test_doctor_reports_a_failed_plugin_and_fails_when_it_is_required(
    broken: None, settings: Settings
) -> None:
    [check] = [c for c in await check_plugins(settings) if c.name == "plugin broken"]
    assert check.status == "warn" and "no config for broken" in check.detail
    required = settings.model_copy(update={"required_plugins": ["broken", "absent"]})
    checks = {c.name: c for c in await check_plugins(required)}
    assert checks["plugin broken"].status == "fail"
    assert checks["plugin absent"].detail == "required but not installed"


def test_a_required_plugin_that_fails_stops_the_server(broken: None, settings: Settings) -> None:
    with pytest.raises(RequiredPluginFailed, match="broken"):
        create_app(settings.model_copy(update={"required_plugins": ["broken"]}))
    with pytest.raises(RequiredPluginFailed, match="not installed: absent"):
        load_plugins(["absent"])


def test_a_hook_that_raises_fails_its_plugin_only() -> None:
    def boom() -> dict[str, object]:
        raise ValueError("bad kinds")

    plugins = Plugins()
    plugins.register(SimpleNamespace(session_kinds=hookimpl(boom)), "bad")
    plugins.register(SimpleNamespace(session_kinds=hookimpl(lambda: {"x": 1})), "good")
    assert list(plugins.each("session_kinds")) == [("good", {"x": 1})]
    assert [(i.name, i.status, i.error) for i in plugins.infos] == [
        ("bad", "failed", "ValueError: bad kinds"),
        ("good", "loaded", ""),
    ]


def test_a_hook_not_in_the_spec_fails_the_plugin_at_registration() -> None:
    plugins = Plugins()
    with pytest.raises(Exception, match="unknown hook"):
        plugins.register(SimpleNamespace(session_kind=hookimpl(lambda: {})), "typo")
    assert [i.status for i in plugins.infos] == ["failed"]


async def test_a_plugins_router_is_served_and_a_failing_listener_spares_the_commit(
    make_engine: Callable[..., Any], settings: Settings
) -> None:
    router = APIRouter()

    @router.get("/api/v1/plugin-hello")
    async def hello() -> dict[str, str]:
        return {"hello": "from a plugin"}

    heard: list[str] = []

    async def broken_listener(events: Sequence[RecordedEvent]) -> None:
        heard.extend(event.type for event in events)
        raise RuntimeError("the webhook is down")

    plugins = Plugins()
    plugins.register(
        SimpleNamespace(
            api_routers=hookimpl(lambda: [router]),
            event_listeners=hookimpl(lambda: [broken_listener]),
        ),
        "extras",
    )
    engine = await make_engine(plugins=plugins)
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            assert (await client.get(f"{API}/plugin-hello")).json() == {"hello": "from a plugin"}
            created = await client.post(f"{API}/sessions", json={"kind": "story", "title": "T"})
            assert created.status_code == 201, created.text
            listed = await client.get(f"{API}/sessions")
            assert [s["id"] for s in listed.json()["items"]] == [created.json()["id"]]
    assert heard == ["session.created"]


def test_a_session_whose_plugin_kind_is_gone_is_refused_clearly_not_a_crash() -> None:
    from datetime import UTC, datetime

    from taleweaver.domain.errors import Conflict
    from taleweaver.domain.events import RecordedEvent
    from taleweaver.domain.sessions import EventType, SessionState

    created = RecordedEvent(
        stream_id="s1",
        workspace_id="local",
        version=1,
        position=1,
        type=EventType.SESSION_CREATED,
        schema_version=1,
        payload={"workspace_id": "local", "kind": "uninstalled_kind", "title": "Old"},
        metadata={},
        recorded_at=datetime.now(UTC),
    )
    with pytest.raises(Conflict, match="plugin that is not installed"):
        SessionState("s1").apply(created)
