"""How long a workspace bundle import holds the event loop.

A workspace of a few long SillyTavern chats (every reply with two swipes) is
exported with the project's own export, then imported into a fresh instance
while a ticker sleeps 10 ms at a time on the same loop and records the longest
gap between its wake-ups: what another request (a /healthz, a turn's stream)
would wait. Target: no stall over 200 ms.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.chat_interop import make_chat
from benchmarks.stats import verdict
from taleweaver.config import Settings
from taleweaver.domain.events import EventMetadata
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel

CHATS = 4
MESSAGES = 10_000
TARGET_S = 0.2


async def _ticker(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last - 0.01)
        last = now


async def _bench(tmp: Path, chats: int, messages: int) -> dict[str, float]:
    meta = EventMetadata("bench")
    source = await Engine.open(
        Settings(data_dir=tmp / "a", model="scripted"), model=ScriptedModel()
    )
    try:
        chat = make_chat(messages)
        for _ in range(chats):
            await source.interop.import_chat("local", chat, metadata=meta)
        bundle = await source.interop.export_workspace("local")
    finally:
        await source.close()
    target = await Engine.open(
        Settings(data_dir=tmp / "b", model="scripted"), model=ScriptedModel()
    )
    try:
        gaps: list[float] = []
        stop = asyncio.Event()
        ticking = asyncio.create_task(_ticker(gaps, stop))
        started = time.perf_counter()
        report = await target.interop.import_workspace("local", bundle)
        took = time.perf_counter() - started
        stop.set()
        await ticking
    finally:
        await target.close()
    return {
        "bytes": len(bundle),
        "events": report.events,
        "import_s": took,
        "max_stall_s": max(gaps),
        "stalls_over_100ms": sum(g > 0.1 for g in gaps),
    }


def run(chats: int = CHATS, messages: int = MESSAGES) -> bool:
    print(f"== Workspace bundle import ({chats} chats of {messages:,} messages): event-loop stalls")
    with tempfile.TemporaryDirectory() as tmp:
        f = asyncio.run(_bench(Path(tmp), chats, messages))
    print(f"  bundle          : {f['bytes'] / 1024 / 1024:.1f} MiB zipped, {f['events']:,} events")
    print(f"  import          : {f['import_s']:.2f} s (load average {os.getloadavg()[0]:.1f})")
    print(
        f"  longest stall   : {f['max_stall_s'] * 1000:.0f} ms "
        f"({f['stalls_over_100ms']:.0f} over 100 ms)"
    )
    ok = f["max_stall_s"] <= TARGET_S
    print(f"  target          : <= {TARGET_S * 1000:.0f} ms -> {verdict(ok)}")
    return ok


if __name__ == "__main__":
    run(*(int(a) for a in sys.argv[1:3]))
