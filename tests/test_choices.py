"""Choices at the end of a reply: the parser on real shapes, the splitter for any chunking."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taleweaver.domain.choices import (
    MAX_CHOICE_CHARS,
    MAX_CHOICES,
    ChoiceStreamSplitter,
    ParsedReply,
    parse_choices,
)

# --- parse_choices on the shapes models actually write -----------------------------


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param("The gate looms.\n1. Knock\n2. Climb the wall\n3. Leave", id="dot"),
        pytest.param("The gate looms.\n1) Knock\n2) Climb the wall\n3) Leave", id="paren"),
        pytest.param("The gate looms.\n1: Knock\n2: Climb the wall\n3: Leave", id="colon"),
        pytest.param("The gate looms.\n(1) Knock\n(2) Climb the wall\n(3) Leave", id="(n)"),
        pytest.param("The gate looms.\n- Knock\n- Climb the wall\n- Leave", id="dash"),
        pytest.param("The gate looms.\n* Knock\n* Climb the wall\n* Leave", id="star"),
        pytest.param(
            "The gate looms.\n\u2022 Knock\n\u2022 Climb the wall\n\u2022 Leave", id="bullet"
        ),
        pytest.param("The gate looms.\nA. Knock\nB. Climb the wall\nC. Leave", id="letter"),
        pytest.param("The gate looms.\na) Knock\nb) Climb the wall\nc) Leave", id="lower"),
        pytest.param("The gate looms.\n(A) Knock\n(B) Climb the wall\n(C) Leave", id="(A)"),
        pytest.param(
            "The gate looms.\n**1.** Knock\n**2.** Climb the wall\n**3.** Leave", id="bold"
        ),
        pytest.param("The gate looms.\n**1. Knock**\n**2. Climb the wall**\n**3. Leave**", id="b2"),
        pytest.param("The gate looms.\n  1. Knock\n  2. Climb the wall\n  3. Leave", id="indent"),
        pytest.param("The gate looms.\n\n1. Knock\n\n2. Climb the wall\n\n3. Leave", id="blanks"),
        pytest.param("The gate looms.\n1. Knock\n2. Climb the wall\n3. Leave\n\n  \n", id="trail"),
        pytest.param("The gate looms.\r\n1. Knock\r\n2. Climb the wall\r\n3. Leave", id="crlf"),
    ],
)
def test_trailing_list_in_any_common_shape_becomes_choices(reply: str) -> None:
    parsed = parse_choices(reply)
    assert parsed.choices == ["Knock", "Climb the wall", "Leave"]
    assert parsed.prose.strip() == "The gate looms."


@pytest.mark.parametrize(
    "header",
    [
        "Choices:",
        "Options:",
        "What do you do?",
        "What will you do?",
        "What would you do?",
        "Your choices:",
        "Your options:",
        "You can:",
        "You could:",
        "**What do you do?**",
        "### Choices:",
        "_Options:_",
        "what do you do next?",
    ],
)
def test_header_above_the_list_is_removed_from_the_prose(header: str) -> None:
    parsed = parse_choices(f"Rain falls.\n\n{header}\n1. Wait\n2. Run")
    assert parsed == ParsedReply(prose="Rain falls.", choices=["Wait", "Run"])


def test_a_single_item_under_a_header_is_a_choice() -> None:
    parsed = parse_choices("Rain falls.\n\nWhat do you do?\n1. Wait")
    assert parsed == ParsedReply(prose="Rain falls.", choices=["Wait"])


def test_a_single_item_without_a_header_stays_prose() -> None:
    reply = "She counts her blessings:\n\n1. She is alive."
    assert parse_choices(reply) == ParsedReply(prose=reply, choices=[])


def test_a_reply_without_a_list_is_all_prose_with_trailing_whitespace_removed() -> None:
    reply = "  The fire crackles.\n\nSomewhere, a dog barks.  \n\n"
    assert parse_choices(reply) == ParsedReply(
        prose="  The fire crackles.\n\nSomewhere, a dog barks.", choices=[]
    )


def test_a_list_followed_by_prose_stays_prose() -> None:
    reply = "You pack:\n1. a sword\n2. a torch\n\nThen you set off at dawn."
    assert parse_choices(reply) == ParsedReply(prose=reply, choices=[])


def test_only_the_trailing_list_is_taken_when_an_earlier_list_exists() -> None:
    reply = "You pack:\n- a sword\n- a torch\n\nThe road forks.\n\n1. Go north\n2. Go south"
    parsed = parse_choices(reply)
    assert parsed.prose == "You pack:\n- a sword\n- a torch\n\nThe road forks."
    assert parsed.choices == ["Go north", "Go south"]


def test_a_header_with_no_items_after_it_stays_prose() -> None:
    reply = "The stranger waits.\n\nWhat do you do?"
    assert parse_choices(reply) == ParsedReply(prose=reply, choices=[])


def test_a_question_that_is_not_a_header_stays_in_the_prose() -> None:
    parsed = parse_choices("Who goes there?\n1. Answer\n2. Hide")
    assert parsed == ParsedReply(prose="Who goes there?", choices=["Answer", "Hide"])


def test_more_than_the_maximum_number_of_items_is_capped() -> None:
    items = "\n".join(f"{n}. Door {n}" for n in range(1, 13))
    parsed = parse_choices(f"A corridor of doors.\n{items}")
    assert parsed.choices == [f"Door {n}" for n in range(1, MAX_CHOICES + 1)]
    assert parsed.prose == "A corridor of doors."


def test_duplicate_items_are_kept_once_in_first_seen_order() -> None:
    parsed = parse_choices("Echoes.\n1. Run\n2. Hide\n3. **Run**\n4. Hide")
    assert parsed.choices == ["Run", "Hide"]


def test_an_overlong_item_is_cut_to_the_maximum_length() -> None:
    parsed = parse_choices("Dust.\n1. " + "x" * (MAX_CHOICE_CHARS + 50) + "\n2. Leave")
    assert parsed.choices == ["x" * MAX_CHOICE_CHARS, "Leave"]


def test_a_number_that_starts_a_sentence_is_not_an_item() -> None:
    reply = "The war began.\n1999. The year the towers fell.\n2000. The year they rose."
    assert parse_choices(reply) == ParsedReply(prose=reply, choices=[])


def test_an_empty_reply_parses_to_empty_prose() -> None:
    assert parse_choices("") == ParsedReply(prose="", choices=[])


# --- ChoiceStreamSplitter: examples ----------------------------------------------


def test_prose_is_shown_before_its_line_ends() -> None:
    splitter = ChoiceStreamSplitter()
    assert splitter.feed("The hall") == "The hall"
    assert splitter.feed(" is quiet") == " is quiet"


def test_a_list_is_held_and_only_prose_is_shown() -> None:
    splitter = ChoiceStreamSplitter()
    shown = [splitter.feed(token) for token in ["Quiet.\n", "Choices:\n", "1. Left\n", "2. Right"]]
    rest, parsed = splitter.finish()
    assert shown == ["Quiet.\n", "", "", ""]
    assert rest == ""
    assert parsed == ParsedReply(prose="Quiet.", choices=["Left", "Right"])


def test_held_lines_are_released_when_prose_follows_them() -> None:
    splitter = ChoiceStreamSplitter()
    assert splitter.feed("You pack:\n1. a sword\n") == "You pack:\n"
    assert splitter.feed("Then you leave.") == "1. a sword\nThen you leave."


def test_finish_shows_a_held_item_that_turned_out_to_be_prose() -> None:
    splitter = ChoiceStreamSplitter()
    assert splitter.feed("She counts:\n1. She is alive.") == "She counts:\n"
    rest, parsed = splitter.finish()
    assert rest == "1. She is alive."
    assert parsed.choices == []


# --- ChoiceStreamSplitter: properties over any text and any chunking -------------

_LINES = st.sampled_from(
    [
        "The hall is quiet.",
        "A dark night",
        "Dawn breaks over the hills",
        "1999 was a long year.",
        "You can see the sea from here.",
        "Optionally, you rest.",
        "",
        "   ",
        "\t",
        "Choices:",
        "**What do you do?**",
        "What will you do?",
        "### Options:",
        "You could:",
        "1. Go left",
        "2) Go right",
        "3: Wait",
        "(4) Sing",
        "10. Hide",
        "- Run",
        "* Climb",
        "\u2022 Swim",
        "A. Answer",
        "b) Bow",
        "(c) Cry",
        "**1.** Knock",
        "**2. Leave**",
        "  - Indented",
        "1. Go left",
        "* * *",
        "1. **",
        "-",
        "1.",
        "Done\r",
    ]
)
_FRAGMENTS = st.text(alphabet="1).:-*\u2022(AbCc#_ ?\t\r\xa0\nxyWhat", max_size=40)


@st.composite
def replies(draw: st.DrawFn) -> str:
    """Model-like replies (lines of prose, headers and items) or raw fragments."""
    if draw(st.booleans()):
        lines = draw(st.lists(_LINES, max_size=10))
        return "\n".join(lines) + draw(st.sampled_from(["", "\n", "\n\n", "  "]))
    return draw(_FRAGMENTS)


@st.composite
def chunked(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A reply and one way a model might stream it, as a list of chunks."""
    text = draw(replies())
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=len(text) + 1)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in pairwise(bounds)]


