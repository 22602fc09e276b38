"""Percentiles and printing shared by the benchmarks."""

from __future__ import annotations

import statistics


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(samples_ms: list[float]) -> str:
    return (
        f"p50 {percentile(samples_ms, 50):7.2f} ms  p95 {percentile(samples_ms, 95):7.2f} ms  "
        f"mean {statistics.fmean(samples_ms):7.2f} ms  (n={len(samples_ms)})"
    )


def verdict(ok: bool) -> str:
    return "MEETS TARGET" if ok else "MISSES TARGET"
