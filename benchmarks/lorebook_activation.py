"""Lorebook activation speed at 10,000 and 100,000 entries, on SillyTavern-shaped books.

Each book (benchmarks/lorebook_books.py) has 2% of its entries keyed by a regex
written as users write them, plus secondary keys, inclusion groups,
probability and whole-word matching; the scan window is two chat messages of
about 150 words. Activation runs with recursion on and off, under a token budget.
Targets: p95 <= 2 ms at 10,000 entries and <= 20 ms at 100,000.

The same-run baseline is the path before the regex prefilter: the same book with
every regex key searched on every scan. It also checks that both activate exactly
the same entries for the same reasons on every window they both ran.

Edits: one entry changed, added or deleted, then the next activation; target
p95 <= 100 ms, against preparing the whole book again (the old cost of the first
turn after an edit).

SillyTavern's rules: what the engine activates is compared with an independent,
deliberately simple reference of SillyTavern's World Info rules
(benchmarks/lorebook_reference.py) on generated books of several sizes (recursion
on and off), on a book that exercises every rule, and on the fixtures' books;
target 0 differences.

Rebuilds: turn waits and event-loop stalls while a 100,000-entry book is prepared
again in the background (benchmarks/lorebook_rebuild.py); target <= 100 ms.
"""

from __future__ import annotations

import cProfile
import gc
import io
import os
import pstats
import random
import time
from dataclasses import replace

from benchmarks import lorebook_rebuild
from benchmarks.lorebook_books import COMMON, Generated, book, windows
from benchmarks.lorebook_compare import differences, fixture_cases, generated_cases, rules_cases
from benchmarks.stats import percentile, summary, verdict
from taleweaver.domain.lorebook import BookSettings, Outcome, PreparedBook, Segment, activate
from taleweaver.domain.lorebook.model import make_entry
from taleweaver.domain.lorebook.prepare import Change, EveryRegex, prepare
from taleweaver.memory.lorebook.matcher import AutomatonIndex, PreparedBooks

SIZES = {10_000: 2.0, 100_000: 20.0}  # entries -> target p95 in ms
EDIT_TARGET_MS = 100.0
# Names are matched as whole words, as lorebooks of names usually are.
SETTINGS = BookSettings(match_whole_words=True)
RUNS = 200
BASELINE_RUNS = {10_000: 40, 100_000: 10}
EDITS = 20


def _activate(book: PreparedBook, window: list[Segment], seed: int) -> Outcome:
    return activate([book], window, clock=7, seed=str(seed), budget_tokens=1024)


def _shape(outcome: Outcome) -> tuple[object, ...]:
    """What a user would see of an activation: entries, reasons, steps, cuts."""
    return (
        [(a.entry.uid, a.reason, a.step, a.matched) for a in outcome.activated],
        [s.uid for s in outcome.cut],
        [(s.uid, s.why) for s in outcome.rejected],
    )


def _timed(book: PreparedBook, batch: list[list[Segment]]) -> tuple[list[float], list[Outcome]]:
    samples: list[float] = []
    outcomes: list[Outcome] = []
    for n, window in enumerate(batch):
        started = time.perf_counter()
        outcomes.append(_activate(book, window, n))
        samples.append((time.perf_counter() - started) * 1000)
    return samples, outcomes


def _scan(size: int, target: float, fast: PreparedBook, naive: PreparedBook, rng: random.Random,
          generated: Generated) -> bool:
    batch = windows(rng, generated, RUNS)
    ok = True
    for recursive in (True, False):
        settings = replace(SETTINGS, recursive=recursive)
        book, reference = replace(fast, settings=settings), replace(naive, settings=settings)
        gc.collect()
        _timed(book, batch[:10])  # warm up
        samples, outcomes = _timed(book, batch)
        baseline, expected = _timed(reference, batch[: BASELINE_RUNS[size]])
        differ = sum(_shape(a) != _shape(b) for a, b in zip(outcomes, expected, strict=False))
        activated = sum(len(o.activated) for o in outcomes) / len(outcomes)
        p95 = percentile(samples, 95)
        ok = ok and p95 <= target and differ == 0
        mode = "on " if recursive else "off"
        print(f"    recursion {mode}: {activated:.1f} entries activated per scan")
        print(f"      prefiltered        {summary(samples)}")
        print(f"      every regex (old)  {summary(baseline)}")
        print(
            f"      ratio old p50 / new p50 = "
            f"{percentile(baseline, 50) / percentile(samples, 50):,.1f}x; activations that "
            f"differ from the old path: {differ} of {len(expected)}"
        )
        print(f"      target p95 <= {target:.0f} ms: {p95:.2f} ms  {verdict(p95 <= target)}")
    return ok


