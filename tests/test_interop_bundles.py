"""Workspace bundles: every stream and feature table out, and back in without loss,
with ids preserved in a new instance and remapped beside the original."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from benchmarks.bundle_import_stall import watched
from benchmarks.chat_interop import make_chat

from taleweaver.auth import LOCAL_USER_ID
from taleweaver.config import Settings
from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.events import NewEvent
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.interop import bundles
from taleweaver.interop import rows as tablerows
from taleweaver.llm import ScriptedModel
from taleweaver.store.database import Database
from taleweaver.store.schema import Id, Json, Stamp, events
from tests.conftest import META

WS = "local"
SERAPHINA = (Path(__file__).parent / "data" / "chats" / "seraphina.jsonl").read_bytes()

# A feature table this module does not know: bundles must find and carry it.
notes = sa.Table(
    "interop_test_notes",
    sa.MetaData(),
    sa.Column("id", Id, primary_key=True),
    sa.Column("workspace_id", Id, nullable=False),
    sa.Column("session_id", Id, nullable=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("picture", sa.LargeBinary, nullable=True),
    sa.Column("data", Json, nullable=False),
    sa.Column("written_at", Stamp, nullable=False),
)


@pytest.fixture(autouse=True)
def feature_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    known = tablerows.tables

    def with_notes() -> list[sa.Table]:
        return [*known(), notes]

    monkeypatch.setattr(tablerows, "tables", with_notes)
    yield


async def add_notes_table(engine: Engine) -> None:
    async with engine.db.write() as conn:
        await conn.run_sync(lambda sync: notes.create(sync, checkfirst=True))


async def fill(engine: Engine) -> dict[str, str]:
    await add_notes_table(engine)
    story = await engine.sessions.create(WS, kind=SessionKind.STORY, title="Tale", metadata=META)
    request = TurnRequest.build(action=TurnAction.SAY, text="I wake", choice=None)
    await (await engine.turns.start(WS, story["id"], request, META)).wait()
    chat = await engine.interop.import_chat(WS, SERAPHINA, metadata=META)
    fork = await engine.sessions.fork(WS, chat["id"], at_turn=2, title="Fork", metadata=META)
    # A stream of another feature (a world, say) lives in the same event log.
    async with engine.db.write() as conn:
        await engine.repository.store.append(
            conn,
            stream_id="world:note-1",  # a stream named after a feature row's id
            workspace_id=WS,
            expected_version=0,
            new_events=[NewEvent("world.created", {"name": "Eldoria", "session": chat["id"]})],
            metadata=META,
        )
        await conn.execute(
            notes.insert().values(
                id="note-1",
                workspace_id=WS,
                session_id=chat["id"],
                text="Seraphina fears the dark.",
                picture=b"\x89PNG\x00\x01",
                data={"tags": ["lore"], "ref": chat["id"]},
                written_at=datetime(2024, 6, 3, 22, 12, tzinfo=UTC),
            )
        )
    return {"story": story["id"], "chat": chat["id"], "fork": fork["id"]}


def contents(data: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        found: dict[str, Any] = {}
        for name in archive.namelist():
            raw = archive.read(name)
            if name.endswith(".jsonl"):
                found[name] = [json.loads(line) for line in raw.splitlines()]
            else:
                found[name] = json.loads(raw)
    found[bundles.MANIFEST].pop("exported_at")
    return found


async def test_a_bundle_imported_into_a_new_instance_exports_the_same(
    engine: Engine, tmp_path: Path, settings: Settings
) -> None:
    made = await fill(engine)
    first = await engine.interop.export_workspace(WS)
    other = await Engine.open(
        settings, model=ScriptedModel(), database=Database(f"sqlite:///{tmp_path / 'new.db'}")
    )
    try:
        await add_notes_table(other)
        report = await other.interop.import_workspace(WS, first)
        assert report.ids == "preserved"
        assert set(report.sessions) == {made["story"], made["chat"], made["fork"]}
        assert report.rows["interop_test_notes"] == 1
        again = await other.interop.export_workspace(WS)
        assert contents(again) == contents(first)
        chat = await other.interop.export_session(WS, made["chat"], "jsonl")
        assert [json.loads(x) for x in chat.splitlines()] == [
            json.loads(x) for x in SERAPHINA.splitlines()
        ]
        assert await other.interop.search(WS, "lantern")
        # The imported session plays on.
        request = TurnRequest.build(action=TurnAction.REGENERATE, text=None, choice=None)
        await (await other.turns.start(WS, made["story"], request, META)).wait()
    finally:
        await other.close()


async def test_a_bundle_imported_beside_its_original_gets_new_ids(engine: Engine) -> None:
    made = await fill(engine)
    first = await engine.interop.export_workspace(WS)
    copy = await engine.accounts.create_workspace(LOCAL_USER_ID, "Copy", sensitive=False)
    report = await engine.interop.import_workspace(copy["id"], first)
    assert report.ids == "remapped"
    assert made["chat"] not in report.sessions and len(report.sessions) == 3
    again = contents(await engine.interop.export_workspace(copy["id"]))
    original = contents(first)
    # Same content once the new ids are mapped back to the old ones.
    mapping: dict[str, str] = {}
    for old, new in zip(original["events.jsonl"], again["events.jsonl"], strict=True):
        mapping[new["stream_id"]] = old["stream_id"]
        for role, mid in (new["payload"].get("message_ids") or {}).items():
            mapping[mid] = old["payload"]["message_ids"][role]
    for old_row, new_row in zip(
        original["tables/interop_test_notes.jsonl"],
        again["tables/interop_test_notes.jsonl"],
        strict=True,
    ):
        mapping[new_row["id"]] = old_row["id"]
    mapped = json.loads(json.dumps(again["events.jsonl"]), object_hook=lambda d: _unmap(d, mapping))
    expected = json.loads(json.dumps(original["events.jsonl"]), object_hook=lambda d: _unmap(d, {}))
    assert mapped == expected
    note = again["tables/interop_test_notes.jsonl"][0]
    assert note["workspace_id"] == copy["id"] and mapping[note["data"]["ref"]] == made["chat"]
    assert f"world:{note['id']}" in {e["stream_id"] for e in again["events.jsonl"]}
    # The original is untouched, and each copy searches on its own.
    assert len(await engine.interop.search(WS, "lantern", limit=100)) == len(
        await engine.interop.search(copy["id"], "lantern", limit=100)
    )


def _unmap(value: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    out = {k: mapping.get(v, v) if isinstance(v, str) else v for k, v in value.items()}
    if "workspace_id" in out:
        out["workspace_id"] = "*"
    return out


async def test_preserving_ids_that_are_taken_is_refused(engine: Engine) -> None:
    await fill(engine)
    first = await engine.interop.export_workspace(WS)
    copy = await engine.accounts.create_workspace(LOCAL_USER_ID, "Copy", sensitive=False)
    with pytest.raises(Conflict, match="already exist"):
        await engine.interop.import_workspace(copy["id"], first, ids="preserve")


def _rezip(data: bytes, change: Any) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            changed = change(name, src.read(name))
            if changed is not None:
                dst.writestr(name, changed)
        extra = change("+", b"")
        if extra is not None:
            dst.writestr(*extra)
    return out.getvalue()


def _break_events(name: str, raw: bytes) -> Any:
    if name == "events.jsonl":
        return raw + b"{not json\n"
    return None if name == "+" else raw


def _gap(name: str, raw: bytes) -> Any:
    if name == "events.jsonl":
        lines = raw.splitlines()
        return b"\n".join(lines[:2] + lines[3:])
    return None if name == "+" else raw


def _users_table(name: str, raw: bytes) -> Any:
    if name == "+":
        return ("tables/users.jsonl", b'{"id": "intruder"}\n')
    return raw


def _unknown_table(name: str, raw: bytes) -> Any:
    if name == "+":
        return ("tables/from_the_future.jsonl", b'{"id": "x"}\n')
    return raw


def _other_format(name: str, raw: bytes) -> Any:
    if name == bundles.MANIFEST:
        return json.dumps({"format": "something-else"}).encode()
    return None if name == "+" else raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (None, "not a zip archive"),
        (_break_events, "line .* is not valid JSON"),
        (_gap, "skips a version"),
        (_users_table, "may not carry the users table"),
        (_unknown_table, "comes from another version"),
        (_other_format, "manifest names another format"),
    ],
    ids=["not-zip", "bad-line", "version-gap", "instance-table", "unknown-table", "other-format"],
)
async def test_a_bad_bundle_is_refused_and_writes_nothing(
    engine: Engine, change: Any, message: str
) -> None:
    await fill(engine)
    data = await engine.interop.export_workspace(WS)
    bad = b"PK\x03\x04 truncated" if change is None else _rezip(data, change)
    copy = await engine.accounts.create_workspace(LOCAL_USER_ID, "Copy", sensitive=False)
    async with engine.db.read() as conn:
        before = await conn.scalar(sa.select(sa.func.count()).select_from(events))
    with pytest.raises(InvalidInput, match=message):
        await engine.interop.import_workspace(copy["id"], bad)
    async with engine.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(events)) == before


async def test_a_large_bundle_export_and_import_leave_the_event_loop_free(
    engine: Engine,
) -> None:
    await add_notes_table(engine)
    chat = make_chat(4000)  # every reply with two swipes: 4,000 events a chat
    for _ in range(2):
        await engine.interop.import_chat(WS, chat, metadata=META)
    export = await watched(engine.interop.export_workspace(WS))
    copy = await engine.accounts.create_workspace(LOCAL_USER_ID, "Copy", sensitive=False)
    imported = await watched(engine.interop.import_workspace(copy["id"], export.result))
    # Other requests run between the steps; no step walks the whole bundle on the
    # loop (those held it 0.3-1.8 s on large bundles). Generous: a loaded CI
    # machine stretches every step.
    assert imported.ticks > 10
    assert export.longest_stall < 0.5
    assert imported.longest_stall < 0.5


async def test_a_bundle_that_fails_after_events_are_appended_writes_nothing(
    engine: Engine,
) -> None:
    await add_notes_table(engine)
    await engine.interop.import_chat(WS, make_chat(1200), metadata=META)
    data = await engine.interop.export_workspace(WS)

    def break_last_turn(name: str, raw: bytes) -> bytes | None:
        if name != bundles.EVENTS:
            return None if name == "+" else raw
        lines = raw.splitlines()
        last = json.loads(lines[-1])
        del last["payload"]["number"]  # the read model needs it: fails after the append
        return b"\n".join([*lines[:-1], json.dumps(last).encode()]) + b"\n"

    copy = await engine.accounts.create_workspace(LOCAL_USER_ID, "Copy", sensitive=False)
    async with engine.db.read() as conn:
        before = await conn.scalar(sa.select(sa.func.count()).select_from(events))
    with pytest.raises(InvalidInput, match="read models cannot hold"):
        await engine.interop.import_workspace(copy["id"], _rezip(data, break_last_turn))
    async with engine.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(events)) == before


async def test_bundles_imported_at_once_are_read_one_after_the_other(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each bundle may hold gigabytes while parsed: a process keeps one in memory."""
    running: list[str] = []
    overlapped: list[bool] = []

    async def import_workspace(
        store: Any, workspace_id: str, data: bytes, *, ids: str
    ) -> bundles.ImportReport:
        running.append(workspace_id)
        overlapped.append(len(running) > 1)
        await asyncio.sleep(0.05)
        running.remove(workspace_id)
        return bundles.ImportReport(workspace_id, ids, streams=0, events=0, rows={}, sessions=[])

    monkeypatch.setattr(bundles, "import_workspace", import_workspace)
    await asyncio.gather(*(engine.interop.import_workspace(f"w{i}", b"") for i in range(3)))
    assert overlapped == [False, False, False]
