"""A 1,000-turn story: are the facts of turn 10 still recalled when they matter again?

Each turn records what it brought into the world through the world bible, as a
reviewed extraction would: one entity, now and then a fact or a relation (the
entities read like the same port city, benchmarks/world_meaning.py's distractors).
Turn 10 hides a key at an old mill. At turn 1,000 the player comes back to "that
broken-down mill out by the wetlands", one mill among several; world recall, as the
narrator's context source, must hand on the mill with the fact of turn 10, through
the real write path (events, projections, vectors embedded after each commit) and
the bundled sentence encoder. Also reported: write and embed cost per turn, and
the recall's own time.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.stats import summary, verdict
from benchmarks.world_meaning import distractors
from taleweaver.config import Settings
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.pipeline import RecallQuery
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel
from taleweaver.memory.world import WorldMemory
from taleweaver.memory.world.embedding import local_embedder
from taleweaver.memory.world.vectors import TextEmbedder

TURNS = 1_000
KEY_TURN = 10
META = EventMetadata(actor="bench")
MILL = {
    "type": "location",
    "name": "The Old Mill",
    "status": "canon",
    "summary": "A ruined watermill at the edge of the marsh, its wheel long stopped.",
}
KEY_FACT = {"attribute": "hidden here", "value": "the silver key, under the third stair"}
LATER = [
    ("player", "The chest in the cellar will not open without its key."),
    ("narrator", "Brenna shrugs. 'You had one once, didn't you? Long before the war.'"),
]
NOW = "We ride back to that broken-down mill out by the wetlands."


async def story(memory: WorldMemory, turns: int) -> tuple[str, str, list[float]]:
    """The world after `turns` turns; its id, the mill's id and each turn's write time."""
    bible = memory.bible
    world = (await bible.create_world("local", name="Long story", meta=META))["id"]
    others, relations = distractors(turns)
    rng = random.Random(3)
    made: list[str] = []
    mill = ""
    per_turn: list[float] = []
    for turn in range(1, turns + 1):
        started = time.perf_counter()
        if turn == KEY_TURN:
            mill = (await bible.create_entity("local", world, MILL, META))["id"]
            await bible.add_fact("local", world, mill, KEY_FACT, META)
            made.append(mill)
        else:
            data = others[turn - 1]
            entity = await bible.create_entity("local", world, data, META)
            made.append(entity["id"])
            if turn % 4 == 0:
                await bible.add_fact(
                    "local", world, entity["id"], {"attribute": "mood", "value": "wary"}, META
                )
            if turn % 3 == 0 and len(made) > 1:
                _, kind, _ = relations[turn // 3 % len(relations)]
                target = rng.choice(made[:-1])
                await bible.add_relation(
                    "local", world, entity["id"], {"type": kind, "target_id": target}, META
                )
        per_turn.append((time.perf_counter() - started) * 1000)
    return world, mill, per_turn


async def measure(
    embedder: TextEmbedder, turns: int = TURNS
) -> tuple[bool, list[float], float, str]:
    """Whether turn 10's fact was told at the last turn; write times, recall ms, why."""
    folder = Path(tempfile.mkdtemp())
    settings = Settings(data_dir=folder, model="scripted", scripted_token_delay_ms=0)
    engine = await Engine.open(settings, model=ScriptedModel())
    try:
        memory = WorldMemory(engine.db, engine.repository.store, None, embedder=embedder)
        world, mill, per_turn = await story(memory, turns)
        query = RecallQuery(
            session_id="s",
            workspace_id="local",
            kind="story",
            settings={"world_id": world},
            turn_number=turns,
            player_id=None,
            current_text=NOW,
            recent=LATER,
        )
        started = time.perf_counter()
        pieces = await memory.recall.gather(query)
        took = (time.perf_counter() - started) * 1000
        found = [p for p in pieces if p.ref == f"entity:{mill}"]
        told = found[0].text if found else ""
        return KEY_FACT["value"] in told, per_turn, took, found[0].reason if found else ""
    finally:
        await engine.close()
        shutil.rmtree(folder, ignore_errors=True)


def run() -> bool:
    print(f"World recall over a {TURNS:,}-turn story (turn {KEY_TURN}'s fact, asked for later)")
    embedder = local_embedder()
    surfaced, per_turn, took, reason = asyncio.run(measure(embedder))
    print(f"  embedder: {embedder.name}")
    print(f"  each turn's world writes, vectors embedded after commit: {summary(per_turn)}")
    print(f"  recall at turn {TURNS:,}: {took:.1f} ms; the mill found by: {reason or 'nothing'}")
    print(f"  turn {KEY_TURN}'s fact in the narrator's context: {verdict(surfaced)}")
    return surfaced


if __name__ == "__main__":
    run()
