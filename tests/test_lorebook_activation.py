"""Lorebook activation: a SillyTavern World Info file behaves as it does in SillyTavern.

The book (tests/data/lorebooks/sillytavern_aster.json) has one entry per rule:
selective logic, regex, case, whole words, groups, recursion, timed effects,
probability, budget. Each test names the entry it exercises by uid.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from taleweaver.domain.events import JSON
from taleweaver.domain.lorebook import (
    BookSettings,
    Outcome,
    PlainKey,
    Position,
    PreparedBook,
    Segment,
    activate,
    make_entry,
    plain_match,
)
from taleweaver.domain.lorebook.decorators import apply_decorators
from taleweaver.memory.lorebook import parse_lorebook
from taleweaver.memory.lorebook.matcher import AutomatonIndex, PreparedBooks

DATA = Path(__file__).parent / "data" / "lorebooks"


def aster(**settings: object) -> PreparedBook:
    book = parse_lorebook(json.loads((DATA / "sillytavern_aster.json").read_text()))
    merged = replace(book.settings, **settings)  # type: ignore[arg-type]
    return PreparedBooks().build("aster", 1, "Aster", merged, book.entries)


BOOK = aster()
# A SillyTavern World Info file has no recursion setting of its own: recursion is off
# unless the book is set to recurse, as with SillyTavern's global default.
RECURSIVE = aster(recursive=True)


def run(
    text: str,
    recent: list[tuple[str, str]] | None = None,
    *,
    book: PreparedBook = BOOK,
    clock: int = 1,
    state: JSON | None = None,
    seed: str = "seed",
    budget: int | None = 10_000,
) -> Outcome:
    window = [Segment("player message", text)]
    for back, (role, said) in enumerate(reversed(recent or []), start=1):
        window.append(Segment(f"{role} message ({back} back)", said))
    return activate([book], window, clock=clock, timed_state=state, seed=seed, budget_tokens=budget)


def uids(outcome: Outcome) -> set[str]:
    return {a.entry.uid for a in outcome.activated}


def reason(outcome: Outcome, uid: str) -> str:
    return next(a.reason for a in outcome.activated if a.entry.uid == uid)


def why(outcome: Outcome, uid: str) -> str:
    return next(s.why for s in outcome.rejected if s.uid == uid)


# --- keys ---------------------------------------------------------------------------


def test_constant_entry_activates_with_no_key_in_the_text() -> None:
    outcome = run("Good morning.")
    assert uids(outcome) == {"2"}
    assert reason(outcome, "2") == "constant"


def test_a_primary_key_activates_whatever_its_case() -> None:
    outcome = run("A DRAGON circles the keep.")
    assert "0" in uids(outcome)
    assert reason(outcome, "0") == "key 'dragon' in player message"


def test_a_key_in_a_recent_message_names_that_message() -> None:
    outcome = run("I duck.", [("player", "Hello"), ("narrator", "A wyrm lands.")])
    assert reason(outcome, "0") == "key 'wyrm' in narrator message (1 back)"


def test_scan_depth_two_reads_the_players_words_and_one_message_back() -> None:
    # As in SillyTavern, whose chat holds the player's message when it scans: depth N
    # is the N newest messages, the player's words the first of them.
    unseen = run("I wait.", [("narrator", "A dragon roars."), ("player", "Hm.")])
    assert "0" not in uids(unseen)
    found = run("I wait.", [("player", "Hm."), ("narrator", "A dragon roars.")])
    assert "0" in uids(found)


def test_entry_scan_depth_zero_reads_nothing() -> None:
    # SillyTavern scans no text at depth 0: only constant and sticky entries activate.
    assert "22" not in uids(run("I pray.", [("narrator", "A ghost drifts by.")]))
    assert "22" not in uids(run("I see a ghost.", [("narrator", "Quiet.")]))


def test_and_any_needs_one_secondary_key() -> None:
    assert "3" not in uids(run("Aldric coughs."))
    assert "3" in uids(run("Aldric sits on the throne."))


def test_not_any_is_refused_by_any_secondary_key() -> None:
    assert "4" in uids(run("The queen smiles."))
    assert "4" not in uids(run("The queen is dead."))


def test_and_all_needs_every_secondary_key() -> None:
    assert "5" not in uids(run("The mage guild."))
    assert "5" in uids(run("The mage guild has a tower."))


def test_not_all_is_refused_only_when_every_secondary_key_is_there() -> None:
    assert "6" in uids(run("A thief!"))
    assert "6" in uids(run("The thief was caught."))
    assert "6" not in uids(run("The thief was caught and sent to jail."))


def test_regex_key_with_flags() -> None:
    assert "7" in uids(run("We sail for Silver-Moon."))
    assert "7" in uids(run("SILVERMOON at last"))
    assert "7" not in uids(run("A silver spoon."))


def test_case_sensitive_entry_ignores_other_cases() -> None:
    assert "8" in uids(run("Rose hands me a note."))
    assert "8" not in uids(run("I pick a red rose."))


def test_whole_word_entry_ignores_the_key_inside_a_word() -> None:
    assert "9" in uids(run("An elf, tall and pale."))
    assert "9" not in uids(run("The book is on the shelf."))


def test_disabled_entry_never_activates() -> None:
    assert "21" not in uids(run("dragon dragon dragon"))


# --- inclusion groups -----------------------------------------------------------------


def test_group_override_wins_its_group() -> None:
    outcome = run("What is the weather like?")
    assert {"10", "11"} & uids(outcome) == {"11"}
    assert why(outcome, "10") == "lost group 'weather' to entry 11"


def test_group_scoring_keeps_the_entry_with_more_keys_matched() -> None:
    outcome = run("A red banner flies.")
    assert {"23", "24"} & uids(outcome) == {"23"}
    assert why(outcome, "24") == "lost group 'faction' on score"


def test_a_tied_group_keeps_exactly_one_entry_chosen_by_the_seed() -> None:
    winners = {next(iter({"23", "24"} & uids(run("A banner.", seed=str(s))))) for s in range(20)}
    assert winners == {"23", "24"}
    assert uids(run("A banner.", seed="a")) == uids(run("A banner.", seed="a"))


# --- recursion ------------------------------------------------------------------------


def test_recursion_is_off_for_a_book_that_does_not_ask_for_it() -> None:
    assert BOOK.settings.recursive is False
    assert "1" not in uids(run("A dragon!"))


def test_recursion_activates_entries_named_in_activated_content() -> None:
    outcome = run("A dragon!", book=RECURSIVE)
    assert "1" in uids(outcome)
    assert reason(outcome, "1") == "recursion from entry 0 (key 'Ember Court')"
    assert next(a.step for a in outcome.activated if a.entry.uid == "1") == 2


def test_recursion_off_activates_only_direct_matches() -> None:
    assert "1" not in uids(run("A dragon!", book=aster(recursive=False)))


def test_recursion_step_limit_stops_the_chain() -> None:
    chained = run("the artifact", book=RECURSIVE)
    assert {"18", "25"} <= uids(chained)
    limited = run("the artifact", book=aster(recursive=True, max_recursion_steps=2))
    assert "18" in uids(limited) and "25" not in uids(limited)


def test_exclude_recursion_entry_activates_only_directly() -> None:
    outcome = run("A dragon!", book=RECURSIVE)
    assert "19" not in uids(outcome)
    assert why(outcome, "19") == "excluded from recursion"
    assert "19" in uids(run("The Ember Court gathers."))


def test_prevent_recursion_content_triggers_nothing() -> None:
    outcome = run("I climb the Glass Tower.", book=RECURSIVE)
    assert "20" in uids(outcome)
    assert "0" not in uids(outcome)  # its content names the dragon eggs


def test_delay_until_recursion_waits_for_a_recursion_step() -> None:
    outcome = run("the artifact", book=RECURSIVE)
    step = next(a.step for a in outcome.activated if a.entry.uid == "18")
    assert step >= 2
    assert reason(outcome, "25") == "recursion from entry 18 (key 'Heartstone')"
    alone = run("the artifact", book=aster(recursive=False))
    # With recursion off there is no recursion step to wait for, as in SillyTavern.
    assert "18" not in uids(alone)
    assert why(alone, "18") == "waits for recursion"


# --- probability and budget -------------------------------------------------------------


def test_probability_roll_is_stable_for_a_seed_and_fair_across_seeds() -> None:
    passes = sum("15" in uids(run("an omen", seed=f"s:{n}")) for n in range(400))
    assert 150 < passes < 250
    assert uids(run("an omen", seed="x")) == uids(run("an omen", seed="x"))


def test_failed_probability_roll_is_reported() -> None:
    for n in range(50):
        outcome = run("an omen", seed=f"s:{n}")
        if "15" not in uids(outcome):
            assert why(outcome, "15") == "probability roll failed (50%)"
            return
    raise AssertionError("no seed failed a 50% roll in 50 tries")


def test_budget_admits_constant_entries_first_and_cuts_recursive_ones() -> None:
    # The constant entry costs 12 tokens, the dragon entry 22, the Ember Court 23.
    outcome = run("A dragon!", budget=40, book=RECURSIVE)
    assert uids(outcome) == {"2", "0"}
    assert [s.uid for s in outcome.cut] == ["1"]
    squeezed = run("A dragon!", budget=20, book=RECURSIVE)
    assert uids(squeezed) == {"2"}
    assert [s.uid for s in squeezed.cut] == ["0"]


def test_ignore_budget_entry_always_fits() -> None:
    outcome = run("I unroll the map.", budget=15)
    assert "16" in uids(outcome)


# --- timed effects across turns -----------------------------------------------------------


def turns(texts: list[str], *, start: int = 1) -> list[Outcome]:
    """Play one text per turn; a turn adds two messages, so the clock moves by two."""
    state: JSON = {}
    outcomes = []
    for n, text in enumerate(texts):
        outcome = run(text, clock=start + 2 * n, state=state)
        state = outcome.timed
        outcomes.append(outcome)
    return outcomes


def test_sticky_entry_stays_then_cools_down() -> None:
    # Entry 12: sticky 3 messages, cooldown 2.
    first, second, third, fourth = turns(["a curse!", "I rest.", "the curse again", "curse"])
    assert reason(first, "12") == "key 'curse' in player message"
    assert reason(second, "12") == "sticky"
    assert "12" not in uids(third)
    assert why(third, "12") == "on cooldown"
    assert "12" in uids(fourth)


def test_cooldown_blocks_the_entry_for_its_messages() -> None:
    # Entry 13: cooldown 4 messages.
    outcomes = turns(["the bell", "the bell", "the bell"])
    assert ["13" in uids(o) for o in outcomes] == [True, False, True]


def test_delay_holds_the_entry_until_the_chat_is_long_enough() -> None:
    # Entry 14: delay 5 messages; turns are at chat lengths 1, 3, 5.
    outcomes = turns(["the prophecy"] * 3)
    assert ["14" in uids(o) for o in outcomes] == [False, False, True]
    assert why(outcomes[0], "14") == "delayed until the chat has 5 messages"


def test_a_regenerated_turn_forgets_the_sticky_it_started() -> None:
    first = run("a curse!", clock=3, state={})
    again = run("I rest.", clock=3, state=first.timed)
    assert "12" not in uids(again)


def test_timed_state_survives_a_json_round_trip() -> None:
    first = run("a curse!", clock=1)
    stored = json.loads(json.dumps(first.timed))
    assert reason(run("I rest.", clock=3, state=stored), "12") == "sticky"


# --- the automaton agrees with the plain rules --------------------------------------------

WORDS = st.sampled_from(["elf", "Elf", "shelf", "el", "f e", "ELF", "İ", "i̇", "é", "_elf", "x"])


@given(
    text=st.lists(st.one_of(WORDS, st.sampled_from([" ", ".", "-", "\n"])), max_size=12).map(
        "".join
    ),
    key=WORDS,
    case_sensitive=st.booleans(),
    whole_words=st.booleans(),
)
def test_automaton_matches_exactly_what_the_plain_rules_match(
    text: str, key: str, case_sensitive: bool, whole_words: bool
) -> None:
    plain = PlainKey(0, 0, False, key, key.lower(), case_sensitive, whole_words)
    found, entries = AutomatonIndex([plain]).find(text)
    assert (0 in found) == plain_match(text, plain) == (0 in entries)


def test_many_books_scan_together() -> None:
    other = PreparedBooks().build(
        "other",
        1,
        "Other",
        BookSettings(),
        [make_entry("x", {"keys": ["dragon"], "content": "Other book's dragon."})],
    )
    outcome = activate(
        [BOOK, other], [Segment("player message", "a dragon")], clock=1, budget_tokens=10_000
    )
    assert {(a.book_id, a.entry.uid) for a in outcome.activated} >= {("aster", "0"), ("other", "x")}


# --- V3 decorators ----------------------------------------------------------------------------


def test_v3_decorators_shape_the_entry_but_stay_in_the_stored_content() -> None:
    book = parse_lorebook(json.loads((DATA / "lorebook_v3.json").read_text()))
    prepared = PreparedBooks().build("v3", 1, "V3", book.settings, book.entries)
    outcome = activate(
        [prepared], [Segment("player message", "a cog")], clock=1, budget_tokens=1000
    )
    cog = next(a.entry for a in outcome.activated if a.entry.uid == "cog-1")
    assert cog.content == "Every citizen carries a brass cog as identity."
    assert (cog.position, cog.depth) == (Position.AT_DEPTH, 2)
    assert book.entries[0].content.startswith("@@depth 2\n")


def test_a_fallback_decorator_applies_only_when_the_one_before_could_not() -> None:
    bad_depth = apply_decorators(make_entry("1", {"content": "@@depth deep\n@@@depth 3\nText"}))
    assert (bad_depth.depth, bad_depth.content) == (3, "Text")
    kept = apply_decorators(make_entry("2", {"content": "@@depth 1\n@@@depth 3\nText"}))
    assert kept.depth == 1


def test_activate_and_dont_activate_decorators() -> None:
    forced = apply_decorators(make_entry("1", {"content": "@@activate\nAlways."}))
    assert forced.constant and forced.content == "Always."
    silenced = apply_decorators(make_entry("2", {"keys": ["x"], "content": "@@dont_activate\nX"}))
    assert not silenced.enabled
    unknown = make_entry("3", {"content": "@@mystery 1\nText"})
    assert apply_decorators(unknown) == unknown


def test_additional_and_exclude_keys_decorators_change_the_keys() -> None:
    entry = make_entry(
        "1",
        {"keys": ["ship"], "content": "@@additional_keys boat, barge\n@@exclude_keys wreck\nS"},
    )
    book = PreparedBooks().build("d", 1, "D", BookSettings(), [entry])

    def found(text: str) -> bool:
        outcome = activate([book], [Segment("player message", text)], clock=1)
        return bool(outcome.activated)

    assert found("a barge") and found("a ship")
    assert not found("the wreck of a boat")
