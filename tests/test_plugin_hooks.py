"""Every plugin hook end to end: small plugins, installed as a package is (a dist-info
on the path whose entry points name objects of this module), serve a real server
over HTTP and the real `taleweaver` console script; and a workspace that turns one
off is served without it. A meta-test keeps every hook tested and documented."""

from __future__ import annotations

import ast
import logging
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import RecordedEvent
from taleweaver.domain.formats import Exporter, ImportedSession, ImportedTurn, SessionExport
from taleweaver.domain.pipeline import ContextPiece, RecallQuery
from taleweaver.domain.safety import Assessment, Finding
from taleweaver.domain.sessions import SessionState
from taleweaver.engine import Engine
from taleweaver.engine.engine import database_from_settings
from taleweaver.engine.kinds import KINDS, KindSpec
from taleweaver.engine.stages.safety import SAFE_SCENE
from taleweaver.llm import ScriptedModel
from taleweaver.llm.base import as_backend
from taleweaver.llm.build import PROVIDER_KINDS, BuiltProvider, ProviderParts
from taleweaver.llm.config import BUILTIN_PROVIDER_KINDS, ModelSettings, ProviderSettings
from taleweaver.plugins import hookimpl
from taleweaver.safety import SafetySubject

ROOT = Path(__file__).parent.parent
API = "/api/v1"
SCRIPT = Path(sys.executable).with_name("taleweaver")
Serve = Callable[..., httpx.Client]


# --- the plugins under test ------------------------------------------------------------
#
# `bard` adds one of everything a workspace can turn off: a kind, a context source, a
# safety detector (input and output), an importer and an exporter, a listener.


def _ballad_prompt(state: SessionState) -> str:
    return f"Answer in the voice of a wandering bard. The tale: {state.title}"


class AlmanacSource:
    """A piece for every turn of this workspace, so its trace shows the plugin."""

    name = "almanac"

    async def gather(self, query: RecallQuery) -> list[ContextPiece]:
        return [
            ContextPiece(
                text="The moon is full tonight.",
                source=self.name,
                ref="full-moon",
                reason="the almanac says so",
                priority=40,
                placement="system",
            )
        ]


class Glassheart:
    """Input: a code word the built-in rules do not know, meant as a crisis.
    Output: a narrator who mentions dragons breaks this plugin's rule."""

    name = "glassheart"

    async def assess(self, subject: SafetySubject) -> Assessment | None:
        text = subject.text.lower()
        if subject.direction == "input" and "glassheart" in text:
            return Assessment(level="high", categories=("self_harm",), source=self.name)
        if subject.direction == "output" and "dragon" in text:
            finding = Finding("no-dragons", "violence", "low", "dragon")
            return Assessment(level="low", findings=(finding,), source=self.name)
        return None


def _scroll(export: SessionExport) -> str:
    lines = [f"SCROLL {export.session['title']}"]
    lines += [f"{m['role']}: {m['content']}" for m in export.messages]
    return "\n".join(lines) + "\n"


class ScrollImporter:
    description = "a bard's scroll"

    def sniff(self, data: bytes, filename: str | None) -> bool:
        return data.startswith(b"SCROLL ")

    def read(self, data: bytes) -> ImportedSession:
        title, *lines = data.decode().splitlines()
        turns: list[ImportedTurn] = []
        said: str | None = None
        for line in lines:
            role, _, text = line.partition(": ")
            if role == "player":
                said = text
            elif role == "narrator":
                turns.append(ImportedTurn(said, text))
                said = None
            else:
                raise InvalidInput(f"a scroll line is 'player: ...' or 'narrator: ...': {line!r}")
        return ImportedSession(title=title.removeprefix("SCROLL "), turns=turns, kind="story")


# Committed events by workspace, heard by the bard's listener (this process's).
HEARD: Counter[str] = Counter()


async def _hear(events: Sequence[RecordedEvent]) -> None:
    HEARD.update(event.workspace_id for event in events)


class Bard:
    @hookimpl
    def session_kinds(self) -> dict[str, KindSpec]:
        return {"ballad": KindSpec(_ballad_prompt, with_choices=False)}

    @hookimpl
    def context_sources(self) -> list[AlmanacSource]:
        return [AlmanacSource()]

    @hookimpl
    def safety_detectors(self) -> list[Glassheart]:
        return [Glassheart()]

    @hookimpl
    def exporters(self) -> dict[str, Exporter]:
        return {"scroll": Exporter("text/x-scroll", "scroll", _scroll, "a scroll", ("scr",))}

    @hookimpl
    def importers(self) -> dict[str, ScrollImporter]:
        return {"scroll": ScrollImporter()}

    @hookimpl
    def event_listeners(self) -> list[Callable[[Sequence[RecordedEvent]], Any]]:
        return [_hear]


