"""Lorebook files: each format is detected, read, and written back without loss."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.lorebook import Book, Entry, Logic, Position, Role, update_entry
from taleweaver.memory.lorebook import parse_lorebook, to_format

DATA = Path(__file__).parent / "data" / "lorebooks"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


# (file, the format it is detected as, what an export in that format must equal)
FILES = [
    ("sillytavern_aster.json", "sillytavern", lambda d: d),
    ("card_v2_with_book.json", "character_book", lambda d: d["data"]["character_book"]),
    ("lorebook_v3.json", "lorebook_v3", lambda d: d),
    ("novelai.json", "novelai", lambda d: d),
]


@pytest.mark.parametrize(("name", "fmt", "expected"), FILES, ids=[f[1] for f in FILES])
def test_import_then_export_in_the_same_format_gives_the_same_json(
    name: str, fmt: str, expected: Any
) -> None:
    data = load(name)
    book = parse_lorebook(copy.deepcopy(data))
    assert book.format == fmt
    assert to_format(book, fmt) == expected(data)


def test_an_edit_changes_only_its_own_field_and_keeps_unknown_ones() -> None:
    data = load("sillytavern_aster.json")
    book = parse_lorebook(data)
    index = next(i for i, e in enumerate(book.entries) if e.uid == "25")
    edited = update_entry(book.entries[index], {"content": "Rewritten.", "sticky": 2})
    entries = list(book.entries)
    entries[index] = edited
    out = to_format(replace(book, entries=tuple(entries)), "sillytavern")
    before, after = data["entries"]["25"], out["entries"]["25"]
    assert {k for k in after if after[k] != before.get(k)} == {"content", "sticky"}
    assert after["customTaleweaverTest"] == {"nested": [1, 2]}
    assert out["entries"]["0"] == data["entries"]["0"]


def test_edit_in_a_character_book_changes_both_position_fields() -> None:
    book = parse_lorebook(load("card_v2_with_book.json"))
    moved = update_entry(book.entries[1], {"position": "before_char"})
    out = to_format(
        replace(book, entries=(book.entries[0], moved, book.entries[2])), "character_book"
    )
    assert out["entries"][1]["position"] == "before_char"
    assert out["entries"][1]["extensions"]["position"] == 0
    assert out["entries"][1]["extensions"]["x_unknown"] == [1, 2, 3]


def test_a_character_card_yields_its_embedded_book_and_settings() -> None:
    book = parse_lorebook(load("card_v2_with_book.json"))
    assert book.name == "Shattered Isles"
    assert (book.settings.scan_depth, book.settings.token_budget) == (3, 600)
    assert book.settings.recursive is False
    court = book.entries[1]
    assert (court.logic, court.sticky, court.cooldown) == (Logic.AND_ALL, 2, 3)
    assert court.position == Position.AFTER_CHAR
    storms = book.entries[2]
    assert (storms.uid, storms.comment, storms.order) == ("2", "Storms", 10)


def test_a_v3_lorebook_reads_depth_role_and_case() -> None:
    cog = parse_lorebook(load("lorebook_v3.json")).entries[0]
    assert (cog.uid, cog.position, cog.depth, cog.role) == (
        "cog-1",
        Position.AT_DEPTH,
        2,
        Role.ASSISTANT,
    )
    assert cog.case_sensitive is True


def test_novelai_fields_map_onto_entries() -> None:
    book = parse_lorebook(load("novelai.json"))
    fort, realm, wolves = book.entries
    assert (fort.comment, fort.keys, fort.order) == ("Harrowgate", ("Harrowgate", "fortress"), 400)
    assert (realm.constant, realm.order) == (True, 800)
    assert (wolves.uid, wolves.enabled) == ("2", False)


@pytest.mark.parametrize("target", ["character_book", "lorebook_v3"])
def test_sillytavern_settings_survive_the_character_book_formats(target: str) -> None:
    book = parse_lorebook(load("sillytavern_aster.json"))
    again = parse_lorebook(to_format(book, target))
    assert again.entries == book.entries


def test_novelai_export_keeps_what_novelai_can_hold() -> None:
    book = parse_lorebook(load("sillytavern_aster.json"))
    again = parse_lorebook(to_format(book, "novelai"))
    kept = [
        (e.uid, e.keys, e.content, e.comment, e.enabled, e.constant, e.order) for e in book.entries
    ]
    assert kept == [
        (e.uid, e.keys, e.content, e.comment, e.enabled, e.constant, e.order) for e in again.entries
    ]


def test_an_unknown_export_format_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown lorebook format 'kobold'"):
        to_format(parse_lorebook({"entries": {}}), "kobold")


MALFORMED = [
    ([], "must be a JSON object"),
    ({}, "not a lorebook"),
    ({"entries": "none"}, "not a lorebook"),
    ({"entries": {"1": "text"}}, "entry 1 must be an object"),
    ({"entries": {"1": {"key": ["a"], "content": 5}}}, "entry 1: 'content' must be a string"),
    ({"entries": {"1": {"key": [1]}}}, "'key' must be a list of strings"),
    ({"entries": {"1": {"selectiveLogic": 9}}}, "a number from 0 to 3"),
    ({"entries": {"1": {"probability": 150}}}, "between 0 and 100"),
    ({"entries": {"1": {"sticky": -1}}}, "must not be negative"),
    ({"entries": {"1": {"order": "high"}}}, "'order' must be a whole number"),
    ({"entries": {"1": {"disable": "yes"}}}, "'disable' must be true or false"),
    ({"spec": "lorebook_v3"}, "needs a 'data' object"),
    ({"spec": "chara_card_v2", "data": {"name": "x"}}, "no character_book"),
    ({"spec": "something_else"}, "unknown lorebook spec"),
    ({"lorebookVersion": 5, "entries": {}}, "needs an 'entries' list"),
    ({"entries": [{"content": "x"}]}, "'keys' must be present"),
    (
        {"entries": [{"keys": [], "content": "x", "extensions": []}]},
        "'extensions' must be an object",
    ),
    (
        {"entries": [{"id": 1, "keys": [], "content": ""}, {"id": 1, "keys": [], "content": ""}]},
        "entry id 1 appears twice",
    ),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED, ids=[m[1] for m in MALFORMED])
def test_malformed_files_are_refused_with_a_clear_reason(data: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_lorebook(data)


# --- every field Taleweaver holds survives the formats that can hold it ----------------------

entries = st.builds(
    Entry,
    uid=st.just("0"),
    keys=st.lists(st.text(min_size=1, max_size=8), max_size=3).map(tuple),
    secondary_keys=st.lists(st.text(min_size=1, max_size=8), max_size=3).map(tuple),
    content=st.text(max_size=30),
    comment=st.text(max_size=10),
    enabled=st.booleans(),
    constant=st.booleans(),
    selective=st.booleans(),
    logic=st.sampled_from(list(Logic)),
    order=st.integers(-1000, 1000),
    position=st.sampled_from(list(Position)),
    depth=st.integers(0, 50),
    role=st.sampled_from(list(Role)),
    scan_depth=st.none() | st.integers(0, 100),
    case_sensitive=st.none() | st.booleans(),
    match_whole_words=st.none() | st.booleans(),
    use_group_scoring=st.none() | st.booleans(),
    exclude_recursion=st.booleans(),
    prevent_recursion=st.booleans(),
    delay_until_recursion=st.integers(0, 5),
    probability=st.integers(0, 100),
    use_probability=st.booleans(),
    group=st.text(max_size=10),
    group_override=st.booleans(),
    group_weight=st.integers(0, 1000),
    sticky=st.integers(0, 10),
    cooldown=st.integers(0, 10),
    delay=st.integers(0, 10),
    ignore_budget=st.booleans(),
)


@pytest.mark.parametrize("fmt", ["sillytavern", "character_book", "lorebook_v3"])
@given(entry=entries)
def test_every_entry_field_survives_an_export_and_import(fmt: str, entry: Entry) -> None:
    book = Book(name="Made here", format=fmt, entries=(entry,), raw_entries=(None,))
    again = parse_lorebook(json.loads(json.dumps(to_format(book, fmt))))
    assert again.entries == (entry,)
