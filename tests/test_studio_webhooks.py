"""Outgoing webhooks on the studio's content events, over real HTTP both ways: a
loopback receiver that fails twice and then succeeds gets the delivery on the
third attempt, signed with HMAC-SHA256; the delivery log shows every attempt; the
secret is sealed at rest and shown once; blueprint saved, entry canonised and
packet ready each reach the hooks that want them; a receiver that never answers
well is given up on; and every refusal."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from taleweaver.config import Settings
from taleweaver.llm import ScriptedModel
from taleweaver.safety import verify

Serve = Callable[..., httpx.Client]
API = "/api/v1"
FAST = {"job_poll_seconds": 0.05, "job_retry_seconds": 0.05, "job_retry_cap_seconds": 0.2}


class Receiver:
    """A loopback HTTP server that answers 500 to its first `failures` requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                failing = len(receiver.requests) <= receiver.failures
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[[int], Receiver]]:
    made: list[Receiver] = []

    def make(failures: int) -> Receiver:
        made.append(Receiver(failures))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.03)
    raise AssertionError("timed out")


def delivered(client: httpx.Client, hook_id: str, count: int = 1) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        log: list[dict[str, Any]] = client.get(f"{API}/studio/webhooks/{hook_id}/deliveries").json()
        done = [d for d in log if d["status"] != "pending"]
        return log if len(done) >= count else None

    found: list[dict[str, Any]] = wait_for(check)
    return found