BARD = Bard()


class Broken:
    """A detector that always raises: logged and skipped, the other layers stand."""

    name = "broken-detector"

    async def assess(self, subject: SafetySubject) -> Assessment | None:
        raise RuntimeError("the detector's model is not there")


class Flaky:
    @hookimpl
    def safety_detectors(self) -> list[Broken]:
        return [Broken()]


FLAKY = Flaky()

ECHO_REPLY = "The echo answers from the far wall."


def _echo(parts: ProviderParts) -> BuiltProvider:
    """A provider kind whose every model answers with the same line."""

    async def check() -> None:
        return None

    async def close() -> None:
        return None

    def chat(shown: str, model: ModelSettings) -> Any:
        return as_backend(ScriptedModel([ECHO_REPLY], name=shown))

    return BuiltProvider(parts.provider(check, close), chat)


class Echo:
    @hookimpl
    def model_providers(self) -> dict[str, Callable[[ProviderParts], BuiltProvider]]:
        return {"echo": _echo}


ECHO = Echo()


# --- installing them --------------------------------------------------------------------


class Installed:
    """Plugins of this module installed on a site folder: this process sees them,
    and so does a `taleweaver` run with `env()`."""

    def __init__(self, site: Path) -> None:
        self.site = site

    def env(self, data_dir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TALEWEAVER_")}
        path = os.pathsep.join([str(self.site), str(ROOT)])
        env.update(
            TALEWEAVER_DATA_DIR=str(data_dir),
            TALEWEAVER_MODEL="scripted",
            TALEWEAVER_SCRIPTED_TOKEN_DELAY_MS="0",
            PYTHONPATH=path,
        )
        return env

    def taleweaver(self, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
        if not SCRIPT.is_file():
            pytest.skip(f"the console script is not installed at {SCRIPT}")
        return subprocess.run(
            [str(SCRIPT), *args],
            env=self.env(data_dir),
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Installed]]:
    """`install(bard="BARD")`: an installed package whose entry points name the
    objects of this module; the kinds and provider kinds they add go away after."""
    kinds, providers = set(KINDS), set(PROVIDER_KINDS)

    def put(**plugins: str) -> Installed:
        site = tmp_path / "site"
        info = site / "taleweaver_hook_tests-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: taleweaver-hook-tests\nVersion: 1.0\n"
        )
        points = "".join(f"{name} = {__name__}:{obj}\n" for name, obj in plugins.items())
        (info / "entry_points.txt").write_text(f"[taleweaver.plugins]\n{points}")
        monkeypatch.syspath_prepend(str(site))
        return Installed(site)

    HEARD.clear()
    yield put
    for kind in set(KINDS) - kinds:
        del KINDS[kind]
    for name in set(PROVIDER_KINDS) - providers:
        del PROVIDER_KINDS[name]


def _turn(client: httpx.Client, session_id: str, text: str) -> dict[str, Any]:
    response = client.post(f"{API}/sessions/{session_id}/turns", json={"text": text})
    assert response.status_code == 201, response.text
    turn: dict[str, Any] = response.json()
    return turn


