"""Router overhead: 2,000 tokens streamed through the model router against a bare
`httpx` stream of the same fake, in the same run.

The fake is an OpenAI-compatible server in a process of its own (so that client
and server never share a GIL) that streams 2,000 `chat.completion.chunk` events
as fast as it can. The bare client reads them with httpx and httpx-sse and
decodes each chunk, the least any client does; the router path is everything a
narration call does: deadlines, breaker, retry bookkeeping, the adapter's
parsing, and the usage row written to SQLite at the end. The two are measured
alternately, one warm connection each. Targets: total time <= 1.1x the bare
time, and <= 2 ms added to the time to the first token (medians).

Run on its own: `python -m benchmarks.router_overhead`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import EventSource

from benchmarks.stats import verdict
from taleweaver.domain.prompt import ChatMessage
from taleweaver.llm import CallScope, ModelCatalog, ModelRouter, UsageLedger, build_router
from taleweaver.store import migrate
from taleweaver.store.database import Database, sqlite_url

TOKENS = 2000
WARMUP = 5
ROUNDS = 40
MESSAGES = [ChatMessage("system", "You narrate."), ChatMessage("user", "Tell me everything.")]


def fake_app() -> Callable[..., Any]:
    """An OpenAI-compatible chat endpoint that streams TOKENS chunks, pre-encoded."""

    def event(document: object) -> bytes:
        return f"data: {json.dumps(document)}\n\n".encode()

    chunks = [event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})]
    chunks += [
        event(
            {
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": f"w{i} "}}],
            }
        )
        for i in range(TOKENS)
    ]
    chunks.append(event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    chunks.append(
        event({"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": TOKENS}})
    )
    chunks.append(b"data: [DONE]\n\n")
    headers = [(b"content-type", b"text/event-stream")]

    async def app(
        scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if scope["path"].endswith("/models"):
            await send({"type": "http.response.start", "status": 200, "headers": headers[:0]})
            await send({"type": "http.response.body", "body": b'{"data": []}'})
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


def _serve(port: int) -> None:
    import uvicorn

    uvicorn.run(
        fake_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _bare(client: httpx.AsyncClient) -> tuple[float, float, int]:
    """Time to the first token and in all, and tokens, for a plain httpx + SSE read."""
    started = time.perf_counter()
    first = 0.0
    count = 0
    body = {"model": "fake", "messages": [m.to_dict() for m in MESSAGES], "stream": True}
    async with client.stream("POST", "chat/completions", json=body) as response:
        async for sse in EventSource(response).aiter_sse():
            if sse.data == "[DONE]":
                break
            choices = json.loads(sse.data)["choices"]
            if choices and choices[0]["delta"].get("content"):
                if not count:
                    first = time.perf_counter()
                count += 1
    return first - started, time.perf_counter() - started, count


async def _routed(router: ModelRouter, scope: CallScope) -> tuple[float, float, int]:
    started = time.perf_counter()
    first = 0.0
    count = 0
    async for _ in router.bind("narrate", scope).stream(MESSAGES, max_tokens=TOKENS * 2):
        if not count:
            first = time.perf_counter()
        count += 1
    return first - started, time.perf_counter() - started, count


async def _measure(base_url: str, data_dir: Path) -> dict[str, list[tuple[float, float, int]]]:
    db = Database(sqlite_url(data_dir))
    await migrate.upgrade(db.engine)
    catalog = ModelCatalog.model_validate(
        {
            "providers": {"fake": {"kind": "openai", "base_url": base_url}},
            "models": {
                "fake": {"provider": "fake", "model": "fake", "price": {"input": 1, "output": 2}}
            },
        }
    )
    router = build_router(catalog, ledger=UsageLedger(db))
    scope = CallScope(workspace_id="local", session_id="bench")
    results: dict[str, list[tuple[float, float, int]]] = {"bare": [], "router": []}
    try:
        async with httpx.AsyncClient(base_url=base_url + "/", timeout=30) as client:
            for _ in range(WARMUP):
                await _bare(client)
                await _routed(router, scope)
            for i in range(ROUNDS):
                # Alternate which goes first, so that neither always runs on a warmer machine.
                order = ("bare", "router") if i % 2 == 0 else ("router", "bare")
                for name in order:
                    sample = await (_bare(client) if name == "bare" else _routed(router, scope))
                    results[name].append(sample)
                    # The usage row is written after a reply, off its path: let it
                    # land here, outside both timings.
                    await router.ledger.flush() if router.ledger is not None else None
    finally:
        await router.aclose()
        await db.dispose()
    return results


def run() -> bool:
    print(f"== Router overhead ({TOKENS} tokens from a loopback OpenAI-compatible fake)")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.router_overhead", "serve", str(port)],
        env=os.environ.copy(),
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            try:
                if httpx.get(base_url + "/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        with tempfile.TemporaryDirectory() as tmp:
            results = asyncio.run(_measure(base_url, Path(tmp)))
    finally:
        proc.terminate()
        proc.wait()
    for name, samples in results.items():
        counts = {count for _, _, count in samples}
        assert counts == {TOKENS}, f"{name} streamed {counts} tokens, not {TOKENS}"
    bare_ttft = statistics.median(s[0] for s in results["bare"]) * 1000
    router_ttft = statistics.median(s[0] for s in results["router"]) * 1000
    bare_total = statistics.median(s[1] for s in results["bare"]) * 1000
    router_total = statistics.median(s[1] for s in results["router"]) * 1000
    # Each round's router run against its neighbouring bare run: drift in the
    # machine's speed over the run cancels out of the ratio.
    ratio = statistics.median(
        r[1] / b[1] for r, b in zip(results["router"], results["bare"], strict=True)
    )
    added = router_ttft - bare_ttft
    print(f"  medians of {ROUNDS} alternating runs")
    print(f"  bare httpx : first token {bare_ttft:6.2f} ms   all {TOKENS} {bare_total:7.2f} ms")
    print(f"  router     : first token {router_ttft:6.2f} ms   all {TOKENS} {router_total:7.2f} ms")
    print(f"  overhead   : {ratio:.3f}x total (paired median), {added:+.2f} ms to the first token")
    ok = ratio <= 1.1 and added <= 2.0
    print(f"  target     : <= 1.1x and <= 2 ms -> {verdict(ok)}")
    return ok


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        _serve(int(sys.argv[2]))
    else:
        sys.exit(0 if run() else 1)
