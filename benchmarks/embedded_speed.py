"""The bundled model's speed through the engine against llama-cpp-python called directly.

Both generate greedily from the same loaded-once model file, with the same
messages (the story prompt the engine builds for a first turn) and the same
token limit, so both sample the same tokens. The engine side is a whole turn:
recall, the router (deadlines, accounting), narration streamed token by token
to the turn's subscribers, and the commit. Tokens per second are counted from
the request to the last token. Target: the engine >= 0.9x the direct rate.

Run on its own: `python -m benchmarks.embedded_speed`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.stats import verdict
from taleweaver.config import Settings
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.prompt import ChatMessage
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.kinds import KINDS
from taleweaver.llm.embedded import bundled_model_path

MAX_TOKENS = 200
ROUNDS = 5
# Greedy, the model answers this at length: the rate is generation, not the prompt.
PLAYER = "Describe everything I see, in great detail."
META = EventMetadata("bench")


def _direct(llama: Any, messages: list[ChatMessage]) -> tuple[int, float]:
    started = time.perf_counter()
    tokens = 0
    for chunk in llama.create_chat_completion(
        messages=[m.to_dict() for m in messages],
        max_tokens=MAX_TOKENS,
        temperature=0.0,
        stream=True,
    ):
        if chunk["choices"][0]["delta"].get("content"):
            tokens += 1
    return tokens, time.perf_counter() - started


async def _through_engine(engine: Engine) -> tuple[int, float, list[ChatMessage]]:
    created = await engine.sessions.create(
        "local",
        kind=SessionKind.STORY,
        title="The Lighthouse",
        settings={"premise": "A keeper finds a stranger's boat on the rocks at dawn."},
        metadata=META,
    )
    state = await engine.repository.open("local", created["id"])
    messages = [
        ChatMessage("system", KINDS[SessionKind.STORY].system_prompt(state)),
        ChatMessage("user", PLAYER),
    ]
    request = TurnRequest.build(action=None, text=PLAYER, choice=None)
    started = time.perf_counter()
    handle = await engine.turns.start("local", created["id"], request, META)
    last = started
    async for event in handle.subscribe():
        if event.name == "token":
            last = time.perf_counter()
    turn = await handle.wait()
    tokens: int = turn["tokens"]
    return tokens, last - started, messages


async def _measure(data_dir: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    from llama_cpp import Llama

    values: dict[str, Any] = {
        "data_dir": data_dir,
        "providers": {"local": {"kind": "embedded"}},
        "models": {"smol": {"provider": "local", "temperature": 0.0}},
        "max_reply_tokens": MAX_TOKENS,
    }
    settings = Settings(**values)
    engine = await Engine.open(settings)
    llama = Llama(model_path=str(bundled_model_path()), n_ctx=2048, verbose=False)
    direct: list[tuple[int, float]] = []
    routed: list[tuple[int, float]] = []
    try:
        _, _, messages = await _through_engine(engine)  # loads the engine's copy
        _direct(llama, messages)
        for i in range(ROUNDS):
            # Alternate which goes first, so that neither always runs on a warmer machine.
            if i % 2 == 0:
                direct.append(_direct(llama, messages))
            tokens, seconds, _ = await _through_engine(engine)
            routed.append((tokens, seconds))
            if i % 2 == 1:
                direct.append(_direct(llama, messages))
    finally:
        await engine.close()
        llama.close()
    return direct, routed


def run() -> bool:
    print(f"== Embedded model speed (bundled SmolLM2-135M, greedy, {MAX_TOKENS} tokens max)")
    with tempfile.TemporaryDirectory() as tmp:
        direct, routed = asyncio.run(_measure(Path(tmp)))
    direct_rate = statistics.median(t / s for t, s in direct)
    engine_rate = statistics.median(t / s for t, s in routed)
    ratio = engine_rate / direct_rate
    print(f"  llama-cpp-python : {direct_rate:7.1f} tokens/s  ({direct[0][0]} tokens a reply)")
    print(f"  engine turn      : {engine_rate:7.1f} tokens/s  ({routed[0][0]} tokens a reply)")
    print(f"  ratio            : {ratio:.3f}x (medians of {ROUNDS})")
    ok = ratio >= 0.9
    print(f"  target           : >= 0.9x -> {verdict(ok)}")
    return ok


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
