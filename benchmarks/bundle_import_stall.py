"""How long a workspace bundle export and import hold the event loop.

A workspace of a few long SillyTavern chats (every reply with two swipes) is
exported with the project's own export, then imported into a fresh instance;
meanwhile a ticker sleeps 10 ms at a time on the same loop and records the
longest gap between its wake-ups: what another request (a /healthz, a turn's
stream) would wait. Target: no stall over 200 ms either way.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from benchmarks.chat_interop import make_chat
from benchmarks.stats import verdict
from taleweaver.config import Settings
from taleweaver.domain.events import EventMetadata
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel

CHATS = 4
MESSAGES = 10_000
TARGET_S = 0.2
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Watched(Generic[T]):
    result: T
    seconds: float  # wall time of the action
    longest_stall: float  # the longest the loop went without running a 10 ms ticker
    ticks: int  # how many times the ticker ran meanwhile


async def watched(action: Awaitable[T]) -> Watched[T]:
    """Run `action` while a 10 ms ticker measures how long the event loop stalls."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last - 0.01)
            last = now

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    try:
        result = await action
    finally:
        done.set()
        await ticker
    return Watched(result, time.perf_counter() - started, max(gaps, default=0.0), len(gaps))


async def _bench(tmp: Path, chats: int, messages: int) -> dict[str, float]:
    meta = EventMetadata("bench")
    settings = Settings(data_dir=tmp / "a", model="scripted")
    source = await Engine.open(settings, model=ScriptedModel())
    try:
        chat = make_chat(messages)
        for _ in range(chats):
            await source.interop.import_chat("local", chat, metadata=meta)
        export = await watched(source.interop.export_workspace("local"))
    finally:
        await source.close()
    settings = Settings(data_dir=tmp / "b", model="scripted")
    target = await Engine.open(settings, model=ScriptedModel())
    try:
        imported = await watched(target.interop.import_workspace("local", export.result))
    finally:
        await target.close()
    return {
        "bytes": len(export.result),
        "events": imported.result.events,
        "export_s": export.seconds,
        "export_stall_s": export.longest_stall,
        "import_s": imported.seconds,
        "import_stall_s": imported.longest_stall,
    }


def run(chats: int = CHATS, messages: int = MESSAGES) -> bool:
    print(f"== Workspace bundle export and import ({chats} chats of {messages:,} messages)")
    with tempfile.TemporaryDirectory() as tmp:
        f = asyncio.run(_bench(Path(tmp), chats, messages))
    print(f"  bundle          : {f['bytes'] / 1024 / 1024:.1f} MiB zipped, {f['events']:,} events")
    for way in ("export", "import"):
        print(
            f"  {way:<6}          : {f[f'{way}_s']:5.2f} s, longest event-loop stall "
            f"{f[f'{way}_stall_s'] * 1000:4.0f} ms"
        )
    print(f"  load average    : {os.getloadavg()[0]:.1f} (a busy machine stretches stalls)")
    ok = max(f["export_stall_s"], f["import_stall_s"]) <= TARGET_S
    print(f"  target          : no stall over {TARGET_S * 1000:.0f} ms -> {verdict(ok)}")
    return ok


if __name__ == "__main__":
    run(*(int(a) for a in sys.argv[1:3]))
