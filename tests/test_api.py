"""The HTTP API over real loopback HTTP: sessions, turns as JSON and as SSE, cancel,
errors as problem+json, raw events, health, and request ids."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource

from taleweaver.llm import ScriptedModel

Serve = Callable[..., httpx.Client]
JSONDict = dict[str, Any]

API = "/api/v1"
STREAM = {"Accept": "text/event-stream"}
STORY = "The hall is quiet.\n\nChoices:\n1. Go left\n2. Go right\n"
# Long enough that, a token every 20 ms, a turn is still running when the test acts on it.
LONG_STORY = " ".join(f"step{i}" for i in range(300)) + "\n\nChoices:\n1. Stop\n2. Go on\n"
SLOW = 0.02


@dataclass(frozen=True, slots=True)
class Event:
    """One Server-Sent Event as a client sees it."""

    id: str
    name: str
    data: JSONDict


# --- world ------------------------------------------------------------------------------


@pytest.fixture
def client(serve: Serve) -> httpx.Client:
    """The app with the default scripted story model (it echoes the player's action)."""
    return serve()


@pytest.fixture
def story(client: httpx.Client) -> str:
    session_id: str = create_session(client, title="The Hall")["id"]
    return session_id


@pytest.fixture
def slow(serve: Serve) -> httpx.Client:
    """The app with a model slow enough to act on a turn while it runs."""
    return serve(model=ScriptedModel([LONG_STORY], token_delay=SLOW))


def create_session(client: httpx.Client, kind: str = "story", title: str = "A tale") -> JSONDict:
    response = client.post(f"{API}/sessions", json={"kind": kind, "title": title})
    assert response.status_code == 201, response.text
    body: JSONDict = response.json()
    return body


def post_turn(client: httpx.Client, session_id: str, body: JSONDict) -> JSONDict:
    response = client.post(f"{API}/sessions/{session_id}/turns", json=body)
    assert response.status_code == 201, response.text
    turn: JSONDict = response.json()
    return turn


def say(client: httpx.Client, session_id: str, text: str) -> JSONDict:
    return post_turn(client, session_id, {"text": text})


def messages(client: httpx.Client, session_id: str) -> list[JSONDict]:
    response = client.get(f"{API}/sessions/{session_id}/messages")
    assert response.status_code == 200, response.text
    rows: list[JSONDict] = response.json()
    return rows


def events(client: httpx.Client, session_id: str, after: int = 0) -> list[JSONDict]:
    response = client.get(f"{API}/sessions/{session_id}/events", params={"after": after})
    assert response.status_code == 200, response.text
    rows: list[JSONDict] = response.json()
    return rows


def event_types(client: httpx.Client, session_id: str) -> list[str]:
    return [e["type"] for e in events(client, session_id)]


def read_events(response: httpx.Response) -> Iterator[Event]:
    """The events of an SSE response; a block without data (`retry:`) is no event."""
    assert response.headers["content-type"].startswith("text/event-stream")
    for sse in EventSource(response).iter_sse():
        if sse.data:
            yield Event(sse.id, sse.event, json.loads(sse.data))


def stream_turn(client: httpx.Client, session_id: str, body: JSONDict) -> list[Event]:
    url = f"{API}/sessions/{session_id}/turns"
    with client.stream("POST", url, json=body, headers=STREAM) as response:
        assert response.status_code == 201
        return list(read_events(response))


def resume(client: httpx.Client, session_id: str, turn_id: str, last_event_id: str) -> list[Event]:
    url = f"{API}/sessions/{session_id}/turns/{turn_id}/stream"
    with client.stream("GET", url, headers=STREAM | {"Last-Event-ID": last_event_id}) as response:
        assert response.status_code == 200
        return list(read_events(response))


def assert_problem(response: httpx.Response, status: int) -> JSONDict:
    """An RFC 9457 problem with the given status, and nothing of the server's insides."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: JSONDict = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    assert all(isinstance(body[key], str) and body[key] for key in ("type", "title", "detail"))
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


# --- sessions ----------------------------------------------------------------------------


def test_create_session_answers_201_with_an_id(client: httpx.Client) -> None:
    response = client.post(f"{API}/sessions", json={"kind": "story", "title": "The Hall"})
    assert response.status_code == 201
    body = response.json()
    assert body["id"]
    assert (body["kind"], body["title"], body["turn_count"]) == ("story", "The Hall", 0)
    assert (body["pinned"], body["archived"], body["forked_from"]) == (False, False, None)


def test_get_session_returns_the_created_session(client: httpx.Client) -> None:
    created = create_session(client, kind="companion", title="Ada")
    response = client.get(f"{API}/sessions/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


def test_list_pages_with_limit_offset_and_next_offset(client: httpx.Client) -> None:
    created = {create_session(client, title=f"Tale {i}")["id"] for i in range(5)}
    seen: list[str] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        page = client.get(f"{API}/sessions", params={"limit": 2, "offset": offset}).json()
        assert (page["total"], page["limit"], page["offset"]) == (5, 2, offset)
        seen += [item["id"] for item in page["items"]]
        offset = page["next_offset"]
        pages += 1
    assert pages == 3
    assert len(seen) == 5 and set(seen) == created


def test_last_page_has_no_next_offset(client: httpx.Client) -> None:
    for i in range(3):
        create_session(client, title=f"Tale {i}")
    page = client.get(f"{API}/sessions", params={"limit": 2, "offset": 2}).json()
    assert len(page["items"]) == 1
    assert page["next_offset"] is None


def test_list_filters_by_kind(client: httpx.Client) -> None:
    create_session(client, kind="story")
    companion = create_session(client, kind="companion")["id"]
    page = client.get(f"{API}/sessions", params={"kind": "companion"}).json()
    assert [item["id"] for item in page["items"]] == [companion]
    assert page["total"] == 1


def test_list_filters_by_pinned(client: httpx.Client) -> None:
    pinned = create_session(client, title="Pinned")["id"]
    other = create_session(client, title="Other")["id"]
    client.patch(f"{API}/sessions/{pinned}", json={"pinned": True}).raise_for_status()
    yes = client.get(f"{API}/sessions", params={"pinned": "true"}).json()
    no = client.get(f"{API}/sessions", params={"pinned": "false"}).json()
    assert [item["id"] for item in yes["items"]] == [pinned]
    assert [item["id"] for item in no["items"]] == [other]


def test_list_filters_by_archived(client: httpx.Client) -> None:
    archived = create_session(client, title="Old")["id"]
    current = create_session(client, title="New")["id"]
    client.patch(f"{API}/sessions/{archived}", json={"archived": True}).raise_for_status()
    yes = client.get(f"{API}/sessions", params={"archived": "true"}).json()
    no = client.get(f"{API}/sessions", params={"archived": "false"}).json()
    assert [item["id"] for item in yes["items"]] == [archived]
    assert [item["id"] for item in no["items"]] == [current]


def test_patch_renames_a_session(client: httpx.Client, story: str) -> None:
    response = client.patch(f"{API}/sessions/{story}", json={"title": "The Long Hall"})
    assert response.status_code == 200
    assert response.json()["title"] == "The Long Hall"
    assert client.get(f"{API}/sessions/{story}").json()["title"] == "The Long Hall"


def test_patch_pins_and_archives_a_session(client: httpx.Client, story: str) -> None:
    response = client.patch(f"{API}/sessions/{story}", json={"pinned": True, "archived": True})
    assert response.status_code == 200
    stored = client.get(f"{API}/sessions/{story}").json()
    assert (stored["pinned"], stored["archived"]) == (True, True)


def test_deleted_session_answers_404(client: httpx.Client, story: str) -> None:
    assert client.delete(f"{API}/sessions/{story}").status_code == 204
    assert_problem(client.get(f"{API}/sessions/{story}"), 404)
    assert_problem(client.get(f"{API}/sessions/{story}/messages"), 404)
    assert client.get(f"{API}/sessions").json()["total"] == 0


def test_fork_shares_the_messages_up_to_the_fork_turn(client: httpx.Client, story: str) -> None:
    say(client, story, "Open the door")
    say(client, story, "Climb the stairs")
    response = client.post(f"{API}/sessions/{story}/fork", json={"at_turn": 1})
    assert response.status_code == 201
    fork = response.json()
    assert fork["forked_from"] == story and fork["turn_count"] == 1

    def shown(rows: list[JSONDict]) -> list[tuple[int, str, str, list[str]]]:
        return [(m["turn_number"], m["role"], m["content"], m["choices"]) for m in rows]

    source_up_to_1 = [m for m in messages(client, story) if m["turn_number"] <= 1]
    assert shown(messages(client, fork["id"])) == shown(source_up_to_1)


def test_fork_diverges_from_its_source_after_the_fork_turn(
    client: httpx.Client, story: str
) -> None:
    say(client, story, "Open the door")
    say(client, story, "Climb the stairs")
    fork = client.post(f"{API}/sessions/{story}/fork", json={"at_turn": 1}).json()["id"]
    say(client, fork, "Go back outside")
    fork_turn_2 = [m["content"] for m in messages(client, fork) if m["turn_number"] == 2]
    source_turn_2 = [m["content"] for m in messages(client, story) if m["turn_number"] == 2]
    assert fork_turn_2[0] == "Go back outside"
    assert source_turn_2[0] == "Climb the stairs"
    assert fork_turn_2 != source_turn_2


def test_messages_list_each_turn_as_player_then_narrator(client: httpx.Client, story: str) -> None:
    first = say(client, story, "Light the lantern")
    rows = messages(client, story)
    assert [(m["turn_number"], m["role"]) for m in rows] == [(1, "player"), (1, "narrator")]
    assert rows[0]["content"] == "Light the lantern"
    assert rows[1]["content"] == first["reply"]["text"]
    assert rows[1]["choices"] == [c["text"] for c in first["reply"]["choices"]]
    assert {m["turn_id"] for m in rows} == {first["id"]}


def test_search_finds_a_message_and_links_to_it(client: httpx.Client, story: str) -> None:
    say(client, story, "Polish the brass astrolabe")
    say(client, story, "Walk on")
    response = client.get(f"{API}/search", params={"q": "astrolabe"})
    assert response.status_code == 200
    hits = response.json()
    assert hits and all(hit["session_id"] == story for hit in hits)
    assert all("astrolabe" in hit["snippet"].lower() for hit in hits)
    linked = client.get(hits[0]["link"])
    assert linked.status_code == 200
    assert hits[0]["message_id"] in [m["id"] for m in linked.json()]


def test_search_without_a_match_is_empty(client: httpx.Client, story: str) -> None:
    say(client, story, "Polish the brass astrolabe")
    assert client.get(f"{API}/search", params={"q": "zeppelin"}).json() == []


# --- turns as JSON -----------------------------------------------------------------------


@pytest.fixture
def scripted(serve: Serve) -> Callable[..., httpx.Client]:
    """Start the app with a scripted model built from these replies."""

    def start(*replies: str, **kwargs: Any) -> httpx.Client:
        return serve(model=ScriptedModel(list(replies), **kwargs))

    return start


def test_json_turn_answers_201_with_reply_choices_and_safety(
    scripted: Callable[..., httpx.Client],
) -> None:
    client = scripted(STORY)
    session = create_session(client)["id"]
    response = client.post(f"{API}/sessions/{session}/turns", json={"text": "I enter"})
    assert response.status_code == 201
    turn = response.json()
    assert turn["session_id"] == session and turn["number"] == 1
    assert (turn["action"], turn["status"]) == ("say", "completed")
    assert turn["input"] == {"text": "I enter", "choice": None}
    assert turn["reply"] == {
        "text": "The hall is quiet.",
        "choices": [{"number": 1, "text": "Go left"}, {"number": 2, "text": "Go right"}],
    }
    assert turn["safety"] == {
        "level": "safe",
        "crisis": False,
        "crisis_level": "none",
        "categories": [],
        "action": "none",
    }


def test_choice_turn_plays_the_offered_option(scripted: Callable[..., httpx.Client]) -> None:
    client = scripted(STORY)
    session = create_session(client)["id"]
    say(client, session, "I enter")
    turn = post_turn(client, session, {"choice": 2})
    assert (turn["action"], turn["number"]) == ("choose", 2)
    assert turn["input"] == {"text": "Go right", "choice": 2}
    assert messages(client, session)[2]["content"] == "Go right"


def test_regenerate_replaces_the_last_reply_and_keeps_the_first(
    scripted: Callable[..., httpx.Client],
) -> None:
    client = scripted("First telling.", "Second telling.")
    session = create_session(client)["id"]
    say(client, session, "Knock")
    turn = post_turn(client, session, {"action": "regenerate"})
    assert (turn["action"], turn["number"]) == ("regenerate", 1)
    assert turn["reply"]["text"] == "Second telling."
    narrator = messages(client, session)[1]
    assert narrator["content"] == "Second telling."
    assert [a["text"] for a in narrator["alternatives"]] == ["First telling.", "Second telling."]


def test_continue_adds_a_narrator_turn_without_player_words(
    scripted: Callable[..., httpx.Client],
) -> None:
    client = scripted("It begins.", "It goes on.")
    session = create_session(client)["id"]
    say(client, session, "Begin")
    turn = post_turn(client, session, {"action": "continue"})
    assert (turn["action"], turn["number"]) == ("continue", 2)
    assert turn["input"]["text"] is None
    assert turn["reply"]["text"] == "It goes on."
    assert [m["role"] for m in messages(client, session)] == ["player", "narrator", "narrator"]


def test_edit_replaces_the_last_player_input_and_its_reply(
    scripted: Callable[..., httpx.Client],
) -> None:
    client = scripted("Reply one.", "Reply two.")
    session = create_session(client)["id"]
    say(client, session, "Knokc")
    turn = post_turn(client, session, {"action": "edit", "text": "Knock twice"})
    assert (turn["action"], turn["number"]) == ("edit", 1)
    assert turn["input"]["text"] == "Knock twice"
    player, narrator = messages(client, session)
    assert (player["content"], narrator["content"]) == ("Knock twice", "Reply two.")


# --- turns as Server-Sent Events ---------------------------------------------------------


def test_stream_sends_start_tokens_choices_then_done(scripted: Callable[..., httpx.Client]) -> None:
    client = scripted(STORY)
    session = create_session(client)["id"]
    names = [e.name for e in stream_turn(client, session, {"text": "I enter"})]
    assert names[0] == "start" and names[-2:] == ["choices", "done"]
    assert set(names[1:-2]) == {"token"}
    assert len(names) > 4  # the reply came as several tokens, not one


def test_stream_start_carries_the_turn_id(scripted: Callable[..., httpx.Client]) -> None:
    client = scripted(STORY)
    session = create_session(client)["id"]
    stream = stream_turn(client, session, {"text": "I enter"})
    start, done = stream[0], stream[-1]
    assert start.data["turn_id"] == done.data["turn"]["id"]
    assert start.data["session_id"] == session and start.data["number"] == 1


def test_stream_event_ids_are_turn_id_and_increasing_seq(
    scripted: Callable[..., httpx.Client],
) -> None:
    client = scripted(STORY)
    session = create_session(client)["id"]
    stream = stream_turn(client, session, {"text": "I enter"})
    turn_id = stream[0].data["turn_id"]
    prefixes = {e.id.rpartition(":")[0] for e in stream}
    seqs = [int(e.id.rpartition(":")[2]) for e in stream]
    assert prefixes == {turn_id}
    assert seqs == sorted(set(seqs))


def test_streamed_tokens_add_up_to_the_done_reply(scripted: Callable[..., httpx.Client]) -> None:
    client = scripted(STORY)
    session = create_session(client)["id"]
    stream = stream_turn(client, session, {"text": "I enter"})
    text = "".join(e.data["text"] for e in stream if e.name == "token")
    done = stream[-1].data["turn"]
    assert text.rstrip() == done["reply"]["text"] == "The hall is quiet."
    assert "Choices" not in text  # the list arrives parsed, in `choices`
    choices = next(e for e in stream if e.name == "choices").data["choices"]
    assert choices == done["reply"]["choices"]


def test_streamed_turn_is_committed_like_a_json_turn(
    scripted: Callable[..., httpx.Client],
) -> None:
    client = scripted(STORY)
    session = create_session(client)["id"]
    done = stream_turn(client, session, {"text": "I enter"})[-1].data["turn"]
    assert done["status"] == "completed"
    assert [m["content"] for m in messages(client, session)] == ["I enter", "The hall is quiet."]


def test_resume_with_last_event_id_replays_only_later_events(
    scripted: Callable[..., httpx.Client],
) -> None:
    client = scripted(STORY)
    session = create_session(client)["id"]
    stream = stream_turn(client, session, {"text": "I enter"})
    turn_id = stream[0].data["turn_id"]
    replayed = resume(client, session, turn_id, last_event_id=stream[2].id)
    assert replayed == stream[3:]


def test_client_that_disconnects_mid_turn_resumes_to_the_end(serve: Serve) -> None:
    reply = " ".join(f"step{i}" for i in range(30)) + "\n\nChoices:\n1. Stop\n2. Go on\n"
    client = serve(model=ScriptedModel([reply], token_delay=SLOW))
    session = create_session(client)["id"]
    url = f"{API}/sessions/{session}/turns"
    seen: list[Event] = []
    with client.stream("POST", url, json={"text": "Run"}, headers=STREAM) as response:
        for event in read_events(response):
            seen.append(event)
            if event.name == "token":
                break  # the client goes away; the turn runs on
    rest = resume(client, session, seen[0].data["turn_id"], last_event_id=seen[-1].id)
    assert int(rest[0].id.rpartition(":")[2]) == len(seen) + 1
    assert rest[-1].name == "done" and rest[-1].data["turn"]["status"] == "completed"
    tokens = "".join(e.data["text"] for e in seen + rest if e.name == "token")
    assert tokens.rstrip() == rest[-1].data["turn"]["reply"]["text"]


def test_resume_without_last_event_id_replays_the_whole_turn(
    scripted: Callable[..., httpx.Client],
) -> None:
    client = scripted(STORY)
    session = create_session(client)["id"]
    stream = stream_turn(client, session, {"text": "I enter"})
    assert resume(client, session, stream[0].data["turn_id"], last_event_id="") == stream


# --- cancel ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cancelled:
    """A turn cancelled over HTTP while it streamed."""

    client: httpx.Client
    session_id: str
    turn_id: str
    response: httpx.Response
    stream: list[Event]


@pytest.fixture
def cancelled(slow: httpx.Client) -> Cancelled:
    session = create_session(slow)["id"]
    url = f"{API}/sessions/{session}/turns"
    seen: list[Event] = []
    with slow.stream("POST", url, json={"text": "Run"}, headers=STREAM) as stream:
        events_in = read_events(stream)
        for event in events_in:
            seen.append(event)
            if sum(e.name == "token" for e in seen) == 3:
                break
        turn_id = seen[0].data["turn_id"]
        response = slow.post(f"{url}/{turn_id}/cancel")
        seen += list(events_in)
    return Cancelled(slow, session, turn_id, response, seen)


def test_cancel_answers_200_with_the_turn_cancelled(cancelled: Cancelled) -> None:
    assert cancelled.response.status_code == 200
    turn = cancelled.response.json()
    assert (turn["id"], turn["status"], turn["reply"]) == (cancelled.turn_id, "cancelled", None)


def test_cancelled_stream_ends_with_done_for_a_cancelled_turn(cancelled: Cancelled) -> None:
    last = cancelled.stream[-1]
    assert last.name == "done"
    assert last.data["turn"]["status"] == "cancelled"
    assert "choices" not in [e.name for e in cancelled.stream]
    tokens = sum(e.name == "token" for e in cancelled.stream)
    assert 3 <= tokens < 100  # generation stopped well before the reply's 300 words


def test_cancelled_turn_adds_no_messages(cancelled: Cancelled) -> None:
    assert messages(cancelled.client, cancelled.session_id) == []


def test_cancelled_turn_is_recorded_as_turn_cancelled(cancelled: Cancelled) -> None:
    assert event_types(cancelled.client, cancelled.session_id) == [
        "session.created",
        "turn.cancelled",
    ]
    recorded = events(cancelled.client, cancelled.session_id)[-1]
    assert recorded["payload"]["turn_id"] == cancelled.turn_id


def test_cancelling_a_cancelled_turn_answers_409(cancelled: Cancelled) -> None:
    url = f"{API}/sessions/{cancelled.session_id}/turns/{cancelled.turn_id}/cancel"
    assert_problem(cancelled.client.post(url), 409)


def test_cancelling_a_finished_turn_answers_409(client: httpx.Client, story: str) -> None:
    turn = say(client, story, "Wait")
    assert_problem(client.post(f"{API}/sessions/{story}/turns/{turn['id']}/cancel"), 409)


def test_cancelling_an_unknown_turn_answers_404(client: httpx.Client, story: str) -> None:
    assert_problem(client.post(f"{API}/sessions/{story}/turns/no-such-turn/cancel"), 404)


def test_second_turn_while_one_runs_answers_409(slow: httpx.Client) -> None:
    session = create_session(slow)["id"]
    url = f"{API}/sessions/{session}/turns"
    with slow.stream("POST", url, json={"text": "Run"}, headers=STREAM) as stream:
        start = next(read_events(stream))
        body = assert_problem(slow.post(url, json={"text": "And another"}), 409)
        assert session in body["detail"]
        slow.post(f"{url}/{start.data['turn_id']}/cancel").raise_for_status()


# --- model failure -----------------------------------------------------------------------


@pytest.fixture
def failing(serve: Serve) -> httpx.Client:
    """The app with a model that breaks after two tokens."""
    return serve(model=ScriptedModel([STORY], fail_after=2))


def test_model_failure_ends_the_stream_with_an_error_problem(failing: httpx.Client) -> None:
    session = create_session(failing)["id"]
    stream = stream_turn(failing, session, {"text": "I enter"})
    names = [e.name for e in stream]
    assert names == ["start", "token", "token", "error"]
    error = stream[-1].data
    assert error["status"] == 502
    assert error["title"] and error["detail"] and error["type"].startswith("/problems/")
    assert error["turn_id"] == stream[0].data["turn_id"]


def test_model_failure_over_json_answers_502(failing: httpx.Client) -> None:
    session = create_session(failing)["id"]
    response = failing.post(f"{API}/sessions/{session}/turns", json={"text": "I enter"})
    assert_problem(response, 502)


def test_model_failure_writes_no_messages(failing: httpx.Client) -> None:
    session = create_session(failing)["id"]
    stream_turn(failing, session, {"text": "I enter"})
    failing.post(f"{API}/sessions/{session}/turns", json={"text": "I enter"})
    assert messages(failing, session) == []
    assert event_types(failing, session) == ["session.created", "turn.failed", "turn.failed"]
    assert failing.get(f"{API}/sessions/{session}").json()["turn_count"] == 0


# --- bad input ---------------------------------------------------------------------------


def test_malformed_json_answers_400(client: httpx.Client, story: str) -> None:
    response = client.post(
        f"{API}/sessions/{story}/turns",
        content=b'{"text": "unterminated',
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 400)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"text": "Hi", "mood": "sly"}, id="unknown-field"),
        pytest.param({"text": "Hi", "choice": 1}, id="text-and-choice"),
        pytest.param({"choice": 0}, id="choice-zero"),
        pytest.param({"text": ""}, id="empty-text"),
        pytest.param({"text": "   "}, id="blank-text"),
        pytest.param({}, id="nothing"),
        pytest.param({"action": "dance"}, id="unknown-action"),
        pytest.param({"action": "continue", "text": "Hi"}, id="continue-with-text"),
        pytest.param({"text": "x" * 8001}, id="text-too-long"),
    ],
)
def test_invalid_turn_answers_422_and_writes_nothing(
    client: httpx.Client, story: str, body: JSONDict
) -> None:
    response = client.post(f"{API}/sessions/{story}/turns", json=body)
    assert_problem(response, 422)
    assert event_types(client, story) == ["session.created"]


def test_choice_beyond_the_offered_ones_answers_422(
    scripted: Callable[..., httpx.Client],
) -> None:
    client = scripted(STORY)
    session = create_session(client)["id"]
    say(client, session, "I enter")
    body = assert_problem(client.post(f"{API}/sessions/{session}/turns", json={"choice": 3}), 422)
    assert "choice 3" in body["detail"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"kind": "saga", "title": "T"}, id="unknown-kind"),
        pytest.param({"kind": "story", "title": "T" * 201}, id="title-too-long"),
        pytest.param({"kind": "story", "title": ""}, id="empty-title"),
        pytest.param({"kind": "story", "title": "T", "owner": "me"}, id="unknown-field"),
        pytest.param({"title": "T"}, id="no-kind"),
    ],
)
def test_invalid_session_answers_422(client: httpx.Client, body: JSONDict) -> None:
    assert_problem(client.post(f"{API}/sessions", json=body), 422)
    assert client.get(f"{API}/sessions").json()["total"] == 0


def test_validation_problem_names_the_offending_field(client: httpx.Client) -> None:
    body = assert_problem(client.post(f"{API}/sessions", json={"kind": "saga"}), 422)
    assert "kind" in body["detail"]


@pytest.fixture
def small(serve: Serve) -> httpx.Client:
    """The app with a 1 KiB request body limit."""
    return serve(max_body_bytes=1024)


def test_body_over_the_limit_with_content_length_answers_413(small: httpx.Client) -> None:
    response = small.post(f"{API}/sessions", json={"kind": "story", "title": "T" * 2000})
    assert "content-length" in response.request.headers
    body = assert_problem(response, 413)
    assert "1024" in body["detail"]


def test_chunked_body_over_the_limit_answers_413(small: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "story", "title": "'
        for _ in range(20):
            yield b"T" * 100
        yield b'"}'

    response = small.post(
        f"{API}/sessions", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413)
    assert small.get(f"{API}/sessions").json()["total"] == 0


def test_chunked_body_under_the_limit_is_read_whole(small: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "story", '
        yield b'"title": "In pieces"}'

    response = small.post(
        f"{API}/sessions", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "In pieces"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sessions/nope"),
        ("PATCH", "/sessions/nope"),
        ("DELETE", "/sessions/nope"),
        ("GET", "/sessions/nope/messages"),
        ("GET", "/sessions/nope/events"),
        ("POST", "/sessions/nope/fork"),
        ("POST", "/sessions/nope/turns"),
        ("GET", "/sessions/nope/turns/t1/stream"),
        ("POST", "/sessions/nope/turns/t1/cancel"),
    ],
)
def test_unknown_session_answers_404(client: httpx.Client, method: str, path: str) -> None:
    bodies: dict[str, JSONDict] = {
        "PATCH": {"title": "X"},
        "POST": {"text": "Hi"} if path.endswith("turns") else {"at_turn": 0},
    }
    response = client.request(method, f"{API}{path}", json=bodies.get(method))
    assert_problem(response, 404)


def test_unknown_route_answers_404_problem(client: httpx.Client) -> None:
    assert_problem(client.get(f"{API}/nothing-here"), 404)


# --- raw events --------------------------------------------------------------------------


def test_events_after_n_are_only_later_versions_in_order(client: httpx.Client, story: str) -> None:
    client.patch(f"{API}/sessions/{story}", json={"title": "Renamed"}).raise_for_status()
    client.patch(f"{API}/sessions/{story}", json={"pinned": True}).raise_for_status()
    client.patch(f"{API}/sessions/{story}", json={"archived": True}).raise_for_status()
    later = events(client, story, after=2)
    assert [(e["version"], e["type"]) for e in later] == [
        (3, "session.pinned"),
        (4, "session.archived"),
    ]
    assert all(e["stream_id"] == story for e in later)


def test_events_after_the_head_are_empty(client: httpx.Client, story: str) -> None:
    say(client, story, "Look around")
    head = events(client, story)[-1]["version"]
    assert events(client, story, after=head) == []
    assert events(client, story, after=head + 100) == []


def test_events_carry_the_turn_payload(client: httpx.Client, story: str) -> None:
    turn = say(client, story, "Look around")
    committed = events(client, story, after=1)
    assert [e["type"] for e in committed] == ["turn.committed"]
    assert committed[0]["payload"]["turn_id"] == turn["id"]
    assert committed[0]["version"] == turn["version"]


# --- health and docs ---------------------------------------------------------------------


def test_healthz_answers_200(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_and_model_ok(client: httpx.Client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["components"]["database"]["status"] == "ok"
    assert body["components"]["model"]["status"] == "ok"


def test_docs_are_served(client: httpx.Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]


def test_openapi_lists_the_contract_paths(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    contract = {
        "/api/v1/sessions": {"get", "post"},
        "/api/v1/sessions/{session_id}": {"get", "patch", "delete"},
        "/api/v1/sessions/{session_id}/fork": {"post"},
        "/api/v1/sessions/{session_id}/messages": {"get"},
        "/api/v1/sessions/{session_id}/events": {"get"},
        "/api/v1/sessions/{session_id}/turns": {"post"},
        "/api/v1/sessions/{session_id}/turns/{turn_id}/stream": {"get"},
        "/api/v1/sessions/{session_id}/turns/{turn_id}/cancel": {"post"},
        "/api/v1/search": {"get"},
    }
    for path, methods in contract.items():
        assert path in paths, path
        assert methods <= set(paths[path]), path
    turn_responses = paths["/api/v1/sessions/{session_id}/turns"]["post"]["responses"]
    assert "text/event-stream" in turn_responses["201"]["content"]


# --- request ids -------------------------------------------------------------------------


def test_request_id_is_echoed_back(client: httpx.Client) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "req-42.a:b"})
    assert response.headers["x-request-id"] == "req-42.a:b"


def test_request_id_is_generated_when_absent(client: httpx.Client) -> None:
    first = client.get("/healthz").headers.get("x-request-id")
    second = client.get("/healthz").headers.get("x-request-id")
    assert first and second and first != second


def test_unsafe_request_id_is_replaced(client: httpx.Client) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] not in ("", "bad id\twith spaces")


def test_problem_carries_the_request_id(client: httpx.Client) -> None:
    response = client.get(f"{API}/sessions/nope", headers={"X-Request-ID": "req-missing"})
    assert assert_problem(response, 404)["correlation_id"] == "req-missing"


def test_request_id_is_the_correlation_id_of_the_events_it_wrote(
    client: httpx.Client, story: str
) -> None:
    client.patch(
        f"{API}/sessions/{story}", json={"title": "Renamed"}, headers={"X-Request-ID": "req-rename"}
    ).raise_for_status()
    client.post(
        f"{API}/sessions/{story}/turns", json={"text": "Hi"}, headers={"X-Request-ID": "req-turn"}
    ).raise_for_status()
    by_type = {e["type"]: e["metadata"]["correlation_id"] for e in events(client, story)}
    assert by_type["session.renamed"] == "req-rename"
    assert by_type["turn.committed"] == "req-turn"
    assert by_type["session.created"] not in ("req-rename", "req-turn")


def test_generated_request_id_is_the_correlation_id_of_its_events(client: httpx.Client) -> None:
    response = client.post(f"{API}/sessions", json={"kind": "story", "title": "T"})
    [created] = events(client, response.json()["id"])
    assert created["metadata"]["correlation_id"] == response.headers["x-request-id"]


def test_streamed_turn_events_carry_the_request_id(
    scripted: Callable[..., httpx.Client],
) -> None:
    client = scripted(STORY)
    session = create_session(client)["id"]
    url = f"{API}/sessions/{session}/turns"
    headers = STREAM | {"X-Request-ID": "req-stream"}
    with client.stream("POST", url, json={"text": "Hi"}, headers=headers) as response:
        assert response.headers["x-request-id"] == "req-stream"
        list(read_events(response))
    assert events(client, session, after=1)[0]["metadata"]["correlation_id"] == "req-stream"
