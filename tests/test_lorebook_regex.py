"""Regex keys at SillyTavern's shapes: the literal prefilter never changes what activates,
and a revised (edited) book activates exactly what the book prepared whole does."""

from __future__ import annotations

import random
import re
from dataclasses import replace

from benchmarks.lorebook_books import COMMON, REGEX_SHAPES, book, windows
from hypothesis import given, settings
from hypothesis import strategies as st

from taleweaver.domain.lorebook import BookSettings, Outcome, PreparedBook, Segment, activate
from taleweaver.domain.lorebook.literals import IGNORECASE_ASCII, fold, required_literals
from taleweaver.domain.lorebook.model import make_entry
from taleweaver.domain.lorebook.prepare import Change, EveryRegex, ScanLiterals, prepare, revise
from taleweaver.memory.lorebook.matcher import (
    OVERLAY_KEYS,
    AutomatonIndex,
    AutomatonLiterals,
    PreparedBooks,
)

SETTINGS = BookSettings(match_whole_words=True)
GENERATED = book(1500, random.Random(7), regex_share=0.05)
FAST = prepare("g", "G", SETTINGS, GENERATED.entries, AutomatonIndex, AutomatonLiterals)
OLD = prepare("g", "G", SETTINGS, GENERATED.entries, AutomatonIndex, EveryRegex)
# Letters that `re` folds oddly under IGNORECASE, and text shapes regexes care about.
ODD = ["\u0130", "\u0131", "\u017f", "\u212a", "\u00df", "\u03a3", "\n"]
ODD += ["The King of ", "Lord ", "'s sword"]


def shape(outcome: Outcome) -> tuple[object, ...]:
    return (
        [(a.entry.uid, a.reason, a.step, a.matched) for a in outcome.activated],
        [s.uid for s in outcome.cut],
        [(s.uid, s.why) for s in outcome.rejected],
    )


def run(book_: PreparedBook, window: list[Segment], seed: int = 0) -> Outcome:
    return activate([book_], window, clock=5, seed=str(seed), budget_tokens=600)


def test_the_ignorecase_table_is_what_re_itself_folds_to_ascii() -> None:
    everything = "".join(chr(c) for c in range(128, 0x110000) if not 0xD800 <= c < 0xE000)
    found = {ord(m.group()) for m in re.finditer(r"[\x20-\x7e]", everything, re.IGNORECASE)}
    assert found == set(IGNORECASE_ASCII)


def test_literals_are_found_through_groups_alternations_and_classes() -> None:
    def lits(pattern: str, flags: int = 0) -> object:
        return required_literals(re.compile(pattern, flags))

    assert lits(r"\b(?:sword|blade)s?\b", re.I) == (frozenset({"sword", "blade"}),)
    assert lits(r"^The (King|Queen)", re.M) == (frozenset({"the king", "the queen"}),)
    assert lits(r"dragon(?!fly)", re.I) == (frozenset({"dragon"}),)
    assert lits(r"[Dd]ark\s+lord") in [
        (frozenset({"dark"}), frozenset({"lord"})),
        (frozenset({"lord"}), frozenset({"dark"})),
    ]
    assert lits(r".*") is None
    assert lits(r"\b\w{12,}\b") is None
    assert lits(r"(a)?b*") is None


names = st.text(alphabet="abcdefghijklmnoprstuvyzAEIKOS", min_size=3, max_size=9)


@settings(max_examples=300, deadline=None)
@given(
    shape_index=st.integers(0, len(REGEX_SHAPES) - 1),
    name=names,
    alias=names,
    pieces=st.lists(st.one_of(names, st.sampled_from([*ODD, *COMMON]), st.just(" ")), max_size=12),
    upper=st.booleans(),
)
def test_every_regex_match_contains_its_required_literals(
    shape_index: int, name: str, alias: str, pieces: list[str], upper: bool
) -> None:
    key = REGEX_SHAPES[shape_index](name.capitalize(), alias.capitalize(), random.Random(0))
    body, _, flags = key[1:].rpartition("/")
    pattern = re.compile(body, (re.I if "i" in flags else 0) | (re.M if "m" in flags else 0))
    text = " ".join([*pieces, name]) if pieces else name
    text = text.upper() if upper else text
    requirement = required_literals(pattern)
    if requirement is None or pattern.search(text) is None:
        return
    folded = fold(text)
    assert all(any(o in folded for o in options) for options in requirement)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), recursive=st.booleans())
def test_the_prefilter_activates_exactly_what_searching_every_regex_does(
    seed: int, recursive: bool
) -> None:
    book_settings = replace(SETTINGS, recursive=recursive)
    fast, old = replace(FAST, settings=book_settings), replace(OLD, settings=book_settings)
    pure = replace(
        fast,
        literal_index=ScanLiterals(
            [(i, r) for i, r in enumerate(FAST.regex_literals) if r is not None]
        ),
    )
    for n, window in enumerate(windows(random.Random(seed), GENERATED, 3, words=60)):
        expected = shape(run(old, window, n))
        assert shape(run(fast, window, n)) == expected
        assert shape(run(pure, window, n)) == expected


