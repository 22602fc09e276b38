"""SillyTavern World Info rules that lorebooks are written for: character filters,
generation triggers, outlets, recursion off unless a book asks for it, and budgets
counted with the narrator's own tokenizer.

The pure rules are checked on activation directly; the session tests play real
turns on an engine and read the narrator's prompt.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from taleweaver.domain.events import EventMetadata
from taleweaver.domain.lorebook import (
    ActiveCharacter,
    BookSettings,
    Outcome,
    Position,
    PreparedBook,
    Segment,
    activate,
    estimate_tokens,
    generation_types,
    make_entry,
    update_entry,
)
from taleweaver.domain.macros import MacroContext, expand, fill_outlets
from taleweaver.domain.pipeline import ContextPiece
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.stages.recall import take_outlets
from taleweaver.llm import ModelRouter, ScriptedModel
from taleweaver.llm.embedded import EmbeddedModel
from taleweaver.llm.tokens import token_counter
from taleweaver.memory.lorebook import parse_lorebook, to_format
from taleweaver.memory.lorebook.matcher import PreparedBooks
from tests.data.cards import factory as f
from tests.data.cards.companions import new_character, start

WS = "local"
META = EventMetadata(actor="local")
JSONDict = dict[str, Any]
DATA = Path(__file__).parent / "data" / "lorebooks"


def st_entry(uid: int, **fields: Any) -> JSONDict:
    """An entry as SillyTavern writes one (the fields this file is about included)."""
    entry: JSONDict = {
        "uid": uid,
        "key": [],
        "keysecondary": [],
        "comment": f"entry {uid}",
        "content": "",
        "constant": False,
        "selective": True,
        "order": 100,
        "position": 0,
        "disable": False,
        "triggers": [],
        "outletName": "",
        "characterFilter": {"isExclude": False, "names": [], "tags": []},
    }
    return entry | fields


def st_book(*entries: JSONDict) -> JSONDict:
    return {"entries": {str(e["uid"]): e for e in entries}}


def prepared(book: JSONDict, **settings: Any) -> PreparedBook:
    parsed = parse_lorebook(book)
    merged = replace(parsed.settings, **settings)
    return PreparedBooks().build("b", 1, "B", merged, parsed.entries)


def run(book: PreparedBook, text: str, **kwargs: Any) -> Outcome:
    kwargs.setdefault("budget_tokens", 10_000)
    return activate([book], [Segment("player message", text)], clock=1, seed="s", **kwargs)


def uids(outcome: Outcome) -> list[str]:
    return [a.entry.uid for a in outcome.activated]


def why(outcome: Outcome, uid: str) -> str:
    return next(s.why for s in outcome.rejected if s.uid == uid)


SERAPHINA = ActiveCharacter(names=("Seraphina", "Sera"), tags=("forest", "Healer"))
ROOK = ActiveCharacter(names=("Rook",), tags=("city",))

FILTERED = st_book(
    st_entry(0, key=["glade"], content="Only Seraphina knows the glade.",
             characterFilter={"isExclude": False, "names": ["seraphina"], "tags": []}),
    st_entry(1, key=["glade"], content="Strangers get lost in the glade.",
             characterFilter={"isExclude": True, "names": ["Seraphina"], "tags": []}),
    st_entry(2, key=["glade"], content="Healers hear the glade sing.",
             characterFilter={"isExclude": False, "names": [], "tags": ["healer"]}),
    st_entry(3, key=["glade"], content="Townsfolk fear the glade.",
             characterFilter={"isExclude": True, "names": [], "tags": ["forest"]}),
    st_entry(4, key=["glade"], content="The glade is old.", characterFilterNames=["Rook"],
             characterFilterTags=[], characterFilterExclude=False),
)  # fmt: skip


# --- character filters ------------------------------------------------------------------


def test_a_character_filter_lets_an_entry_in_only_for_its_characters() -> None:
    book = prepared(FILTERED)
    assert uids(run(book, "the glade", character=SERAPHINA)) == ["0", "2"]
    assert uids(run(book, "the glade", character=ROOK)) == ["1", "3", "4"]
    rook = run(book, "the glade", character=ROOK)
    assert why(rook, "0") == "character filter is for other characters"
    assert why(rook, "2") == "character filter is for other tags"
    assert why(run(book, "the glade", character=SERAPHINA), "1") == (
        "character filter excludes this character"
    )


def test_where_no_character_speaks_name_filters_fail_and_tag_filters_are_not_checked() -> None:
    # SillyTavern checks tags only for a character: with none, a tag filter lets its
    # entry through, include or exclude (found by the SillyTavern reference comparison).
    outcome = run(prepared(FILTERED), "the glade", character=None)
    assert uids(outcome) == ["1", "2", "3"]
    assert why(outcome, "0") == "for a character; none speaks"


def test_a_filtered_sticky_entry_stays_out_for_other_characters() -> None:
    book = prepared(st_book(st_entry(0, key=["moss"], content="Moss.", sticky=5,
                                     characterFilterNames=["Seraphina"])))  # fmt: skip
    first = activate([book], [Segment("p", "moss")], clock=1, character=SERAPHINA)
    assert uids(first) == ["0"]
    later = activate([book], [Segment("p", "hi")], clock=3, timed_state=first.timed, character=ROOK)
    assert uids(later) == []


# --- triggers ---------------------------------------------------------------------------


def test_turn_actions_map_to_sillytavern_generation_types() -> None:
    assert generation_types("say") == generation_types("choose") == {"normal"}
    assert generation_types("edit") == {"normal"}
    assert generation_types("continue") == {"continue"}
    assert generation_types("regenerate") == {"regenerate", "swipe"}


def test_an_entry_with_triggers_activates_only_for_those_generation_types() -> None:
    book = prepared(st_book(
        st_entry(0, constant=True, content="Always."),
        st_entry(1, constant=True, content="On continue.", triggers=["continue"]),
        st_entry(2, constant=True, content="On a swipe.", triggers=["swipe"]),
        st_entry(3, constant=True, content="Normal or regenerate.",
                 triggers=["normal", "regenerate"]),
    ))  # fmt: skip
    assert uids(run(book, "", generation=generation_types("say"))) == ["0", "3"]
    assert uids(run(book, "", generation=generation_types("continue"))) == ["0", "1"]
    assert uids(run(book, "", generation=generation_types("regenerate"))) == ["0", "2", "3"]
    assert why(run(book, "", generation=generation_types("say")), "1") == (
        "triggers only on continue"
    )


# --- outlets ----------------------------------------------------------------------------


def test_the_outlet_macro_expands_to_its_text_or_to_nothing() -> None:
    outlets = {"Lore": "The moon is hollow."}
    assert fill_outlets("A {{outlet::Lore}} B {{outlet::None}}.", outlets) == (
        "A The moon is hollow. B ."
    )
    # Expanded before the outlets are known (a card), the macro is kept for later.
    assert expand("{{char}}: {{outlet::Lore}}", MacroContext("Sera")) == "Sera: {{outlet::Lore}}"
    known = MacroContext("Sera", outlets=outlets)
    assert expand("{{outlet::Lore}}|{{outlet::x}}", known) == "The moon is hollow.|"


def test_outlet_pieces_are_joined_by_order_and_not_placed() -> None:
    def piece(text: str, order: int, outlet: str | None = None) -> ContextPiece:
        detail: JSONDict = {"outlet": outlet} if outlet else {}
        return ContextPiece(text, "lorebook", text, "r", order=order, detail=detail)

    placed, filling, outlets = take_outlets(
        [piece("b", 20, "O"), piece("placed", 0), piece("a", 10, "O"), piece("c", 0, "P")]
    )
    assert [p.text for p in placed] == ["placed"]
    assert [p.text for p in filling] == ["c", "a", "b"]
    assert outlets == {"O": "a\nb", "P": "c"}


# --- recursion's default ----------------------------------------------------------------


def test_recursion_follows_the_books_own_setting_and_is_off_without_one() -> None:
    assert parse_lorebook(st_book(st_entry(0))).settings.recursive is False
    assert BookSettings().recursive is False
    card_book: JSONDict = {"name": "B", "entries": [{"keys": ["a"], "content": "x"}]}
    assert parse_lorebook(card_book).settings.recursive is False
    on = parse_lorebook(card_book | {"recursive_scanning": True})
    assert on.settings.recursive is True
    assert to_format(on, "character_book")["recursive_scanning"] is True


# --- budgets in the model's tokens --------------------------------------------------------


BUDGETED = st_book(
    st_entry(0, constant=True, content="a" * 40, order=1),
    st_entry(1, key=["tower"], content="b" * 40, order=300),
    st_entry(2, key=["tower"], content="c" * 40, order=200),
    st_entry(3, key=["tower"], content="d" * 40, order=100),
)


def test_the_budget_counts_with_the_given_counter() -> None:
    book = prepared(BUDGETED)
    # The estimate: 10 tokens each, so a budget of 30 holds three entries.
    assert uids(run(book, "tower", budget_tokens=30)) == ["0", "1", "2"]
    # A tokenizer that counts twice as many tokens fits only half as much.
    doubled = run(book, "tower", budget_tokens=30, count_tokens=lambda t: 2 * estimate_tokens(t))
    assert uids(doubled) == ["0"]
    assert [s.uid for s in doubled.cut] == ["1", "2", "3"]


def test_a_full_budget_keeps_the_same_entries_as_sillytavern_whatever_the_counter() -> None:
    """Constant entries first, then higher order; once full, the rest are cut in order."""
    book = prepared(BUDGETED)
    for counter in (estimate_tokens, lambda t: len(t) // 8):
        tokens = counter("a" * 40)
        outcome = run(book, "tower", budget_tokens=2 * tokens, count_tokens=counter)
        assert uids(outcome) == ["0", "1"]
        assert [s.uid for s in outcome.cut] == ["2", "3"]


class _Vocabulary:
    """Stands in for a loaded llama.cpp model: one token per word."""

    def __init__(self) -> None:
        self.calls = 0

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        self.calls += 1
        return list(range(len(text.split())))


def test_the_embedded_model_counts_with_its_tokenizer_once_loaded_and_never_loads() -> None:
    model = EmbeddedModel()
    assert model.count_tokens("one two three") is None  # not loaded: no count, no load
    assert model._llama is None
    counter = token_counter(lambda: ModelRouter.single(model))
    assert counter("one two three four") == estimate_tokens("one two three four")
    vocabulary = _Vocabulary()
    model._llama = vocabulary
    assert counter("one two three four") == 4
    assert model.count_tokens("one two three four") == 4
    assert vocabulary.calls == 1  # the same text is counted once
    # A model that cannot count (a scripted one, a remote provider) gets the estimate.
    assert token_counter(lambda: ScriptedModel())("x" * 40) == 10


# --- round trips --------------------------------------------------------------------------


ROUND_TRIP = st_book(
    st_entry(0, key=["glade"], content="x", triggers=["continue", "swipe"],
             characterFilter={"isExclude": True, "names": ["Seraphina"], "tags": [3, "healer"]}),
    st_entry(1, key=["moon"], content="The moon is hollow.", position=7, outletName="Lore"),
    st_entry(2, key=["a"], content="y", characterFilterNames=["Rook"],
             characterFilterTags=["city"], characterFilterExclude=True, triggers=["quiet"]),
)  # fmt: skip


def test_an_imported_book_with_these_fields_exports_them_unchanged() -> None:
    book = parse_lorebook(copy.deepcopy(ROUND_TRIP))
    first, outlet, flat = book.entries
    assert first.triggers == ("continue", "swipe")
    assert (first.character_filter_exclude, first.character_filter_names) == (True, ("Seraphina",))
    assert first.character_filter_tags == ("3", "healer")
    assert (outlet.position, outlet.outlet_name) == (Position.OUTLET, "Lore")
    assert (flat.character_filter_names, flat.character_filter_tags) == (("Rook",), ("city",))
    assert flat.character_filter_exclude is True
    assert to_format(book, "sillytavern") == ROUND_TRIP


def test_an_edited_filter_is_written_as_sillytavern_reads_it() -> None:
    book = parse_lorebook(copy.deepcopy(ROUND_TRIP))
    edited = update_entry(book.entries[0], {"character_filter_names": ["Sera", "Rook"]})
    out = to_format(replace(book, entries=(edited, *book.entries[1:])), "sillytavern")
    written = out["entries"]["0"]
    assert written["characterFilter"] == {
        "isExclude": True,
        "names": ["Sera", "Rook"],
        "tags": [3, "healer"],  # untouched: SillyTavern's tag ids stay as they were
    }
    assert written["triggers"] == ["continue", "swipe"]


@pytest.mark.parametrize("fmt", ["character_book", "lorebook_v3"])
def test_the_fields_survive_a_card_book_round_trip(fmt: str) -> None:
    book = parse_lorebook(copy.deepcopy(ROUND_TRIP))
    again = parse_lorebook(to_format(book, fmt))
    for before, after in zip(book.entries, again.entries, strict=True):
        assert (after.triggers, after.outlet_name, after.position) == (
            before.triggers,
            before.outlet_name,
            before.position,
        )
        assert (after.character_filter_names, after.character_filter_tags) == (
            before.character_filter_names,
            before.character_filter_tags,
        )
        assert after.character_filter_exclude == before.character_filter_exclude
    exported = to_format(again, fmt)
    assert to_format(parse_lorebook(copy.deepcopy(exported)), fmt) == exported


def test_entry_fields_are_checked() -> None:
    entry = make_entry("0", {"triggers": ["continue"], "outlet_name": "O"})
    assert entry.triggers == ("continue",)
    with pytest.raises(Exception, match="must be a list of strings"):
        make_entry("0", {"character_filter_names": "Rook"})


# --- in sessions ----------------------------------------------------------------------------


class Narrator:
    """A scripted narrator that remembers the prompts of narration (not extraction)."""

    def __init__(self) -> None:
        self.calls: list[Sequence[ChatMessage]] = []
        self.model = ScriptedModel(self._reply)

    def _reply(self, call: Sequence[ChatMessage]) -> str:
        if not call[0].content.startswith("You extract"):
            self.calls.append(call)
        return "The wind howls."

    def text(self) -> str:
        return "\n".join(m.content for m in self.calls[-1])

    def system(self) -> str:
        return self.calls[-1][0].content


@pytest.fixture
def narrator() -> Narrator:
    return Narrator()


@pytest.fixture
async def engine(make_engine: Any, narrator: Narrator) -> Engine:
    made: Engine = await make_engine(model=narrator.model)
    return made


async def import_book(engine: Engine, book: JSONDict) -> str:
    found = await engine.lorebooks.import_book(WS, book, actor="t")
    book_id: str = found["id"]
    return book_id


async def story(engine: Engine, book_id: str) -> str:
    created = await engine.sessions.create(
        WS, kind=SessionKind.STORY, title="T", settings={"lorebook_ids": [book_id]}, metadata=META
    )
    session_id: str = created["id"]
    return session_id


async def turn(engine: Engine, session_id: str, text: str | None, action: TurnAction) -> None:
    request = TurnRequest.build(action=action, text=text, choice=None)
    handle = await engine.turns.start(WS, session_id, request, META)
    await handle.wait()


SAY, CONTINUE, REGENERATE = TurnAction.SAY, TurnAction.CONTINUE, TurnAction.REGENERATE


async def test_a_companion_session_filters_entries_by_its_speaking_character(
    engine: Engine, narrator: Narrator
) -> None:
    book_id = await import_book(engine, FILTERED)
    seraphina = await new_character(engine, f.v3_card("Seraphina", tags=["Healer"]))
    session_id = await start(engine, seraphina, greeting=0, settings={"lorebook_ids": [book_id]})
    await turn(engine, session_id, "Show me the glade.", SAY)
    prompt = narrator.text()
    assert "Only Seraphina knows the glade." in prompt
    assert "Healers hear the glade sing." in prompt
    assert "Townsfolk fear the glade." in prompt  # excludes the tag "forest" only
    assert "Strangers get lost" not in prompt
    assert "The glade is old." not in prompt  # for Rook


async def test_a_story_session_has_no_character_for_include_filters(
    engine: Engine, narrator: Narrator
) -> None:
    session_id = await story(engine, await import_book(engine, FILTERED))
    await turn(engine, session_id, "Show me the glade.", SAY)
    prompt = narrator.text()
    assert "Strangers get lost in the glade." in prompt
    assert "Townsfolk fear the glade." in prompt
    assert "Healers hear the glade sing." in prompt  # tags are not checked without one
    assert "Only Seraphina" not in prompt and "is old" not in prompt


async def test_triggers_follow_the_turns_action(engine: Engine, narrator: Narrator) -> None:
    book = st_book(
        st_entry(0, constant=True, content="ON CONTINUE.", triggers=["continue"]),
        st_entry(1, constant=True, content="ON A SWIPE.", triggers=["swipe"]),
        st_entry(2, constant=True, content="ON NORMAL.", triggers=["normal"]),
    )
    session_id = await story(engine, await import_book(engine, book))
    await turn(engine, session_id, "Hello.", SAY)
    assert ("ON NORMAL." in narrator.text(), "ON CONTINUE." in narrator.text()) == (True, False)
    await turn(engine, session_id, None, CONTINUE)
    assert ("ON CONTINUE." in narrator.text(), "ON NORMAL." in narrator.text()) == (True, False)
    await turn(engine, session_id, None, REGENERATE)
    assert ("ON A SWIPE." in narrator.text(), "ON NORMAL." in narrator.text()) == (True, False)


async def test_an_outlet_entry_goes_where_its_macro_is_written(
    engine: Engine, narrator: Narrator
) -> None:
    book = st_book(
        st_entry(0, constant=True, content="Known lore: [{{outlet::Lore}}] [{{outlet::Empty}}]"),
        st_entry(1, key=["moon"], content="The moon is hollow.", position=7, outletName="Lore"),
        st_entry(2, key=["moon"], content="Its core hums.", position=7, outletName="Lore",
                 order=200),
        st_entry(3, key=["never"], content="Unseen.", position=7, outletName="Empty"),
    )  # fmt: skip
    book_id = await import_book(engine, book)
    card = f.v3_card("Seraphina", description="{{char}} knows: {{outlet::Lore}}")
    session_id = await start(
        engine, await new_character(engine, card), greeting=0, settings={"lorebook_ids": [book_id]}
    )
    await turn(engine, session_id, "Look at the moon.", SAY)
    system = narrator.system()
    assert "Known lore: [The moon is hollow.\nIts core hums.] []" in system
    assert "Seraphina knows: The moon is hollow.\nIts core hums." in system
    # Not placed on its own anywhere.
    assert narrator.text().count("The moon is hollow.") == 2


class CountingModel(ScriptedModel):
    """A narrator whose tokenizer counts one token per character."""

    def count_tokens(self, text: str) -> int | None:
        return len(text)


async def test_the_engine_counts_lorebook_budgets_with_the_narrators_tokenizer(
    make_engine: Any,
) -> None:
    model = CountingModel(["Onward."])
    engine: Engine = await make_engine(model=model)
    book = st_book(st_entry(0, key=["lamp"], content="The lamp burns blue."))  # 20 chars
    book_id = await import_book(engine, book)
    created = await engine.sessions.create(
        WS,
        kind=SessionKind.STORY,
        title="T",
        settings={"lorebook_ids": [book_id], "lorebook_budget": 10},
        metadata=META,
    )
    await turn(engine, created["id"], "The lamp.", SAY)
    # 5 estimated tokens would fit a budget of 10; 20 of the model's do not.
    assert "The lamp burns blue." not in "\n".join(m.content for m in model.calls[-1])
    assert engine.lorebooks.count_tokens("The lamp burns blue.") == 20


def test_the_aster_book_still_round_trips() -> None:
    raw = json.loads((DATA / "sillytavern_aster.json").read_text())
    assert to_format(parse_lorebook(copy.deepcopy(raw)), "sillytavern") == raw
