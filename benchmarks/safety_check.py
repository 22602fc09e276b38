"""Crisis rules latency per message against a same-run baseline: a bare regex pass.

The baseline lower-cases a text and searches it with every applicable rule pattern,
nothing else. The real check also spells out contractions, blanks idioms, splits
clauses, tests negation and applies risk and protective modifiers.
Player messages: the shipped labelled set. Narrator output: paragraph-sized replies,
checked against the output rules (content topics are matched separately).
Target: player messages at most 3x the bare pass with p95 under 1 ms; narrator
output p95 under 1 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from benchmarks.stats import percentile, verdict
from taleweaver.domain.safety import Direction, RuleSet, assess
from taleweaver.safety.evaluation import load_set
from taleweaver.safety.rules import RulesProvider

ROUNDS = 5
REPLY = (
    "The lantern light wavers over wet stone as the corridor bends toward a sound like "
    "distant water. You draw your sword, step over the fallen guard and whisper to your "
    "companion that the orc chief waits somewhere below. "
) * 4

Check = Callable[[str, RuleSet, Direction], object]


def _bare(text: str, rules: RuleSet, direction: Direction) -> bool:
    lowered = text.lower()
    return any(
        p.search(lowered)
        for rule in rules.rules
        if rule.direction in ("both", direction)
        for p in rule.patterns
    )


def _ours(text: str, rules: RuleSet, direction: Direction) -> object:
    return assess(text, rules, direction=direction)


def _time(check: Check, rules: RuleSet, texts: list[str], direction: Direction) -> list[float]:
    samples: list[float] = []
    for _ in range(ROUNDS):
        for text in texts:
            started = time.perf_counter()
            check(text, rules, direction)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def _mean(samples: list[float]) -> float:
    return sum(samples) / len(samples)


def run() -> bool:
    rules = RulesProvider().current()
    messages = [e.text for e in load_set()]
    replies = [REPLY] * 100
    print(
        f"== Safety rules check (rules {rules.version}; {len(messages)} player messages and "
        f"{len(replies)} narrator replies of {len(REPLY)} chars, x{ROUNDS})"
    )
    _time(_ours, rules, messages[:50], "input")  # warm up
    bare_in = _time(_bare, rules, messages, "input")
    ours_in = _time(_ours, rules, messages, "input")
    bare_out = _time(_bare, rules, replies, "output")
    ours_out = _time(_ours, rules, replies, "output")
    ratio = _mean(ours_in) / _mean(bare_in)
    p95_in, p95_out = percentile(ours_in, 95), percentile(ours_out, 95)
    ok = ratio <= 3.0 and p95_in < 1.0 and p95_out < 1.0
    for label, bare, ours in (("input ", bare_in, ours_in), ("output", bare_out, ours_out)):
        for name, samples in (("bare regex pass", bare), ("rules check    ", ours)):
            mean, p95 = _mean(samples), percentile(samples, 95)
            print(f"  {label} {name} : mean {mean:.3f} ms  p95 {p95:.3f} ms")
    print(
        f"  ratio (input, rules / bare) : {ratio:.2f}x   target <= 3x, p95 < 1 ms "
        f"(input {p95_in:.3f}, output {p95_out:.3f}) -> {verdict(ok)}"
    )
    return ok


if __name__ == "__main__":
    run()
