"""`python -m benchmarks` (or `make bench`): run every benchmark, print the figures."""

from __future__ import annotations

import sys

from benchmarks import (
    append_throughput,
    bundle_import_stall,
    card_import,
    chat_interop,
    cli_startup,
    crisis_detector,
    embedded_companion,
    embedded_speed,
    embedded_story,
    live_sessions,
    lorebook_activation,
    open_session,
    router_overhead,
    safety_check,
    summaries,
    therapy_overhead,
    turn_overhead,
    world_ann,
    world_long_session,
    world_meaning,
    world_recall,
)


def main() -> int:
    results = [
        turn_overhead.run(),
        append_throughput.run(),
        open_session.run(),
        router_overhead.run(),
        embedded_speed.run(),
        embedded_story.run(),
        embedded_companion.run(),
        lorebook_activation.run(),
        world_recall.run(),
        world_ann.run(),
        world_meaning.run(),
        world_long_session.run(),
        summaries.run(),
        card_import.run(),
        chat_interop.run(),
        bundle_import_stall.run(),
        safety_check.run(),
        crisis_detector.run(),
        therapy_overhead.run(),
        live_sessions.run(),
        cli_startup.run(),
    ]
    print(f"\n{sum(results)}/{len(results)} benchmarks meet their targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
