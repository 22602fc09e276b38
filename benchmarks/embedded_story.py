"""Does the bundled model tell a readable story? Twenty fixed openings, and a companion.

With nothing configured the narrator is SmolLM2-135M on llama.cpp. Each of the
20 openings is a new story session and its first turn, through the real engine
(recall, router, narrate, safety, commit). For each reply: does it loop (the
domain's loop detector over the recorded text, and whether the narrator had to
cut or retry a looping stream), does it offer 2 to 4 choices, how long until the
first token, how many tokens. Then a companion whose card makes a prompt of about
2,000 tokens: time to the first token of three turns, once its prompt was
prefilled as the greeting is read.

The machine may be shared: the load average is printed with the figures.
Targets: no recorded reply loops, every reply offers 2-4 choices, a companion's
first token within 3 s.

Run on its own: `python -m benchmarks.embedded_story`.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.stats import verdict
from taleweaver.config import Settings
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.repetition import find_loop
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.kinds import story_example

META = EventMetadata("bench")

OPENINGS: list[tuple[str, str]] = [
    ("A keeper finds a stranger's boat on the rocks at dawn.", "I walk down to the rocks."),
    ("A thief wakes in a locked vault with no memory of the heist.", "I search my pockets."),
    ("A courier must cross a desert before the water runs out.", "I check my map."),
    ("A village baker hears voices coming from the oven.", "I open the oven door."),
    ("A detective is called to a mansion where the clocks all stopped.", "I look at the clock."),
    ("A young witch loses her broom in a thunderstorm.", "I follow the lightning."),
    ("A ship's cook finds a stowaway in the flour barrel.", "I ask who she is."),
    ("An astronaut hears knocking on the outside of the station.", "I look out the window."),
    ("A knight's horse refuses to cross an old stone bridge.", "I get off and walk."),
    ("A librarian finds a book that writes itself overnight.", "I read the last page."),
    ("A miner breaks into a cave full of glowing crystals.", "I touch a crystal."),
    ("A girl finds a door in the back of her wardrobe.", "I open the door."),
    ("A soldier comes home to a town where nobody knows him.", "I knock on my old door."),
    ("A painter's portraits start to change their faces.", "I look at the newest one."),
    ("A fisherman pulls up a bottle with a map inside.", "I open the bottle."),
    ("A prince is turned into a crow on his wedding day.", "I fly to the tower."),
    ("A student finds a key taped under her desk.", "I try the key on the locker."),
    ("A guard hears singing from the empty prison cell.", "I walk to the cell."),
    ("A farmer finds giant footprints across the wheat field.", "I follow the footprints."),
    ("A pilot must land a plane in a storm on a tiny island.", "I look for the runway."),
]

_PLACES = ["harbour", "market", "chapel", "mill", "forge", "orchard", "library", "bridge"]
_THINGS = [
    "a brass compass",
    "a jar of honey",
    "a chipped teacup",
    "a silver bell",
    "a folded letter",
    "a wooden flute",
    "a blue scarf",
    "an old lantern",
]
_HABITS = [
    "hums while she works",
    "counts the stairs",
    "keeps her promises",
    "laughs at her own jokes",
    "collects pressed flowers",
    "reads the tide tables",
    "writes in the margins",
    "feeds the stray cats",
]


def _borrowed(premise: str, action: str, reply: Reply) -> bool:
    """Whether the reply took words from the kind's example scene that the story never said."""
    example = story_example(premise)
    words = {w for m in example for w in _words(m.content) if len(w) > 4}
    own = set(_words(f"{premise} {action}"))
    told = set(_words(" ".join([reply.text, *reply.choices])))
    return bool((words - own) & told)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def companion_card() -> dict[str, str]:
    """A character whose description makes a system prompt of about 2,000 tokens."""
    lines = ["Mira is the lighthouse keeper's daughter, thirty years old, patient and wry."]
    for i, place in enumerate(_PLACES):
        for j, thing in enumerate(_THINGS):
            lines.append(
                f"At the {place} Mira once traded {thing} for a story, and she "
                f"{_HABITS[(i * 3 + j) % len(_HABITS)]} whenever she remembers it."
            )
    lines.append("She speaks plainly, asks questions back, and never lectures.")
    return {"name": "Mira", "description": " ".join(lines)}


@dataclass(slots=True)
class Reply:
    first_token_s: float
    total_s: float
    tokens: int
    choices: list[str]
    loops: bool
    cut: bool
    text: str


