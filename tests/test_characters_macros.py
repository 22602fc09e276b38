"""Pure rules: macros, greetings, group-chat turns and the relationship heuristic."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taleweaver.characters.tone import Relationship, fold, score
from taleweaver.domain.characters import (
    CardMember,
    choose_greeting,
    greetings,
    normalise_card,
    pick_speaker,
)
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.macros import MacroContext, expand, roll
from tests.data.cards import factory as f

# --- macros -------------------------------------------------------------------------


def ctx(seed: str = "chat-1", rng_seed: int = 0) -> MacroContext:
    return MacroContext(char="Aria", user="Sam", seed=seed, rng=random.Random(rng_seed))


def test_char_and_user_are_replaced_whatever_their_case() -> None:
    assert expand("{{char}} greets {{User}}. {{CHAR}}!", ctx()) == "Aria greets Sam. Aria!"


def test_comments_are_removed() -> None:
    assert expand("a{{// a note for editors}}b{{comment: hidden}}c", ctx()) == "abc"


def test_hidden_keys_are_removed_from_the_prompt() -> None:
    assert expand("x{{hidden_key: lamp}}y", ctx()) == "xy"


def test_unknown_macros_are_left_as_written() -> None:
    assert expand("{{outlet::Name}} {{nope}}", ctx()) == "{{outlet::Name}} {{nope}}"


def test_random_draws_one_of_the_options() -> None:
    drawn = {expand("{{random:red,green,blue}}", ctx(rng_seed=i)) for i in range(50)}
    assert drawn == {"red", "green", "blue"}


def test_random_accepts_the_double_colon_form() -> None:
    drawn = {expand("{{random::a, b::c}}", ctx(rng_seed=i)) for i in range(30)}
    assert drawn == {"a, b", "c"}


@pytest.mark.parametrize(
    ("formula", "low", "high"), [("6", 1, 6), ("d20", 1, 20), ("2d6", 2, 12), ("1d4+10", 11, 14)]
)
def test_roll_stays_within_its_dice(formula: str, low: int, high: int) -> None:
    rolls = {int(expand(f"{{{{roll:{formula}}}}}", ctx(rng_seed=i))) for i in range(100)}
    assert min(rolls) >= low and max(rolls) <= high and len(rolls) > 1


@pytest.mark.parametrize("formula", ["0", "d0", "1000d6", "abc", "d99999999"])
def test_impossible_rolls_are_left_alone(formula: str) -> None:
    assert roll(formula, random.Random(0)) is None
    assert expand(f"{{{{roll:{formula}}}}}", ctx()) == f"{{{{roll:{formula}}}}}"


options = st.lists(
    st.text(alphabet=st.characters(blacklist_characters=",:{}"), min_size=1, max_size=8),
    min_size=1,
    max_size=6,
)


@given(seed=st.text(max_size=20), choices=options, prefix=st.text(max_size=30))
def test_pick_is_stable_within_a_chat(seed: str, choices: list[str], prefix: str) -> None:
    text = prefix.replace("{", "").replace("}", "") + "{{pick:" + ",".join(choices) + "}}"
    first = expand(text, ctx(seed=seed, rng_seed=1))
    # Another turn: fresh randomness, same chat.
    assert expand(text, ctx(seed=seed, rng_seed=2)) == first
    picked = first[len(text) - len("{{pick:" + ",".join(choices) + "}}") :]
    assert picked in [c.strip() for c in choices]


def test_pick_differs_between_chats_and_between_positions() -> None:
    text = "{{pick:" + ",".join(str(i) for i in range(20)) + "}}"
    per_chat = {expand(text, ctx(seed=f"chat-{i}")) for i in range(30)}
    per_position = {expand("." * n + text, ctx()).lstrip(".") for n in range(30)}
    assert len(per_chat) > 5 and len(per_position) > 5


# --- greetings ----------------------------------------------------------------------


def test_greetings_are_first_mes_then_alternates_then_group_only() -> None:
    card = normalise_card(f.v3_card())
    assert greetings(card)[0] == card.data["first_mes"]
    assert greetings(card)[1:] == card.data["alternate_greetings"]
    assert greetings(card, group=True)[-1] == "Hello, everyone."


def test_a_named_greeting_is_chosen_and_a_bad_index_refused() -> None:
    card = normalise_card(f.v3_card())
    assert choose_greeting(card, index=2, seed="s") == (2, "Storm's bad, eh?")
    with pytest.raises(InvalidInput, match="between 0 and 2"):
        choose_greeting(card, index=3, seed="s")


@given(st.text(min_size=1, max_size=30))
def test_a_seeded_greeting_is_deterministic_and_never_empty(seed: str) -> None:
    card = normalise_card(f.v3_card(first_mes=""))
    chosen = choose_greeting(card, index=None, seed=seed)
    assert chosen is not None and chosen[0] in (1, 2)
    assert choose_greeting(card, index=None, seed=seed) == chosen


def test_a_card_without_greetings_has_none() -> None:
    card = normalise_card(f.v3_card(first_mes="", alternate_greetings=[]))
    assert choose_greeting(card, index=None, seed="s") is None
    with pytest.raises(InvalidInput, match="empty"):
        choose_greeting(card, index=0, seed="s")


# --- group chats --------------------------------------------------------------------

CAST = [CardMember("a", "Aria"), CardMember("b", "Bram", "Bee"), CardMember("c", "Cass")]


def test_the_character_named_in_the_message_replies() -> None:
    index, why = pick_speaker(CAST, "What do you think, cass?", 7)
    assert index == 2 and "named" in why


def test_a_nickname_counts_as_a_name() -> None:
    assert pick_speaker(CAST, "Bee, over here", 1)[0] == 1


def test_the_first_named_character_replies_when_several_are_named() -> None:
    assert pick_speaker(CAST, "Cass and Aria, listen", 1)[0] == 2


def test_a_name_inside_another_word_does_not_count() -> None:
    index, why = pick_speaker(CAST, "Ariadne's thread", 4)
    assert "round-robin" in why and index == 4 % 3


def test_without_a_name_turns_go_round() -> None:
    assert [pick_speaker(CAST, "hello", n)[0] for n in range(2, 8)] == [2, 0, 1, 2, 0, 1]


# --- relationship heuristic ---------------------------------------------------------


def test_gratitude_raises_trust_most_and_warmth_raises_affinity() -> None:
    thanked = fold(Relationship(), "Thank you so much, I appreciate it")
    warmed = fold(Relationship(), "I love talking with you, you're wonderful")
    assert thanked.trust > thanked.affinity > 50
    assert warmed.affinity > warmed.trust > 50


def test_hostility_lowers_both_and_sours_the_mood() -> None:
    state = Relationship()
    for _ in range(3):
        state = fold(state, "You are stupid and useless, I hate you")
    assert state.affinity < 50 and state.trust < 50
    assert state.mood == "upset"


def test_a_negated_warm_word_counts_against() -> None:
    assert score("I don't like this").hostility == 1
    assert score("I like this").warmth == 1


def test_mood_follows_recent_tone() -> None:
    state = Relationship()
    for _ in range(5):
        state = fold(state, "I hate this")
    for _ in range(5):
        state = fold(state, "thanks, lovely :)")
    assert state.mood == "affectionate" and state.turns == 10


@given(st.lists(st.text(max_size=60), max_size=30))
def test_scores_stay_within_bounds(texts: list[str]) -> None:
    state = Relationship()
    for text in texts:
        state = fold(state, text)
    assert 0 <= state.affinity <= 100 and 0 <= state.trust <= 100
    assert len(state.recent) <= 5
