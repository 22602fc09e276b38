"""The characters service on SQLite and PostgreSQL: the embedded lorebook, listing and
filtering, tenants, edits and deletes."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from taleweaver.characters import Characters
from taleweaver.domain.errors import InvalidInput, NotFound, TaleweaverError
from taleweaver.engine import Engine
from taleweaver.store.characters_schema import character_assets, character_tags, characters
from tests.data.cards import factory as f

WS = "local"
JSONDict = dict[str, Any]


async def count(engine: Engine, table: sa.Table) -> int:
    async with engine.db.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


async def imported(engine: Engine, data: bytes) -> JSONDict:
    return await engine.characters.import_card(WS, data, filename=None, actor="tester")


# --- the embedded lorebook ----------------------------------------------------------


class RefusingBooks:
    async def import_book(
        self, workspace_id: str, book_json: JSONDict, *, world_id: str | None = None, **_: Any
    ) -> JSONDict:
        raise InvalidInput("this lorebook makes no sense")


class RecordingBooks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, JSONDict, JSONDict]] = []

    async def import_book(self, workspace_id: str, book_json: JSONDict, **kwargs: Any) -> JSONDict:
        self.calls.append((workspace_id, book_json, kwargs))
        return {"id": "book-1"}


def _service(engine: Engine, books: Any) -> Characters:
    return Characters(engine.db, engine.repository, audit=engine.audit, lorebooks=books)


async def test_a_character_book_is_kept_verbatim_and_registered(engine: Engine) -> None:
    books = RecordingBooks()
    card = f.v3_card(character_book=f.book("lamp"))

    found = await _service(engine, books).import_card(WS, f.dumps(card), actor="tester")

    assert found["card"]["data"]["character_book"] == f.book("lamp")
    assert found["lorebook_id"] == "book-1"
    assert await engine.characters.get(WS, found["id"]) == found
    ws, book, kwargs = books.calls[0]
    assert (ws, book) == (WS, f.book("lamp"))
    assert kwargs == {"world_id": None, "name": "Lighthouse lore", "actor": "tester"}


async def test_a_refused_character_book_leaves_no_character(engine: Engine) -> None:
    card = f.v3_card(character_book=f.book())

    with pytest.raises(InvalidInput, match="no sense"):
        await _service(engine, RefusingBooks()).import_card(WS, f.dumps(card), actor="tester")

    assert await count(engine, characters) == 0


async def test_without_the_lorebooks_feature_the_book_stays_in_the_card(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    found = await _service(engine, None).import_card(
        WS, f.dumps(f.v3_card(character_book=f.book())), actor="tester"
    )
    assert found["lorebook_id"] is None
    assert "not registered" in caplog.text


async def test_the_engines_lorebooks_feature_registers_the_book(engine: Engine) -> None:
    lorebooks = getattr(engine, "lorebooks", None)
    if lorebooks is None or not hasattr(lorebooks, "import_book"):
        pytest.skip("engine.lorebooks.import_book is not wired yet (lorebooks, #4)")
    found = await imported(engine, f.dumps(f.v3_card(character_book=f.book("lamp"))))
    assert found["lorebook_id"]


# --- reading, editing, deleting -----------------------------------------------------


async def test_characters_are_listed_and_filtered_by_tag_and_name(engine: Engine) -> None:
    await imported(engine, f.dumps(f.v2_card("Aria", tags=["sea"])))
    await imported(engine, f.dumps(f.v2_card("Bram", tags=["forest"])))
    await imported(engine, f.dumps(f.v2_card("Ariadne_%", tags=["Sea", "maze"])))

    assert [c["name"] for c in await engine.characters.list(WS)] == ["Aria", "Bram", "Ariadne_%"]
    assert [c["name"] for c in await engine.characters.list(WS, tag="SEA")] == [
        "Aria",
        "Ariadne_%",
    ]
    assert [c["name"] for c in await engine.characters.list(WS, name="ari")] == [
        "Aria",
        "Ariadne_%",
    ]
    assert [c["name"] for c in await engine.characters.list(WS, name="_%")] == ["Ariadne_%"]
    page, total = await engine.characters.page(WS, limit=1, offset=1)
    assert total == 3 and [c["name"] for c in page] == ["Bram"]


async def test_another_workspace_cannot_see_or_touch_a_character(engine: Engine) -> None:
    found = await imported(engine, f.dumps(f.v2_card()))
    user = await engine.accounts.create_user("other@example.com", password=None)
    other = (await engine.accounts.workspaces_of(user["id"]))[0]["id"]

    for call in (
        engine.characters.get(other, found["id"]),
        engine.characters.export_card(other, found["id"], "json"),
        engine.characters.update(other, found["id"], {"description": "x"}, actor="x"),
        engine.characters.delete(other, found["id"], actor="x"),
        engine.characters.avatar(other, found["id"]),
    ):
        with pytest.raises(NotFound):
            await call
    assert await engine.characters.list(other) == []
    assert (await engine.characters.get(WS, found["id"]))["card"]["data"]["description"]


async def test_an_edit_is_exported_with_unknown_keys_and_taleweavers_settings(
    engine: Engine,
) -> None:
    found = await imported(engine, f.dumps(f.v2_card()))

    edited = await engine.characters.update(
        WS,
        found["id"],
        {"description": "Now a baker.", "tags": ["bread"], "voice": {"engine": "piper"}},
        actor="tester",
    )
    exported = json.loads(await engine.characters.export_card(WS, found["id"], "json"))

    assert edited["edited"] and edited["tags"] == ["bread"]
    assert exported["spec"] == "chara_card_v3"
    assert exported["data"]["description"] == "Now a baker."
    assert exported["x_top"] == "kept" and exported["data"]["x_data_unknown"] == {"kept": True}
    assert exported["data"]["extensions"]["taleweaver"] == {"voice": {"engine": "piper"}}
    again = await imported(engine, json.dumps(exported).encode())
    assert again["taleweaver"]["voice"] == {"engine": "piper"}
    assert again["card"] == edited["card"]


async def test_a_bad_edit_changes_nothing(engine: Engine) -> None:
    found = await imported(engine, f.dumps(f.v2_card()))

    for changes in ({"name": ""}, {"tags": "x"}, {"spec": "v9"}):
        with pytest.raises(InvalidInput):
            await engine.characters.update(WS, found["id"], changes, actor="tester")

    assert (await engine.characters.get(WS, found["id"]))["card"] == found["card"]


async def test_deleting_a_character_deletes_its_assets_and_tags(engine: Engine) -> None:
    found = await imported(engine, f.charx_card()[1])

    await engine.characters.delete(WS, found["id"], actor="tester")

    for table in (characters, character_assets, character_tags):
        assert await count(engine, table) == 0
    with pytest.raises(NotFound):
        await engine.characters.get(WS, found["id"])


async def test_unknown_export_format_is_refused(engine: Engine) -> None:
    found = await imported(engine, f.dumps(f.v2_card()))
    with pytest.raises(TaleweaverError, match="format"):
        await engine.characters.export_card(WS, found["id"], "gif")
