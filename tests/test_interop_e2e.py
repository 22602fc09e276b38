"""A new user's whole journey, over real HTTP and the real console script: import a
SillyTavern chat, continue it, regenerate, branch, search it, back the instance up
while it runs, lose the data, restore, and find everything in place; hostile files
are refused with a clear answer and leave nothing behind."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.chat_interop import make_chat
from click.testing import CliRunner

from taleweaver.cli.main import cli
from taleweaver.config import Settings
from taleweaver.llm import ScriptedModel
from tests.conftest import LoopbackServer
from tests.test_interop_detect import CARD_V2, WORLD_INFO, png_with_text

API = "/api/v1"
SCRIPT = Path(sys.executable).with_name("taleweaver")
CHATS = Path(__file__).parent / "data" / "chats"
SERAPHINA = (CHATS / "seraphina.jsonl").read_bytes()
REPLIES = ["She smiles and pours tea.", "She laughs softly.", "She points at the stars."]

pytestmark = pytest.mark.skipif(
    not SCRIPT.is_file(), reason=f"the console script is not installed at {SCRIPT}"
)


@dataclass(frozen=True, slots=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def taleweaver(data_dir: Path, *args: str, real: bool = False) -> Ran:
    """The CLI in this process (fast), or as a real process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALEWEAVER_")}
    env |= {"TALEWEAVER_DATA_DIR": str(data_dir), "TALEWEAVER_MODEL": "scripted"}
    if real:
        done = subprocess.run(
            [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
        )
        return Ran(done.returncode, done.stdout, done.stderr)
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


def lines(text: str | bytes) -> list[Any]:
    raw = text.decode() if isinstance(text, bytes) else text
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if "json" in response.headers.get("content-type", "") else None


@pytest.fixture
def app_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_upload_bytes": 2_000_000})


def server(settings: Settings) -> LoopbackServer:
    return LoopbackServer(settings, ScriptedModel(REPLIES))


def test_import_continue_search_backup_lose_restore(app_settings: Settings, tmp_path: Path) -> None:
    data_dir = app_settings.data_dir
    archive = tmp_path / "backup.zip"
    with (
        server(app_settings) as running,
        httpx.Client(base_url=running.base_url, timeout=30) as client,
    ):
        # Import the chat the user brought.
        session = ok(client.post(f"{API}/sessions/import", content=SERAPHINA), 201)
        sid = session["id"]
        assert session["kind"] == "companion" and session["imported"]["messages"] == 9
        # Continue it: a new line, a regenerated reply, an edit, a branch.
        turn = ok(
            client.post(f"{API}/sessions/{sid}/turns", json={"text": "Tell me a story."}), 201
        )
        assert turn["reply"]["text"] == REPLIES[0]
        again = client.post(f"{API}/sessions/{sid}/turns", json={"action": "regenerate"})
        assert ok(again, 201)["reply"]["text"] == REPLIES[1]
        fork = ok(client.post(f"{API}/sessions/{sid}/fork", json={"at_turn": 2}), 201)
        ok(
            client.post(f"{API}/sessions/{fork['id']}/turns", json={"text": "Show me the sky."}),
            201,
        )
        # Search finds the imported words, in context, and links to them.
        hits = ok(client.get(f"{API}/search", params={"q": "lantern", "character": "seraphina"}))
        assert {h["session_id"] for h in hits} == {sid, fork["id"]}
        hit = next(h for h in hits if h["session_id"] == sid and h["turn_number"] == 2)
        assert "[lantern]" in hit["snippet"].lower() or "[Lantern]" in hit["snippet"]
        assert any(m["content"].startswith("Where am I") for m in hit["context"])
        around = ok(client.get(hit["link"]))
        assert hit["message_id"] in {m["id"] for m in around}
        assert ok(client.get(f"{API}/search", params={"q": "lantern", "character": "Nobody"})) == []
        assert ok(client.get(f"{API}/search", params={"q": "lantern", "kind": "story"})) == []
        # Exports: the chat with the new swipes, and a Markdown transcript.
        chat = client.get(f"{API}/sessions/{sid}/export", params={"format": "jsonl"})
        assert chat.status_code == 200 and "ndjson" in chat.headers["content-type"]
        exported = lines(chat.text)
        assert exported[: len(lines(SERAPHINA))] == lines(SERAPHINA)
        assert exported[-1]["swipes"] == REPLIES[:2] and exported[-1]["swipe_id"] == 1
        markdown = client.get(f"{API}/sessions/{sid}/export", params={"format": "markdown"})
        assert "> **Ada:** Tell me a story." in markdown.text
        # The workspace as a bundle, copied into a second workspace over HTTP.
        bundle = client.get(f"{API}/workspaces/local/export")
        assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/zip"
        copy = ok(client.post(f"{API}/workspaces", json={"name": "Copy"}), 201)
        copied = ok(
            client.post(f"{API}/workspaces/{copy['id']}/import", content=bundle.content), 201
        )
        assert copied["ids"] == "remapped" and len(copied["sessions"]) == 2
        in_copy = ok(client.get(f"{API}/sessions", headers={"X-Workspace": copy["id"]}))
        assert in_copy["total"] == 2
        # Back up while the server runs.
        done = taleweaver(data_dir, "backup", "-o", str(archive), real=True)
        assert done.returncode == 0, done.stderr
        assert "backed up" in done.stdout
        sessions_before = ok(client.get(f"{API}/sessions"))["items"]
        copies_before = ok(client.get(f"{API}/sessions", headers={"X-Workspace": copy["id"]}))

    for suffix in ("", "-wal", "-shm"):  # the data is lost
        Path(f"{data_dir / 'taleweaver.db'}{suffix}").unlink(missing_ok=True)
    restored = taleweaver(data_dir, "restore", str(archive))
    assert restored.returncode == 0, restored.stderr
    refused = taleweaver(data_dir, "restore", str(archive))  # over the data it just restored
    assert refused.returncode == 1 and "already holds data" in refused.stderr

    with (
        server(app_settings) as running,
        httpx.Client(base_url=running.base_url, timeout=30) as client,
    ):
        after = ok(client.get(f"{API}/sessions"))["items"]
        assert {s["id"]: s["version"] for s in after} == {
            s["id"]: s["version"] for s in sessions_before
        }
        assert lines(client.get(f"{API}/sessions/{sid}/export?format=jsonl").text) == exported
        assert ok(client.get(f"{API}/search", params={"q": "lantern"}))
        assert ok(client.get(f"{API}/sessions", headers={"X-Workspace": copy["id"]})) == (
            copies_before
        )
        ok(client.post(f"{API}/sessions/{sid}/turns", json={"text": "Good night."}), 201)


HOSTILE = {
    "truncated": SERAPHINA[: len(SERAPHINA) // 3],
    "garbage": b"\x00\x9f\xffnot a chat at all",
    "garbage-lines": SERAPHINA + b"}}}{{{\n",
    "deep-json": SERAPHINA + b"[" * 200_000 + b"\n",
}


def test_hostile_files_get_a_clear_refusal_and_leave_nothing(
    app_settings: Settings, tmp_path: Path
) -> None:
    with (
        server(app_settings) as running,
        httpx.Client(base_url=running.base_url, timeout=30) as client,
    ):
        for name, data in HOSTILE.items():
            refused = client.post(f"{API}/sessions/import", content=data)
            assert refused.status_code == 422, (name, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["detail"], name
        huge = client.post(f"{API}/sessions/import", content=b"{" + b" " * 3_000_000)
        assert huge.status_code == 413
        bundle = client.post(f"{API}/workspaces/local/import", content=b"PK\x03\x04broken")
        assert bundle.status_code == 422 and "zip" in bundle.json()["detail"]
        assert ok(client.get(f"{API}/sessions"))["total"] == 0

    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "broken.jsonl").write_bytes(HOSTILE["truncated"])
    (folder / "notes.txt").write_text("just some notes")
    done = taleweaver(app_settings.data_dir, "import", str(folder))
    assert done.returncode == 1
    assert "broken.jsonl: error:" in done.stderr and "notes.txt: error:" in done.stderr
    listed = taleweaver(app_settings.data_dir, "sessions", "list", "--json")
    assert listed.stdout.strip() == ""


def test_the_cli_imports_a_folder_and_exports_session_and_workspace(
    app_settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "chats"
    folder.mkdir()
    (folder / "seraphina.jsonl").write_bytes(SERAPHINA)
    (folder / "short.jsonl").write_bytes(b"\n".join(SERAPHINA.splitlines()[:3]))
    done = taleweaver(app_settings.data_dir, "import", str(folder))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("sillytavern-chat: session") == 2
    sid = next(
        json.loads(x)["id"]
        for x in taleweaver(app_settings.data_dir, "sessions", "list", "--json").stdout.splitlines()
        if json.loads(x)["turn_count"] == 7
    )
    out = tmp_path / "chat.jsonl"
    exported = taleweaver(
        app_settings.data_dir, "export", "session", sid, "--format", "jsonl", "-o", str(out)
    )
    assert exported.returncode == 0, exported.stderr
    assert lines(out.read_bytes()) == lines(SERAPHINA)
    bundle = tmp_path / "workspace.zip"
    made = taleweaver(app_settings.data_dir, "export", "workspace", "-o", str(bundle))
    assert made.returncode == 0, made.stderr
    other = tmp_path / "other"
    back = taleweaver(other, "import", str(bundle))
    assert back.returncode == 0, back.stderr
    assert "workspace-bundle" in back.stdout and "ids preserved" in back.stdout
    missing = taleweaver(app_settings.data_dir, "export", "session", "nope", "--format", "text")
    assert missing.returncode == 1 and "not found" in missing.stderr
    paths = [str(folder / "seraphina.jsonl"), str(folder / "short.jsonl")]
    both = taleweaver(tmp_path / "third", "import", *paths)  # several paths at once
    assert both.returncode == 0, both.stderr
    assert both.stdout.count("sillytavern-chat: session") == 2


def test_the_cli_imports_a_folder_of_cards_and_lorebooks(
    app_settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "cards"
    folder.mkdir()
    card = base64.b64encode(json.dumps(CARD_V2).encode())
    (folder / "seraphina.png").write_bytes(png_with_text(b"chara", card))
    (folder / "bram.json").write_text(
        json.dumps(CARD_V2 | {"data": CARD_V2["data"] | {"name": "Bram"}})
    )
    (folder / "glade.json").write_text(json.dumps(WORLD_INFO))
    done = taleweaver(app_settings.data_dir, "import", str(folder))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("character-card:") == 2 and "lorebook:" in done.stdout
    assert "Seraphina" in done.stdout and "Bram" in done.stdout


def test_the_server_answers_other_requests_while_a_bundle_imports(settings: Settings) -> None:
    big = settings.model_copy(update={"max_upload_bytes": 50_000_000})
    with (
        server(big) as running,
        httpx.Client(base_url=running.base_url, timeout=60) as client,
        httpx.Client(base_url=running.base_url, timeout=60) as prober,
        ThreadPoolExecutor(1) as pool,
    ):
        for _ in range(2):
            ok(client.post(f"{API}/sessions/import", content=make_chat(4000)), 201)
        bundle = client.get(f"{API}/workspaces/local/export").content
        importing = pool.submit(client.post, f"{API}/workspaces/local/import", content=bundle)
        # The server has one event loop: the import must leave it free between steps.
        answered_meanwhile = 0
        while not importing.done():
            ok(prober.get("/healthz"))
            answered_meanwhile += not importing.done()
        assert ok(importing.result(), 201)["ids"] == "remapped"
    assert answered_meanwhile >= 3
