"""The loop detector: a reply that starts repeating itself is found where it began."""

from __future__ import annotations

from taleweaver.domain.repetition import LoopDetector, find_loop

MAP_CASE = "I'm going to make it into a waterproof map case. "


def test_a_sentence_said_again_is_a_loop_cut_before_the_repeat() -> None:
    text = "You find an old map in the chest. " + MAP_CASE * 30
    at = find_loop(text)
    assert at is not None
    assert text[:at].strip() == "You find an old map in the chest. " + MAP_CASE.strip()


def test_streamed_token_by_token_it_stops_at_the_second_telling() -> None:
    detector = LoopDetector()
    pieces = ("You find an old map in the chest. " + MAP_CASE * 30).split(" ")
    fed = 0
    for piece in pieces:
        fed += 1
        if detector.feed(piece + " "):
            break
    # It notices within the second telling, not after thirty.
    assert fed < 30
    assert detector.kept() == "You find an old map in the chest. " + MAP_CASE.strip()


def test_a_nearly_identical_sentence_is_a_loop() -> None:
    text = (
        "The woman looks at the bread and smiles at him. "
        "The woman looks at the bread and smiles at him again. "
    )
    at = find_loop(text)
    assert at is not None
    assert text[:at].strip() == "The woman looks at the bread and smiles at him."


def test_a_run_of_words_that_keeps_coming_back_without_full_stops_is_a_loop() -> None:
    text = "go to the big red house and " * 5
    at = find_loop(text)
    assert at is not None
    assert text[:at].strip() == "go to the big red house and"


def test_ordinary_prose_is_not_a_loop() -> None:
    text = (
        "Rain drums on the tin roof. A lamp flickers over an empty bench. "
        "Far away a train whistle sounds, and the platform shakes. "
        "You see a brass key on the ticket desk. Yes. Yes. "
        "The door to the north is open."
    )
    assert find_loop(text) is None
    detector = LoopDetector()
    assert not any(detector.feed(word + " ") for word in text.split(" "))
    assert detector.kept() == text + " "
