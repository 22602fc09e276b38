"""The whole crisis detector per player message, against the rules alone in the same run.

Messages: the learned detector's shipped held-out families (every language, chat
style, with conversation context where the family has one). Measured: the rules
alone, and the rules plus the learned detector (n-grams and the sentence encoder),
as `rules+learned` runs in a turn; the model's load time and the memory it adds.
Targets (issue 13): p95 <= 15 ms for the whole detector, load <= 2 s, memory <= 300 MB.
Run alone: `python -m benchmarks.crisis_detector`.
"""

from __future__ import annotations

import resource
import time

from benchmarks.stats import percentile, summary, verdict
from taleweaver.domain.safety import assess
from taleweaver.safety.evaluation import load_set
from taleweaver.safety.learned import LearnedDetector
from taleweaver.safety.rules import RulesProvider

ROUNDS = 2


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run() -> bool:
    examples = load_set(name="crisis_eval.jsonl")
    rules = RulesProvider().current()
    before = _rss_mb()
    started = time.perf_counter()
    detector = LearnedDetector.load()
    load_s = time.perf_counter() - started
    detector.assess("warm up", ())
    added_mb = _rss_mb() - before
    print(f"== Crisis detector ({detector.name}; {len(examples)} held-out messages x{ROUNDS})")
    rules_ms: list[float] = []
    whole_ms: list[float] = []
    for _ in range(ROUNDS):
        for example in examples:
            t0 = time.perf_counter()
            assess(example.text, rules)
            t1 = time.perf_counter()
            assess(example.text, rules)
            detector.assess(example.text, example.context)
            t2 = time.perf_counter()
            rules_ms.append((t1 - t0) * 1000)
            whole_ms.append((t2 - t1) * 1000)
    p95 = percentile(whole_ms, 95)
    ok = p95 <= 15.0 and load_s <= 2.0 and added_mb <= 300
    print(f"  rules alone         : {summary(rules_ms)}")
    print(f"  rules + learned     : {summary(whole_ms)}")
    print(f"  model load {load_s:.2f} s, memory added {added_mb:.0f} MB (max RSS)")
    print(
        f"  ratio (mean, whole / rules) : "
        f"{sum(whole_ms) / max(1e-9, sum(rules_ms)):.1f}x   target p95 <= 15 ms, "
        f"load <= 2 s, memory <= 300 MB -> {verdict(ok)}"
    )
    return ok


if __name__ == "__main__":
    run()
