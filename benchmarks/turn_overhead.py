"""Engine overhead per turn over HTTP, on a session with 1,000 prior turns.

The scripted model answers with zero latency, so what is measured is the engine:
validation, opening the session, recall, the pipeline, the commit and the
response. The baseline is a bare FastAPI endpoint returning the same bytes,
driven by the same client in the same run. Targets: p95 <= 15 ms, ratio <= 4x, and
the engine with metrics and traces on (exported to a local OTLP sink) within 5 % of
it with both off.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from benchmarks.stats import percentile, summary, verdict
from taleweaver.config import Settings
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.sessions import SessionKind
from taleweaver.domain.turns import TurnRequest
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel

PRIOR_TURNS = 1000
WARMUP = 30
SAMPLES = 200  # per server run; the engine runs four times


async def _prepare(data_dir: Path) -> str:
    engine = await Engine.open(Settings(data_dir=data_dir), model=ScriptedModel())
    meta = EventMetadata("bench")
    session = await engine.sessions.create(
        "local", kind=SessionKind.STORY, title="Bench", metadata=meta
    )
    for i in range(PRIOR_TURNS):
        request = TurnRequest.build(action=None, text=f"I walk on, step {i}", choice=None)
        await (await engine.turns.start("local", session["id"], request, meta)).wait()
    # Played at a person's pace, a session's summaries are written as it goes; here
    # the turns come back to back, so let the last summaries land before measuring.
    await engine.summaries.settle()
    await engine.close()
    session_id: str = session["id"]
    return session_id


class _TraceSink:
    """An OTLP/HTTP collector that takes every export and keeps only its size."""

    def __init__(self) -> None:
        sink = self
        self.received = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                sink.received += len(self.rfile.read(length))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.servers", args[0], str(port), *args[1:]], env=env
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(base + "/docs", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{args[0]} server did not start")


def _drive(client: httpx.Client, url: str) -> tuple[list[float], bytes]:
    body = b""
    samples: list[float] = []
    for i in range(WARMUP + SAMPLES):
        started = time.perf_counter()
        response = client.post(url, json={"text": f"I look around, {i}"})
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 201:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
        body = response.content
        if i >= WARMUP:
            samples.append(elapsed)
    return samples, body


def _measure(args: list[str], env: dict[str, str], url: str) -> tuple[list[float], bytes]:
    """Start a server, drive it, stop it: its samples and its last answer."""
    proc, base = _start(args, env)
    try:
        with httpx.Client(base_url=base) as client:
            return _drive(client, url)
    finally:
        proc.terminate()
        proc.wait()


def run() -> bool:
    print(f"== Turn overhead over HTTP (session with {PRIOR_TURNS} prior turns, scripted model)")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        session_id = asyncio.run(_prepare(data_dir))
        env = os.environ | {
            "TALEWEAVER_DATA_DIR": str(data_dir),
            "TALEWEAVER_MODEL": "scripted",
            "TALEWEAVER_SCRIPTED_TOKEN_DELAY_MS": "0",
            "TALEWEAVER_LOG_LEVEL": "WARNING",
        }
        url = f"/api/v1/sessions/{session_id}/turns"
        sink = _TraceSink()
        # Metrics and traces on, as an operator runs it (spans to a local collector),
        # against both off. Each run adds turns to the session, and the machine's load
        # drifts: the two alternate in ABBA order so neither gets the easier half.
        observed = env | {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url}
        quiet = env | {"TALEWEAVER_METRICS": "false"}
        engine_ms: list[float] = []
        quiet_ms: list[float] = []
        for first, second in ((observed, quiet), (quiet, observed)):
            for variant in (first, second):
                samples, body = _measure(["engine"], variant, url)
                (engine_ms if variant is observed else quiet_ms).extend(samples)
        spans_kb = sink.received / 1024
        sink.close()
        body_file = data_dir / "body.json"
        body_file.write_bytes(body)
        bare_ms, _ = _measure(["bare", str(body_file)], env, url)
    p95 = percentile(engine_ms, 95)
    ratio50 = percentile(engine_ms, 50) / percentile(bare_ms, 50)
    ratio95 = p95 / percentile(bare_ms, 95)
    print(f"  engine : {summary(engine_ms)}")
    print(f"  bare   : {summary(bare_ms)}")
    print(f"  ratio  : p50 {ratio50:.2f}x  p95 {ratio95:.2f}x")
    # Metrics on (the default) against off, same session and client: what they cost.
    metrics_cost = percentile(engine_ms, 50) / percentile(quiet_ms, 50)
    print(f"  quiet  : {summary(quiet_ms)}  (metrics and traces off)")
    print(f"  observed/quiet at p50 {metrics_cost:.3f}x  ({spans_kb:.0f} KiB of spans exported)")
    turn_ok, observed_ok = p95 <= 15 and ratio95 <= 4, metrics_cost <= 1.05
    print(f"  target : p95 <= 15 ms and ratio <= 4x -> {verdict(turn_ok)}")
    print(f"  target : observed/quiet <= 1.05x (metrics, traces) -> {verdict(observed_ok)}")
    ok = turn_ok and observed_ok
    return ok
