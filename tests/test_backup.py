"""Backing up a running instance and restoring it after the data is gone; damaged,
foreign-revision and misplaced archives are refused and change nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import zipfile
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.interop import backup
from taleweaver.llm import ScriptedModel
from taleweaver.store.database import Database
from taleweaver.store.schema import events, messages, sessions
from tests.conftest import META, POSTGRES_URL, DatabaseSpec
from tests.test_interop_detect import CARD_V2, png_with_text

WS = "local"
SERAPHINA = (Path(__file__).parent / "data" / "chats" / "seraphina.jsonl").read_bytes()


async def fill(engine: Engine) -> dict[str, Any]:
    """An account, a story with turns and an imported chat."""
    user = await engine.accounts.create_user("ada@example.com", password="correct horse battery")
    story = await engine.sessions.create(WS, kind=SessionKind.STORY, title="Tale", metadata=META)
    for text in ("I wake", "I stand"):
        await say(engine, story["id"], text)
    chat = await engine.interop.import_chat(WS, SERAPHINA, metadata=META)
    made = {"user": user["id"], "story": story["id"], "chat": chat["id"]}
    if hasattr(engine, "characters"):  # assets live in the database: backups carry them
        card = png_with_text(b"chara", base64.b64encode(json.dumps(CARD_V2).encode()))
        character = await engine.characters.import_card(WS, card, actor="test")
        made["character"] = character["id"]
    return made


async def say(engine: Engine, session_id: str, text: str) -> None:
    request = TurnRequest.build(action=TurnAction.SAY, text=text, choice=None)
    await (await engine.turns.start(WS, session_id, request, META)).wait()


def lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines()]


def delete_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def wipe(spec: DatabaseSpec) -> None:
    """The data is gone: the SQLite file deleted, the PostgreSQL schema dropped."""
    if spec.backend == "sqlite":
        delete_sqlite(Path(spec.url.removeprefix("sqlite:///")))
        return
    schema = spec.connect_args["server_settings"]["search_path"]
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE; CREATE SCHEMA {schema}")
    finally:
        await conn.close()


async def consistent(db: Database) -> dict[str, int]:
    """Each session's read model agrees with its events; counts of what is there."""
    async with db.read() as conn:
        versions = dict(
            (
                await conn.execute(
                    sa.select(events.c.stream_id, sa.func.max(events.c.version)).group_by(
                        events.c.stream_id
                    )
                )
            ).all()
        )
        rows = (await conn.execute(sa.select(sessions.c.id, sessions.c.version))).all()
        counted = await conn.scalar(sa.select(sa.func.count()).select_from(messages))
    for session_id, version in rows:
        assert versions[session_id] == version
    return {"sessions": len(rows), "events": sum(versions.values()), "messages": int(counted or 0)}


async def test_a_backup_taken_during_turns_restores_everything_after_the_data_is_lost(
    make_engine: Any, db_spec: DatabaseSpec, tmp_path: Path
) -> None:
    engine: Engine = await make_engine()
    made = await fill(engine)
    busy = await engine.sessions.create(WS, kind=SessionKind.STORY, title="Busy", metadata=META)
    stop = asyncio.Event()

    async def keep_playing() -> int:
        played = 0
        while not stop.is_set():
            await say(engine, busy["id"], f"step {played}")
            played += 1
        return played

    player = asyncio.create_task(keep_playing())
    await asyncio.sleep(0.05)
    report = await backup.backup(engine.db, tmp_path / "instance.zip")
    await asyncio.sleep(0.05)
    stop.set()
    played = await player
    assert played > 0
    assert report.manifest["dialect"] == db_spec.backend
    assert report.manifest["tables"]["events"]["rows"] > 0
    exported = await engine.interop.export_session(WS, made["chat"], "jsonl")
    await engine.close()

    await wipe(db_spec)
    target = db_spec.open()
    await backup.restore(target, report.path)
    await target.dispose()

    restored: Engine = await make_engine()
    counts = await consistent(restored.db)
    assert counts["sessions"] == 3
    assert counts["events"] == report.manifest["tables"]["events"]["rows"]
    assert (await restored.accounts.user(made["user"]))["email"] == "ada@example.com"
    assert await restored.interop.export_session(WS, made["chat"], "jsonl") == exported
    hits = await restored.interop.search(WS, "lantern shadows")
    assert any(h["session_id"] == made["chat"] for h in hits)
    assert (await restored.audit.verify()).ok
    if "character" in made:
        _, picture = await restored.characters.avatar(WS, made["character"])
        assert picture.startswith(b"\x89PNG")
    await say(restored, made["story"], "I go on")  # the restored instance plays on


