"""Encryption at rest: provider secrets, sensitive workspaces' content, key rotation.

The API and engine see plaintext; the rows in the database hold none. Each case
runs on SQLite and PostgreSQL where the storage differs.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from taleweaver.api import create_app
from taleweaver.auth import LOCAL_USER_ID
from taleweaver.config import Settings
from taleweaver.domain.errors import EncryptionError, InvalidInput, KeyMissing
from taleweaver.domain.therapy import Approach, Instrument, ProfileInput
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.encryption import key_ring_from_settings
from taleweaver.llm import ScriptedModel
from taleweaver.store import rotation
from taleweaver.store.crypto import KeyRing, is_sealed, key_id_of, new_key, parse_keys
from taleweaver.store.database import Database
from taleweaver.store.keys import KeyFile, open_key_ring
from tests.conftest import META, DatabaseSpec

API = "/api/v1"
MakeEngine = Callable[..., Any]
JSONDict = dict[str, Any]

# Words that appear only in what the player, the narrator and the title say.
TITLE = "Quillfeather notes"
SAID = "I whisper the name Zanzibarquux"
TOLD = ("Zanzibarquux", "lantern", "Follow the sound of water", "Quillfeather")
API_KEY = "sk-live-0123456789abcdef"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A key file made up front: PostgreSQL, unlike a laptop's SQLite, never mints one."""
    key_file = tmp_path / "keys" / "taleweaver.keys"
    KeyFile(key_file).create()
    return Settings(
        data_dir=tmp_path / "data",
        model="scripted",
        scripted_token_delay_ms=0,
        key_file=key_file,
        encryption_keys=None,
    )