def _stream(chunks: list[str]) -> tuple[list[str], str, ParsedReply]:
    splitter = ChoiceStreamSplitter()
    fed = [splitter.feed(chunk) for chunk in chunks]
    rest, parsed = splitter.finish()
    return fed, rest, parsed


_EXAMPLES = settings(max_examples=300, deadline=None)


@_EXAMPLES
@given(chunked())
def test_splitter_shows_exactly_the_prose_for_any_chunking(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    fed, rest, _ = _stream(chunks)
    assert ("".join(fed) + rest).rstrip() == parse_choices(text).prose


@_EXAMPLES
@given(chunked())
def test_splitter_parses_the_same_reply_as_the_parser(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    _, _, parsed = _stream(chunks)
    assert parsed == parse_choices(text)


@_EXAMPLES
@given(chunked())
def test_splitter_never_streams_any_of_the_choices_block(case: tuple[str, list[str]]) -> None:
    text, chunks = case
    fed, _, _ = _stream(chunks)
    streamed = "".join(fed)
    # Everything streamed before finish is prose (give or take trailing whitespace):
    # not one character of the header or the items reaches the client early.
    assert parse_choices(text).prose.startswith(streamed.rstrip())


def _is_prose_line(line: str) -> bool:
    """Neither blank, nor an item, nor a header: it cannot belong to a choices block.

    Put above a lone item, only an item or a header would turn that item into a choice.
    """
    return bool(line.strip()) and not parse_choices(f"{line}\n1. a").choices


def _shown_by_now(fed: str) -> int:
    """How much of `fed` must be shown: up to the end of its last finished prose line."""
    end = position = 0
    for line in fed.split("\n")[:-1]:
        position += len(line) + 1
        if _is_prose_line(line):
            end = position
    return end


@_EXAMPLES
@given(chunked())
def test_splitter_has_shown_everything_up_to_the_last_finished_prose_line(
    case: tuple[str, list[str]],
) -> None:
    _, chunks = case
    splitter = ChoiceStreamSplitter()
    fed = ""
    streamed = ""
    for chunk in chunks:
        fed += chunk
        streamed += splitter.feed(chunk)
        assert len(streamed) >= _shown_by_now(fed)
