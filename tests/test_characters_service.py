"""The characters service on SQLite and PostgreSQL: import in every format, round
trips, avatars, and bad files that write nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from taleweaver.domain.errors import InvalidInput, NotFound, PayloadTooLarge
from taleweaver.engine import Engine
from taleweaver.interop.cards.png import read_chunks, read_png_card
from taleweaver.store.characters_schema import character_assets, character_tags, characters
from taleweaver.store.schema import audit_log
from tests.data.cards import factory as f

WS = "local"
JSONDict = dict[str, Any]


async def count(engine: Engine, table: sa.Table) -> int:
    async with engine.db.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def imported(engine: Engine, data: bytes) -> JSONDict:
    return await engine.characters.import_card(WS, data, filename=None, actor="tester")


# --- import and round trips ---------------------------------------------------------


async def test_a_png_card_is_imported_with_every_field_and_its_image(engine: Engine) -> None:
    picture = f.image(colour=b"\x01\x02\x03")
    found = await imported(engine, f.png_card(chara=f.v2_card(), ccv3=f.v3_card(), picture=picture))

    assert found["format"] == "png" and found["spec"] == "v3"
    assert found["name"] == "Aria" and found["tags"] == ["Cozy", "sea"]
    data = found["card"]["data"]
    assert data["post_history_instructions"] == "Keep replies under three sentences."
    assert data["extensions"]["x_unknown"] == [1, 2]
    assert found["has_avatar"]
    assert await engine.characters.avatar(WS, found["id"]) == ("image/png", picture)
    # Plain JSON all the way down (the CLI and bundles print and store it as is).
    assert json.loads(json.dumps(found)) == found == await engine.characters.get(WS, found["id"])


@pytest.mark.parametrize("fmt", ["png", "json", "charx"])
async def test_import_export_import_gives_identical_data(engine: Engine, fmt: str) -> None:
    sources = {
        "png": f.png_card(chara=f.v2_card(), ccv3=f.v3_card()),
        "json": f.dumps(f.v3_card()),
        "charx": f.charx_card()[1],
    }
    first = await imported(engine, sources[fmt])
    exported = await engine.characters.export_card(WS, first["id"], fmt)

    second = await imported(engine, exported)

    assert second["card"] == first["card"]
    assert second["tags"] == first["tags"] and second["format"] == fmt
    assert second["assets"] == first["assets"]
    assert await engine.characters.export_card(WS, second["id"], fmt) == exported


async def test_an_unedited_json_card_is_exported_byte_for_byte(engine: Engine) -> None:
    raw = json.dumps(f.v2_card(), indent=3).encode()
    found = await imported(engine, raw)

    assert await engine.characters.export_card(WS, found["id"], "json") == raw


async def test_a_v1_card_comes_in_with_its_top_level_fields(engine: Engine) -> None:
    found = await imported(engine, f.dumps(f.v1_card()))

    assert found["spec"] == "v1" and found["name"] == "Old Tom"
    assert found["card"]["data"]["first_mes"] == "Arr, {{user}}."
    assert found["card"]["avatar"] == "none"


async def test_a_json_card_exported_as_png_gets_a_placeholder_image_with_both_chunks(
    engine: Engine,
) -> None:
    found = await imported(engine, f.dumps(f.v2_card()))

    png = await engine.characters.export_card(WS, found["id"], "png")

    keywords = {c.data.split(b"\x00")[0] for c in read_chunks(png) if c.type == b"tEXt"}
    assert keywords == {b"chara", b"ccv3"}
    card = json.loads(read_png_card(png).text)
    assert card["spec"] == "chara_card_v3" and card["data"]["x_data_unknown"] == {"kept": True}
    with pytest.raises(NotFound):
        await engine.characters.avatar(WS, found["id"])


async def test_a_png_card_exported_as_charx_carries_its_picture_as_the_icon(
    engine: Engine,
) -> None:
    picture = f.image(colour=b"\x09\x09\x09")
    found = await imported(engine, f.png_card(ccv3=f.v3_card(), picture=picture))

    again = await imported(engine, await engine.characters.export_card(WS, found["id"], "charx"))

    assert await engine.characters.avatar(WS, again["id"]) == ("image/png", picture)
    icons = [a for a in again["card"]["data"]["assets"] if a["type"] == "icon"]
    assert icons[0]["uri"] == "embeded://assets/icon/images/main.png"


async def test_a_charx_keeps_every_asset_in_the_database(engine: Engine) -> None:
    _, data = f.charx_card()
    found = await imported(engine, data)

    assert {a["path"] for a in found["assets"]} == {
        "assets/icon/images/main.png",
        "assets/background/images/sea.png",
    }
    media, icon = await engine.characters.avatar(WS, found["id"])
    assert media == "image/png" and icon == f.image(colour=b"\x00\xff\x00")
    assert await count(engine, character_assets) == 2


# --- bad input writes nothing -------------------------------------------------------


def _zip_traversal() -> bytes:
    return f.charx(f.v3_card(), {"../../etc/evil.png": b"x"})


def _zip_bomb() -> bytes:
    return f.charx(f.v3_card(), {"assets/x/bomb.bin": b"\x00" * (4 * 2**20)})


BAD_FILES: dict[str, Callable[[], bytes]] = {
    "truncated-png": lambda: f.png_card(chara=f.v2_card())[:-30],
    "png-without-card": lambda: f.image(),
    "base64-garbage": lambda: f.image()[:-12] + f.text_chunk("ccv3", b"!!!") + f.image()[-12:],
    "invalid-json": lambda: b'{"spec": "chara_card_v2", "data": ',
    "not-a-card": lambda: b'{"hello": "world"}',
    "empty-name": lambda: f.dumps(f.v2_card(name="")),
    "zip-traversal": _zip_traversal,
    "zip-bomb": _zip_bomb,
    "unknown-format": lambda: b"GIF89a",
    "empty": lambda: b"",
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
async def test_a_bad_file_is_refused_and_nothing_is_written(engine: Engine, case: str) -> None:
    with pytest.raises((InvalidInput, PayloadTooLarge)):
        await imported(engine, BAD_FILES[case]())

    for table in (characters, character_assets, character_tags):
        assert await count(engine, table) == 0
    async with engine.db.read() as conn:
        logged = await conn.scalar(
            sa.select(sa.func.count()).where(audit_log.c.action == "character.imported")
        )
    assert logged == 0


async def test_an_oversized_file_is_refused(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALEWEAVER_CARD_MAX_BYTES", "2000")
    big = f.png_card(ccv3=f.v3_card(description="x" * 5000))

    with pytest.raises(PayloadTooLarge):
        await imported(engine, big)
    assert await count(engine, characters) == 0
