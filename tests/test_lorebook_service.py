"""Lorebooks through the engine, on SQLite and PostgreSQL: storage, editing, workspace
isolation, and entries reaching the narrator's prompt with a trace of why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taleweaver.auth import LOCAL_USER_ID
from taleweaver.domain.errors import InvalidInput, NotFound
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from tests.conftest import META

WS = "local"
DATA = Path(__file__).parent / "data" / "lorebooks"
ASTER = json.loads((DATA / "sillytavern_aster.json").read_text())


async def import_aster(engine: Engine, *, recursive: bool = False, **kwargs: Any) -> str:
    summary = await engine.lorebooks.import_book(WS, ASTER, actor="test", **kwargs)
    book_id: str = summary["id"]
    if recursive:  # a World Info file leaves recursion off, as SillyTavern's default
        changes = {"settings": {"recursive": True}}
        await engine.lorebooks.update_book(WS, book_id, changes, actor="test")
    return book_id


async def play(engine: Engine, session_id: str, text: str) -> dict[str, Any]:
    handle = await engine.turns.start(
        WS, session_id, TurnRequest.build(action=None, text=text, choice=None), META
    )
    turn: dict[str, Any] = await handle.wait()
    return turn


async def story(engine: Engine, settings: dict[str, Any]) -> str:
    created = await engine.sessions.create(
        WS, kind=SessionKind.STORY, title="Aster", settings=settings, metadata=META
    )
    session_id: str = created["id"]
    return session_id


async def lore_trace(engine: Engine, session_id: str) -> list[dict[str, Any]]:
    """The lorebook pieces of the last committed turn's context trace."""
    events = await engine.sessions.events(WS, session_id, after=0, limit=1000)
    committed = [e for e in events if e.type == "turn.committed"][-1]
    return [t for t in committed.payload["context"] if t.get("source") == "lorebook"]


def prompt_text(model: ScriptedModel) -> str:
    return "\n".join(m.content for m in model.calls[-1])


# --- storage ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("sillytavern_aster.json", "sillytavern"),
        ("lorebook_v3.json", "lorebook_v3"),
        ("novelai.json", "novelai"),
    ],
)
async def test_a_stored_book_exports_the_json_it_was_imported_from(
    engine: Engine, name: str, fmt: str
) -> None:
    raw = (DATA / name).read_bytes()
    summary = await engine.lorebooks.import_book(WS, raw, actor="test")
    assert summary["format"] == fmt
    assert await engine.lorebooks.export_book(WS, summary["id"], fmt) == json.loads(raw)


async def test_a_cards_book_is_stored_with_its_own_name_and_round_trips(engine: Engine) -> None:
    card = json.loads((DATA / "card_v2_with_book.json").read_text())
    summary = await engine.lorebooks.import_book(WS, card, world_id="isles", actor="test")
    assert (summary["name"], summary["entries"], summary["world_id"]) == (
        "Shattered Isles",
        3,
        "isles",
    )
    exported = await engine.lorebooks.export_book(WS, summary["id"], "character_book")
    assert exported == card["data"]["character_book"]


async def test_a_malformed_file_is_refused_and_nothing_is_stored(engine: Engine) -> None:
    broken = json.loads(json.dumps(ASTER))
    broken["entries"]["25"]["probability"] = "often"  # the very last entry
    with pytest.raises(InvalidInput, match="entry 25: 'probability' must be a whole number"):
        await engine.lorebooks.import_book(WS, broken, actor="test")
    with pytest.raises(InvalidInput, match="not valid JSON"):
        await engine.lorebooks.import_book(WS, b"{entries: oops", actor="test")
    with pytest.raises(InvalidInput, match="NUL character"):
        await engine.lorebooks.import_book(
            WS, {"entries": {"0": {"key": ["a"], "content": "a\x00b"}}}, actor="test"
        )
    assert await engine.lorebooks.list_books(WS) == []


async def test_editing_entries_changes_the_export_and_the_next_activation(engine: Engine) -> None:
    book_id = await import_aster(engine)
    added = await engine.lorebooks.add_entry(
        WS, book_id, {"keys": ["griffin"], "content": "Griffins nest on Kharn."}, actor="test"
    )
    assert added["uid"] == "26"
    await engine.lorebooks.update_entry(WS, book_id, "0", {"content": "Dragons sleep."}, actor="t")
    await engine.lorebooks.delete_entry(WS, book_id, "21", actor="test")

    exported = await engine.lorebooks.export_book(WS, book_id, "sillytavern")
    assert exported["entries"]["26"]["content"] == "Griffins nest on Kharn."
    assert exported["entries"]["0"] == ASTER["entries"]["0"] | {"content": "Dragons sleep."}
    assert "21" not in exported["entries"]
    found = await engine.lorebooks.dry_run(WS, book_id, messages=[], text="a griffin and a dragon")
    texts = {a["uid"]: a["content"] for a in found["activated"]}
    assert texts["26"] == "Griffins nest on Kharn."
    assert texts["0"] == "Dragons sleep."
    listed = await engine.lorebooks.list_books(WS)
    assert [(b["entries"], b["version"]) for b in listed] == [(26, 4)]


