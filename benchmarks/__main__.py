"""`python -m benchmarks` (or `make bench`): run every benchmark, print the figures."""

from __future__ import annotations

import sys

from benchmarks import (
    append_throughput,
    embedded_speed,
    open_session,
    router_overhead,
    turn_overhead,
)


def main() -> int:
    results = [
        turn_overhead.run(),
        append_throughput.run(),
        open_session.run(),
        router_overhead.run(),
        embedded_speed.run(),
    ]
    print(f"\n{sum(results)}/{len(results)} benchmarks meet their targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