def test_a_regex_that_runs_across_recursion_chunks_is_still_found() -> None:
    entries = [
        make_entry("0", {"keys": ["start"], "content": "the ember"}),
        make_entry("1", {"keys": ["start"], "content": "gate opens"}),
        make_entry("2", {"keys": [r"/ember[\s\S]*gate/"], "content": "The ember gate."}),
    ]
    for literals in (AutomatonLiterals, EveryRegex):
        recursive = BookSettings(recursive=True)
        prepared = prepare("x", "X", recursive, entries, AutomatonIndex, literals)
        outcome = run(prepared, [Segment("player message", "start")])
        assert [(a.entry.uid, a.step) for a in outcome.activated] == [("0", 1), ("1", 1), ("2", 2)]


edits = st.lists(
    st.tuples(
        st.integers(0, 60),
        st.sampled_from(["delete", "plain", "regex", "secondary", "constant", "disable"]),
    ),
    min_size=1,
    max_size=12,
)


def _edit(uid: str, kind: str, rng: random.Random) -> Change:
    name = rng.choice(GENERATED.names)
    shapes: dict[str, dict[str, object]] = {
        "plain": {"keys": [name], "content": f"{name} returns."},
        "regex": {"keys": [rf"/\b{name}s?\b/i"], "content": f"Of {rng.choice(COMMON)}."},
        "secondary": {"keys": [rng.choice(COMMON)], "secondary_keys": [name], "logic": "not_any"},
        "constant": {"constant": True, "content": "Always."},
        "disable": {"keys": [name], "enabled": False},
    }
    return (uid, None if kind == "delete" else make_entry(uid, shapes.get(kind, {})))


@settings(max_examples=25, deadline=None)
@given(changes=edits, seed=st.integers(0, 10**6))
def test_a_revised_book_activates_what_the_book_prepared_whole_does(
    changes: list[tuple[int, str]], seed: int
) -> None:
    rng = random.Random(seed)
    small = GENERATED.entries[:300]
    cache = PreparedBooks()
    cache.build("b", 1, "B", SETTINGS, small)
    current = {e.uid: e for e in small}
    for version, (number, kind) in enumerate(changes, start=2):
        uid, entry = _edit(str(number * 3 + 2), kind, rng)  # every 20th: a regex entry
        assert cache.revise("b", version, [(uid, entry)])
        if entry is None:
            current.pop(uid, None)
        else:
            current[uid] = entry
    revised = cache.get("b", len(changes) + 1)
    assert revised is not None
    whole = prepare("b", "B", SETTINGS, list(current.values()), AutomatonIndex)
    for n, window in enumerate(windows(rng, GENERATED, 4, words=60)):
        assert shape(run(revised, window, n)) == shape(run(whole, window, n))


def test_a_deleted_entry_is_gone_and_its_uid_can_come_back() -> None:
    entries = [make_entry("0", {"keys": ["wolf"], "content": "Wolves."})]
    book_ = prepare("b", "B", SETTINGS, entries, AutomatonIndex, AutomatonLiterals)
    window = [Segment("player message", "a wolf howls")]
    gone = revise(book_, [("0", None)])
    assert run(gone, window).activated == []
    back = revise(gone, [("0", make_entry("0", {"keys": ["/WOLF/i"], "content": "Back."}))])
    assert [a.entry.content for a in run(back, window).activated] == ["Back."]


def test_an_edit_on_a_stale_version_is_refused_and_a_full_overlay_rebuilds() -> None:
    cache = PreparedBooks()
    cache.build("b", 1, "B", SETTINGS, GENERATED.entries[:50])
    assert not cache.revise("b", 5, [("0", None)])  # version 4 was never seen here
    assert cache.get("b", 5) is None
    big: list[Change] = [
        (f"big{n}", make_entry(f"big{n}", {"keys": [f"k{n}.{i}" for i in range(400)]}))
        for n in range(OVERLAY_KEYS // 400 + 1)
    ]
    assert cache.revise("b", 2, big)
    rebuilt = cache.get("b", 2)
    assert rebuilt is not None and isinstance(rebuilt.index, AutomatonIndex)
    window = [Segment("player message", "say k3.399")]
    assert [a.entry.uid for a in run(rebuilt, window).activated] == ["big3"]


def test_the_generated_windows_do_activate_regex_keyed_entries() -> None:
    outcomes = [run(FAST, w, n) for n, w in enumerate(windows(random.Random(1), GENERATED, 10))]
    by_regex = [a for o in outcomes for a in o.activated if a.matched and a.matched[0][0] == "/"]
    assert len(by_regex) >= 10
