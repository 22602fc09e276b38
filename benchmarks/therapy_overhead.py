"""What the therapeutic layer costs a turn, and how fast its projection catches up.

1. Turn time of a therapy session (profile, goals and scene in recall; after a
   tagged choice also a catch-up that moves the goal) against a story session,
   same scripted narrator, in-process on SQLite, half the turns choices. The
   scripted narrator makes a story turn pure engine work (a few ms), so the ratio
   is the harshest view of the layer's cost; the added milliseconds are what a
   real model's reply (hundreds of ms or more) would carry. Target: the therapy
   layer adds at most 10 ms to the median turn.
2. Catch-up: 500 committed therapy turns nobody has read yet (emotion words and
   tagged choices), folded by one read. Reported in turns per second.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.stats import summary, verdict
from taleweaver.config import Settings
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.therapy import ProfileInput
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.therapy import TherapySource

TURNS = 150
BACKLOG = 500
WS = "local"
META = EventMetadata(actor="local", correlation_id="bench")
REPLY = (
    "The harbour is quiet.\n\nChoices:\n1. [therapeutic] Breathe with the waves\n"
    "2. [narrative] Walk on\n"
)
WORDS = ["I feel anxious and tense", "I am calm now", "I walk to the pier"]


async def _play(engine: Engine, session_id: str, turn: int) -> float:
    if turn % 2:
        request = TurnRequest.build(action=None, text=None, choice=1)
    else:
        request = TurnRequest.build(action=None, text=WORDS[turn % 3], choice=None)
    started = time.perf_counter()
    handle = await engine.turns.start(WS, session_id, request, META)
    await handle.wait()
    return (time.perf_counter() - started) * 1000


async def _session(engine: Engine, kind: SessionKind) -> str:
    created = await engine.sessions.create(
        WS, kind=kind, title="Bench", owner_id="local", metadata=META
    )
    session_id: str = created["id"]
    return session_id


async def _measure(data_dir: Path) -> tuple[list[float], list[float], float]:
    settings = Settings(data_dir=data_dir, model="scripted", scripted_token_delay_ms=0)
    engine = await Engine.open(settings, model=ScriptedModel([REPLY]))
    try:
        consent = ProfileInput(therapy_data=True, emotion_tracking=True, intensity=3)
        await engine.therapy.put_profile(WS, "local", consent, actor="local")
        for title in ("Calm my worries", "Sleep better", "Speak up"):
            await engine.therapy.create_goal(WS, "local", title=title)
        story = await _session(engine, SessionKind.STORY)
        therapy = await _session(engine, SessionKind.THERAPY)
        story_ms, therapy_ms = [], []
        for turn in range(TURNS):  # interleaved, so both see the same machine state
            story_ms.append(await _play(engine, story, turn))
            therapy_ms.append(await _play(engine, therapy, turn))
        # A backlog nobody read: take the source out while it is played.
        sources = engine.caps.context_sources
        kept = [s for s in sources if not isinstance(s, TherapySource)]
        engine.caps.context_sources[:] = kept
        backlog = await _session(engine, SessionKind.THERAPY)
        for turn in range(BACKLOG):
            await _play(engine, backlog, turn)
        started = time.perf_counter()
        folded = await engine.therapy.projection.catch_up(WS, "local")
        rate = folded / (time.perf_counter() - started)
    finally:
        await engine.close()
    return story_ms, therapy_ms, rate


def run() -> bool:
    print(f"== Therapy layer overhead ({TURNS} turns each, scripted narrator, SQLite)")
    with tempfile.TemporaryDirectory() as tmp:
        story_ms, therapy_ms, rate = asyncio.run(_measure(Path(tmp)))
    ratio = statistics.median(therapy_ms) / statistics.median(story_ms)
    added = statistics.median(therapy_ms) - statistics.median(story_ms)
    # A turn after a tagged choice catches the projection up (the goal moved).
    after_choice, after_words = therapy_ms[2::2], therapy_ms[1::2]
    print(f"  story turn   : {summary(story_ms)}")
    print(f"  therapy turn : {summary(therapy_ms)}")
    print(f"    after words: {summary(after_words)}")
    print(f"    after pick : {summary(after_choice)}")
    print(f"  catch-up     : {rate:10,.0f} events/s folded ({BACKLOG} turns backlog)")
    print(f"  ratio        : {ratio:.2f}x the story turn")
    ok = added <= 10
    print(f"  added        : {added:.2f} ms per turn (median)  target <= 10 ms -> {verdict(ok)}")
    return ok


if __name__ == "__main__":
    run()
