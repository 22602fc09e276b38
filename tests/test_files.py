"""File-editor sessions over real HTTP: a text file in the workspace's folder, edited
by the user and by the assistant's proposals (accepted or rejected), every change an
event; versions, diffs between any two, revert to an earlier one; paths that leave
the folder, links, NUL and oversize text refused. The service's writes also run on
PostgreSQL."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from taleweaver.auth import LOCAL_USER_ID
from taleweaver.config import Settings
from taleweaver.domain.errors import Conflict, InvalidInput
from taleweaver.domain.events import EventMetadata
from taleweaver.domain.files import apply_diff, file_stream, unified_diff
from taleweaver.engine import Engine
from taleweaver.llm import ScriptedModel

Serve = Callable[..., httpx.Client]
API = "/api/v1"
META = EventMetadata(actor="tester")
FIRST = "The lighthouse keeper\nwatches the sea.\nNobody comes.\n"


def _folder(settings: Settings) -> Path:
    return settings.data_dir / "workspaces" / "local" / "files"


def _create(client: httpx.Client, path: str = "notes/keeper.md", text: str | None = FIRST) -> Any:
    body: dict[str, Any] = {"path": path} if text is None else {"path": path, "text": text}
    response = client.post(f"{API}/files", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _edit(client: httpx.Client, file_id: str, text: str, **extra: Any) -> httpx.Response:
    return client.put(f"{API}/files/{file_id}", json={"text": text, **extra})


def _diff(before: str, after: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), "a", "b"))


def test_a_file_is_created_in_the_workspaces_folder_and_edited(
    serve: Serve, settings: Settings
) -> None:
    client = serve()
    made = _create(client)
    assert (made["path"], made["revision"], made["text"], made["on_disk"]) == (
        "notes/keeper.md",
        1,
        FIRST,
        "same",
    )
    on_disk = _folder(settings) / "notes" / "keeper.md"
    assert on_disk.read_text() == FIRST
    edited = _edit(client, made["id"], FIRST + "Until tonight.\n")
    assert edited.status_code == 200, edited.text
    assert edited.json()["revision"] == 2
    assert on_disk.read_text() == FIRST + "Until tonight.\n"
    # The same text again makes no revision.
    assert _edit(client, made["id"], FIRST + "Until tonight.\n").json()["revision"] == 2
    listed = client.get(f"{API}/files").json()
    assert [(f["id"], f["path"], f["revision"]) for f in listed] == [
        (made["id"], "notes/keeper.md", 2)
    ]
    assert "text" not in listed[0]


def test_a_stale_edit_is_refused_and_changes_nothing(serve: Serve, settings: Settings) -> None:
    client = serve()
    made = _create(client)
    assert _edit(client, made["id"], "mine\n", expected_revision=1).status_code == 200
    stale = _edit(client, made["id"], "theirs\n", expected_revision=1)
    assert stale.status_code == 409
    assert client.get(f"{API}/files/{made['id']}").json()["text"] == "mine\n"
    assert (_folder(settings) / "notes" / "keeper.md").read_text() == "mine\n"


def test_versions_diffs_and_a_revert_to_an_earlier_version(
    serve: Serve, settings: Settings
) -> None:
    client = serve()
    made = _create(client)
    second = FIRST.replace("Nobody comes.", "A ship comes.")
    third = second + "It does not stop.\n"
    _edit(client, made["id"], second)
    _edit(client, made["id"], third)
    versions = client.get(f"{API}/files/{made['id']}/versions").json()
    assert [(v["revision"], v["how"]) for v in versions] == [
        (1, "created"),
        (2, "user"),
        (3, "user"),
    ]
    assert client.get(f"{API}/files/{made['id']}/versions/2").json()["text"] == second
    diff = client.get(f"{API}/files/{made['id']}/diff", params={"from": 1, "to": 3}).json()
    assert "-Nobody comes.\n" in diff["diff"] and "+It does not stop.\n" in diff["diff"]
    assert apply_diff(FIRST, diff["diff"]) == third
    backwards = client.get(f"{API}/files/{made['id']}/diff", params={"from": 3, "to": 1}).json()
    assert apply_diff(third, backwards["diff"]) == FIRST
    reverted = client.post(f"{API}/files/{made['id']}/revert", json={"revision": 1})
    assert reverted.status_code == 200, reverted.text
    assert (reverted.json()["revision"], reverted.json()["text"]) == (4, FIRST)
    assert (_folder(settings) / "notes" / "keeper.md").read_text() == FIRST
    last = client.get(f"{API}/files/{made['id']}/versions").json()[-1]
    assert (last["revision"], last["how"], last["reverted_to"]) == (4, "revert", 1)
    # Nothing is lost: revision 3 is still there to go back to.
    assert client.get(f"{API}/files/{made['id']}/versions/3").json()["text"] == third


def test_unknown_files_revisions_and_proposals_are_not_found(serve: Serve) -> None:
    client = serve()
    made = _create(client)
    assert client.get(f"{API}/files/nope").status_code == 404
    assert _edit(client, "nope", "x").status_code == 404
    assert client.get(f"{API}/files/{made['id']}/versions/9").status_code == 404
    assert (
        client.get(f"{API}/files/{made['id']}/diff", params={"from": 1, "to": 9}).status_code == 404
    )
    assert client.post(f"{API}/files/{made['id']}/revert", json={"revision": 9}).status_code == 404
    assert client.post(f"{API}/files/{made['id']}/revert", json={"revision": 0}).status_code == 422
    accept = client.post(f"{API}/files/{made['id']}/proposals/nope/accept")
    assert accept.status_code == 404
    reject = client.post(f"{API}/files/{made['id']}/proposals/nope/reject", json={})
    assert reject.status_code == 404
    assert client.get(f"{API}/files/nope/proposals").status_code == 404


# --- the assistant's proposals ---------------------------------------------------------


def _propose(client: httpx.Client, file_id: str, **body: Any) -> httpx.Response:
    return client.post(f"{API}/files/{file_id}/proposals", json=body)


def test_an_accepted_proposal_becomes_the_next_revision(serve: Serve, settings: Settings) -> None:
    client = serve()
    made = _create(client)
    wanted = FIRST.replace("Nobody comes.", "Somebody comes.")
    proposed = _propose(client, made["id"], diff=_diff(FIRST, wanted), note="More hope.")
    assert proposed.status_code == 201, proposed.text
    proposal = proposed.json()
    assert (proposal["status"], proposal["base_revision"], proposal["author"]) == (
        "open",
        1,
        "assistant",
    )
    # Proposed, not applied: the file waits for the user.
    assert client.get(f"{API}/files/{made['id']}").json()["text"] == FIRST
    listed = client.get(f"{API}/files/{made['id']}/proposals", params={"status": "open"}).json()
    assert [p["id"] for p in listed] == [proposal["id"]]
    accepted = client.post(f"{API}/files/{made['id']}/proposals/{proposal['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["status"], accepted.json()["result_revision"]) == ("accepted", 2)
    current = client.get(f"{API}/files/{made['id']}").json()
    assert (current["revision"], current["text"]) == (2, wanted)
    assert (_folder(settings) / "notes" / "keeper.md").read_text() == wanted
    last = client.get(f"{API}/files/{made['id']}/versions").json()[-1]
    assert (last["how"], last["proposal_id"]) == ("proposal", proposal["id"])
    again = client.post(f"{API}/files/{made['id']}/proposals/{proposal['id']}/accept")
    assert again.status_code == 409
    assert client.get(f"{API}/files/{made['id']}").json()["revision"] == 2


def test_a_proposal_made_of_the_whole_text_is_a_diff_and_can_be_rejected(serve: Serve) -> None:
    client = serve()
    made = _create(client)
    proposed = _propose(client, made["id"], text=FIRST + "The end.\n", author="narrator")
    assert proposed.status_code == 201, proposed.text
    proposal = proposed.json()
    assert "+The end.\n" in proposal["diff"] and proposal["author"] == "narrator"
    rejected = client.post(
        f"{API}/files/{made['id']}/proposals/{proposal['id']}/reject", json={"reason": "Too soon."}
    )
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["reason"]) == ("rejected", "Too soon.")
    assert client.get(f"{API}/files/{made['id']}").json()["text"] == FIRST
    for decision, body in (("accept", None), ("reject", {})):
        late = client.post(
            f"{API}/files/{made['id']}/proposals/{proposal['id']}/{decision}", json=body
        )
        assert late.status_code == 409
    assert [v["revision"] for v in client.get(f"{API}/files/{made['id']}/versions").json()] == [1]


def test_a_proposal_still_applies_after_an_edit_elsewhere_in_the_file(serve: Serve) -> None:
    client = serve()
    text = "".join(f"line {n}\n" for n in range(1, 21))
    made = _create(client, "long.txt", text)
    near_end = text.replace("line 18\n", "line eighteen\n")
    proposal = _propose(client, made["id"], diff=_diff(text, near_end)).json()
    _edit(client, made["id"], "header\n" + text.replace("line 2\n", "line two\n"))
    accepted = client.post(f"{API}/files/{made['id']}/proposals/{proposal['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    final = client.get(f"{API}/files/{made['id']}").json()["text"]
    assert final.startswith("header\nline 1\nline two\n") and "line eighteen\n" in final


def test_a_proposal_that_no_longer_applies_is_refused_on_accepting(serve: Serve) -> None:
    client = serve()
    made = _create(client)
    proposal = _propose(
        client, made["id"], diff=_diff(FIRST, FIRST.replace("Nobody", "Everybody"))
    ).json()
    _edit(client, made["id"], "Something else entirely.\n")
    refused = client.post(f"{API}/files/{made['id']}/proposals/{proposal['id']}/accept")
    assert refused.status_code == 409
    assert client.get(f"{API}/files/{made['id']}").json()["text"] == "Something else entirely.\n"
    still = client.get(f"{API}/files/{made['id']}/proposals").json()[0]
    assert still["status"] == "open"


def test_proposals_that_are_not_changes_are_refused(serve: Serve) -> None:
    client = serve()
    made = _create(client)
    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 422),  # neither a diff nor a text
        ({"diff": _diff(FIRST, FIRST + "x\n"), "text": "x"}, 422),  # both
        ({"diff": "this is not a diff"}, 422),
        ({"diff": "@@ -1 +1 @@\n?what\n"}, 422),
        ({"text": FIRST}, 422),  # changes nothing
        ({"diff": _diff("Another file\n", "Another text\n")}, 409),  # does not apply
        ({"text": "a\x00b"}, 422),
    ]
    for body, status in cases:
        response = _propose(client, made["id"], **body)
        assert response.status_code == status, (body, response.text)
    assert client.get(f"{API}/files/{made['id']}/proposals").json() == []


# --- what a file may be ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "../escape.txt",
        "/etc/passwd",
        "notes/../../escape.txt",
        "a\x00b",
        "a//b",
        ".",
        "a\\b",
        "",
        "0" * 256,  # a name longer than file systems allow
    ],
)
def test_a_path_leaving_the_workspaces_folder_is_refused(
    serve: Serve, settings: Settings, path: str
) -> None:
    client = serve()
    response = client.post(f"{API}/files", json={"path": path, "text": "x"})
    assert response.status_code == 422, response.text
    assert client.get(f"{API}/files").json() == []
    assert not (settings.data_dir / "workspaces" / "escape.txt").exists()


def test_links_in_the_workspaces_folder_are_not_followed(
    serve: Serve, settings: Settings, tmp_path: Path
) -> None:
    client = serve()
    folder = _folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    os.symlink(outside, folder / "linked")
    os.symlink(outside / "secret.txt", folder / "secret.txt")
    for path in ("linked/secret.txt", "linked/new.txt", "secret.txt"):
        for body in ({"path": path}, {"path": path, "text": "x"}):
            response = client.post(f"{API}/files", json=body)
            assert response.status_code in (409, 422), (body, response.text)
    assert (outside / "secret.txt").read_text() == "secret\n"
    assert not (outside / "new.txt").exists()


def test_oversize_and_non_text_files_are_refused(serve: Serve, settings: Settings) -> None:
    client = serve(file_max_bytes=100)
    too_big = client.post(f"{API}/files", json={"path": "big.txt", "text": "x" * 101})
    assert too_big.status_code == 413
    assert client.post(f"{API}/files", json={"path": "nul.txt", "text": "a\x00"}).status_code == 422
    made = _create(client, "small.txt", "x" * 100)
    assert _edit(client, made["id"], "é" * 51).status_code == 413  # 102 bytes
    assert _propose(client, made["id"], text="y" * 101).status_code == 413
    folder = _folder(settings)
    (folder / "huge.txt").write_text("z" * 101)
    (folder / "binary.bin").write_bytes(b"\xff\xfe\x00")
    assert client.post(f"{API}/files", json={"path": "huge.txt"}).status_code == 413
    assert client.post(f"{API}/files", json={"path": "binary.bin"}).status_code == 422
    assert [f["path"] for f in client.get(f"{API}/files").json()] == ["small.txt"]
    assert client.get(f"{API}/files/{made['id']}").json()["text"] == "x" * 100


def test_a_file_already_on_disk_is_opened_and_not_overwritten(
    serve: Serve, settings: Settings
) -> None:
    client = serve()
    folder = _folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "from-terminal.sh").write_text("echo hi\n")
    clash = client.post(f"{API}/files", json={"path": "from-terminal.sh", "text": "other\n"})
    assert clash.status_code == 409
    opened = _create(client, "from-terminal.sh", None)
    assert (opened["text"], opened["on_disk"]) == ("echo hi\n", "same")
    twice = client.post(f"{API}/files", json={"path": "from-terminal.sh"})
    assert twice.status_code == 409
    empty = _create(client, "new/empty.txt", None)
    assert empty["text"] == "" and (folder / "new" / "empty.txt").read_text() == ""
    # A change made outside the editor shows; the next edit records over it.
    (folder / "from-terminal.sh").write_text("echo changed\n")
    assert client.get(f"{API}/files/{opened['id']}").json()["on_disk"] == "changed"
    (folder / "from-terminal.sh").unlink()
    assert client.get(f"{API}/files/{opened['id']}").json()["on_disk"] == "missing"
    assert _edit(client, opened["id"], "echo again\n").status_code == 200
    assert (folder / "from-terminal.sh").read_text() == "echo again\n"


def test_another_workspace_has_its_own_folder(serve: Serve, settings: Settings) -> None:
    client = serve()
    other = client.post(f"{API}/workspaces", json={"name": "Other"}).json()["id"]
    theirs = client.post(
        f"{API}/files",
        json={"path": "keeper.md", "text": "theirs\n"},
        headers={"X-Workspace": other},
    )
    assert theirs.status_code == 201, theirs.text
    mine = _create(client, "keeper.md", "mine\n")
    assert (settings.data_dir / "workspaces" / other / "files" / "keeper.md").read_text() == (
        "theirs\n"
    )
    assert (_folder(settings) / "keeper.md").read_text() == "mine\n"
    assert client.get(f"{API}/files/{theirs.json()['id']}").status_code == 404
    assert [f["id"] for f in client.get(f"{API}/files").json()] == [mine["id"]]


# --- the service, on SQLite and PostgreSQL ------------------------------------------------


@pytest.mark.dialects
async def test_every_change_is_an_event_of_the_files_stream(engine: Engine) -> None:
    files = engine.files
    made = await files.create("local", "story.md", "one\n", META)
    await files.edit("local", made["id"], "one\ntwo\n", META)
    proposal = await files.propose("local", made["id"], META, text="one\ntwo\nthree\n")
    await files.accept("local", made["id"], proposal["id"], META)
    other = await files.propose("local", made["id"], META, text="zero\n")
    await files.reject("local", made["id"], other["id"], META, "no")
    await files.revert("local", made["id"], 1, META)
    events = await engine.repository.store.read_stream(file_stream(made["id"]))
    assert [(e.type, e.payload.get("revision")) for e in events] == [
        ("file.created", 1),
        ("file.edited", 2),
        ("file.proposal_made", None),
        ("file.proposal_accepted", 3),
        ("file.edited", 3),
        ("file.proposal_made", None),
        ("file.proposal_rejected", None),
        ("file.edited", 4),
    ]
    assert events[-1].payload["text"] == "one\n" and events[-1].metadata["actor"] == "tester"
    assert (await files.get("local", made["id"]))["version"] == len(events)
    with pytest.raises(Conflict):
        await files.accept("local", made["id"], other["id"], META)
    with pytest.raises(InvalidInput):
        await files.create("local", "../x", "x", META)


def test_a_diff_round_trips_texts_without_a_final_newline() -> None:
    for before, after in [("a\nb", "a\nc"), ("a\n", "a"), ("", "x"), ("x\r\ny\r\n", "x\r\nz\r\n")]:
        assert apply_diff(before, unified_diff(before, after, path="f", old="1", new="2")) == after


# --- the assistant proposes through the turn pipeline -------------------------------------

INSTRUCTION = "Add a line saying that someone comes tonight."


def _shown_file(messages: Any) -> str:
    """The file's text as the assistant's context pack showed it (in the system prompt)."""
    system = "\n".join(m.content for m in messages if m.role == "system")
    assert "The current text of 'notes/keeper.md'" in system, system
    return system.split("```\n", 1)[1].split("```", 1)[0]


def _whole_text(messages: Any) -> str:
    return "Here it is:\n```\n" + _shown_file(messages) + "Until tonight.\n```"


def test_an_instruction_becomes_a_turn_and_a_proposal_that_accept_makes_a_revision(
    serve: Serve,
) -> None:
    model = ScriptedModel(_whole_text)
    client = serve(model)
    made = _create(client)
    assisted = client.post(f"{API}/files/{made['id']}/assist", json={"instruction": INSTRUCTION})
    assert assisted.status_code == 200, assisted.text
    answer = assisted.json()
    proposal, turn = answer["proposal"], answer["turn"]
    assert answer["reason"] is None and proposal["status"] == "open"
    assert (proposal["base_revision"], proposal["note"]) == (1, INSTRUCTION)
    assert apply_diff(FIRST, proposal["diff"]) == FIRST + "Until tonight.\n"
    # The turn is the file's assistant session's, in its log with its safety verdicts.
    session = client.get(f"{API}/sessions/{answer['session_id']}").json()
    assert session["kind"] == "file" and session["settings"]["file_id"] == made["id"]
    events = client.get(f"{API}/sessions/{answer['session_id']}/events").json()
    (recorded,) = [e for e in events if e["type"] == "turn.committed"]
    payload = recorded["payload"]
    assert payload["turn_id"] == turn["id"] and payload["input"]["text"] == INSTRUCTION
    assert payload["safety"]["input"]["level"] == "safe"
    assert payload["safety"]["output"]["level"] == "safe"
    assert [c["ref"] for c in payload["context"] if c["source"] == "file"] == [f"{made['id']}@r1"]
    # Accepting it makes revision 2, made by the proposal.
    accepted = client.post(f"{API}/files/{made['id']}/proposals/{proposal['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    now = client.get(f"{API}/files/{made['id']}").json()
    assert (now["revision"], now["text"]) == (2, FIRST + "Until tonight.\n")
    versions = client.get(f"{API}/files/{made['id']}/versions").json()
    assert (versions[-1]["how"], versions[-1]["proposal_id"]) == ("proposal", proposal["id"])


def test_a_diff_reply_is_a_proposal_and_the_same_session_serves_the_next_instruction(
    serve: Serve,
) -> None:
    def as_diff(messages: Any) -> str:
        shown = _shown_file(messages)
        return (
            "```diff\n"
            + unified_diff(shown, shown.replace("Nobody", "Somebody"), path="k", old="a", new="b")
            + "```"
        )

    client = serve(ScriptedModel(as_diff))
    made = _create(client)
    first = client.post(f"{API}/files/{made['id']}/assist", json={"instruction": "Somebody."})
    proposal = first.json()["proposal"]
    assert proposal is not None, first.text
    assert apply_diff(FIRST, proposal["diff"]) == FIRST.replace("Nobody", "Somebody")
    client.post(f"{API}/files/{made['id']}/proposals/{proposal['id']}/accept")
    again = client.post(f"{API}/files/{made['id']}/assist", json={"instruction": "Again."})
    # The file now says "Somebody": the reply's diff is empty, and proposes nothing.
    assert again.json()["session_id"] == first.json()["session_id"]
    assert again.json()["proposal"] is None and "no text" in again.json()["reason"]
    assert client.get(f"{API}/files/{made['id']}/proposals?status=open").json() == []


@pytest.mark.dialects
async def test_a_reply_safety_blocks_makes_no_proposal_and_says_why(
    make_engine: Callable[..., Any],
) -> None:
    engine: Engine = await make_engine(ScriptedModel(["A clown grins.\nNobody comes.\n"]))
    await engine.safety.content.set_preferences(
        "local", LOCAL_USER_ID, avoid_topics=["clowns"], trigger_warnings=[], locale=None
    )
    meta = EventMetadata(actor=LOCAL_USER_ID)
    made = await engine.files.create("local", "notes/keeper.md", FIRST, meta)
    answer = await engine.file_assistant.assist("local", made["id"], INSTRUCTION, meta)
    assert answer["proposal"] is None and "safety blocked" in answer["reason"]
    assert answer["turn"]["safety"]["level"] == "blocked"
    assert await engine.files.proposals("local", made["id"]) == []
    # The blocked turn is recorded in the assistant's session all the same.
    recorded = await engine.sessions.turn_event("local", answer["session_id"], answer["turn"]["id"])
    assert recorded.payload["safety"]["output"]["level"] == "blocked"
