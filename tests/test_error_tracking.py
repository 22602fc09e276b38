"""Unexpected errors reach a Sentry-compatible server (a real HTTP sink on loopback,
speaking the envelope protocol) without anything the player wrote."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import sentry_sdk
from pydantic import SecretStr

from taleweaver.llm import ScriptedModel
from taleweaver.observability.errors import REDACTED, redact_breadcrumb, redact_event
from tests.test_api import create_session

Serve = Callable[..., httpx.Client]
PLAYER_WORDS = "my sister's name is Orla-Quince"


class Sink:
    """Envelopes as the server received them, decompressed."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "br":
                    import brotli  # type: ignore[import-not-found,unused-ignore]

                    body = brotli.decompress(body)
                sink.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dsn = f"http://public@127.0.0.1:{self.server.server_address[1]}/1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, needle: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sentry_sdk.flush(timeout=1)
            joined = b"\n".join(self.bodies)
            if needle in joined:
                return joined
            time.sleep(0.05)
        raise AssertionError(f"no event with {needle!r} arrived")


@pytest.fixture
def sink() -> Iterator[Sink]:
    found = Sink()
    yield found
    # Close the client (its sender thread too) while the sink still answers: left
    # running, it retried into the closed port and logged warnings in later tests.
    sentry_sdk.get_client().close(timeout=2)
    sentry_sdk.init()  # no DSN: the client is off again for the rest of the process
    found.server.shutdown()
    found.server.server_close()


def test_a_crashed_turn_is_reported_without_the_players_words(serve: Serve, sink: Sink) -> None:
    def broken(messages: Any) -> str:
        raise RuntimeError(f"cannot handle {messages[-1].content}")

    client = serve(model=ScriptedModel(broken), sentry_dsn=SecretStr(sink.dsn))
    session = create_session(client)["id"]
    response = client.post(
        f"/api/v1/sessions/{session}/turns",
        json={"text": PLAYER_WORDS},
        headers={"X-Player-Note": "tw_secret_key_material"},  # a header not kept
    )
    assert response.status_code == 500
    assert PLAYER_WORDS not in response.text
    sent = sink.wait_for(b"RuntimeError")
    assert b"Orla-Quince" not in sent and b"tw_secret_key_material" not in sent
    assert b"failed on an unexpected error" in sent  # the log line's template stays


def test_redaction_drops_bodies_credentials_values_and_locals() -> None:
    event: dict[str, Any] = {
        "exception": {
            "values": [
                {
                    "type": "ValueError",
                    "value": "bad text: I feel hopeless",
                    "stacktrace": {"frames": [{"function": "f", "vars": {"text": "hopeless"}}]},
                }
            ]
        },
        "logentry": {"message": "turn %s failed", "params": ["t1"], "formatted": "turn t1"},
        "request": {
            "url": "http://x/api/v1/sessions/s/turns",
            "data": {"text": "I feel hopeless"},
            "query_string": "q=hopeless",
            "cookies": {"session": "c"},
            "headers": {"Authorization": "Bearer k", "Cookie": "c", "User-Agent": "ua"},
        },
        "user": {"id": "u1", "email": "a@b"},
        "extra": {"correlation_id": "c1", "text": "hopeless", "user_id": "u1"},
    }
    out = redact_event(event, None)
    assert out["exception"]["values"][0]["value"] == REDACTED
    assert "vars" not in out["exception"]["values"][0]["stacktrace"]["frames"][0]
    assert out["logentry"] == {"message": "turn %s failed"}
    assert set(out["request"]) == {"url", "headers"}
    assert out["request"]["headers"] == {"User-Agent": "ua"}
    assert "user" not in out and out["extra"] == {"correlation_id": "c1"}
    assert "hopeless" not in repr(out)
    crumb = redact_breadcrumb({"category": "taleweaver", "message": "said: hopeless"}, None)
    assert crumb["message"] == REDACTED
