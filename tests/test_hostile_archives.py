"""Hostile archives: zip bombs, entry names that climb out of a folder, damaged zips
and deep or unstorable JSON in workspace bundles and backups get a clear 4xx error,
through the engine, the HTTP app and the CLI, on SQLite and PostgreSQL, and
nothing is written."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import sqlite3
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from taleweaver.cli.main import cli
from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput, PayloadTooLarge, TaleweaverError
from taleweaver.domain.sessions import SessionKind
from taleweaver.engine import Engine
from taleweaver.interop import backup, bundles
from taleweaver.interop import rows as tablerows
from taleweaver.store.schema import events, sessions
from tests.conftest import META, copy_sqlite_template
from tests.test_hostile_input import api
from tests.test_summaries import settings

__all__ = ["settings"]  # the key-file settings fixture PostgreSQL needs
pytestmark = pytest.mark.dialects
WS = "local"
MB = 1024 * 1024
DEEP = 100_000
MANIFEST = json.dumps({"format": bundles.FORMAT, "format_version": bundles.FORMAT_VERSION})


def _event(payload: str = '{"title": "Tale"}') -> bytes:
    return (
        b'{"stream_id": "s-1", "version": 1, "type": "session.created", "recorded_at": '
        b'"2026-01-01T00:00:00+00:00", "payload": ' + payload.encode() + b"}\n"
    )


def zipped(*entries: tuple[str, bytes | int]) -> bytes:
    """A zip of (name, content) pairs; an int content is that many spaces, written
    a block at a time (a bomb's payload, never held whole)."""
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": the point of one case
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in entries:
                if isinstance(content, bytes):
                    archive.writestr(name, content)
                    continue
                with archive.open(name, "w", force_zip64=True) as sink:
                    for start in range(0, content, MB):
                        sink.write(b" " * min(MB, content - start))
    return out.getvalue()


def bundle(*extra: tuple[str, bytes | int], events_jsonl: bytes = _event()) -> bytes:
    return zipped(("manifest.json", MANIFEST.encode()), ("events.jsonl", events_jsonl), *extra)


def understated(data: bytes, name: str, size: int) -> bytes:
    """`data` with `name`'s inflated size written as `size` in its local and central
    headers: an archive that lies about what it holds."""
    raw = bytearray(data)
    encoded = name.encode()
    for signature, name_len_at, name_at, size_at in (
        (b"PK\x03\x04", 26, 30, 22),
        (b"PK\x01\x02", 28, 46, 24),
    ):
        at = raw.find(signature)
        while at != -1:
            (length,) = struct.unpack_from("<H", raw, at + name_len_at)
            if bytes(raw[at + name_at : at + name_at + length]) == encoded:
                struct.pack_into("<I", raw, at + size_at, size)
            at = raw.find(signature, at + 4)
    return bytes(raw)


def corrupted(data: bytes) -> bytes:
    """`data` with bytes in the middle of its (one large) compressed entry flipped."""
    raw = bytearray(data)
    middle = len(raw) // 2
    for i in range(middle, middle + 64):
        raw[i] ^= 0xFF
    return bytes(raw)


def _noise(size: int) -> bytes:
    """Text that deflate cannot shrink much (a real bundle's ratio, not a bomb's)."""
    block = b"".join(hashlib.sha256(str(i).encode()).hexdigest().encode() for i in range(2048))
    return (block * (size // len(block) + 1))[:size]


BUNDLES: dict[str, tuple[Callable[[], bytes], type[TaleweaverError], str]] = {
    "bomb-in-events": (
        lambda: zipped(("manifest.json", MANIFEST.encode()), ("events.jsonl", 64 * MB)),
        PayloadTooLarge,
        "events.jsonl inflates more than 200-fold",
    ),
    "bomb-spread-over-entries": (
        lambda: bundle(*((f"padding/{i}.txt", 900 * 1024) for i in range(40))),
        PayloadTooLarge,
        "inflates more than 200-fold in all",
    ),
    "too-many-entries": (
        lambda: bundle(*((f"padding/{i}.txt", b"x") for i in range(1001))),
        PayloadTooLarge,
        "entries; at most 1000",
    ),
    "understated-size": (
        lambda: understated(bundle(events_jsonl=_noise(4 * MB)), "events.jsonl", 1000),
        InvalidInput,
        "damaged",
    ),
    "climbing-name": (
        lambda: bundle(("../../outside.jsonl", b"{}\n")),
        InvalidInput,
        "unsafe entry name: '../../outside.jsonl'",
    ),
    "absolute-name": (
        lambda: bundle(("/etc/cron.d/evil", b"* * * * * true\n")),
        InvalidInput,
        "unsafe entry name",
    ),
    "drive-name": (lambda: bundle(("C:\\evil.jsonl", b"{}\n")), InvalidInput, "unsafe entry"),
    "duplicate-entry": (
        lambda: bundle(("events.jsonl", _event())),
        InvalidInput,
        "holds 'events.jsonl' twice",
    ),
    "truncated": (lambda: bundle(events_jsonl=_noise(MB))[: MB // 2], InvalidInput, "not a zip"),
    "corrupted-data": (
        lambda: corrupted(bundle(events_jsonl=_noise(2 * MB))),
        InvalidInput,
        "damaged",
    ),
    "deep-manifest": (
        lambda: zipped(("manifest.json", b"[" * DEEP + b"]" * DEEP), ("events.jsonl", b"")),
        InvalidInput,
        "manifest.json nests deeper than 128 levels",
    ),
    "deep-event": (
        lambda: bundle(events_jsonl=_event('{"x": ' + "[" * DEEP + "]" * DEEP + "}")),
        InvalidInput,
        "events.jsonl line 1 nests deeper",
    ),
    "nul-in-event": (
        lambda: bundle(events_jsonl=_event('{"title": "a\\u0000b"}')),
        InvalidInput,
        "NUL",
    ),
    "surrogate-in-event": (
        lambda: bundle(events_jsonl=_event('{"title": "a\\ud800b"}')),
        InvalidInput,
        "surrogate",
    ),
    "event-its-read-model-cannot-hold": (
        lambda: bundle(events_jsonl=_event('{"title": "Tale", "kind": "story"}')),
        InvalidInput,
        "stream s-1 has events its read models cannot hold: an event lacks 'workspace_id'",
    ),
    "nan-in-event": (
        lambda: bundle(events_jsonl=_event('{"title": "T", "score": NaN}')),
        InvalidInput,
        "NaN is not a JSON number",
    ),
}


async def _counts(engine: Engine) -> tuple[int, int]:
    """Events and sessions: what an import that wrote anything would change."""
    async with engine.db.read() as conn:
        written = await conn.scalar(sa.select(sa.func.count()).select_from(events))
        listed = await conn.scalar(sa.select(sa.func.count()).select_from(sessions))
    return int(written or 0), int(listed or 0)


@pytest.mark.parametrize("case", list(BUNDLES))
async def test_a_hostile_bundle_is_refused_and_writes_nothing(engine: Engine, case: str) -> None:
    build, error, message = BUNDLES[case]
    await engine.sessions.create(WS, kind=SessionKind.STORY, title="Mine", metadata=META)
    before = await _counts(engine)
    with pytest.raises(error, match=message):
        await engine.interop.import_workspace(WS, build())
    assert await _counts(engine) == before


async def test_a_hostile_bundle_found_by_sniffing_is_refused_the_same(engine: Engine) -> None:
    data = BUNDLES["deep-manifest"][0]()
    with pytest.raises(InvalidInput, match="nests deeper"):
        await engine.interop.import_file(
            WS, data, filename="bundle.zip", owner_id="x", metadata=META
        )


async def test_a_bundle_past_the_inflated_total_is_refused(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a bomb (it shrank 2-fold), only more than this instance takes."""
    monkeypatch.setenv("TALEWEAVER_BUNDLE_MAX_INFLATED_BYTES", str(MB))
    before = await _counts(engine)
    with pytest.raises(PayloadTooLarge, match=r"inflates to \d+ bytes in all; at most 1048576"):
        await engine.interop.import_workspace(
            WS, bundle(("a.txt", _noise(700 * 1024)), ("b.txt", _noise(700 * 1024)))
        )
    assert await _counts(engine) == before


async def test_a_bundle_whose_json_would_cost_too_much_memory_is_refused(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within the inflated limit, but `{}` costs 64 bytes parsed for 3 of text: held to
    eight times the limit in memory, the same ceiling as the most real JSON needs."""
    monkeypatch.setenv("TALEWEAVER_BUNDLE_MAX_INFLATED_BYTES", str(MB))
    costly = _event('{"title": "Tale", "x": [' + "{}," * 100_000 + "{}]}")
    assert len(costly) < MB
    before = await _counts(engine)
    with pytest.raises(PayloadTooLarge, match=r"would take more than 8 MiB of memory once parsed"):
        await engine.interop.import_workspace(WS, bundle(events_jsonl=costly * 2))
    assert await _counts(engine) == before


def test_rows_from_an_archive_must_fit_their_columns() -> None:
    """SQLite stores anything anywhere; what PostgreSQL would refuse, both refuse."""
    table = sa.Table(
        "t",
        sa.MetaData(),
        sa.Column("n", sa.Integer),
        sa.Column("big", sa.BigInteger),
        sa.Column("flag", sa.Boolean),
        sa.Column("name", sa.String(8)),
        sa.Column("weight", sa.Float),
    )
    good = {"n": 3, "big": 2**40, "flag": True, "name": "Ada", "weight": 1}
    assert tablerows.decode(table, good) == good
    cases: list[tuple[dict[str, Any], str]] = [
        ({"n": "3"}, "t.n: '3' is not an integer"),
        ({"n": True}, "is not an integer"),
        ({"n": 2**31}, "t.n: 2147483648 is out of range"),
        ({"big": 2**63}, "is out of range"),
        ({"flag": 1}, "is not true or false"),
        ({"name": {"a": 1}}, "is not text"),
        ({"name": "x" * 9}, "is longer than 8 characters"),
        ({"weight": "heavy"}, "is not a number"),
    ]
    for bad, said in cases:
        with pytest.raises(InvalidInput, match=said):
            tablerows.decode(table, bad)


# --- over HTTP -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("bomb-in-events", 413),
        ("too-many-entries", 413),
        ("climbing-name", 422),
        ("corrupted-data", 422),
        ("deep-manifest", 422),
        ("nul-in-event", 422),
    ],
)
async def test_a_hostile_bundle_over_http_gets_its_4xx(
    engine: Engine, settings: Settings, case: str, status: int
) -> None:
    async with api(engine, settings) as client:
        answer = await client.post(
            f"/api/v1/workspaces/{WS}/import",
            content=BUNDLES[case][0](),
            headers={"content-type": "application/zip"},
        )
        assert answer.status_code == status, answer.text
        assert re.search(BUNDLES[case][2], answer.json()["detail"])
        listed = await client.get("/api/v1/sessions")
        assert listed.status_code == 200 and listed.json()["items"] == []


# --- backups -------------------------------------------------------------------------------


def _backup_with(source: Path, target: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    """A copy of the backup at `source` whose entries `change` rewrites (a dict of
    name to content), with the manifest's dialect and checksums made to match the
    new entries unless the change rewrote the manifest itself."""
    with zipfile.ZipFile(source) as src:
        entries: dict[str, Any] = {n: src.read(n) for n in src.namelist()}
    original = entries[backup.MANIFEST]
    change(entries)
    if entries[backup.MANIFEST] == original:
        manifest = json.loads(original)
        manifest["entries"] = {
            n: hashlib.sha256(v).hexdigest()
            for n, v in entries.items()
            if n != backup.MANIFEST and isinstance(v, bytes)
        }
        tables = any(n.startswith("tables/") for n in entries)
        if backup.SQLITE_ENTRY in entries and not tables:
            manifest["dialect"] = "sqlite"
        elif tables and backup.SQLITE_ENTRY not in entries:
            manifest["dialect"] = "postgresql"
        entries[backup.MANIFEST] = json.dumps(manifest).encode()
    target.write_bytes(zipped(*entries.items()))
    return target


def _rows(entries: dict[str, Any], workspaces: bytes) -> None:
    """Rows in place of a SQLite file: as a PostgreSQL instance's backup holds them."""
    entries.pop(backup.SQLITE_ENTRY, None)
    entries["tables/workspaces.jsonl"] = workspaces


def _bomb(entries: dict[str, Any]) -> None:
    entries[backup.SQLITE_ENTRY] = 64 * MB


def _climbing(entries: dict[str, Any]) -> None:
    entries["../../etc/cron.d/evil"] = b"* * * * * true\n"


def _deep_manifest(entries: dict[str, Any]) -> None:
    entries[backup.MANIFEST] = b"[" * DEEP  # never closed: the parser would recurse


def _not_a_database(entries: dict[str, Any]) -> None:
    for name in [n for n in entries if n.startswith("tables/")]:
        del entries[name]
    entries[backup.SQLITE_ENTRY] = _noise(64 * 1024)


def _deep_row(entries: dict[str, Any]) -> None:
    _rows(entries, b'{"id": ' + b"[" * DEEP + b"]" * DEEP + b"}\n")


def _row_of_wrong_type(entries: dict[str, Any]) -> None:
    _rows(entries, b'{"id": 7, "name": "W"}\n')


def _row_missing_columns(entries: dict[str, Any]) -> None:
    _rows(entries, b'{"id": "w-1"}\n')


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (_bomb, PayloadTooLarge, "database.sqlite inflates more than 200-fold"),
        (_climbing, InvalidInput, "unsafe entry name"),
        (_deep_manifest, InvalidInput, "manifest.json nests"),
        (_not_a_database, InvalidInput, "the backup's database cannot be read"),
        (_deep_row, InvalidInput, "workspaces.jsonl line 1 nests deeper"),
        (_row_of_wrong_type, InvalidInput, "workspaces.id: 7 is not text"),
        (_row_missing_columns, InvalidInput, "workspaces rows cannot be stored here"),
    ],
    ids=[
        "bomb",
        "climbing-name",
        "deep-manifest",
        "not-a-database",
        "deep-row",
        "wrong-type",
        "missing-columns",
    ],
)
async def test_a_hostile_backup_is_refused_and_changes_nothing(
    engine: Engine, tmp_path: Path, change: Any, error: type[Exception], message: str
) -> None:
    mine = await engine.sessions.create(WS, kind=SessionKind.STORY, title="Mine", metadata=META)
    made = await backup.backup(engine.db, tmp_path / "b.zip")
    hostile = _backup_with(made.path, tmp_path / "hostile.zip", change)
    with pytest.raises(error, match=message):
        await backup.restore(engine.db, hostile, force=True)
    assert await engine.caps.queries.session(WS, mine["id"]) is not None
    # Nothing was torn down under the running instance: it still writes.
    await engine.sessions.create(WS, kind=SessionKind.STORY, title="After", metadata=META)


async def test_a_backup_larger_than_the_free_disk_is_refused_before_unzipping(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found full part-way through, the disk would stay full for everything else there."""
    await engine.sessions.create(WS, kind=SessionKind.STORY, title="Mine", metadata=META)
    made = await backup.backup(engine.db, tmp_path / "b.zip")
    if engine.db.dialect != "sqlite":
        made = backup.BackupReport(
            _backup_with(made.path, tmp_path / "s.zip", _not_a_database), made.manifest
        )
    monkeypatch.setattr(shutil, "disk_usage", lambda _: SimpleNamespace(free=1000))
    with pytest.raises(InvalidInput, match=r"unzips to \d+ bytes but .* has 1000 free"):
        await backup.restore(engine.db, made.path, force=True)


# --- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, sqlite_template: Path) -> Path:
    """A laptop instance's data folder, its database migrated."""
    copy_sqlite_template(sqlite_template, tmp_path / "cli" / "taleweaver.db")
    return tmp_path / "cli"


def _cli(data_dir: Path, *args: str) -> Any:
    env = {"TALEWEAVER_DATA_DIR": str(data_dir), "TALEWEAVER_MODEL": "scripted"}
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.mark.parametrize("case", ["bomb-in-events", "deep-manifest", "corrupted-data"])
def test_the_cli_says_what_is_wrong_with_a_hostile_bundle(
    data_dir: Path, tmp_path: Path, case: str
) -> None:
    path = tmp_path / "bundle.zip"
    path.write_bytes(BUNDLES[case][0]())
    for args in (["import", str(path)], ["restore", "--force", str(path)]):
        ran = _cli(data_dir, *args)
        assert ran.exit_code == 1, (args, ran.output, ran.exception)
        assert "error:" in ran.stderr and "Traceback" not in ran.output
        assert not isinstance(ran.exception, RecursionError | MemoryError)


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flipped(path: Path) -> None:
    path.write_bytes(corrupted(path.read_bytes()))


@pytest.mark.parametrize(
    ("spoil", "said"),
    [
        (lambda p: _backup_with(p, p, _bomb), "database.sqlite inflates more than 200-fold"),
        (lambda p: _backup_with(p, p, _deep_manifest), "manifest.json nests deeper"),
        (_truncated, r"not a Taleweaver backup \(not a zip archive\)"),
        (_flipped, "(damaged|fails its checksum)"),
    ],
    ids=["bomb", "deep-manifest", "truncated", "flipped-bytes"],
)
def test_taleweaver_restore_refuses_a_hostile_backup_and_writes_nothing(
    data_dir: Path, tmp_path: Path, spoil: Callable[[Path], Any], said: str
) -> None:
    archive = tmp_path / "backup.zip"
    made = _cli(data_dir, "backup", "-o", str(archive))
    assert made.exit_code == 0, made.output
    spoil(archive)
    database = data_dir / "taleweaver.db"
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    # The lock file restore holds stays, as it always does (see store/serving.py).
    around = sorted({p.name for p in data_dir.iterdir()} | {"taleweaver.db.serving"})

    ran = _cli(data_dir, "restore", "--force", str(archive))

    assert ran.exit_code == 1, (ran.output, ran.exception)
    [line] = ran.stderr.splitlines()
    assert line.startswith("error: ") and re.search(said, line), line
    assert "Traceback" not in ran.output and ran.exception is not None
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in data_dir.iterdir()) == around  # no temporary copy left


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (
            b'{"format": "taleweaver.world", "x": ' + b"[" * DEEP + b"]" * DEEP + b"}",
            "nests deeper",
        ),
        (b'{"format": "taleweaver.world", "version": 1, "world": {"name": "a\\u0000"}}', "NUL"),
    ],
    ids=["deep", "nul"],
)
def test_the_cli_says_what_is_wrong_with_a_hostile_world_file(
    data_dir: Path, tmp_path: Path, content: bytes, said: str
) -> None:
    path = tmp_path / "world.json"
    path.write_bytes(content)
    ran = _cli(data_dir, "world", "import", str(path))
    assert ran.exit_code == 1, (ran.output, ran.exception)
    assert said in ran.stderr and "Traceback" not in ran.output


# --- single files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ('"Dragons \\u0000 sleep."', "NUL"),
        ('"Dragons \\ud800 sleep."', "surrogate"),
        ("NaN", "not a finite number"),
    ],
    ids=["nul", "surrogate", "nan"],
)
async def test_a_lorebook_file_holding_what_cannot_be_stored_is_refused_alike(
    engine: Engine, content: str, said: str
) -> None:
    """Used to be 201 on SQLite (and unreadable after) and 500 on PostgreSQL."""
    book = '{"entries": {"0": {"key": ["dragon"], "content": ' + content + "}}}"
    with pytest.raises(InvalidInput, match=said):
        await engine.interop.import_file(
            WS, book.encode(), filename="book.json", owner_id="local", metadata=META
        )
    assert await engine.lorebooks.list_books(WS) == []


def test_a_refused_lorebook_leaves_no_world_behind_in_the_cli(
    data_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "badbook.json"
    path.write_bytes(b'{"entries": {"0": {"key": 5, "content": 7}}}')
    ran = _cli(data_dir, "world", "import", str(path))
    assert ran.exit_code == 1 and "'key' must be a list of strings" in ran.stderr
    conn = sqlite3.connect(data_dir / "taleweaver.db")
    try:
        assert conn.execute("SELECT count(*) FROM worlds").fetchone() == (0,)
    finally:
        conn.close()
