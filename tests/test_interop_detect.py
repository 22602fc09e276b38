"""Recognising what a user brought, and `import` sending each kind where it belongs."""

from __future__ import annotations

import base64
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from taleweaver.domain.errors import InvalidInput
from taleweaver.engine import Engine
from taleweaver.interop.detect import BACKUP, BUNDLE, CARD, CHAT, LOREBOOK, sniff
from tests.conftest import META

WS = "local"
SERAPHINA = (Path(__file__).parent / "data" / "chats" / "seraphina.jsonl").read_bytes()
CARD_V2: dict[str, Any] = {
    "spec": "chara_card_v2",
    "spec_version": "2.0",
    "data": {
        "name": "Seraphina",
        "description": "A guardian of the glade.",
        "personality": "kind",
        "scenario": "",
        "first_mes": "You're awake.",
        "mes_example": "",
        "creator_notes": "",
        "system_prompt": "",
        "post_history_instructions": "",
        "alternate_greetings": [],
        "tags": [],
        "creator": "",
        "character_version": "",
        "extensions": {},
    },
}
WORLD_INFO = {"entries": {"0": {"uid": 0, "key": ["glade"], "content": "The glade is warded."}}}


def png_with_text(keyword: bytes, text: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"tEXt", keyword + b"\x00" + text)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


def zipped(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "filename", "kind"),
    [
        (SERAPHINA, "chat.jsonl", CHAT),
        (SERAPHINA, None, CHAT),
        (SERAPHINA.splitlines()[0], "header-only.jsonl", CHAT),
        (b"\xef\xbb\xbf" + SERAPHINA, None, CHAT),
        (json.dumps(CARD_V2).encode(), "card.json", CARD),
        (json.dumps(CARD_V2 | {"spec": "chara_card_v3"}).encode(), None, CARD),
        (json.dumps({"name": "Old", "first_mes": "Hi", "personality": "x"}).encode(), None, CARD),
        (png_with_text(b"chara", base64.b64encode(json.dumps(CARD_V2).encode())), None, CARD),
        (png_with_text(b"ccv3", b"e30="), "card.png", CARD),
        (zipped({"card.json": json.dumps(CARD_V2).encode()}), "x.charx", CARD),
        (json.dumps(WORLD_INFO).encode(), "world.json", LOREBOOK),
        (json.dumps({"spec": "lorebook_v3", "data": {"entries": []}}).encode(), None, LOREBOOK),
        (json.dumps({"lorebookVersion": 5, "entries": []}).encode(), None, LOREBOOK),
        (zipped({"manifest.json": b'{"format": "taleweaver-workspace"}'}), None, BUNDLE),
        (zipped({"manifest.json": b'{"format": "taleweaver-backup"}'}), None, BACKUP),
    ],
    ids=[
        "chat",
        "chat-no-name",
        "chat-header-only",
        "chat-bom",
        "card-v2",
        "card-v3",
        "card-v1",
        "png-chara",
        "png-ccv3",
        "charx",
        "world-info",
        "lorebook-v3",
        "novelai",
        "bundle",
        "backup",
    ],
)
def test_sniff_recognises_each_kind(data: bytes, filename: str | None, kind: str) -> None:
    assert sniff(data, filename) == kind


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a chat, card"),
        (b"hello world", "not a chat, card"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "PNG without character card data"),
        (b"PK\x03\x04garbage", "damaged zip"),
        (zipped({"readme.txt": b"hi"}), "no card, bundle or backup"),
        (b'{"just": "an object"}', "not a known card"),
        (b'{"a": 1}\n{"b": 2}\n', "not a SillyTavern chat"),
        (b"[" * 100_000, "nests deeper than 128 levels"),
    ],
    ids=["empty", "text", "bare-png", "bad-zip", "other-zip", "other-json", "other-jsonl", "deep"],
)
def test_sniff_says_why_a_file_is_none_of_them(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        sniff(data, "upload")


async def test_import_file_sends_cards_and_lorebooks_to_their_features(engine: Engine) -> None:
    if not hasattr(engine, "characters") or not hasattr(engine, "lorebooks"):
        pytest.skip("engine.characters / engine.lorebooks are not wired in yet")
    kind, card = await engine.interop.import_file(
        WS, json.dumps(CARD_V2).encode(), filename="card.json", owner_id=None, metadata=META
    )
    assert kind == CARD and card["name"] == "Seraphina"
    kind, book = await engine.interop.import_file(
        WS, json.dumps(WORLD_INFO).encode(), filename="world.json", owner_id=None, metadata=META
    )
    assert kind == LOREBOOK and book["id"]
    kind, chat = await engine.interop.import_file(
        WS, SERAPHINA, filename="c.jsonl", owner_id=None, metadata=META
    )
    assert kind == CHAT and chat["kind"] == "companion"


async def test_importing_a_backup_as_a_file_points_to_restore(engine: Engine) -> None:
    archive = zipped({"manifest.json": b'{"format": "taleweaver-backup"}'})
    with pytest.raises(InvalidInput, match="taleweaver restore"):
        await engine.interop.import_file(
            WS, archive, filename="b.zip", owner_id=None, metadata=META
        )
