"""Importing 1,000 character cards (PNG with `chara` + `ccv3` chunks) into SQLite.

Each import parses the PNG chunk stream (CRCs checked), decodes the card,
normalises it and writes the character, its tags and its image in one
transaction. The baseline beside it, in the same run, is the least any importer
must do: base64-decode and `json.loads` the same cards' text. Figures: seconds
(untraced) and peak traced memory (a second, traced run) for each; the ratio is
import time over baseline time (the database's share dominates).
Target: 1,000 cards in <= 20 s with peak memory <= 64 MiB.
"""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from benchmarks.stats import verdict
from taleweaver.config import Settings
from taleweaver.engine import Engine
from taleweaver.interop.cards import write_png_card
from taleweaver.interop.cards.png import placeholder_png
from taleweaver.llm import ScriptedModel

CARDS = 1_000
TARGET_SECONDS = 20.0
TARGET_PEAK_MIB = 64.0


def _card(index: int) -> dict[str, object]:
    return {
        "spec": "chara_card_v3",
        "spec_version": "3.0",
        "data": {
            "name": f"Character {index}",
            "description": f"{{{{char}}}} number {index} keeps a lighthouse. " * 20,
            "personality": "warm, wry",
            "scenario": "A stormy night.",
            "first_mes": "Welcome, {{user}}.",
            "mes_example": "<START>\n{{user}}: Hi\n{{char}}: Hello.",
            "alternate_greetings": ["Oh, hello.", "Storm's bad."],
            "group_only_greetings": [],
            "tags": ["bench", f"group-{index % 10}"],
            "creator": "bench",
            "character_version": "1",
            "extensions": {"x_unknown": index},
        },
    }


def _files() -> list[bytes]:
    files = []
    image = placeholder_png()
    for index in range(CARDS):
        text = json.dumps(_card(index))
        files.append(write_png_card(image, v2_text=text, v3_text=text))
    return files


def _baseline(files: list[bytes]) -> float:
    """Find the ccv3 text by a byte search, base64-decode it and parse the JSON."""
    started = time.perf_counter()
    for data in files:
        at = data.index(b"ccv3\x00") + 5
        end = data.index(b"IEND") - 8  # the length and CRC around the chunk
        json.loads(base64.b64decode(data[at:end]))
    return time.perf_counter() - started


async def _import(files: list[bytes], data_dir: Path) -> float:
    settings = Settings(data_dir=data_dir, model="scripted", scripted_token_delay_ms=0)
    engine = await Engine.open(settings, model=ScriptedModel())
    try:
        started = time.perf_counter()
        for data in files:
            await engine.characters.import_card("local", data, filename=None, actor="bench")
        elapsed = time.perf_counter() - started
        assert len(await engine.characters.list("local")) == CARDS
    finally:
        await engine.close()
    return elapsed


def _measured(action: object) -> tuple[float, float]:
    tracemalloc.start()
    try:
        seconds = action() if callable(action) else 0.0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return float(seconds), peak / 2**20


def run() -> bool:
    print(f"== Import {CARDS:,} PNG character cards (SQLite)")
    files = _files()
    size = sum(len(f) for f in files) / 2**20
    # Timed untraced (tracing slows Python severalfold), then traced for memory.
    base_s = _baseline(files)
    _, base_mib = _measured(lambda: _baseline(files))
    with tempfile.TemporaryDirectory() as tmp:
        import_s = asyncio.run(_import(files, Path(tmp)))
    with tempfile.TemporaryDirectory() as tmp:
        _, import_mib = _measured(lambda: asyncio.run(_import(files, Path(tmp))))
    print(f"  cards           : {CARDS:,} files, {size:.1f} MiB in all")
    print(f"  import          : {import_s:7.2f} s  ({CARDS / import_s:,.0f} cards/s)")
    print(f"    peak memory   : {import_mib:7.1f} MiB (tracemalloc)")
    print(f"  baseline (b64 + json.loads only): {base_s:7.3f} s, peak {base_mib:.1f} MiB")
    print(f"  ratio           : import takes {import_s / base_s:,.0f}x the baseline's time")
    ok = import_s <= TARGET_SECONDS and import_mib <= TARGET_PEAK_MIB
    print(
        f"  target          : <= {TARGET_SECONDS:.0f} s and <= {TARGET_PEAK_MIB:.0f} MiB "
        f"-> {verdict(ok)}"
    )
    return ok


if __name__ == "__main__":
    run()