@asynccontextmanager
async def api(engine: Engine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app over the test engine (either backend), as the local single user."""
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c


async def raw(db: Database, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with db.read() as conn:
        return [tuple(row) for row in await conn.execute(sa.text(sql), params)]


async def stored_text(db: Database, workspace_id: str) -> str:
    """Everything the database holds about a workspace's sessions, as text."""
    queries = [
        "SELECT CAST(payload AS TEXT) FROM events WHERE workspace_id = :ws",
        "SELECT content, CAST(choices AS TEXT), CAST(alternatives AS TEXT) FROM messages "
        "WHERE workspace_id = :ws",
        "SELECT title FROM sessions WHERE workspace_id = :ws",
        "SELECT CAST(s.state AS TEXT) FROM snapshots s JOIN sessions x ON x.id = s.stream_id "
        "WHERE x.workspace_id = :ws",
    ]
    rows = [row for sql in queries for row in await raw(db, sql, ws=workspace_id)]
    return "\n".join(str(value) for row in rows for value in row)


async def new_workspace(client: httpx.AsyncClient, *, sensitive: bool) -> str:
    created = await client.post(f"{API}/workspaces", json={"name": "W", "sensitive": sensitive})
    assert created.status_code == 201, created.text
    assert created.json()["sensitive"] is sensitive
    workspace_id: str = created.json()["id"]
    return workspace_id


async def played_session(client: httpx.AsyncClient, workspace_id: str) -> str:
    """A story in the workspace with one turn played."""
    created = await client.post(
        f"{API}/sessions",
        json={"kind": "story", "title": TITLE, "settings": {"premise": "Quillfeather's dream"}},
        headers={"X-Workspace": workspace_id},
    )
    assert created.status_code == 201, created.text
    session_id: str = created.json()["id"]
    turn = await client.post(f"{API}/sessions/{session_id}/turns", json={"text": SAID})
    assert turn.status_code == 201, turn.text
    return session_id


async def get_json(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def assert_no_plaintext(text: str) -> None:
    for word in TOLD:
        assert word.lower() not in text.lower(), f"{word!r} is stored in plaintext"


# --- the key ring ------------------------------------------------------------------------


def test_a_value_opens_only_for_the_place_it_was_sealed_for() -> None:
    ring = KeyRing.of([new_key()])
    sealed = ring.encrypt("sk-123", "secret\x00ws1\x00openai")
    assert ring.decrypt(sealed, "secret\x00ws1\x00openai") == "sk-123"
    with pytest.raises(EncryptionError, match="integrity check"):
        ring.decrypt(sealed, "secret\x00ws2\x00openai")


def test_every_value_carries_its_format_and_key_id_and_a_fresh_nonce() -> None:
    kid, key = new_key()
    ring = KeyRing.of([(kid, key)])
    first, second = ring.encrypt("same", "here"), ring.encrypt("same", "here")
    assert first != second
    assert first.startswith(f"tw1:{kid}:") and key_id_of(first) == kid and is_sealed(first)


def test_keys_must_be_256_bit_and_plainly_named() -> None:
    good = base64.b64encode(os.urandom(32)).decode()
    assert [k for k, _ in parse_keys(f"b:{good}, a:{good}", source="env")] == ["b", "a"]
    with pytest.raises(InvalidInput, match="32"):
        parse_keys(f"a:{base64.b64encode(os.urandom(16)).decode()}", source="env")
    with pytest.raises(InvalidInput, match="id:base64key"):
        parse_keys(f"my key:{good}", source="env")
    with pytest.raises(InvalidInput, match="not valid base64"):
        parse_keys(f"a:b:{good}", source="env")
    with pytest.raises(InvalidInput, match="twice"):
        parse_keys(f"a:{good},a:{good}", source="env")


def test_a_key_file_is_private_to_its_owner(tmp_path: Path) -> None:
    file = KeyFile(tmp_path / "k" / "keys")
    file.create()
    assert stat.S_IMODE(file.path.stat().st_mode) == 0o600
    assert len(file.read()) == 1


def test_without_a_key_sqlite_makes_a_key_file_on_first_need(tmp_path: Path) -> None:
    ring, file = open_key_ring(keys=None, key_file=None, data_dir=tmp_path, create_missing=True)
    assert file is not None and not file.exists()
    sealed = ring.encrypt("x", "aad")
    assert file.exists() and key_id_of(sealed) == ring.primary_id


def test_without_a_key_postgresql_refuses_and_says_what_to_set(tmp_path: Path) -> None:
    ring, file = open_key_ring(keys=None, key_file=None, data_dir=tmp_path, create_missing=False)
    with pytest.raises(KeyMissing, match="TALEWEAVER_ENCRYPTION_KEYS"):
        ring.encrypt("x", "aad")
    assert file is not None and not file.exists()


def test_keys_from_both_the_environment_and_a_file_are_refused(tmp_path: Path) -> None:
    good = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(InvalidInput, match="not both"):
        open_key_ring(
            keys=f"a:{good}", key_file=tmp_path / "k", data_dir=tmp_path, create_missing=True
        )


# --- secrets -----------------------------------------------------------------------------


async def test_a_secret_round_trips_while_its_row_holds_only_ciphertext(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=False)
        put = await client.put(f"{API}/workspaces/{ws}/secrets/openai", json={"value": API_KEY})
        assert put.status_code == 200, put.text
        assert API_KEY not in put.text
    [(stored,)] = await raw(
        engine.db, "SELECT ciphertext FROM secrets WHERE workspace_id = :ws", ws=ws
    )
    assert is_sealed(stored) and API_KEY not in stored
    assert await engine.secrets.get_secret(ws, "openai") == API_KEY
    assert await engine.secrets.get_secret(ws, "anthropic") is None


async def test_listing_secrets_shows_names_and_times_never_values(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=False)
        for name in ("openai", "anthropic"):
            await client.put(f"{API}/workspaces/{ws}/secrets/{name}", json={"value": API_KEY})
        listed = await client.get(f"{API}/workspaces/{ws}/secrets")
    assert listed.status_code == 200
    assert [sorted(s) for s in listed.json()] == [["name", "updated_at"]] * 2
    assert [s["name"] for s in listed.json()] == ["anthropic", "openai"]
    assert API_KEY not in listed.text


async def test_secret_changes_are_audited_without_their_values(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=False)
        path = f"{API}/workspaces/{ws}/secrets/openai"
        await client.put(path, json={"value": API_KEY})
        await client.put(path, json={"value": API_KEY + "2"})
        assert (await client.delete(path)).status_code == 204
        assert (await client.delete(path)).status_code == 404
        assert (await client.get(f"{API}/workspaces/{ws}/secrets")).json() == []
    entries = await engine.audit.entries(workspace_id=ws)
    secret_entries = [
        (e["action"], e["target"]) for e in entries if e["action"].startswith("secret")
    ]
    assert secret_entries == [
        ("secret.created", "openai"),
        ("secret.replaced", "openai"),
        ("secret.deleted", "openai"),
    ]
    assert API_KEY not in str(entries)


async def test_bad_secret_names_and_empty_values_are_refused(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=False)
        empty = await client.put(f"{API}/workspaces/{ws}/secrets/openai", json={"value": ""})
        bad = await client.put(f"{API}/workspaces/{ws}/secrets/-x", json={"value": "v"})
    assert empty.status_code == 422 and bad.status_code == 422
    assert await raw(engine.db, "SELECT name FROM secrets") == []


async def test_a_secret_copied_to_another_row_does_not_decrypt(make_engine: MakeEngine) -> None:
    engine: Engine = await make_engine()
    await engine.secrets.set("local", "openai", API_KEY, actor="test")
    await engine.secrets.set("local", "other", "something else", actor="test")
    async with engine.db.write() as conn:
        await conn.execute(
            sa.text(
                "UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets "
                "WHERE name = 'openai') WHERE name = 'other'"
            )
        )
    with pytest.raises(EncryptionError, match="moved"):
        await engine.secrets.get_secret("local", "other")


# --- sensitive workspaces ----------------------------------------------------------------


async def test_a_sensitive_workspace_stores_no_plaintext_but_reads_back_in_full(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=True)
        sid = await played_session(client, ws)
        messages = await get_json(client, f"{API}/sessions/{sid}/messages")
        events = await get_json(client, f"{API}/sessions/{sid}/events")
        session = await get_json(client, f"{API}/sessions/{sid}")
        listed = await client.get(f"{API}/sessions", headers={"X-Workspace": ws})
    assert_no_plaintext(await stored_text(engine.db, ws))
    assert [m["role"] for m in messages] == ["player", "narrator"]
    assert messages[0]["content"] == SAID
    assert "Zanzibarquux" in messages[1]["content"]
    assert messages[1]["choices"][0] == "Follow the sound of water"
    assert messages[1]["alternatives"][0]["text"] == messages[1]["content"]
    assert events[-1]["payload"]["input"]["text"] == SAID
    assert "Zanzibarquux" in events[-1]["payload"]["reply"]["text"]
    assert session["title"] == TITLE and session["settings"]["premise"] == "Quillfeather's dream"
    assert listed.json()["items"][0]["title"] == TITLE


async def test_a_workspace_that_is_not_sensitive_stays_plaintext(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=False)
        await played_session(client, ws)
    stored = await stored_text(engine.db, ws)
    assert all(word.lower() in stored.lower() for word in TOLD)
    assert "tw1:" not in stored


async def test_search_finds_nothing_in_a_sensitive_workspace_and_indexes_nothing(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        hidden = await new_workspace(client, sensitive=True)
        shown = await new_workspace(client, sensitive=False)
        await played_session(client, hidden)
        await played_session(client, shown)
        found = {}
        for ws in (hidden, shown):
            response = await client.get(
                f"{API}/search", params={"q": "Zanzibarquux"}, headers={"X-Workspace": ws}
            )
            assert response.status_code == 200, response.text
            found[ws] = response.json()
    assert found[hidden] == []
    assert len(found[shown]) == 2 and found[shown][0]["session_title"] == TITLE
    if engine.db.dialect == "sqlite":
        sql = "SELECT count(*) FROM messages_fts WHERE workspace_id = :ws"
    else:
        sql = "SELECT count(*) FROM messages WHERE workspace_id = :ws AND search != ''::tsvector"
    assert (await raw(engine.db, sql, ws=hidden))[0][0] == 0
    assert (await raw(engine.db, sql, ws=shown))[0][0] == 2


async def test_regenerate_and_edit_keep_every_alternative_sealed_and_readable(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=True)
        sid = await played_session(client, ws)
        turns = f"{API}/sessions/{sid}/turns"
        assert (await client.post(turns, json={"action": "regenerate"})).status_code == 201
        edited = await client.post(turns, json={"action": "edit", "text": "I hum Zanzibarquux"})
        assert edited.status_code == 201, edited.text
        messages = await get_json(client, f"{API}/sessions/{sid}/messages")
    assert_no_plaintext(await stored_text(engine.db, ws))
    assert messages[0]["content"] == "I hum Zanzibarquux"
    assert len(messages[1]["alternatives"]) == 3 and messages[1]["active"] == 2


async def test_a_fork_of_a_sensitive_session_is_sealed_for_its_own_rows(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=True)
        sid = await played_session(client, ws)
        fork = await client.post(f"{API}/sessions/{sid}/fork", json={"at_turn": 1})
        assert fork.status_code == 201, fork.text
        messages = await get_json(client, f"{API}/sessions/{fork.json()['id']}/messages")
    assert_no_plaintext(await stored_text(engine.db, ws))
    assert "Zanzibarquux" in messages[1]["content"]


async def test_marking_a_workspace_sensitive_seals_from_the_next_turn_on(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=False)
        sid = await played_session(client, ws)  # cached as not sensitive by now
        patched = await client.patch(f"{API}/workspaces/{ws}", json={"sensitive": True})
        assert patched.status_code == 200
        second = await client.post(f"{API}/sessions/{sid}/turns", json={"text": "I sing Xylowomp"})
        assert second.status_code == 201
        messages = await get_json(client, f"{API}/sessions/{sid}/messages")
    stored = await stored_text(engine.db, ws)
    assert "Zanzibarquux" in stored and "xylowomp" not in stored.lower()
    assert [m["content"] for m in messages][2] == "I sing Xylowomp"


async def test_snapshots_of_sensitive_sessions_are_sealed(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=True)
        sid = await played_session(client, ws)
    state = await engine.repository.replay(sid)
    store = engine.repository.store
    async with engine.db.write() as conn:
        await store.save_snapshot(conn, sid, state.version, state.to_snapshot())
    assert_no_plaintext(await stored_text(engine.db, ws))
    loaded = await store.load_snapshot(sid)
    assert loaded is not None and loaded[1]["title"] == TITLE


async def test_tampered_ciphertext_fails_cleanly(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=True)
        sid = await played_session(client, ws)
        [(mid, content)] = await raw(
            engine.db, "SELECT id, content FROM messages WHERE role = 'narrator'"
        )
        flipped = content[:-3] + ("A" if content[-3] != "A" else "B") + content[-2:]
        async with engine.db.write() as conn:
            await conn.execute(
                sa.text("UPDATE messages SET content = :c WHERE id = :id"),
                {"c": flipped, "id": mid},
            )
        response = await client.get(f"{API}/sessions/{sid}/messages")
    assert response.status_code == 500
    assert response.json()["title"] == "Encryption error"
    assert "integrity" in response.json()["detail"]


async def test_a_sealed_message_moved_to_another_row_does_not_decrypt(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=True)
        sid = await played_session(client, ws)
    async with engine.db.write() as conn:
        await conn.execute(
            sa.text(
                "UPDATE messages SET content = (SELECT content FROM messages "
                "WHERE role = 'narrator') WHERE role = 'player'"
            )
        )
    with pytest.raises(EncryptionError, match="moved"):
        await engine.sessions.messages(ws, sid, after_turn=0, limit=10)


async def test_content_sealed_under_a_key_that_is_gone_gives_a_clear_error(
    make_engine: MakeEngine, settings: Settings, db_spec: DatabaseSpec
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=True)
        sid = await played_session(client, ws)
    kid = key_ring_from_settings(settings, engine.db.dialect)[0].primary_id
    stranger_key = f"other:{base64.b64encode(os.urandom(32)).decode()}"
    other = settings.model_copy(
        update={"key_file": None, "encryption_keys": SecretStr(stranger_key)}
    )
    stranger = await Engine.open(other, model=ScriptedModel(), database=db_spec.open())
    try:
        with pytest.raises(KeyMissing, match=f"'{kid}'"):
            await stranger.sessions.messages(ws, sid, after_turn=0, limit=10)
        async with api(stranger, other) as client:
            response = await client.get(f"{API}/sessions/{sid}/events")
    finally:
        await stranger.close()
    assert response.status_code == 500
    assert response.json()["title"] == "Encryption key missing"
    assert kid is not None and kid in response.json()["detail"]


# --- rotation ----------------------------------------------------------------------------


async def all_ciphertexts(db: Database) -> list[str]:
    queries = [
        "SELECT ciphertext FROM secrets",
        "SELECT content FROM messages WHERE sealed",
        "SELECT title FROM sessions WHERE sealed",
    ]
    found = [str(row[0]) for sql in queries for row in await raw(db, sql)]
    for (payload,) in await raw(db, "SELECT CAST(payload AS TEXT) FROM events"):
        if '"sealed"' in payload:
            found.append(payload.split('"sealed":', 1)[1].split('"')[1])
    return found


async def rotate_elsewhere(
    settings: Settings, db_spec: DatabaseSpec, **kwargs: Any
) -> rotation.Rotation:
    """Rotate as `taleweaver keys rotate` does: its own connection and key ring."""
    db = db_spec.open()
    try:
        keys, file = key_ring_from_settings(settings, db.dialect)
        return await rotation.rotate(db, keys, file, grace=0, **kwargs)
    finally:
        await db.dispose()


async def test_rotation_reseals_everything_under_the_new_key_and_retires_the_old(
    make_engine: MakeEngine, settings: Settings, db_spec: DatabaseSpec
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=True)
        sid = await played_session(client, ws)
        await client.put(f"{API}/workspaces/{ws}/secrets/openai", json={"value": API_KEY})
        old = {key_id_of(c) for c in await all_ciphertexts(engine.db)}
        done = await rotate_elsewhere(settings, db_spec, batch=2)
        messages = await get_json(client, f"{API}/sessions/{sid}/messages")
    assert done.key_id not in old and done.left_on_old_keys == 0
    assert done.reencrypted["secrets"] == 1 and done.reencrypted["messages"] == 2
    assert done.reencrypted["sessions"] == 1 and done.reencrypted["events"] >= 2
    assert {key_id_of(c) for c in await all_ciphertexts(engine.db)} == {done.key_id}
    assert done.retired == sorted(old)
    assert settings.key_file is not None
    assert [k for k, _ in KeyFile(settings.key_file).read()] == [done.key_id]
    assert "Zanzibarquux" in messages[1]["content"]
    assert await engine.secrets.get_secret(ws, "openai") == API_KEY
    assert_no_plaintext(await stored_text(engine.db, ws))


async def test_turns_played_during_rotation_commit_and_end_under_the_new_key(
    make_engine: MakeEngine, settings: Settings, db_spec: DatabaseSpec
) -> None:
    engine: Engine = await make_engine()
    workspace = await engine.accounts.create_workspace(LOCAL_USER_ID, "P", sensitive=True)
    ws = workspace["id"]
    async with api(engine, settings) as client:
        sid = await played_session(client, ws)
        for i in range(5):
            await client.post(f"{API}/sessions/{sid}/turns", json={"text": f"I wait {i}"})
    # One row per transaction, so the rotation's batches and the turns interleave.
    rotating = asyncio.create_task(rotate_elsewhere(settings, db_spec, batch=1))
    played = 0
    while not rotating.done():
        request = TurnRequest.build(action=None, text=f"I wait out storm {played}", choice=None)
        handle = await engine.turns.start(ws, sid, request, META)
        assert (await handle.wait())["status"] == "completed"
        played += 1
    done = await rotating
    assert played >= 1 and done.left_on_old_keys == 0
    assert {key_id_of(c) for c in await all_ciphertexts(engine.db)} == {done.key_id}
    messages = await engine.sessions.messages(ws, sid, after_turn=0, limit=1000)
    assert len(messages) == 2 * (6 + played)
    assert messages[-2]["content"] == f"I wait out storm {played - 1}"
    assert_no_plaintext(await stored_text(engine.db, ws))


async def test_reencrypt_only_moves_env_keys_onto_the_new_primary(
    make_engine: MakeEngine, settings: Settings, db_spec: DatabaseSpec
) -> None:
    engine: Engine = await make_engine()
    await engine.secrets.set("local", "openai", API_KEY, actor="test")
    assert settings.key_file is not None
    old = parse_keys(settings.key_file.read_text(), source="test")
    fresh = new_key()
    env = ",".join(f"{k}:{base64.b64encode(v).decode()}" for k, v in [fresh, *old])
    db = db_spec.open()
    try:
        ring, file = open_key_ring(keys=env, key_file=None, data_dir=Path(), create_missing=False)
        done = await rotation.rotate(db, ring, file, new_primary=False, grace=0)
    finally:
        await db.dispose()
    assert done.key_id == fresh[0] and done.reencrypted["secrets"] == 1 and done.retired == []
    [(stored,)] = await raw(engine.db, "SELECT ciphertext FROM secrets")
    assert key_id_of(stored) == fresh[0]


# --- the command line --------------------------------------------------------------------

SCRIPT = Path(sys.executable).with_name("taleweaver")


@pytest.mark.skipif(not SCRIPT.is_file(), reason=f"no console script at {SCRIPT}")
async def test_keys_rotate_on_the_command_line_reports_counts_and_status(
    tmp_path: Path,
) -> None:
    data = tmp_path / "laptop"
    laptop = Settings(data_dir=data, model="scripted", scripted_token_delay_ms=0)
    engine = await Engine.open(laptop, model=ScriptedModel())
    try:
        async with api(engine, laptop) as client:
            ws = await new_workspace(client, sensitive=True)
            await played_session(client, ws)
    finally:
        await engine.close()
    assert (data / "encryption.keys").exists()  # made on first need, on SQLite
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALEWEAVER_")}
    env |= {"TALEWEAVER_DATA_DIR": str(data), "TALEWEAVER_MODEL": "scripted"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), "keys", *args], env=env, capture_output=True, text=True, timeout=60
        )

    rotated = await asyncio.to_thread(run, "rotate", "--grace", "0")
    assert rotated.returncode == 0, rotated.stderr
    (counts,) = [line for line in rotated.stdout.splitlines() if "re-encrypted:" in line]
    reported = dict(item.rsplit(" ", 1) for item in counts.split(": ", 1)[1].split(", "))
    assert reported == {
        "secrets": "0",
        "events": "2",
        "snapshots": "0",
        "messages": "2",
        "sessions": "1",
        "summaries": "0",
        "assessments": "0",
        "webhooks": "0",
        "workspace_files": "0",
        "file_proposals": "0",
        "terminal_output": "0",
    }
    assert "retired from the key file" in rotated.stdout
    status = await asyncio.to_thread(run, "status")
    assert status.returncode == 0, status.stderr
    assert "messages          2 encrypted,        0 under older keys" in status.stdout


# --- safety webhook secrets (a declared sealed column) -----------------------------------

HOOK_URL = "https://clinic.test/hook"


async def webhook_rows(db: Database) -> list[tuple[Any, ...]]:
    return await raw(db, "SELECT workspace_id, user_id, secret FROM safety_webhooks")


async def test_a_webhook_secret_is_stored_sealed_and_still_signs_deliveries(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine()
    ws = (await engine.accounts.create_workspace(LOCAL_USER_ID, "C", sensitive=False))["id"]
    made = await engine.safety.webhooks.register(ws, "therapist", HOOK_URL)
    ((_, _, stored),) = await webhook_rows(engine.db)
    assert is_sealed(stored) and made["secret"] not in stored
    assert await engine.safety.webhooks.targets(ws, ["therapist"]) == [
        ("therapist", HOOK_URL, made["secret"])
    ]


async def test_a_webhook_secret_moved_to_another_users_row_does_not_open(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine()
    ws = (await engine.accounts.create_workspace(LOCAL_USER_ID, "C", sensitive=False))["id"]
    hooks = engine.safety.webhooks
    await hooks.register(ws, "a", HOOK_URL)
    await hooks.register(ws, "b", HOOK_URL)
    async with engine.db.write() as conn:
        await conn.execute(
            sa.text(
                "UPDATE safety_webhooks SET secret = "
                "(SELECT secret FROM safety_webhooks WHERE user_id = 'a') WHERE user_id = 'b'"
            )
        )
    with pytest.raises(EncryptionError, match="integrity"):
        await hooks.targets(ws, ["b"])


async def test_a_refused_webhook_leaves_the_old_one_in_place(make_engine: MakeEngine) -> None:
    engine: Engine = await make_engine()
    ws = (await engine.accounts.create_workspace(LOCAL_USER_ID, "C", sensitive=False))["id"]
    made = await engine.safety.webhooks.register(ws, "therapist", HOOK_URL)
    before = await webhook_rows(engine.db)
    with pytest.raises(InvalidInput):
        await engine.safety.webhooks.register(ws, "therapist", "javascript:alert(1)")
    keyless = type(engine.safety.webhooks)(engine.db)
    with pytest.raises(KeyMissing):
        await keyless.register(ws, "therapist", HOOK_URL)
    assert await webhook_rows(engine.db) == before
    (target,) = await engine.safety.webhooks.targets(ws, ["therapist"])
    assert target[2] == made["secret"]


async def test_a_plaintext_webhook_secret_from_before_still_signs_and_rotation_seals_it(
    make_engine: MakeEngine, settings: Settings, db_spec: DatabaseSpec
) -> None:
    engine: Engine = await make_engine()
    ws = (await engine.accounts.create_workspace(LOCAL_USER_ID, "C", sensitive=False))["id"]
    legacy = "x" * 43  # what token_urlsafe(32) gave, stored as it was before 0012
    async with engine.db.write() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO safety_webhooks (workspace_id, user_id, url, secret, created_at) "
                "VALUES (:ws, 'old', :url, :secret, :at)"
            ),
            {"ws": ws, "url": HOOK_URL, "secret": legacy, "at": datetime.now(UTC)},
        )
    fresh = await engine.safety.webhooks.register(ws, "new", HOOK_URL)
    hooks = engine.safety.webhooks
    assert (await hooks.targets(ws, ["old"]))[0][2] == legacy
    keys, _ = key_ring_from_settings(settings, engine.db.dialect)
    assert (await rotation.pending(engine.db, keys))["webhooks"] == (2, 1)

    old_key = {key_id_of(s) for _, _, s in await webhook_rows(engine.db) if is_sealed(s)}
    done = await rotate_elsewhere(settings, db_spec)
    assert done.reencrypted["webhooks"] == 2 and done.left_on_old_keys == 0
    stored = {user: s for _, user, s in await webhook_rows(engine.db)}
    assert all(is_sealed(s) and key_id_of(s) == done.key_id for s in stored.values())
    assert done.key_id not in old_key and legacy not in stored["old"]
    secrets_now = {u: s for u, _, s in await hooks.targets(ws, ["old", "new"])}
    assert secrets_now == {"old": legacy, "new": fresh["secret"]}


# --- therapy assessments in a sensitive workspace ----------------------------------------

ANSWERS = [1, 2, 3, 0, 1, 2, 3, 0, 0]


async def assessed(engine: Engine, *, sensitive: bool) -> str:
    ws: str = (await engine.accounts.create_workspace(LOCAL_USER_ID, "T", sensitive=sensitive))[
        "id"
    ]
    consent = ProfileInput(
        approaches=[Approach.CBT], intensity=2, avoid_topics=[], therapy_data=True
    )
    await engine.therapy.put_profile(ws, LOCAL_USER_ID, consent, actor=LOCAL_USER_ID)
    await engine.therapy.take_assessment(ws, LOCAL_USER_ID, Instrument.PHQ9, ANSWERS)
    return ws


async def stored_answers(db: Database, ws: str) -> list[str]:
    sql = "SELECT CAST(answers AS TEXT) FROM therapy_assessments WHERE workspace_id = :ws"
    return [str(row[0]) for row in await raw(db, sql, ws=ws)]


async def test_assessment_answers_are_sealed_in_a_sensitive_workspace_and_read_back(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine()
    ws = await assessed(engine, sensitive=True)
    (stored,) = await stored_answers(engine.db, ws)
    assert '"sealed"' in stored and "1, 2, 3" not in stored and "1,2,3" not in stored
    (record,) = await engine.therapy.assessments(ws, LOCAL_USER_ID)
    assert record["answers"] == ANSWERS and record["score"] == sum(ANSWERS)
    exported = await engine.therapy.export(ws, LOCAL_USER_ID, actor=LOCAL_USER_ID)
    assert [a["answers"] for a in exported["assessments"]] == [ANSWERS]
    with pytest.raises(InvalidInput):  # an invalid answer stores nothing, sealed or not
        await engine.therapy.take_assessment(ws, LOCAL_USER_ID, Instrument.PHQ9, [9] * 9)
    assert len(await stored_answers(engine.db, ws)) == 1


async def test_assessment_answers_stay_plain_where_the_workspace_is_not_sensitive(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine()
    ws = await assessed(engine, sensitive=False)
    (stored,) = await stored_answers(engine.db, ws)
    assert '"sealed"' not in stored
    (record,) = await engine.therapy.assessments(ws, LOCAL_USER_ID)
    assert record["answers"] == ANSWERS


async def test_rotation_reseals_assessment_answers_and_they_still_read(
    make_engine: MakeEngine, settings: Settings, db_spec: DatabaseSpec
) -> None:
    engine: Engine = await make_engine()
    ws = await assessed(engine, sensitive=True)
    before = (await stored_answers(engine.db, ws))[0]
    done = await rotate_elsewhere(settings, db_spec)
    after = (await stored_answers(engine.db, ws))[0]
    assert done.reencrypted["assessments"] == 1 and done.left_on_old_keys == 0
    assert done.key_id in after and done.key_id not in before
    (record,) = await engine.therapy.assessments(ws, LOCAL_USER_ID)
    assert record["answers"] == ANSWERS


async def test_a_sensitive_workspaces_export_job_keeps_its_bundle_sealed(
    make_engine: MakeEngine, settings: Settings
) -> None:
    engine: Engine = await make_engine()
    async with api(engine, settings) as client:
        ws = await new_workspace(client, sensitive=True)
        await played_session(client, ws)
        headers = {"X-Workspace": ws}
        started = await client.post(f"{API}/workspaces/{ws}/exports", headers=headers)
        assert started.status_code == 202, started.text
        job_id = started.json()["id"]
        for _ in range(200):
            shown = await client.get(f"{API}/jobs/{job_id}", headers=headers)
            job = shown.json()
            if job["status"] in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.05)
        assert job["status"] == "succeeded", job
        download = await client.get(f"{API}/jobs/{job_id}/download", headers=headers)
    kept = await raw(engine.db, "SELECT artifact FROM jobs WHERE id = :id", id=job_id)
    stored = bytes(kept[0][0])
    assert stored.startswith(b"tw1:") and b"PK" not in stored[:64]
    assert_no_plaintext(stored.decode("ascii"))
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        events = archive.read("events.jsonl").decode()
    assert SAID in events  # the bundle opens whole for its workspace's exporter


# --- terminal and file sessions in a sensitive workspace ---------------------------------

FILE_TEXT = "Zanzibarquux keeps the lantern\nby the water.\n"
FILE_NEXT = "Zanzibarquux keeps the lantern\nFollow the sound of water.\n"


async def workspace_files_stored(db: Database, ws: str) -> str:
    """What the files' read models and the terminals' output hold for a workspace."""
    queries = [
        "SELECT text FROM workspace_files WHERE workspace_id = :ws",
        "SELECT diff, note FROM file_proposals WHERE workspace_id = :ws",
        "SELECT o.data FROM terminal_output o JOIN terminals t ON t.id = o.terminal_id "
        "WHERE t.workspace_id = :ws",
    ]
    rows = [row for sql in queries for row in await raw(db, sql, ws=ws)]
    return "\n".join(str(value) for row in rows for value in row)


async def edited_file(engine: Engine, ws: str) -> tuple[str, str]:
    """A file made, edited, and an open proposal on it: (file id, proposal id)."""
    made = await engine.files.create(ws, "notes/keeper.md", FILE_TEXT, META)
    await engine.files.edit(ws, made["id"], FILE_NEXT, META)
    proposal = await engine.files.propose(
        ws, made["id"], META, text=FILE_NEXT + "Quillfeather.\n", note="Quillfeather's idea"
    )
    return made["id"], proposal["id"]


async def screen_of(engine: Engine, ws: str, terminal_id: str) -> str:
    frames = await engine.terminals.attach(ws, terminal_id, follow=True)
    return "".join(
        [f.data async for f in frames if f.kind == "output"]  # ends with the exit frame
    )


async def echoed_terminal(engine: Engine, ws: str) -> tuple[str, str]:
    """A terminal that printed the story's words and ended: (its id, its screen)."""
    engine.terminals.settings = engine.terminals.settings.model_copy(
        update={"terminal_command": ["/bin/sh", "-c", "echo Zanzibarquux; echo lantern"]}
    )
    opened = await engine.terminals.open(ws, META, cols=80, rows=24)
    return opened["id"], await asyncio.wait_for(screen_of(engine, ws, opened["id"]), 15)


async def test_a_sensitive_workspaces_files_and_terminal_output_are_sealed_and_read_whole(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine()
    ws = (await engine.accounts.create_workspace(LOCAL_USER_ID, "W", sensitive=True))["id"]
    file_id, proposal_id = await edited_file(engine, ws)
    terminal_id, screen = await echoed_terminal(engine, ws)
    stored = await workspace_files_stored(engine.db, ws)
    assert stored.count("tw1:") >= 3  # the text, the proposal, the output chunk(s)
    assert_no_plaintext(stored)
    assert_no_plaintext(await stored_text(engine.db, ws))
    flags = await raw(engine.db, "SELECT sealed FROM workspace_files WHERE id = :id", id=file_id)
    assert flags == [(True,)]
    assert (await engine.files.get(ws, file_id))["text"] == FILE_NEXT
    assert (await engine.files.version(ws, file_id, 1))["text"] == FILE_TEXT
    (proposal,) = await engine.files.proposals(ws, file_id)
    assert proposal["note"] == "Quillfeather's idea" and "+Quillfeather." in proposal["diff"]
    accepted = await engine.files.accept(ws, file_id, proposal_id, META)
    assert accepted["status"] == "accepted" and accepted["note"] == "Quillfeather's idea"
    assert (await engine.files.get(ws, file_id))["text"].endswith("Quillfeather.\n")
    assert "Zanzibarquux" in screen and "lantern" in screen
    assert "Zanzibarquux" in await screen_of(engine, ws, terminal_id)  # replayed whole
    assert_no_plaintext(await workspace_files_stored(engine.db, ws))


async def test_files_and_terminal_output_stay_plain_where_the_workspace_is_not_sensitive(
    make_engine: MakeEngine,
) -> None:
    engine: Engine = await make_engine()
    ws = (await engine.accounts.create_workspace(LOCAL_USER_ID, "W", sensitive=False))["id"]
    await edited_file(engine, ws)
    await echoed_terminal(engine, ws)
    stored = await workspace_files_stored(engine.db, ws)
    assert "tw1:" not in stored and "Zanzibarquux" in stored and "Quillfeather" in stored


async def test_rotation_reseals_files_proposals_and_terminal_output(
    make_engine: MakeEngine, settings: Settings, db_spec: DatabaseSpec
) -> None:
    engine: Engine = await make_engine()
    ws = (await engine.accounts.create_workspace(LOCAL_USER_ID, "W", sensitive=True))["id"]
    file_id, _ = await edited_file(engine, ws)
    terminal_id, screen = await echoed_terminal(engine, ws)
    done = await rotate_elsewhere(settings, db_spec)
    assert done.left_on_old_keys == 0
    assert done.reencrypted["workspace_files"] == 1
    assert done.reencrypted["file_proposals"] == 1
    assert done.reencrypted["terminal_output"] >= 1
    stored = await workspace_files_stored(engine.db, ws)
    assert {key_id_of(v) for v in stored.split("\n") if is_sealed(v)} == {done.key_id}
    assert (await engine.files.get(ws, file_id))["text"] == FILE_NEXT
    assert (await engine.files.proposals(ws, file_id))[0]["note"] == "Quillfeather's idea"
    assert await screen_of(engine, ws, terminal_id) == screen