async def _turn(engine: Engine, session_id: str, text: str) -> Reply:
    request = TurnRequest.build(action=None, text=text, choice=None)
    started = time.perf_counter()
    handle = await engine.turns.start("local", session_id, request, META)
    first: float | None = None
    cut = False
    async for event in handle.subscribe():
        if event.name == "token" and first is None:
            first = time.perf_counter() - started
        elif event.name in ("rewrite", "loop") and "repeat" in str(event.data):
            cut = True
    turn = await handle.wait()
    total = time.perf_counter() - started
    reply = (turn.get("reply") or {}).get("text") or ""
    return Reply(
        first_token_s=first if first is not None else total,
        total_s=total,
        tokens=int(turn.get("tokens") or 0),
        choices=[c["text"] for c in (turn.get("reply") or {}).get("choices") or []],
        loops=find_loop(reply) is not None,
        cut=cut,
        text=reply,
    )


async def _story(engine: Engine, premise: str, action: str) -> Reply:
    created = await engine.sessions.create(
        "local",
        kind=SessionKind.STORY,
        title="Opening",
        settings={"premise": premise},
        metadata=META,
    )
    return await _turn(engine, created["id"], action)


async def _companion(engine: Engine) -> tuple[list[Reply], int]:
    created = await engine.sessions.create(
        "local",
        kind=SessionKind.COMPANION,
        title="Mira",
        settings={"character": companion_card()},
        metadata=META,
    )
    # The card is read ahead while the player reads the greeting (embedded_companion
    # measures a turn that comes before that is done).
    await engine.prefills.settle()
    replies = [
        await _turn(engine, created["id"], text)
        for text in ("Hello Mira, how was the night?", "Did any ships pass?", "Tell me more.")
    ]
    usage = await engine.usage.totals("local", session_id=created["id"])
    return replies, usage.prompt_tokens // len(replies)


async def _measure(data_dir: Path) -> tuple[float, list[Reply], list[Reply], int]:
    started = time.perf_counter()
    engine = await Engine.open(Settings(data_dir=data_dir, model=None, openai_base_url=None))
    try:
        await engine.warm_up()  # as the server does at start-up
        ready_s = time.perf_counter() - started
        stories = [await _story(engine, premise, action) for premise, action in OPENINGS]
        companion, prompt_tokens = await _companion(engine)
    finally:
        await engine.close()
    return ready_s, stories, companion, prompt_tokens


def run() -> bool:
    print("== Bundled model story quality (SmolLM2-135M, nothing configured, 20 openings)")
    with tempfile.TemporaryDirectory() as tmp:
        ready_s, stories, companion, prompt_tokens = asyncio.run(_measure(Path(tmp)))
    loads = os.getloadavg()
    looping = sum(r.loops for r in stories)
    cut = sum(r.cut for r in stories)
    with_choices = sum(2 <= len(r.choices) <= 4 for r in stories)
    firsts = [r.first_token_s for r in stories]
    borrowed = sum(_borrowed(p, a, r) for (p, a), r in zip(OPENINGS, stories, strict=True))
    print(
        f"  load average      : {loads[0]:.2f} {loads[1]:.2f} {loads[2]:.2f} "
        f"on {os.cpu_count()} cores"
    )
    print(f"  engine open       : {ready_s:6.2f} s (with loading the model, as the server starts)")
    print(f"  replies that loop : {looping}/20 (loop cut or retried while streaming: {cut})")
    print(f"  2-4 choices       : {with_choices}/20")
    print(f"  example borrowed  : {borrowed}/20 (words of the prompt's example scene)")
    print(
        f"  first token       : first turn {firsts[0]:.2f} s, median "
        f"{statistics.median(firsts):.2f} s, max {max(firsts):.2f} s"
    )
    print(
        f"  reply length      : median {statistics.median(r.tokens for r in stories):.0f} "
        f"tokens, median {statistics.median(r.total_s for r in stories):.2f} s"
    )
    print(
        f"  companion         : ~{prompt_tokens} prompt tokens, first token "
        + ", ".join(f"{r.first_token_s:.2f} s" for r in companion)
    )
    if os.environ.get("BENCH_SHOW_REPLIES"):
        for (premise, _), reply in zip(OPENINGS, stories, strict=True):
            print(f"\n--- {premise}\n{reply.text}\n" + "".join(f"  * {c}\n" for c in reply.choices))
    ok = looping == 0 and with_choices == 20 and max(r.first_token_s for r in companion) <= 3.0
    print(f"  target            : no loops, 20/20 with choices, companion <= 3 s -> {verdict(ok)}")
    return ok


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
