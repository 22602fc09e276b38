"""Lorebook activation speed at 10,000 and 100,000 entries.

Each book is prepared once (the Aho-Corasick automaton over every plain key),
then activation runs over a scan window of two recent messages plus the
player's words, with everything SillyTavern's rules do: secondary keys (2% of
entries, on common words), 20 regex-keyed entries, inclusion groups,
probability, whole-word matching, recursion and the token budget.
Targets: p95 <= 2 ms at 10,000 entries and <= 20 ms at 100,000.
The same-run baseline is the naive approach (one precompiled regex per entry,
searched over the same window); the ratio of medians is printed, with a short
cProfile summary of where activation spends its time.
"""

from __future__ import annotations

import cProfile
import gc
import io
import os
import pstats
import random
import re
import time

from benchmarks.stats import percentile, summary, verdict
from taleweaver.domain.lorebook import (
    BookSettings,
    Entry,
    PreparedBook,
    Segment,
    activate,
    make_entry,
)
from taleweaver.memory.lorebook.matcher import PreparedBooks

SIZES = {10_000: 2.0, 100_000: 20.0}  # entries -> target p95 in ms
# Names are matched as whole words, as lorebooks of names usually are.
SETTINGS = BookSettings(match_whole_words=True)
RUNS = 300
# Regex keys are written by hand: a book has a few, whatever its size. Each is searched
# once per scan and per recursion step (about 15 µs over this window).
REGEX_ENTRIES = 20
BASELINE_RUNS = {10_000: 30, 100_000: 5}
SYLLABLES = [
    "ka",
    "ri",
    "mo",
    "zen",
    "tha",
    "vel",
    "dor",
    "ish",
    "ul",
    "quo",
    "brin",
    "sa",
    "fen",
    "gor",
    "lys",
    "tam",
]
COMMON = [
    "sword",
    "king",
    "river",
    "tower",
    "storm",
    "ship",
    "gold",
    "wolf",
    "queen",
    "forest",
    "night",
    "fire",
    "gate",
    "road",
    "bridge",
    "temple",
    "market",
    "shadow",
    "crown",
    "letter",
]
FILLER = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "we",
    "you",
    "it",
    "was",
    "is",
    "that",
    "on",
    "for",
    "with",
    "as",
    "at",
    "by",
    "this",
    "from",
    "they",
]


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 5))).capitalize()


def _book(size: int, rng: random.Random) -> tuple[list[Entry], list[str]]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < size:
        name = _name(rng)
        if name.lower() not in seen:
            seen.add(name.lower())
            names.append(name)
    entries = []
    for i, name in enumerate(names):
        fields: dict[str, object] = {"keys": [name, f"{name} the {rng.choice(COMMON)}"]}
        if i < len(COMMON):  # one entry per common word, so every window has some hits
            fields["keys"] = [COMMON[i]]
        if i % 50 == 1:
            fields["secondary_keys"] = [rng.choice(COMMON), rng.choice(COMMON)]
            fields["logic"] = rng.choice(["and_any", "not_any", "and_all", "not_all"])
        if i % (size // REGEX_ENTRIES) == 2:  # a regex key, tried on every scan
            fields["keys"] = [f"/\\b{name[:4]}\\w*{name[-2:]}\\b/i"]
        if i % 40 == 3:
            fields["group"] = f"g{i % 7}"
        if i % 30 == 4:
            fields["probability"] = 60
        mention = f" Allied with {rng.choice(names)}." if i % 20 == 5 else ""
        fields["content"] = f"{name} is a {rng.choice(COMMON)} of old renown.{mention}"
        entries.append(make_entry(str(i), fields))
    return entries, names


def _message(rng: random.Random, names: list[str], words: int, mentions: int) -> str:
    out = [rng.choice(FILLER + COMMON) for _ in range(words)]
    for _ in range(mentions):
        out.insert(rng.randrange(len(out)), rng.choice(names))
    return " ".join(out).capitalize() + "."


def _windows(rng: random.Random, names: list[str], count: int) -> list[list[Segment]]:
    return [
        [
            Segment("player message", _message(rng, names, 20, 1)),
            Segment("narrator message (1 back)", _message(rng, names, 80, 3)),
            Segment("player message (2 back)", _message(rng, names, 20, 1)),
        ]
        for _ in range(count)
    ]


def _activate(book: PreparedBook, window: list[Segment], seed: int) -> int:
    outcome = activate([book], window, clock=7, seed=str(seed), budget_tokens=1024)
    return len(outcome.activated)


def _naive(entries: list[Entry]) -> list[re.Pattern[str]]:
    return [
        re.compile("|".join(rf"(?<!\w){re.escape(k)}(?!\w)" for k in e.keys if k) or "(?!)", re.I)
        for e in entries
    ]


def _measure(size: int, target: float) -> bool:
    rng = random.Random(size)
    entries, names = _book(size, rng)
    started = time.perf_counter()
    book = PreparedBooks().build("bench", 1, "Bench", SETTINGS, entries)
    build_s = time.perf_counter() - started
    windows = _windows(rng, names, RUNS)
    gc.collect()  # the garbage of building the book is not activation's
    for window in windows[:10]:
        _activate(book, window, 0)  # warm up
    samples: list[float] = []
    activated = 0
    for n, window in enumerate(windows):
        started = time.perf_counter()
        activated += _activate(book, window, n)
        samples.append((time.perf_counter() - started) * 1000)

    patterns = _naive(entries)
    naive: list[float] = []
    for window in windows[: BASELINE_RUNS[size]]:
        text = "\n".join(s.text for s in window)
        started = time.perf_counter()
        [p for p in patterns if p.search(text)]
        naive.append((time.perf_counter() - started) * 1000)

    p95 = percentile(samples, 95)
    ok = p95 <= target
    print(
        f"  {size:>7,} entries: automaton built in {build_s:5.2f} s, "
        f"{activated / RUNS:.1f} entries activated per scan on average"
    )
    print(f"    activation     {summary(samples)}")
    print(f"    naive regexes  {summary(naive)}")
    print(
        f"    ratio: naive p50 / activation p50 = "
        f"{percentile(naive, 50) / percentile(samples, 50):,.0f}x"
    )
    print(f"    target p95 <= {target:.0f} ms: {p95:.2f} ms  {verdict(ok)}")
    if size == max(SIZES):
        profiler = cProfile.Profile()
        profiler.enable()
        for n, window in enumerate(windows[:100]):
            _activate(book, window, n)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
        lines = [line for line in out.getvalue().splitlines() if line.strip()]
        start = next(i for i, line in enumerate(lines) if "ncalls" in line)
        print("    where the time goes (100 activations, by own time):")
        for line in lines[start : start + 9]:
            print(f"      {line[:120]}")
    return ok


def run() -> bool:
    print("Lorebook activation (scan window: 2 recent messages + the player's words)")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"  machine: {os.cpu_count()} CPUs, load average {load} (tails grow with load)")
    results = [_measure(size, target) for size, target in SIZES.items()]
    return all(results)


if __name__ == "__main__":
    raise SystemExit(0 if run() else 1)
