"""Taleweaver's OpenAI-compatible endpoint, driven by the official `openai` client
over real loopback HTTP: a character imported from a card answers, the turn lands
in its session with its context, a regenerate or an edit in the client becomes an
alternative in the event log, and errors come back in OpenAI's shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from taleweaver.domain.conversation import ClientMessage, Exchange, PlanKind, plan
from tests.data.cards import factory as f

Serve = Callable[..., httpx.Client]
API = "/api/v1"


def _key(client: httpx.Client) -> str:
    made = client.post(f"{API}/auth/keys", json={"name": "chat app", "scopes": ["write"]})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


@pytest.fixture
def server(serve: Serve) -> httpx.Client:
    return serve()


@pytest.fixture
def ai(server: httpx.Client) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.base_url}/openai/v1", api_key=_key(server), max_retries=0
    )


def _character(server: httpx.Client) -> str:
    made = server.post(
        f"{API}/characters/import",
        content=f.png_card(chara=f.v2_card()),
        headers={"Content-Type": "image/png"},
    )
    assert made.status_code == 201, made.text
    ident: str = made.json()["id"]
    return ident


def _session_messages(server: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    found = server.get(f"{API}/sessions/{session_id}/messages")
    assert found.status_code == 200, found.text
    rows: list[dict[str, Any]] = found.json()["items"] if "items" in found.json() else found.json()
    return rows


def test_models_lists_the_workspaces_characters_and_worlds(
    server: httpx.Client, ai: openai.OpenAI
) -> None:
    character = _character(server)
    world = server.post(f"{API}/worlds", json={"name": "Veyra"}).json()["id"]
    ids = {m.id for m in ai.models.list()}
    assert {f"character/{character}", f"world/{world}"} <= ids


def test_a_character_streams_a_reply_and_the_turn_lands_in_its_session(
    server: httpx.Client, ai: openai.OpenAI
) -> None:
    model = f"character/{_character(server)}"
    stream = ai.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are Aria."},
            {"role": "user", "content": "Hello there, keeper of the light."},
        ],
        stream=True,
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    reply = "".join(pieces)
    assert reply.strip()

    raw = server.post(
        "/openai/v1/chat/completions",
        json={
            "model": model,
            "messages": [
                {"role": "user", "content": "Hello there, keeper of the light."},
                {"role": "assistant", "content": reply},
                {"role": "user", "content": "Tell me about the storm."},
            ],
        },
        headers={"Authorization": ai.api_key and f"Bearer {ai.api_key}"},
    )
    assert raw.status_code == 200, raw.text
    session_id = raw.headers["X-Taleweaver-Session"]
    said = [m["content"] for m in _session_messages(server, session_id) if m["role"] == "player"]
    # One session holds both requests: the history was matched, only new lines are turns.
    assert said == ["Hello there, keeper of the light.", "Tell me about the storm."]
    turn = server.get(f"{API}/sessions/{session_id}/events").json()
    committed = [e for e in _events(turn) if e["type"] == "turn.committed"]
    assert committed[-1]["payload"]["context"], "the turn carries its context trace"


def _events(body: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = body["items"] if isinstance(body, dict) else body
    return items


def test_asking_again_in_the_client_becomes_an_alternative_not_a_new_turn(
    server: httpx.Client, ai: openai.OpenAI
) -> None:
    model = f"character/{_character(server)}"
    opening: list[Any] = [{"role": "user", "content": "Shall we light the lamp?"}]
    first = ai.chat.completions.with_raw_response.create(model=model, messages=opening)
    session_id = first.headers["X-Taleweaver-Session"]
    told = first.parse().choices[0].message.content
    history: list[Any] = [*opening, {"role": "assistant", "content": told}]
    asked = [*history, {"role": "user", "content": "Is the oil dry?"}]
    ai.chat.completions.create(model=model, messages=asked)
    again = ai.chat.completions.with_raw_response.create(model=model, messages=asked)
    assert again.headers["X-Taleweaver-Session"] == session_id
    events = _events(server.get(f"{API}/sessions/{session_id}/events").json())
    kinds = [e["type"] for e in events]
    assert kinds.count("turn.committed") == 3  # the greeting and two exchanges
    assert kinds[-1] == "turn.regenerated"

    edited = [*history, {"role": "user", "content": "Is the wick trimmed?"}]
    ai.chat.completions.create(model=model, messages=edited)
    events = _events(server.get(f"{API}/sessions/{session_id}/events").json())
    assert events[-1]["type"] == "turn.edited", [e["type"] for e in events]
    assert events[-1]["payload"]["input_text"] == "Is the wick trimmed?"
    # The client's next request carries the edited line and the reply it got.
    reply = _session_messages(server, session_id)[-1]["content"]
    follow = [
        *edited,
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "Go on."},
    ]
    ai.chat.completions.create(model=model, messages=follow)
    events = _events(server.get(f"{API}/sessions/{session_id}/events").json())
    assert [e["type"] for e in events].count("turn.committed") == 4


def test_a_change_further_back_branches_and_keeps_the_original(
    server: httpx.Client, ai: openai.OpenAI
) -> None:
    model = f"character/{_character(server)}"
    history: list[Any] = [{"role": "user", "content": "Good evening."}]
    for line in ("What is that light?", "And the ship?"):
        reply = ai.chat.completions.create(model=model, messages=history)
        history += [
            {"role": "assistant", "content": reply.choices[0].message.content},
            {"role": "user", "content": line},
        ]
    last = ai.chat.completions.with_raw_response.create(model=model, messages=history)
    original = last.headers["X-Taleweaver-Session"]
    changed = [*history[:2], {"role": "user", "content": "What is that sound?"}]
    changed += [{"role": "assistant", "content": "It is the foghorn."}]
    changed += [{"role": "user", "content": "Is it always this loud?"}]
    branched = ai.chat.completions.with_raw_response.create(model=model, messages=changed)
    fork = branched.headers["X-Taleweaver-Session"]
    assert fork != original and branched.headers["X-Taleweaver-Branched-From"] == original
    said = [m["content"] for m in _session_messages(server, fork) if m["role"] == "player"]
    assert said == ["Good evening.", "What is that sound?", "Is it always this loud?"]
    kept = [m["content"] for m in _session_messages(server, original) if m["role"] == "player"]
    assert kept == ["Good evening.", "What is that light?", "And the ship?"]


def test_a_crisis_answers_with_the_supportive_message_and_flags_the_session(
    server: httpx.Client, ai: openai.OpenAI
) -> None:
    model = f"character/{_character(server)}"
    answer = ai.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "I want to kill myself"}]
    )
    text = answer.parse().choices[0].message.content or ""
    session_id = answer.headers["X-Taleweaver-Session"]
    events = _events(server.get(f"{API}/sessions/{session_id}/events").json())
    assert events[-1]["payload"]["safety"]["input"]["crisis"] is True
    # The reply the client shows is the one the session recorded: the supportive message.
    assert text == events[-1]["payload"]["reply"]["text"]
    assert "988" in text or "crisis" in text.lower() or "help" in text.lower()
    flags = server.get(f"{API}/safety/flags")
    assert flags.status_code == 200 and session_id in flags.text


def test_a_configured_model_is_a_plain_chat_with_memory_and_safety(
    server: httpx.Client, ai: openai.OpenAI
) -> None:
    plain = [m.id for m in ai.models.list() if m.id.startswith("model/")]
    assert plain, "the configured chat models are listed"
    before = len(server.get(f"{API}/sessions").json()["items"])
    reply = ai.chat.completions.create(
        model=plain[0], messages=[{"role": "user", "content": "What is a lighthouse for?"}]
    )
    assert reply.choices[0].message.content
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    sessions = server.get(f"{API}/sessions").json()["items"]
    assert len(sessions) == before + 1  # the chat is a session like any other
    with pytest.raises(openai.NotFoundError):
        ai.chat.completions.create(
            model="model/no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert len(server.get(f"{API}/sessions").json()["items"]) == before + 1  # none started


def test_errors_and_unknown_parameters_in_openais_shape(
    server: httpx.Client, ai: openai.OpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        ai.chat.completions.create(
            model="character/nope", messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.body is not None and "not found" in str(missing.value.body).lower()
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=f"{server.base_url}/openai/v1", api_key="tw_wrong", max_retries=0
        ).models.list()
    with pytest.raises(openai.UnprocessableEntityError):
        ai.chat.completions.create(
            model=f"character/{_character(server)}",
            messages=[{"role": "assistant", "content": "I spoke last."}],
        )


def test_a_sillytavern_style_request_with_extra_fields_is_answered(
    server: httpx.Client, ai: openai.OpenAI
) -> None:
    # What SillyTavern's custom OpenAI-compatible source sends beside the messages.
    body = {
        "model": f"character/{_character(server)}",
        "messages": [{"role": "user", "content": "Greetings."}],
        "temperature": 1,
        "frequency_penalty": 0,
        "presence_penalty": 0,
        "top_p": 1,
        "max_tokens": 300,
        "stream": False,
        "logit_bias": {},
        "seed": 7,
        "n": 1,
        "stop": ["\nUser:"],
        "include_reasoning": False,
        "top_k": 0,
        "custom_include_body": "",
    }
    answered = server.post(
        "/openai/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {ai.api_key}"}
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["object"] == "chat.completion"
    ignored = answered.headers["X-Taleweaver-Ignored-Parameters"].split(",")
    assert "temperature" in ignored and "top_k" in ignored and "messages" not in ignored


def _m(role: str, content: str) -> ClientMessage:
    return ClientMessage(role, content)


def test_the_plan_reads_a_clients_history_against_the_stored_one() -> None:
    stored = [Exchange("a", "reply a"), Exchange("b", "reply b")]
    base = [_m("user", "a"), _m("assistant", "reply  a\n"), _m("user", "b")]
    assert plan(stored, [*base, _m("assistant", "reply b"), _m("user", "c")]).kind == "say"
    assert plan(stored, base).kind == PlanKind.REGENERATE
    assert plan(stored, [*base[:2], _m("user", "b2")]).kind == PlanKind.EDIT
    branch = plan(stored, [_m("user", "x")])
    assert branch.kind == PlanKind.BRANCH and branch.keep == 0 and branch.text == "x"


@pytest.mark.dialects
async def test_a_worlds_conversation_is_found_again_by_its_opening(engine: Any) -> None:
    """On both databases: the same opening continues the same story; another opening,
    or another caller, starts its own."""
    from taleweaver.domain.events import EventMetadata
    from taleweaver.engine.conversations import Conversations, Target

    meta = EventMetadata(actor="local")
    world = await engine.world.bible.create_world(
        "local", name="Sunken Veyra", description="A city under a lake.", settings={}, meta=meta
    )
    chats = Conversations(engine.db, engine.sessions, engine.characters, engine.world)
    target = Target("world", world["id"])

    async def ask(owner: str, messages: list[ClientMessage]) -> str:
        found = await chats.resolve(
            "local", owner, target, messages, conversation=None, metadata=meta
        )
        handle = await engine.turns.start("local", found.session_id, found.request, meta)
        await handle.wait()
        return found.session_id

    first = await ask("local", [_m("user", "I dive.")])
    told = (await engine.sessions.messages("local", first, after_turn=0, limit=10))[-1]
    reply = told["content"] + "".join(
        f"\n{i}. {c}" if i > 1 else f"\n\n{i}. {c}" for i, c in enumerate(told["choices"], 1)
    )
    again = await ask("local", [_m("user", "I dive."), _m("assistant", reply), _m("user", "Down.")])
    assert again == first
    assert (await engine.sessions.get("local", first))["settings"]["world_id"] == world["id"]
    assert await ask("local", [_m("user", "I fly.")]) != first
    assert await ask("someone-else", [_m("user", "I dive.")]) != first
