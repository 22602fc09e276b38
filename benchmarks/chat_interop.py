"""Importing and exporting a 10,000-message SillyTavern chat.

Import: parse, validate, and commit the whole chat as one session stream with its
read models (SQLite file). Export: the session back to chat JSONL from its
events. The baseline beside each is plain `json.loads` / `json.dumps` of the same
lines, the least any importer or exporter does. Times are best of three without
tracing; peak memory is measured in a separate traced run (tracemalloc).
Target: <= 1 s each way.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.stats import verdict
from taleweaver.config import Settings
from taleweaver.domain.events import EventMetadata
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel

MESSAGES = 10_000
RUNS = 3
TARGET_S = 1.0


def make_chat(messages: int = MESSAGES) -> bytes:
    """A chat of `messages` lines after the header: exchanges, every reply with two swipes."""
    lines: list[dict[str, Any]] = [
        {
            "user_name": "Ada",
            "character_name": "Seraphina",
            "create_date": "2024-06-03@22h12m05s",
            "chat_metadata": {"note_prompt": "", "note_interval": 1},
        }
    ]
    for i in range(messages):
        if i % 2 == 0:
            lines.append(
                {
                    "name": "Ada",
                    "is_user": True,
                    "is_system": False,
                    "send_date": "June 3, 2024 10:14pm",
                    "mes": f"Message {i}: where does the path by the river lead?",
                    "extra": {},
                }
            )
        else:
            text = f"Reply {i}: the lantern sways as Seraphina points north. " * 3
            lines.append(
                {
                    "name": "Seraphina",
                    "is_user": False,
                    "is_system": False,
                    "send_date": "June 3, 2024 10:15pm",
                    "mes": text,
                    "extra": {"api": "openai", "model": "gpt-4o", "token_count": 40},
                    "swipes": [text, f"Alternative {i}."],
                    "swipe_id": 0,
                    "swipe_info": [{"send_date": "June 3, 2024 10:15pm", "extra": {}}] * 2,
                }
            )
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


async def _timed(action: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: SQLite's thread included)."""
    started, cpu = time.perf_counter(), time.process_time()
    await action()
    return time.perf_counter() - started, time.process_time() - cpu


async def _peak(action: Callable[[], Awaitable[Any]]) -> int:
    tracemalloc.start()
    try:
        await action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def _bench(tmp: Path) -> dict[str, float]:
    chat = make_chat()
    meta = EventMetadata("bench")
    settings = Settings(data_dir=tmp, model="scripted")
    engine = await Engine.open(settings, model=ScriptedModel())
    figures: dict[str, float] = {}
    try:
        sessions: list[str] = []

        async def do_import() -> None:
            made = await engine.interop.import_chat("local", chat, metadata=meta)
            sessions.append(made["id"])

        async def do_export() -> str:
            return await engine.interop.export_session("local", sessions[0], "jsonl")

        async def loads() -> list[Any]:
            return [json.loads(line) for line in chat.splitlines()]

        parsed = [json.loads(line) for line in chat.splitlines()]

        async def dumps() -> str:
            return "".join(json.dumps(line) + "\n" for line in parsed)

        for name, action in (
            ("import", do_import),
            ("export", do_export),
            ("loads", loads),
            ("dumps", dumps),
        ):
            runs = [await _timed(action) for _ in range(RUNS)]
            figures[f"{name}_s"] = min(wall for wall, _ in runs)
            figures[f"{name}_cpu"] = min(cpu for _, cpu in runs)
        exported = await do_export()
        assert [json.loads(x) for x in exported.splitlines()] == parsed, "round trip differs"
        figures["import_peak"] = await _peak(do_import)
        figures["export_peak"] = await _peak(do_export)
        figures["loads_peak"] = await _peak(loads)
        figures["dumps_peak"] = await _peak(dumps)
        figures["bytes"] = len(chat)
    finally:
        await engine.close()
    return figures


def run() -> bool:
    print(f"== SillyTavern chat of {MESSAGES:,} messages: import and export")
    with tempfile.TemporaryDirectory() as tmp:
        f = asyncio.run(_bench(Path(tmp)))
    mib = 1024 * 1024
    print(f"  file            : {f['bytes'] / mib:.1f} MiB, every reply with 2 swipes")
    for way, base in (("import", "loads"), ("export", "dumps")):
        print(
            f"  {way:<6} {f[f'{way}_s']:6.3f} s  peak {f[f'{way}_peak'] / mib:6.1f} MiB   "
            f"baseline json.{base} {f[f'{base}_s']:6.3f} s  peak {f[f'{base}_peak'] / mib:6.1f} MiB"
            f"   ratio {f[f'{way}_s'] / f[f'{base}_s']:5.1f}x time, "
            f"{f[f'{way}_peak'] / f[f'{base}_peak']:4.1f}x memory"
        )
        print(
            f"         CPU {f[f'{way}_cpu']:6.3f} s (wall above includes waiting for a core "
            f"on a shared machine: load average {os.getloadavg()[0]:.1f})"
        )
    ok = f["import_s"] <= TARGET_S and f["export_s"] <= TARGET_S
    print(f"  target          : <= {TARGET_S:.0f} s each way -> {verdict(ok)}")
    return ok


if __name__ == "__main__":
    run()