def _session(client: httpx.Client, kind: str = "story", title: str = "Tale") -> str:
    created = client.post(f"{API}/sessions", json={"kind": kind, "title": title})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _trace(client: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    events = client.get(f"{API}/sessions/{session_id}/events").json()
    committed = [e for e in events if e["type"] == "turn.committed"][-1]
    trace: list[dict[str, Any]] = committed["payload"]["context"]
    return trace


# --- model_providers ---------------------------------------------------------------------


def _configured(kind: str) -> dict[str, Any]:
    """Settings of one provider of `kind` and one model on it (TALEWEAVER_MODEL unset)."""
    return {
        "providers": {"far": ProviderSettings(kind=kind)},
        "models": {"wall": ModelSettings(provider="far", model="wall")},
    }


def test_a_plugins_provider_kind_is_configurable_and_narrates(
    install: Callable[..., Installed], serve: Serve, settings: Settings
) -> None:
    install(echo="ECHO")
    settings.model = None  # the configured models, as `serve` copies the settings
    client = serve(**_configured("echo"))
    turn = _turn(client, _session(client), "Hello?")
    assert turn["reply"]["text"] == ECHO_REPLY
    models = client.get(f"{API}/models").json()
    assert "far" in str(models) and "echo" in str(models)


async def test_an_unknown_provider_kind_is_refused_naming_kinds_and_the_likely_one(
    install: Callable[..., Installed], settings: Settings
) -> None:
    install(echo="ECHO")
    wrong = settings.model_copy(update={"model": None, **_configured("ecco")})
    database = database_from_settings(wrong)
    try:
        with pytest.raises(InvalidInput) as refused:
            await Engine.open(wrong, database=database)
    finally:
        await database.dispose()
    message = str(refused.value)
    builtin = ", ".join(sorted(BUILTIN_PROVIDER_KINDS))
    assert "providers.far.kind: 'ecco' is no provider kind (did you mean 'echo'?)" in message
    assert f"built in: {builtin}; added by installed plugins: echo" in message


# --- safety_detectors --------------------------------------------------------------------


def test_a_plugins_input_finding_raises_the_crisis_protocol(
    install: Callable[..., Installed], serve: Serve
) -> None:
    install(bard="BARD")
    model = ScriptedModel(["The hall is quiet."])
    client = serve(model)
    session = _session(client)
    turn = _turn(client, session, "my glassheart is cracking")
    assert turn["safety"] == {
        "level": "blocked",
        "crisis": True,
        "crisis_level": "high",
        "categories": ["self_harm"],
        "action": "crisis_protocol",
    }
    assert "you don't have to face it alone" in turn["reply"]["text"]
    assert model.calls == []  # the narrator never saw it
    # The protocol ran: the story is paused with an open flag.
    flags = client.get(f"{API}/safety/flags", params={"status": "open"})
    assert flags.status_code == 200, flags.text
    assert [f["session_id"] for f in flags.json()] == [session]


def test_a_plugins_output_finding_blocks_the_reply_as_a_content_violation(
    install: Callable[..., Installed], serve: Serve
) -> None:
    install(bard="BARD")
    client = serve(ScriptedModel(["A dragon coils around the tower."]))
    turn = _turn(client, _session(client), "I climb the tower")
    assert (turn["safety"]["level"], turn["safety"]["action"]) == ("blocked", "replaced")
    assert turn["safety"]["categories"] == ["content_rule"]
    assert turn["reply"]["text"] == SAFE_SCENE
    messages = client.get(f"{API}/sessions/{turn['session_id']}/messages").json()
    assert "dragon" not in str(messages).lower()


def test_a_raising_detector_is_logged_and_skipped(
    install: Callable[..., Installed], serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    install(flaky="FLAKY", bard="BARD")
    client = serve(ScriptedModel(["The hall is quiet."]))
    session = _session(client)
    with caplog.at_level(logging.ERROR, logger="taleweaver.safety.layered"):
        calm = _turn(client, session, "I light a candle")
        crisis = _turn(client, _session(client), "my glassheart is cracking")
    assert (calm["safety"]["level"], calm["reply"]["text"]) == ("safe", "The hall is quiet.")
    assert crisis["safety"]["action"] == "crisis_protocol"  # the other detectors stand
    failed = [r for r in caplog.records if "broken-detector failed" in r.getMessage()]
    assert failed and failed[0].exc_info is not None


# --- importers / exporters ---------------------------------------------------------------


def test_a_plugins_exporter_and_importer_over_http(
    install: Callable[..., Installed], serve: Serve
) -> None:
    install(bard="BARD")
    client = serve(ScriptedModel(["The road bends west."]))
    session = _session(client, title="Road")
    _turn(client, session, "I walk on")
    exported = client.get(f"{API}/sessions/{session}/export", params={"format": "scr"})
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/x-scroll")
    assert 'filename="Road.scroll"' in exported.headers["content-disposition"]
    assert exported.content == b"SCROLL Road\nplayer: I walk on\nnarrator: The road bends west.\n"

    imported = client.post(
        f"{API}/sessions/import", params={"format": "scroll"}, content=exported.content
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["title"] == "Road"
    assert imported.json()["imported"] == {
        "format": "scroll",
        "turns": 1,
        "messages": 2,
        "stripped": 0,
    }
    messages = client.get(f"{API}/sessions/{imported.json()['id']}/messages").json()
    assert [(m["role"], m["content"]) for m in messages] == [
        ("player", "I walk on"),
        ("narrator", "The road bends west."),
    ]

    formats = client.get(f"{API}/formats").json()
    assert {
        "name": "scroll",
        "aliases": ["scr"],
        "media_type": "text/x-scroll",
        "suffix": "scroll",
        "description": "a scroll",
        "plugin": "bard",
    } in formats["export"]
    assert {"name": "scroll", "description": "a bard's scroll", "plugin": "bard"} in formats[
        "import"
    ]
    unknown = client.get(f"{API}/sessions/{session}/export", params={"format": "papyrus"})
    assert unknown.status_code == 422 and "scroll" in unknown.text


def test_the_builtin_taleweaver_json_importer_reads_a_json_export_back(serve: Serve) -> None:
    client = serve(ScriptedModel(["The lantern flickers."]))
    session = _session(client, title="Lantern")
    _turn(client, session, "I raise the lantern")
    exported = client.get(f"{API}/sessions/{session}/export", params={"format": "json"})
    assert exported.status_code == 200, exported.text
    imported = client.post(
        f"{API}/sessions/import", params={"format": "taleweaver-json"}, content=exported.content
    )
    assert imported.status_code == 201, imported.text
    copy = imported.json()
    assert (copy["title"], copy["kind"]) == ("Lantern", "story")
    assert copy["imported"] == {
        "format": "taleweaver-json",
        "turns": 1,
        "messages": 2,
        "stripped": 0,
    }
    messages = client.get(f"{API}/sessions/{copy['id']}/messages").json()
    assert [m["content"] for m in messages] == ["I raise the lantern", "The lantern flickers."]
    formats = client.get(f"{API}/formats").json()
    # Listed as every built-in format is: offered by `taleweaver`.
    assert {
        "name": "taleweaver-json",
        "description": "a Taleweaver session's JSON export",
        "plugin": "taleweaver",
    } in formats["import"]
    assert {(f["name"], f["plugin"]) for f in formats["export"]} >= {
        ("markdown", "taleweaver"),
        ("json", "taleweaver"),
        ("jsonl", "taleweaver"),
    }
    bad = client.post(f"{API}/sessions/import", params={"format": "taleweaver-json"}, content=b"{}")
    assert bad.status_code == 422 and "not a Taleweaver JSON export" in bad.text


def test_the_cli_exports_imports_and_lists_a_plugins_format(
    install: Callable[..., Installed], serve: Serve, settings: Settings, tmp_path: Path
) -> None:
    installed = install(bard="BARD")
    client = serve(ScriptedModel(["The road bends west."]))
    session = _session(client, title="Road")
    _turn(client, session, "I walk on")
    data_dir = settings.data_dir

    target = tmp_path / "road.scroll"
    exported = installed.taleweaver(
        data_dir, "export", "session", session, "--format", "scroll", "-o", str(target)
    )
    assert exported.returncode == 0, exported.stderr
    assert (
        target.read_bytes() == b"SCROLL Road\nplayer: I walk on\nnarrator: The road bends west.\n"
    )

    imported = installed.taleweaver(data_dir, "import", str(target))
    assert imported.returncode == 0, imported.stderr
    made = re.fullmatch(
        rf"{re.escape(str(target))}: scroll: session (\w+) \(2 messages, 1 turns\)\n",
        imported.stdout,
    )
    assert made, imported.stdout
    messages = client.get(f"{API}/sessions/{made.group(1)}/messages").json()
    assert [m["content"] for m in messages] == ["I walk on", "The road bends west."]

    listed = installed.taleweaver(data_dir, "plugins", "formats")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "export  scroll (scr)  from bard  a scroll" in lines
    assert "import  scroll  from bard  a bard's scroll" in lines
    assert "import  taleweaver-json  from taleweaver  a Taleweaver session's JSON export" in lines

    # A JSON export is recognised by the built-in taleweaver-json importer.
    json_export = tmp_path / "road.json"
    json_export.write_bytes(
        client.get(f"{API}/sessions/{session}/export", params={"format": "json"}).content
    )
    again = installed.taleweaver(data_dir, "import", str(json_export))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"{json_export}: taleweaver-json: session "), again.stdout
    assert again.stdout.endswith(" (2 messages, 1 turns)\n"), again.stdout


# --- a workspace that turns a plugin off -------------------------------------------------


def test_a_workspace_that_turns_a_plugin_off_is_served_without_it(
    install: Callable[..., Installed], serve: Serve, settings: Settings
) -> None:
    installed = install(bard="BARD", echo="ECHO")
    client = serve(ScriptedModel(["A dragon sleeps by the road."]))
    plugins = {p["name"]: p for p in client.get(f"{API}/plugins").json()}
    assert plugins["bard"]["enabled"] is True
    assert plugins["echo"]["process_wide"] == ["model_providers"]
    on = _session(client, title="Road")
    _turn(client, on, "I walk on")
    assert any(t.get("source") == "almanac" for t in _trace(client, on))
    heard = HEARD["local"]
    assert heard >= 2

    off = installed.taleweaver(
        settings.data_dir, "plugins", "disable", "bard", "--workspace", "local"
    )
    assert off.returncode == 0, off.stderr
    assert off.stdout.startswith("plugin bard off in workspace local")
    plugins = {p["name"]: p for p in client.get(f"{API}/plugins").json()}
    assert plugins["bard"]["enabled"] is False

    # Its kind cannot be created here.
    refused = client.post(f"{API}/sessions", json={"kind": "ballad", "title": "No"})
    assert refused.status_code == 409, refused.text
    assert "plugin bard is turned off in this workspace" in refused.json()["detail"]
    # Its source, detector and listener skip this workspace's turns.
    turn = _turn(client, on, "I walk on")
    assert turn["reply"]["text"] == "A dragon sleeps by the road."
    assert turn["safety"]["level"] == "safe"
    assert not any(t.get("source") == "almanac" for t in _trace(client, on))
    assert HEARD["local"] == heard
    crisis_word = _turn(client, _session(client), "my glassheart")
    assert crisis_word["safety"]["crisis"] is False
    # Its formats are refused.
    export = client.get(f"{API}/sessions/{on}/export", params={"format": "scroll"})
    assert export.status_code == 409 and "plugin bard" in export.text
    scroll = b"SCROLL Road\nplayer: hi\nnarrator: ho\n"
    imported = client.post(f"{API}/sessions/import", params={"format": "scroll"}, content=scroll)
    assert imported.status_code == 409 and "plugin bard" in imported.text
    # The built-in formats still serve it.
    assert client.get(f"{API}/sessions/{on}/export", params={"format": "md"}).status_code == 200

    # On again, through the flags route and then the plugins route.
    flag = client.put(f"{API}/flags/plugin:bard", json={"enabled": True})
    assert flag.status_code == 200, flag.text
    assert (
        client.post(f"{API}/sessions", json={"kind": "ballad", "title": "Yes"}).status_code == 201
    )
    put = client.put(f"{API}/plugins/bard", json={"enabled": False})
    assert put.status_code == 200 and put.json()["enabled"] is False
    assert client.post(f"{API}/sessions", json={"kind": "ballad", "title": "No"}).status_code == 409
    back = installed.taleweaver(
        settings.data_dir, "plugins", "enable", "bard", "--workspace", "local"
    )
    assert back.returncode == 0 and back.stdout.startswith("plugin bard on in workspace local")
    turn = _turn(client, on, "I walk on")
    assert turn["safety"]["action"] == "replaced"
    assert any(t.get("source") == "almanac" for t in _trace(client, on))
    assert HEARD["local"] > heard


def test_turning_off_a_plugin_not_installed_is_refused(serve: Serve) -> None:
    client = serve()
    refused = client.put(f"{API}/plugins/nope", json={"enabled": False})
    assert refused.status_code == 422
    assert "no installed plugin is called 'nope'" in refused.text


# --- every hook tested and documented ----------------------------------------------------


def _hooks() -> list[str]:
    source = (ROOT / "src" / "taleweaver" / "plugins" / "hookspecs.py").read_text()
    return [
        node.name
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef)
        and any(ast.unparse(d) == "hookspec" for d in node.decorator_list)
    ]


def test_every_hook_has_a_test_and_a_row_in_the_docs() -> None:
    hooks = _hooks()
    assert len(hooks) >= 9, hooks
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    docs = (ROOT / "docs" / "plugins.md").read_text()
    untested = [hook for hook in hooks if not re.search(rf"\b{hook}\b", tests)]
    undocumented = [hook for hook in hooks if not re.search(rf"^\| `{hook}\(", docs, re.M)]
    assert untested == [], f"hooks no test implements: {untested}"
    assert undocumented == [], f"hooks with no row in docs/plugins.md: {undocumented}"