async def test_a_bad_entry_edit_changes_nothing(engine: Engine) -> None:
    book_id = await import_aster(engine)
    with pytest.raises(InvalidInput, match="between 0 and 100"):
        await engine.lorebooks.update_entry(WS, book_id, "0", {"probability": 101}, actor="t")
    with pytest.raises(InvalidInput, match="already exists"):
        await engine.lorebooks.add_entry(WS, book_id, {"uid": "0", "content": "x"}, actor="t")
    with pytest.raises(NotFound, match="entry 99 not found"):
        await engine.lorebooks.update_entry(WS, book_id, "99", {"content": "x"}, actor="t")
    assert await engine.lorebooks.export_book(WS, book_id, "sillytavern") == ASTER


async def test_another_workspace_cannot_see_or_use_the_book(engine: Engine) -> None:
    book_id = await import_aster(engine, world_id="aster")
    other = (await engine.accounts.create_workspace(LOCAL_USER_ID, "Other", sensitive=False))["id"]
    calls = [
        engine.lorebooks.get_book(other, book_id),
        engine.lorebooks.export_book(other, book_id, "sillytavern"),
        engine.lorebooks.dry_run(other, book_id, messages=[], text="dragon"),
        engine.lorebooks.add_entry(other, book_id, {"content": "x"}, actor="t"),
        engine.lorebooks.update_entry(other, book_id, "0", {"content": "x"}, actor="t"),
        engine.lorebooks.delete_entry(other, book_id, "0", actor="t"),
        engine.lorebooks.delete_book(other, book_id, actor="t"),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            await call
    assert await engine.lorebooks.list_books(other) == []
    assert await engine.lorebooks.list_books(other, world_id="aster") == []
    assert await engine.lorebooks.export_book(WS, book_id, "sillytavern") == ASTER


async def test_deleting_a_book_removes_it(engine: Engine) -> None:
    book_id = await import_aster(engine)
    await engine.lorebooks.delete_book(WS, book_id, actor="test")
    with pytest.raises(NotFound):
        await engine.lorebooks.get_book(WS, book_id)
    assert await engine.lorebooks.list_books(WS) == []


# --- into the narrator's prompt -----------------------------------------------------------


async def test_a_key_in_the_players_words_puts_the_entry_in_the_narrators_prompt(
    engine: Engine,
) -> None:
    model = ScriptedModel(["The wind howls."])
    engine.caps.model = model
    book_id = await import_aster(engine, world_id="aster-world", recursive=True)
    sid = await story(engine, {"world_id": "aster-world"})

    await play(engine, sid, "I whisper about the dragon.")

    system = model.calls[-1][0].content
    assert "Dragons of Aster answer to the Ember Court" in system
    assert "every spell costs the caster a memory" in system  # the constant entry
    assert ChatMessage("user", "[The walls have ears: someone is listening.]") in model.calls[-1]
    trace = {t["ref"]: t for t in await lore_trace(engine, sid)}
    assert trace[f"{book_id}/0"]["reason"] == "key 'dragon' in player message"
    assert trace[f"{book_id}/2"]["reason"] == "constant"
    assert trace[f"{book_id}/1"]["reason"] == "recursion from entry 0 (key 'Ember Court')"
    assert trace[f"{book_id}/17"]["reason"] == "key 'whisper' in player message"


async def test_a_session_uses_books_listed_in_its_settings_and_no_others(engine: Engine) -> None:
    model = ScriptedModel(["Onward."])
    engine.caps.model = model
    listed = await import_aster(engine)
    await engine.lorebooks.import_book(
        WS, {"entries": {"0": {"key": ["dragon"], "content": "UNLISTED BOOK"}}}, actor="t"
    )
    sid = await story(engine, {"lorebook_ids": [listed]})

    await play(engine, sid, "a dragon")

    assert "Dragons of Aster" in prompt_text(model)
    assert "UNLISTED BOOK" not in prompt_text(model)


async def test_a_session_without_books_gets_no_lore(engine: Engine) -> None:
    model = ScriptedModel(["Onward."])
    engine.caps.model = model
    await import_aster(engine, world_id="aster-world")
    sid = await story(engine, {})
    await play(engine, sid, "a dragon")
    assert "Dragons of Aster" not in prompt_text(model)
    assert await lore_trace(engine, sid) == []


async def test_a_sticky_entry_is_remembered_across_turns_of_a_session(engine: Engine) -> None:
    model = ScriptedModel(["Time passes."])
    engine.caps.model = model
    book_id = await import_aster(engine, world_id="w")
    sid = await story(engine, {"world_id": "w"})
    curse = "A creeping curse turns the hero's left hand to ash."

    await play(engine, sid, "I feel a curse.")
    assert curse in prompt_text(model)
    await play(engine, sid, "I rest by the fire.")
    assert curse in prompt_text(model)
    reasons = {t["ref"]: t["reason"] for t in await lore_trace(engine, sid)}
    assert reasons[f"{book_id}/12"] == "sticky"
    await play(engine, sid, "The curse burns.")  # sticky over, cooldown running
    assert curse not in prompt_text(model)
    rejected = [r for t in await lore_trace(engine, sid) for r in t["detail"].get("rejected", [])]
    assert {"ref": f"{book_id}/12", "why": "on cooldown"} in rejected


async def test_entries_cut_by_the_lorebook_budget_are_named_in_the_trace(engine: Engine) -> None:
    engine.caps.model = ScriptedModel(["Onward."])
    book_id = await import_aster(engine, world_id="w", recursive=True)
    sid = await story(engine, {"world_id": "w", "lorebook_budget": 40})

    await play(engine, sid, "A dragon!")

    trace = await lore_trace(engine, sid)
    assert {t["ref"] for t in trace} == {f"{book_id}/0", f"{book_id}/2"}
    cut = [t["detail"]["cut"] for t in trace if "cut" in t.get("detail", {})]
    assert cut == [[f"{book_id}/1"]]


async def test_bad_book_changes_and_names_are_refused(engine: Engine) -> None:
    book_id = await import_aster(engine)
    with pytest.raises(InvalidInput, match="scan_depth must be a whole number"):
        await engine.lorebooks.update_book(WS, book_id, {"settings": {"scan_depth": -1}}, actor="t")
    with pytest.raises(InvalidInput, match="needs a name"):
        await engine.lorebooks.update_book(WS, book_id, {"name": "   "}, actor="t")
    with pytest.raises(InvalidInput, match="world_id must be"):
        await engine.lorebooks.import_book(WS, ASTER, world_id="w" * 65, actor="t")
    with pytest.raises(InvalidInput, match="uid must be"):
        await engine.lorebooks.add_entry(WS, book_id, {"uid": "", "content": "x"}, actor="t")
    with pytest.raises(NotFound):
        await engine.lorebooks.update_book("local", "missing", {"name": "x"}, actor="t")
    books = await engine.lorebooks.list_books(WS)
    assert [(b["name"], b["version"], b["settings"]["scan_depth"]) for b in books] == [
        ("Imported lorebook", 1, 2)
    ]


async def test_an_edited_book_is_ready_for_the_next_turn_and_matches_a_rebuild(
    engine: Engine,
) -> None:
    lore = engine.lorebooks
    book_id = await import_aster(engine)
    said = "a griffin, a dragon and the wolves"
    await lore.dry_run(WS, book_id, messages=[], text=said)  # prepared, as a turn would
    await lore.add_entry(WS, book_id, {"keys": ["/griffins?/i"], "content": "Griffins."}, actor="t")
    await lore.update_entry(WS, book_id, "0", {"keys": ["wolves"]}, actor="t")
    await lore.delete_entry(WS, book_id, "21", actor="test")
    await lore.update_book(WS, book_id, {"name": "Aster, revised"}, actor="test")
    # Each edit revised the cached book: the next activation prepares nothing.
    assert lore.prepared.get(book_id, 5) is not None
    found = await lore.dry_run(WS, book_id, messages=[], text=said)
    lore.prepared.forget(book_id)  # what preparing the stored book whole gives
    assert await lore.dry_run(WS, book_id, messages=[], text=said) == found
    reasons = {a["uid"]: a["reason"] for a in found["activated"]}
    assert reasons["26"] == "key '/griffins?/i' in player message"
    assert reasons["0"].startswith("key 'wolves'")
    assert "21" not in reasons