def test_a_delivery_survives_a_receiver_that_fails_twice(
    serve: Serve, receivers: Callable[[int], Receiver], settings: Settings
) -> None:
    client = serve(ScriptedModel(), **FAST)
    receiver = receivers(2)
    made = client.post(
        f"{API}/studio/webhooks", json={"url": receiver.url, "events": ["blueprint.saved"]}
    )
    assert made.status_code == 201, made.text
    hook = made.json()
    secret = hook["secret"]
    assert hook["events"] == ["blueprint.saved"] and hook["url"] == receiver.url

    blueprint = client.post(f"{API}/blueprints", json={"name": "The Drowned Crown"}).json()
    [delivery] = delivered(client, hook["id"])
    assert delivery["status"] == "delivered" and delivery["event"] == "blueprint.saved"
    attempts = delivery["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["status_code"] for a in attempts] == [500, 500, 204]
    assert [a["ok"] for a in attempts] == [False, False, True]
    assert attempts[0]["error"] == "HTTP 500"

    # Three requests, the same body each time, each signed with the hook's secret.
    assert len(receiver.requests) == 3
    bodies = {r["body"] for r in receiver.requests}
    assert len(bodies) == 1
    for request in receiver.requests:
        headers = request["headers"]
        assert verify(
            secret,
            headers["X-Taleweaver-Timestamp"],
            request["body"],
            headers["X-Taleweaver-Signature"],
        )
        assert not verify("not the secret", headers["X-Taleweaver-Timestamp"],
                          request["body"], headers["X-Taleweaver-Signature"])  # fmt: skip
        assert headers["X-Taleweaver-Delivery"] == delivery["id"]
        assert headers["X-Taleweaver-Event"] == "blueprint.saved"
    payload = json.loads(receiver.requests[0]["body"])
    assert payload["event"] == "blueprint.saved" and payload["id"] == delivery["id"]
    assert payload["data"] == {
        "blueprint_id": blueprint["id"],
        "version": 1,
        "name": "The Drowned Crown",
        "world_id": None,
    }

    # The secret is shown once, and sealed at rest.
    listed = client.get(f"{API}/studio/webhooks").json()
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    assert "secret" not in client.get(f"{API}/studio/webhooks/{hook['id']}").json()
    with sqlite3.connect(Path(settings.data_dir) / "taleweaver.db") as db:
        stored = [
            row[0]
            for row in db.execute(
                "SELECT payload FROM events WHERE stream_id LIKE 'studio-hooks:%'"
            )
        ]
    assert stored and secret not in "".join(stored)
    assert json.loads(stored[0])["hook"]["secret"].startswith("tw1:")


def test_entry_canonised_and_packet_ready_reach_the_hooks_that_want_them(
    serve: Serve, receivers: Callable[[int], Receiver]
) -> None:
    client = serve(ScriptedModel(["Session one.", "## Encounters\n- A brawl."]), **FAST)
    canon, packets, everything = receivers(0), receivers(0), receivers(0)
    ids = {}
    for name, receiver, events in (
        ("canon", canon, ["entry.canonised"]),
        ("packets", packets, ["packet.ready"]),
        ("all", everything, []),
    ):
        made = client.post(f"{API}/studio/webhooks", json={"url": receiver.url, "events": events})
        assert made.status_code == 201, made.text
        ids[name] = made.json()["id"]
    assert client.get(f"{API}/studio/webhooks/{ids['all']}").json()["events"] == [
        "blueprint.saved",
        "entry.canonised",
        "packet.ready",
    ]

    wid = client.post(f"{API}/worlds", json={"name": "Saltmarsh"}).json()["id"]
    bid = client.post(f"{API}/blueprints", json={"name": "Crown", "world_id": wid}).json()["id"]
    job = client.post(f"{API}/blueprints/{bid}/session-one").json()["id"]
    result = wait_for(lambda: client.get(f"{API}/jobs/{job}").json()["result"])
    accepted = client.post(
        f"{API}/worlds/{wid}/review/{result['artifact_id']}", json={"decision": "accept"}
    )
    assert accepted.status_code == 200, accepted.text
    [canonised] = delivered(client, ids["canon"])
    assert canonised["event"] == "entry.canonised" and canonised["status"] == "delivered"
    body = json.loads(canon.requests[0]["body"])
    assert body["data"]["artifact_id"] == result["artifact_id"]
    assert body["data"]["kind"] == "entry" and len(body["data"]["created"]) == 1

    prep = client.post(f"{API}/blueprints/{bid}/prep").json()["id"]
    [ready] = delivered(client, ids["packets"])
    assert ready["event"] == "packet.ready"
    assert json.loads(packets.requests[0]["body"])["data"]["job_id"] == prep
    # The hook for everything had all three; the others only theirs.
    log = delivered(client, ids["all"], count=3)
    assert sorted(d["event"] for d in log) == ["blueprint.saved", "entry.canonised", "packet.ready"]
    assert len(canon.requests) == 1 and len(packets.requests) == 1


def test_a_receiver_that_never_succeeds_is_given_up_on(
    serve: Serve, receivers: Callable[[int], Receiver]
) -> None:
    client = serve(ScriptedModel(), **FAST)
    failing = receivers(1000)
    hook = client.post(f"{API}/studio/webhooks", json={"url": failing.url}).json()
    closed = receivers(0)
    closed.close()  # nothing listens there any more
    refused = client.post(f"{API}/studio/webhooks", json={"url": closed.url}).json()
    client.post(f"{API}/blueprints", json={"name": "Unlucky"})

    [given_up] = delivered(client, hook["id"])
    assert given_up["status"] == "failed"
    assert len(given_up["attempts"]) == 6 and given_up["attempts"][-1]["final"] is True
    assert all(a["status_code"] == 500 for a in given_up["attempts"])
    [unreachable] = delivered(client, refused["id"])
    assert unreachable["status"] == "failed"
    assert unreachable["attempts"][0]["status_code"] is None
    assert unreachable["attempts"][0]["error"].startswith("ConnectError")


def test_removed_hooks_get_nothing_and_refusals(
    serve: Serve, receivers: Callable[[int], Receiver]
) -> None:
    client = serve(ScriptedModel(), **FAST)
    receiver = receivers(0)
    hook = client.post(f"{API}/studio/webhooks", json={"url": receiver.url}).json()
    removed = client.delete(f"{API}/studio/webhooks/{hook['id']}")
    assert removed.status_code == 204
    client.post(f"{API}/blueprints", json={"name": "Quiet"})
    time.sleep(0.3)
    assert receiver.requests == []
    assert client.get(f"{API}/studio/webhooks").json() == []

    for path in ("", "/deliveries"):
        assert client.get(f"{API}/studio/webhooks/{hook['id']}{path}").status_code == 404
    assert client.delete(f"{API}/studio/webhooks/{hook['id']}").status_code == 404
    for bad in (
        {"url": "javascript:alert(1)"},
        {"url": "ftp://example.test/hook"},
        {"url": "http://"},
        {"url": receiver.url, "events": ["session.started"]},
        {"url": receiver.url, "secret": "mine"},
        {},
    ):
        assert client.post(f"{API}/studio/webhooks", json=bad).status_code == 422, bad
    for _ in range(20):
        assert client.post(f"{API}/studio/webhooks", json={"url": receiver.url}).status_code == 201
    too_many = client.post(f"{API}/studio/webhooks", json={"url": receiver.url})
    assert too_many.status_code == 422 and "at most 20" in too_many.json()["detail"]