def _edits(size: int, generated: Generated, rng: random.Random, build_s: float) -> bool:
    """Edit, then activate at once: the cost the first turn after an edit used to pay."""
    cache = PreparedBooks()
    cache.build("bench", 1, "Bench", SETTINGS, generated.entries)
    current = {e.uid: e for e in generated.entries}
    batch = windows(rng, generated, EDITS)
    samples: list[float] = []
    book: PreparedBook | None = None
    for n, window in enumerate(batch):
        uid = str(rng.randrange(size))
        change: Change
        if n % 3 == 0 and uid in current:
            change = (uid, None)  # delete
        elif n % 3 == 1:
            uid = f"new{n}"
            change = (uid, make_entry(uid, {"keys": [f"/\\b{rng.choice(COMMON)}s?\\b/i"]}))
        else:
            name = rng.choice(generated.names)
            change = (uid, make_entry(uid, {"keys": [name], "content": f"Now {name}."}))
        started = time.perf_counter()
        assert cache.revise("bench", n + 2, [change])
        book = cache.get("bench", n + 2)
        assert book is not None
        _activate(book, window, n)
        samples.append((time.perf_counter() - started) * 1000)
        if change[1] is None:
            current.pop(uid, None)
        else:
            current[uid] = change[1]
    assert book is not None
    # The revised book activates exactly what the book prepared whole does.
    fresh = prepare("bench", "Bench", SETTINGS, list(current.values()), AutomatonIndex)
    differ = sum(
        _shape(_activate(book, w, n)) != _shape(_activate(fresh, w, n))
        for n, w in enumerate(batch)
    )
    p95 = percentile(samples, 95)
    print(f"    edit, then activate  {summary(samples)}")
    print(
        f"      ratio whole rebuild / edit p50 = {build_s * 1000 / percentile(samples, 50):,.0f}x; "
        f"activations that differ from a whole rebuild: {differ} of {len(batch)}"
    )
    ok = p95 <= EDIT_TARGET_MS
    print(f"      target p95 <= {EDIT_TARGET_MS:.0f} ms: {p95:.2f} ms  {verdict(ok)}")
    return ok and differ == 0


def _profile(book: PreparedBook, batch: list[list[Segment]]) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for n, window in enumerate(batch):
        _activate(book, window, n)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    print(f"    where the time goes ({len(batch)} activations, by own time):")
    for line in lines[start : start + 9]:
        print(f"      {line[:120]}")


def _measure(size: int, target: float) -> bool:
    rng = random.Random(size)
    generated = book(size, rng)
    started = time.perf_counter()
    fast = PreparedBooks().build("bench", 1, "Bench", SETTINGS, generated.entries)
    build_s = time.perf_counter() - started
    naive = prepare("bench", "Bench", SETTINGS, generated.entries, AutomatonIndex, EveryRegex)
    regexes = sum(1 for e in generated.entries if any(k.startswith("/") for k in e.keys))
    print(
        f"  {size:>7,} entries, {regexes:,} with a regex key: prepared in {build_s:5.2f} s, "
        f"{len(fast.unfiltered)} regex keys with no literal to look for"
    )
    ok = _scan(size, target, fast, naive, rng, generated)
    ok = _edits(size, generated, rng, build_s) and ok
    if size == max(SIZES):
        _profile(fast, windows(rng, generated, 100))
    return ok


# Generated books compared with the SillyTavern reference: size -> turns per case (the
# reference checks every entry against the whole text, so big books get few turns).
REFERENCE_SIZES = {1_000: 40, 10_000: 20, 100_000: 3}


def _reference() -> bool:
    """Activations that differ from SillyTavern's rules (the reference); target 0."""
    print("  against SillyTavern's rules (benchmarks/lorebook_reference.py):")
    total = 0
    groups = [
        ("a book exercising every rule", rules_cases()),
        ("the test fixtures' books", fixture_cases()),
    ] + [(f"generated, {size:,} entries", generated_cases(size, turns))
         for size, turns in REFERENCE_SIZES.items()]
    for name, cases in groups:
        found = [line for case in cases for line in differences(case)]
        turns = sum(len(case.chats) for case in cases)
        total += len(found)
        print(f"    {name:<32} {turns:4} activations, {len(found)} differ")
        for line in found[:3]:
            print(f"      {line[:300]}")
    print(f"    target 0 differences: {total}  {verdict(total == 0)}")
    return total == 0


def run() -> bool:
    print("Lorebook activation (SillyTavern-shaped books: 2% regex keys, two 150-word messages)")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  machine: {os.cpu_count()} CPUs, load average {load} (tails grow with load)")
    results = [_measure(size, target) for size, target in SIZES.items()]
    results.append(_reference())
    results.append(lorebook_rebuild.run())
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  load average at the end: {load}")
    return all(results)


if __name__ == "__main__":
    raise SystemExit(0 if run() else 1)
