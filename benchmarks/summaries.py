"""Rolling summaries on a session with 10,000 turns (SQLite).

Figures: how fast a whole session is summarised (the scripted summarizer answers
at once, so this is the engine's own cost per summary), and what the summary
source adds to every turn's recall: reading the session's summary index, picking
the cover and opening the texts of the pieces it hands over. The baseline is the
read recall makes for recent history on every turn anyway. Targets at 10,000
turns: the source's p50 <= 5 ms, and its p95 no worse than the history read's
(on a machine shared with other work the tail is the scheduler's; the ratio holds).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from benchmarks.stats import percentile, summary, verdict
from taleweaver.config import Settings
from taleweaver.domain.events import EventMetadata, NewEvent
from taleweaver.domain.pipeline import RecallQuery
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import EventType, SessionKind
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.memory.summaries import Summarizer, SummarySource

TURNS = 9_999
SAMPLES = 300
_NAMES = re.compile(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)+\b")


def _condense(messages: Sequence[ChatMessage]) -> str:
    names = list(dict.fromkeys(_NAMES.findall(messages[-1].content)))[:12]
    return f"Names: {', '.join(names)}." if names else "The road went on without event."


def _turn(number: int) -> NewEvent:
    who = f"Traveller {chr(65 + number % 26)}{'abcdefghij'[number % 10]}"
    return NewEvent(
        EventType.TURN_COMMITTED,
        {
            "turn_id": uuid.uuid4().hex,
            "number": number,
            "action": "say",
            "input": {"text": f"i greet {who} on the road.", "choice": None},
            "reply": {"text": f"{who} nods. The rain goes on. " * 4, "choices": []},
            "message_ids": {"player": uuid.uuid4().hex, "narrator": uuid.uuid4().hex},
        },
    )


async def _bench(data_dir: Path) -> tuple[float, int, list[float], list[float], int]:
    engine = await Engine.open(Settings(data_dir=data_dir), model=ScriptedModel())
    engine.summaries.summarizer = Summarizer(ScriptedModel(_condense))
    meta = EventMetadata("bench")
    session = await engine.sessions.create(
        "local", kind=SessionKind.STORY, title="Bench", metadata=meta
    )
    session_id: str = session["id"]
    state = await engine.repository.open("local", session_id)
    for start in range(1, TURNS + 1, 500):
        batch = [_turn(n) for n in range(start, min(TURNS, start + 499) + 1)]
        state, _ = await engine.repository.commit(state, batch, meta)

    started = time.perf_counter()
    written = await engine.summaries.run_pass("local", session_id)
    build_s = time.perf_counter() - started

    history = await engine.caps.queries.history(session_id, before_turn=TURNS + 1, limit=40)
    query = RecallQuery(
        session_id=session_id,
        workspace_id="local",
        kind="story",
        settings={},
        turn_number=TURNS + 1,
        player_id="local",
        current_text="I look back.",
        recent=[(m["role"], m["content"]) for m in history],
    )
    source = SummarySource(engine.summaries, history_messages=40)
    engine.summaries.config = type(engine.summaries.config)(enabled=False)  # measure reads only
    gather: list[float] = []
    baseline: list[float] = []
    pieces = 0
    for _ in range(SAMPLES):
        t0 = time.perf_counter()
        pieces = len(await source.gather(query))
        t1 = time.perf_counter()
        await engine.caps.queries.history(session_id, before_turn=TURNS + 1, limit=40)
        t2 = time.perf_counter()
        gather.append((t1 - t0) * 1000)
        baseline.append((t2 - t1) * 1000)
    await engine.close()
    return build_s, written, gather, baseline, pieces


def run() -> bool:
    print(f"== Rolling summaries on a session with {TURNS:,} turns (SQLite)")
    with tempfile.TemporaryDirectory() as tmp:
        build_s, written, gather, baseline, pieces = asyncio.run(_bench(Path(tmp)))
    p50, p95 = percentile(gather, 50), percentile(gather, 95)
    print(
        f"  summarise all   : {written} summaries in {build_s:.2f} s "
        f"({TURNS / build_s:,.0f} turns/s, {build_s / written * 1000:.2f} ms per summary)"
    )
    print(f"  source per turn : {summary(gather)}  ({pieces} pieces)")
    print(f"  history read    : {summary(baseline)}")
    ratio = percentile(gather, 50) / percentile(baseline, 50)
    print(f"  ratio           : {ratio:.1f}x the history read")
    ok = p50 <= 5 and p95 <= percentile(baseline, 95)
    print(f"  target          : source p50 <= 5 ms, p95 <= history read p95 -> {verdict(ok)}")
    return ok
