"""The pure rules of rolling summaries: stable ranges, what is due, what recall uses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from taleweaver.domain.summaries import (
    Exchange,
    IndexEntry,
    Known,
    Span,
    clean_output,
    complete_spans,
    cover,
    due,
    extractive,
    fit_texts,
    max_chars,
    retry_delay,
    span_of,
    turns_prompt,
)
from taleweaver.memory.summaries.service import IndexView


def all_built(turn_count: int, top: int = 5) -> dict[Span, Known]:
    return {s: Known(s) for level in range(1, top + 1) for s in complete_spans(level, turn_count)}


def test_ranges_depend_on_turn_numbers_only() -> None:
    assert span_of(1, 1) == Span(1, 1, 20)
    assert span_of(1, 20) == Span(1, 1, 20)
    assert span_of(1, 21) == Span(1, 21, 40)
    assert span_of(2, 199) == Span(2, 1, 200)
    assert span_of(3, 2001) == Span(3, 2001, 4000)
    assert Span(2, 1, 200).children()[-1] == Span(1, 181, 200)
    assert Span(2, 1, 200).ref == "L2 turns 1-200"


def test_only_complete_chunks_are_summarised() -> None:
    assert complete_spans(1, 19) == []
    assert complete_spans(1, 45) == [Span(1, 1, 20), Span(1, 21, 40)]
    assert complete_spans(2, 399) == [Span(2, 1, 200)]


def test_a_parent_waits_for_all_its_children_to_be_current() -> None:
    known = {s: Known(s) for s in complete_spans(1, 200)}
    assert due(2, 200, known) == [Span(2, 1, 200)]

    known[Span(1, 41, 60)] = Known(Span(1, 41, 60), stale=True)
    assert due(2, 200, known) == []
    assert due(1, 200, known) == [Span(1, 41, 60)]


def test_stale_and_retry_due_summaries_are_redone() -> None:
    known = all_built(60)
    assert due(1, 60, known) == []
    known[Span(1, 21, 40)] = Known(Span(1, 21, 40), retry_due=True)
    known[Span(1, 41, 60)] = Known(Span(1, 41, 60), stale=True)
    assert due(1, 60, known) == [Span(1, 21, 40), Span(1, 41, 60)]


def test_cover_uses_coarse_summaries_far_back_and_fine_ones_near_now() -> None:
    spans = cover(all_built(9999).values(), before=9980)

    assert [s.ref for s in spans[:5]] == [
        "L3 turns 1-2000",
        "L3 turns 2001-4000",
        "L3 turns 4001-6000",
        "L3 turns 6001-8000",
        "L2 turns 8001-8200",
    ]
    assert [s.level for s in spans].count(2) == 9
    # The last one reaches into the recent window rather than leave a gap before it.
    assert spans[-1] == Span(1, 9961, 9980)


def test_cover_prefers_current_summaries_to_a_stale_parent() -> None:
    known = all_built(400)
    known[Span(2, 1, 200)] = Known(Span(2, 1, 200), stale=True)

    spans = cover(known.values(), before=390)

    assert spans[0] == Span(1, 1, 20)
    assert Span(2, 201, 400) not in spans  # it reaches past the window's start


def test_cover_uses_a_stale_summary_when_nothing_else_covers_the_turns() -> None:
    known = {Span(1, 1, 20): Known(Span(1, 1, 20), stale=True)}
    assert cover(known.values(), before=30) == [Span(1, 1, 20)]


def test_cover_skips_turns_with_no_summary_yet() -> None:
    known = {Span(1, 21, 40): Known(Span(1, 21, 40))}
    assert cover(known.values(), before=100) == [Span(1, 21, 40)]


@given(turns=st.integers(min_value=0, max_value=30_000), window=st.integers(0, 60))
def test_cover_leaves_no_gap_and_no_overlap_when_everything_is_summarised(
    turns: int, window: int
) -> None:
    before = max(1, turns - window)
    spans = cover(all_built(turns).values(), before=before)

    covered = [t for s in spans for t in range(s.first, s.last + 1)]
    assert covered == list(range(1, len(covered) + 1))
    complete = turns // 20 * 20
    assert len(covered) >= min(before - 1, complete)


def test_model_output_is_tidied_capped_or_refused() -> None:
    assert clean_output("Summary: Mirela  kept the key.", 1) == "Mirela kept the key."
    assert clean_output("  ...  ", 1) is None
    long = "Mirela walked on. " * 100
    capped = clean_output(long, 1)
    assert capped is not None and len(capped) <= max_chars(1) and capped.endswith(".")


def test_extractive_summary_keeps_the_first_sentence_of_each_exchange() -> None:
    exchanges = [
        Exchange(1, "I open the door. Then I wait.", "The door creaks open. Dust falls."),
        Exchange(2, None, "Night comes. Owls call."),
    ]
    text = extractive(Span(1, 1, 20), exchanges)
    assert text == "[1] I open the door. → The door creaks open. [2] Night comes."
    many = [Exchange(n, "I walk. " * 30, "Rain. " * 50) for n in range(1, 21)]
    assert len(extractive(Span(1, 1, 20), many)) <= max_chars(1)


def test_the_prompt_shows_every_turn_with_its_number() -> None:
    prompt = turns_prompt(Span(1, 1, 20), [Exchange(3, "I sing.", "Birds answer.")])
    assert prompt[0].role == "system"
    assert "[3] Player: I sing." in prompt[1].content
    assert "[3] Narrator: Birds answer." in prompt[1].content


def test_retries_back_off_up_to_an_hour() -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [60.0, 120.0, 240.0]
    assert retry_delay(20) == 3600.0


def test_texts_over_their_budget_share_it_and_are_cut_at_sentence_ends() -> None:
    short = "Ada kept the key."
    long = "Bram sailed north. " * 40
    assert fit_texts([short, long], 1000) == [short, long]

    fitted = fit_texts([short, long, long], 400)

    assert fitted[0] == short  # short ones keep everything and leave the rest to others
    assert all(len(t) <= 200 and t.endswith("north.") for t in fitted[1:])
    assert sum(map(len, fitted)) <= 400


def _entry(span: Span, *, stale: bool = False, retry_at: datetime | None = None) -> IndexEntry:
    return IndexEntry(uuid.uuid4().hex, span, stale, "model", "m", retry_at)


def test_a_pass_is_due_exactly_when_a_span_is_missing_stale_or_up_for_retry() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    built = [_entry(s) for s in all_built(400)]
    assert not IndexView.of(1, built).work_due(419, now)
    assert IndexView.of(1, built).work_due(420, now)  # turns 401-420 now complete
    assert IndexView.of(1, built[1:]).work_due(400, now)
    stale = [*built[1:], _entry(built[0].span, stale=True)]
    assert IndexView.of(1, stale).work_due(400, now)
    later = [*built[1:], _entry(built[0].span, retry_at=now + timedelta(minutes=1))]
    assert not IndexView.of(1, later).work_due(400, now)
    assert IndexView.of(1, later).work_due(400, now + timedelta(minutes=2))
