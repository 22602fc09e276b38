"""The studio's long work over real HTTP with the scripted model: session 1 written
from a blueprint through the turn pipeline and queued as a draft world entry; a
session prep packet from a seeded campaign, every item citing its sources, as JSON
and Markdown; the weekly recap; the workspace policy's model allow-list and
redaction; cancel; and every refusal."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from taleweaver.config import Settings
from taleweaver.llm import ScriptedModel

pytestmark = pytest.mark.dialects

Serve = Callable[..., httpx.Client]
API = "/api/v1"
FAST = {"job_poll_seconds": 0.05, "job_retry_seconds": 0.05}

SESSION_ONE = """# Session 1: The Harbour Bell

The bell rings at midnight. [[Captain Mara]] meets the party on the quay.

- Opening: a drowned sailor walks out of the sea.
- Choice: follow the sailor, or warn the Tidewardens."""

PREP = """Here is your prep.

## Open threads
- Who rang the harbour bell, and why does Captain Mara lie about it?
- The drowned sailor's missing ring.

## Encounters
- A brawl with Tidewarden enforcers on the quay.

## Handouts
- A water-stained letter signed by [[Captain Mara]]."""


def wait_job(client: httpx.Client, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"{API}/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.03)
    raise AssertionError(f"job {job_id} did not finish")


def seed_campaign(client: httpx.Client, **blueprint: Any) -> dict[str, str]:
    """A world with a canon NPC (and a fact), a minor NPC, and a blueprint linked to it."""
    wid = client.post(f"{API}/worlds", json={"name": "Saltmarsh"}).json()["id"]
    mara = client.post(
        f"{API}/worlds/{wid}/entities",
        json={
            "type": "npc",
            "name": "Captain Mara",
            "status": "canon",
            "summary": "Harbour master.",
        },
    ).json()["id"]
    fact = client.post(
        f"{API}/worlds/{wid}/entities/{mara}/facts",
        json={"attribute": "true_name", "value": "Maraleth Vey"},
    ).json()["id"]
    other = client.post(
        f"{API}/worlds/{wid}/entities",
        json={"type": "npc", "name": "Old Tobbin", "status": "draft"},
    ).json()["id"]
    fields = {
        "name": "The Drowned Crown",
        "premise": "A crown lies under the harbour, guarded by Captain Mara.",
        "world_id": wid,
    } | blueprint
    made = client.post(f"{API}/blueprints", json=fields)
    assert made.status_code == 201, made.text
    return {
        "world_id": wid,
        "mara": mara,
        "fact": fact,
        "tobbin": other,
        "blueprint": made.json()["id"],
    }


def prompts(model: ScriptedModel) -> str:
    return "\n".join(str(m.content) for call in model.calls for m in call)


def test_session_one_runs_through_the_pipeline_and_waits_in_the_review_queue(
    serve: Serve,
) -> None:
    model = ScriptedModel([SESSION_ONE])
    client = serve(model, **FAST)
    ids = seed_campaign(client)

    started = client.post(f"{API}/blueprints/{ids['blueprint']}/session-one")
    assert started.status_code == 202, started.text
    assert started.json()["kind"] == "studio.session1"
    job = wait_job(client, started.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0
    result = job["result"]
    assert result["blueprint"] == {"blueprint_id": ids["blueprint"], "blueprint_version": 1}

    # The blueprint went in as the studio turn's input; the reply is the turn's.
    assert "A crown lies under the harbour" in prompts(model)
    session = client.get(f"{API}/sessions/{result['session_id']}").json()
    assert session["kind"] == "studio"
    assert session["settings"]["world_id"] == ids["world_id"]

    queue = client.get(f"{API}/worlds/{ids['world_id']}/review").json()
    [draft] = [a for a in queue if a["id"] == result["artifact_id"]]
    assert draft["kind"] == "entry" and draft["status"] == "pending"
    assert draft["payload"]["body"] == SESSION_ONE
    turn_ref = {"session_id": result["session_id"], "turn_id": result["turn_id"]}
    assert {"session_id": draft["session_id"], "turn_id": draft["turn_id"]} == turn_ref
    assert draft["payload"]["source_refs"] == [
        turn_ref,
        {"blueprint_id": ids["blueprint"], "blueprint_version": 1},
    ]

    # Nothing is canon until reviewed; accepting makes the world entry.
    before = client.get(f"{API}/worlds/{ids['world_id']}/entries").json()
    assert [e for e in before if e["title"].startswith("Session 1")] == []
    accepted = client.post(
        f"{API}/worlds/{ids['world_id']}/review/{draft['id']}", json={"decision": "accept"}
    )
    assert accepted.status_code == 200, accepted.text
    [entry] = [
        e
        for e in client.get(f"{API}/worlds/{ids['world_id']}/entries").json()
        if e["title"] == "Session 1: The Drowned Crown"
    ]
    assert entry["body"] == SESSION_ONE and entry["entity_ids"] == [ids["mara"]]
    assert {"blueprint_id": ids["blueprint"], "blueprint_version": 1} in entry["source_refs"]


def test_session_one_refusals(serve: Serve) -> None:
    client = serve(ScriptedModel([SESSION_ONE]), **FAST)
    unlinked = client.post(f"{API}/blueprints", json={"name": "Worldless"}).json()["id"]
    refused = client.post(f"{API}/blueprints/{unlinked}/session-one")
    assert refused.status_code == 422 and "world" in refused.json()["detail"]
    missing = client.post(f"{API}/blueprints/nope/session-one")
    assert missing.status_code == 404
    assert client.post(f"{API}/blueprints/nope/prep").status_code == 404
    assert client.post(f"{API}/blueprints/nope/weekly-recap").status_code == 404
    ids = seed_campaign(client)
    unknown = client.post(
        f"{API}/blueprints/{ids['blueprint']}/prep", json={"session_ids": ["not-a-session"]}
    )
    assert unknown.status_code == 404
    too_many = client.post(
        f"{API}/blueprints/{ids['blueprint']}/prep", json={"session_ids": ["s"] * 11}
    )
    assert too_many.status_code == 422
    # No job was queued by any refusal.
    assert client.get(f"{API}/jobs").json()["total"] == 0


def test_cancelling_session_one_cancels_the_turn_and_queues_nothing(serve: Serve) -> None:
    slow = ScriptedModel([" ".join(["word"] * 400)], token_delay=0.02)
    client = serve(slow, **FAST)
    ids = seed_campaign(client)
    job_id = client.post(f"{API}/blueprints/{ids['blueprint']}/session-one").json()["id"]
    deadline = time.monotonic() + 10
    while client.get(f"{API}/jobs/{job_id}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)  # the turn is streaming
    cancelled = client.post(f"{API}/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    job = wait_job(client, job_id)
    assert job["status"] == "cancelled", job
    assert client.get(f"{API}/worlds/{ids['world_id']}/review").json() == []


def _played_session(client: httpx.Client, world_id: str, title: str, text: str) -> dict[str, Any]:
    sid = client.post(
        f"{API}/sessions",
        json={"kind": "story", "title": title, "settings": {"world_id": world_id}},
    ).json()["id"]
    turn = client.post(f"{API}/sessions/{sid}/turns", json={"text": text})
    assert turn.status_code == 201, turn.text
    return {"session_id": sid, "turn_id": turn.json()["id"], "reply": turn.json()["reply"]["text"]}


def test_a_prep_packet_from_a_seeded_campaign_cites_every_item(serve: Serve) -> None:
    played_reply = "Captain Mara hides the bell rope and the party sees it."
    model = ScriptedModel([played_reply, PREP])
    client = serve(model, **FAST)
    ids = seed_campaign(client)
    played = _played_session(client, ids["world_id"], "Night one", "We watch the quay")

    started = client.post(f"{API}/blueprints/{ids['blueprint']}/prep")
    assert started.status_code == 202, started.text
    job = wait_job(client, started.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["result"]["counts"] == {
        "recap": 1,
        "open_threads": 2,
        "npcs": 2,
        "encounters": 1,
        "handouts": 1,
    }
    packet = client.get(f"{API}/studio/packets/{job['id']}").json()
    blueprint = {"blueprint_id": ids["blueprint"], "blueprint_version": 1}

    # The recap is assembled from the played session (no summary yet: its reply).
    [recap] = packet["recap"]
    assert recap["text"] == played_reply
    assert recap["sources"] == [{"session_id": played["session_id"], "turn_id": played["turn_id"]}]
    # NPCs come from the bible: the one the blueprint names first, with her facts.
    mara, tobbin = packet["npcs"]
    assert mara["entity_id"] == ids["mara"] and tobbin["entity_id"] == ids["tobbin"]
    assert mara["facts"] == [
        {"fact_id": ids["fact"], "attribute": "true_name", "value": "Maraleth Vey"}
    ]
    assert mara["sources"] == [
        {"entity_id": ids["mara"]},
        {"fact_id": ids["fact"], "entity_id": ids["mara"]},
    ]
    # The written parts cite the studio turn, the blueprint's version and whom they name.
    turn_ref = packet["generated_by"]
    first_thread = packet["open_threads"][0]
    assert first_thread["text"].startswith("Who rang the harbour bell")
    assert first_thread["sources"] == [turn_ref, blueprint, {"entity_id": ids["mara"]}]
    assert packet["encounters"][0]["sources"] == [turn_ref, blueprint]
    assert packet["handouts"][0]["sources"][-1] == {"entity_id": ids["mara"]}
    for section in ("recap", "open_threads", "npcs", "encounters", "handouts"):
        assert all(item["sources"] for item in packet[section]), section
    # The studio was asked with the recap and the NPCs in its prompt.
    assert played_reply in prompts(model)

    markdown = client.get(f"{API}/studio/packets/{job['id']}", params={"format": "markdown"})
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/markdown")
    text = markdown.text
    assert "## Open threads" in text and "## NPCs likely to appear" in text
    assert f"blueprint {ids['blueprint']} v1" in text
    assert f"fact {ids['fact']}" in text
    assert f"turn {played['turn_id']}" in text


def test_prep_with_named_sessions_and_the_weekly_recap(serve: Serve) -> None:
    client = serve(ScriptedModel(["The first night ends.", "The second night ends.", PREP]), **FAST)
    ids = seed_campaign(client)
    one = _played_session(client, ids["world_id"], "Night one", "Begin")
    two = _played_session(client, ids["world_id"], "Night two", "Again")
    named = client.post(
        f"{API}/blueprints/{ids['blueprint']}/prep", json={"session_ids": [one["session_id"]]}
    )
    job = wait_job(client, named.json()["id"])
    assert job["status"] == "succeeded", job
    packet = client.get(f"{API}/studio/packets/{job['id']}").json()
    assert [r["session_id"] for r in packet["recap"]] == [one["session_id"]]

    weekly = client.post(f"{API}/blueprints/{ids['blueprint']}/weekly-recap")
    assert weekly.status_code == 202, weekly.text
    done = wait_job(client, weekly.json()["id"])
    assert done["status"] == "succeeded", done
    recap = client.get(f"{API}/studio/packets/{done['id']}").json()
    assert recap["kind"] == "weekly-recap"
    assert [s["session_id"] for s in recap["sessions"]] == [one["session_id"], two["session_id"]]
    assert recap["sessions"][1]["recap"][0]["sources"] == [
        {"session_id": two["session_id"], "turn_id": two["turn_id"]}
    ]
    md = client.get(f"{API}/studio/packets/{done['id']}", params={"format": "markdown"}).text
    assert md.startswith("# Weekly recap: The Drowned Crown") and "## Night two" in md


def test_packet_reads_refuse_what_is_no_packet(serve: Serve) -> None:
    client = serve(ScriptedModel(), **FAST)
    assert client.get(f"{API}/studio/packets/nope").status_code == 404
    ids = seed_campaign(client)
    session_one = client.post(f"{API}/blueprints/{ids['blueprint']}/session-one").json()["id"]
    wait_job(client, session_one)
    assert client.get(f"{API}/studio/packets/{session_one}").status_code == 404
    bad = client.get(f"{API}/studio/packets/{session_one}", params={"format": "pdf"})
    assert bad.status_code == 422


def test_policy_limits_models_and_redacts_named_fields(serve: Serve) -> None:
    model = ScriptedModel([SESSION_ONE, SESSION_ONE])
    client = serve(model, **FAST)
    ids = seed_campaign(client, signature_faction="The Tidewardens")
    assert client.get(f"{API}/studio/policy").json() == {
        "providers": [],
        "models": [],
        "redact_fields": [],
    }
    # Only a provider the narrator is not on: refused before anything is queued.
    policy = client.put(f"{API}/studio/policy", json={"providers": ["anthropic"]})
    assert policy.status_code == 200, policy.text
    refused = client.post(f"{API}/blueprints/{ids['blueprint']}/session-one")
    assert refused.status_code == 403 and "anthropic" not in refused.json()["detail"]
    assert "does not allow provider" in refused.json()["detail"]
    assert client.post(f"{API}/blueprints/{ids['blueprint']}/prep").status_code == 403
    models = client.put(f"{API}/studio/policy", json={"models": ["gpt-5"]})
    assert models.status_code == 200
    assert client.post(f"{API}/blueprints/{ids['blueprint']}/session-one").status_code == 403
    assert client.get(f"{API}/jobs").json()["total"] == 0
    # A studio session is not started either; other kinds are not the studio's.
    studio = client.post(f"{API}/sessions", json={"kind": "studio", "title": "Brainstorm"})
    assert studio.status_code == 403, studio.text
    story = client.post(f"{API}/sessions", json={"kind": "story", "title": "Play"})
    assert story.status_code == 201, story.text

    # Allowed, with the faction and Mara's true name redacted from every prompt.
    allowed = client.put(
        f"{API}/studio/policy",
        json={"models": ["scripted"], "redact_fields": ["signature_faction", "true_name"]},
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["redact_fields"] == ["signature_faction", "true_name"]
    job = wait_job(
        client, client.post(f"{API}/blueprints/{ids['blueprint']}/session-one").json()["id"]
    )
    assert job["status"] == "succeeded", job
    assert job["result"]["redacted"] == 2
    sent = prompts(model)
    assert "Tidewardens" not in sent and "Maraleth" not in sent
    assert "[redacted]" in sent and "A crown lies under the harbour" in sent
    # Redacting, the studio session is not linked to the world (recall would send canon).
    session = client.get(f"{API}/sessions/{job['result']['session_id']}").json()
    assert "world_id" not in session["settings"]

    for bad in (
        {"providers": ["bad name!"]},
        {"models": "scripted"},
        {"redact": ["premise"]},
        {"models": ["x"] * 101},
    ):
        assert client.put(f"{API}/studio/policy", json=bad).status_code == 422, bad


def test_a_sensitive_workspaces_packet_is_sealed_at_rest(serve: Serve, settings: Settings) -> None:
    played_reply = "Captain Mara burns the quillfeather ledger."
    base = serve(ScriptedModel([played_reply, PREP]), **FAST)
    created = base.post(f"{API}/workspaces", json={"name": "Private", "sensitive": True})
    assert created.status_code == 201, created.text
    ws = created.json()["id"]
    with httpx.Client(base_url=base.base_url, headers={"X-Workspace": ws}, timeout=30) as client:
        ids = seed_campaign(client)
        _played_session(client, ids["world_id"], "Night one", "Begin")
        job = wait_job(
            client, client.post(f"{API}/blueprints/{ids['blueprint']}/prep").json()["id"]
        )
        assert job["status"] == "succeeded", job
        # Read back opened, as JSON and Markdown ...
        packet = client.get(f"{API}/studio/packets/{job['id']}").json()
        assert packet["recap"][0]["text"] == played_reply
        md = client.get(f"{API}/studio/packets/{job['id']}", params={"format": "markdown"}).text
        assert played_reply in md
    # ... while the job's record holds it sealed, and its result only counts.
    with sqlite3.connect(Path(settings.data_dir) / "taleweaver.db") as db:
        artifact, result = db.execute(
            "SELECT artifact, CAST(result AS TEXT) FROM jobs WHERE id = ?", (job["id"],)
        ).fetchone()
    assert b"quillfeather" not in artifact and "quillfeather" not in result


def test_a_studio_turn_that_fails_fails_the_job_and_queues_nothing(serve: Serve) -> None:
    client = serve(ScriptedModel([SESSION_ONE], fail_after=0), **FAST, job_max_attempts=2)
    ids = seed_campaign(client)
    job = wait_job(
        client, client.post(f"{API}/blueprints/{ids['blueprint']}/session-one").json()["id"]
    )
    assert job["status"] == "failed", job
    assert job["attempts"] == 2 and "scripted failure" in job["error"], job
    assert client.get(f"{API}/worlds/{ids['world_id']}/review").json() == []


def test_the_weekly_recap_leaves_out_sessions_older_than_seven_days(
    serve: Serve, settings: Settings
) -> None:
    client = serve(ScriptedModel(["Long ago.", "This week."]), **FAST)
    ids = seed_campaign(client)
    old = _played_session(client, ids["world_id"], "Last month", "Begin")
    new = _played_session(client, ids["world_id"], "Tuesday", "Again")
    with sqlite3.connect(Path(settings.data_dir) / "taleweaver.db") as db:
        (stamp,) = db.execute(
            "SELECT updated_at FROM sessions WHERE id = ?", (old["session_id"],)
        ).fetchone()
        db.execute(
            "UPDATE sessions SET updated_at = ? WHERE id = ?",
            (stamp.replace(stamp[:4], str(int(stamp[:4]) - 1), 1), old["session_id"]),
        )
    job = wait_job(
        client, client.post(f"{API}/blueprints/{ids['blueprint']}/weekly-recap").json()["id"]
    )
    assert job["status"] == "succeeded", job
    recap = client.get(f"{API}/studio/packets/{job['id']}").json()
    assert [s["session_id"] for s in recap["sessions"]] == [new["session_id"]]
    md = client.get(f"{API}/studio/packets/{job['id']}", params={"format": "markdown"}).text
    assert "## Tuesday" in md and "Last month" not in md
