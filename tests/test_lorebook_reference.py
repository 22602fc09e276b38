"""The engine activates exactly what SillyTavern's rules activate: compared with the
deliberately simple reference in benchmarks/lorebook_reference.py (written from the
rules, not from our code) on a book that exercises every rule, on the fixtures' books,
and on small generated SillyTavern-shaped books (2% regex keys, 150-word messages,
recursion on and off). The benchmark runs the same comparison at 10,000 and 100,000
entries."""

from __future__ import annotations

import pytest
from benchmarks import lorebook_reference as st
from benchmarks.lorebook_compare import (
    Case,
    differences,
    fixture_cases,
    generated_cases,
    rules_cases,
)

CASES = rules_cases() + fixture_cases() + generated_cases(1_000, 15)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_engine_activates_what_sillytaverns_rules_do(case: Case) -> None:
    assert differences(case) == []


def test_the_reference_reads_the_rules_it_is_meant_to() -> None:
    # A few of the rules on their own, so that a broken reference cannot agree with a
    # broken engine by accident.
    book = [
        {"uid": 0, "key": ["dragon"], "content": "D."},
        {"uid": 1, "key": ["/^Storm/m"], "content": "S."},
        {"uid": 2, "key": ["crown"], "content": "C.", "scanDepth": 0},
        {"uid": 3, "key": ["queen"], "keysecondary": ["dead"], "selectiveLogic": 2,
         "content": "Q."},
        {"uid": 4, "key": ["ash"], "matchWholeWords": True, "content": "A."},
    ]  # fmt: skip
    settings = st.Settings(depth=2)

    def uids(*messages: str) -> list[str]:
        return [u for u, _ in st.activate(book, settings, st.Turn(messages, 3)).activated]

    assert uids("a dragon", "x", "the queen") == ["0"]  # depth 2: the third is not read
    assert uids("Storm ahead") == []  # each message starts with \x01, not at a line start
    assert uids("x\nStorm ahead") == ["1"]
    assert uids("the crown") == []  # depth 0 reads nothing
    assert uids("the queen is dead") == [] and uids("the queen") == ["3"]
    assert uids("ashen") == [] and uids("ash.") == ["4"]