async def test_a_tampered_archive_is_refused(engine: Engine, tmp_path: Path) -> None:
    await fill(engine)
    report = await backup.backup(engine.db, tmp_path / "b.zip")
    altered = tmp_path / "altered.zip"
    with zipfile.ZipFile(report.path) as src, zipfile.ZipFile(altered, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename != backup.MANIFEST:
                data = data.replace(b"lantern", b"LANTERN") if b"lantern" in data else data + b"x"
            dst.writestr(item, data)
    with pytest.raises(InvalidInput, match="fails its checksum"):
        await backup.restore(engine.db, altered, force=True)
    assert await engine.interop.search(WS, "lantern")  # nothing was replaced


async def test_an_archive_from_another_schema_revision_is_refused(
    engine: Engine, tmp_path: Path
) -> None:
    report = await backup.backup(engine.db, tmp_path / "b.zip")
    older = tmp_path / "older.zip"
    with zipfile.ZipFile(report.path) as src, zipfile.ZipFile(older, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == backup.MANIFEST:
                manifest = json.loads(data) | {"alembic_revision": "0003"}
                data = json.dumps(manifest).encode()
            dst.writestr(item, data)
    with pytest.raises(InvalidInput, match="schema revision is '0003'"):
        await backup.restore(engine.db, older, force=True)


async def test_restore_refuses_an_instance_that_holds_data_unless_forced(
    make_engine: Any, db_spec: DatabaseSpec, tmp_path: Path
) -> None:
    engine: Engine = await make_engine()
    first = await fill(engine)
    report = await backup.backup(engine.db, tmp_path / "b.zip")
    later = await engine.sessions.create(WS, kind=SessionKind.STORY, title="Later", metadata=META)
    await engine.close()
    target = db_spec.open()
    with pytest.raises(Conflict, match="already holds data"):
        await backup.restore(target, report.path)
    await backup.restore(target, report.path, force=True)
    await target.dispose()
    restored: Engine = await make_engine()
    assert await restored.caps.queries.session(WS, first["story"]) is not None
    assert await restored.caps.queries.session(WS, later["id"]) is None  # replaced, not merged


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"plain text, not an archive", "not a zip archive"),
        (None, "no manifest.json"),
    ],
    ids=["not-zip", "no-manifest"],
)
async def test_a_file_that_is_no_backup_is_refused(
    engine: Engine, tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "file.zip"
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("database.sqlite", b"data")
    else:
        path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message):
        await backup.restore(engine.db, path, force=True)


async def test_a_sqlite_backup_restores_into_postgresql_and_back(
    tmp_path: Path, settings: Any
) -> None:
    """Archives are portable: a SQLite file's rows load into PostgreSQL, and a
    PostgreSQL dump into a new SQLite file."""
    from tests.conftest import need_postgres

    need_postgres()
    lite = Database(f"sqlite:///{tmp_path / 'a.db'}")
    engine = await Engine.open(settings, model=ScriptedModel(), database=lite)
    made = await fill(engine)
    exported = await engine.interop.export_session(WS, made["chat"], "jsonl")
    report = await backup.backup(engine.db, tmp_path / "lite.zip")
    await engine.close()

    schema = "tw_cross_" + tmp_path.name[-8:].replace("-", "_").lower()
    conn = await asyncpg.connect(POSTGRES_URL)
    await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    await conn.close()
    try:
        args = {"server_settings": {"search_path": schema}}
        target = Database(POSTGRES_URL, connect_args=args)
        await backup.restore(target, report.path)
        await target.dispose()
        pg = await Engine.open(
            settings, model=ScriptedModel(), database=Database(POSTGRES_URL, connect_args=args)
        )
        # JSONB keeps no key order; the lines are the same objects.
        assert lines(await pg.interop.export_session(WS, made["chat"], "jsonl")) == lines(exported)
        await say(pg, made["story"], "I go on")  # sequences and positions carry on
        dumped = await backup.backup(pg.db, tmp_path / "pg.zip")
        await pg.close()
    finally:
        conn = await asyncpg.connect(POSTGRES_URL)
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    back = Database(f"sqlite:///{tmp_path / 'b.db'}")
    await backup.restore(back, dumped.path)
    again = await Engine.open(settings, model=ScriptedModel(), database=back)
    try:
        assert lines(await again.interop.export_session(WS, made["chat"], "jsonl")) == lines(
            exported
        )
        assert await again.interop.search(WS, "lantern")  # the full-text index is rebuilt
    finally:
        await again.close()
