"""SillyTavern chats: import as a companion session with swipes kept, play on with
normal turns, and export back to the same JSONL; bad files write nothing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from taleweaver.auth import LOCAL_USER_ID
from taleweaver.config import Settings
from taleweaver.domain.errors import InvalidInput, PayloadTooLarge
from taleweaver.domain.events import NewEvent, RecordedEvent
from taleweaver.domain.sessions import SessionState
from taleweaver.domain.turns import TurnAction, TurnRequest
from taleweaver.engine import Engine
from taleweaver.engine.chat_import import chat_events
from taleweaver.interop.sillytavern import parse_chat, render_chat
from taleweaver.llm import ScriptedModel
from taleweaver.store.database import Database
from taleweaver.store.schema import events, messages, sessions
from tests.conftest import META

WS = "local"
CHATS = Path(__file__).parent / "data" / "chats"
SERAPHINA = (CHATS / "seraphina.jsonl").read_bytes()


def lines(data: bytes | str) -> list[dict[str, Any]]:
    text = data.decode() if isinstance(data, bytes) else data
    # Only "\n" ends a line: U+2028 and friends may sit unescaped inside a string.
    return [json.loads(line) for line in text.split("\n") if line.strip()]


async def import_chat(engine: Engine, data: bytes = SERAPHINA) -> str:
    session = await engine.interop.import_chat(WS, data, metadata=META)
    session_id: str = session["id"]
    return session_id


async def play(
    engine: Engine, session_id: str, action: TurnAction, text: str | None = None
) -> None:
    request = TurnRequest.build(action=action, text=text, choice=None)
    handle = await engine.turns.start(WS, session_id, request, META)
    await handle.wait()


async def row_counts(engine: Engine) -> tuple[int, int, int]:
    async with engine.db.read() as conn:
        counted = [
            await conn.scalar(sa.select(sa.func.count()).select_from(t))
            for t in (events, sessions, messages)
        ]
    return (int(counted[0] or 0), int(counted[1] or 0), int(counted[2] or 0))


async def test_an_imported_chat_exports_back_to_the_same_lines(engine: Engine) -> None:
    session_id = await import_chat(engine)
    exported = await engine.interop.export_session(WS, session_id, "jsonl")
    assert lines(exported) == lines(SERAPHINA)


async def test_import_makes_a_companion_session_with_every_swipe_as_an_alternative(
    engine: Engine,
) -> None:
    session = await engine.interop.import_chat(WS, SERAPHINA, metadata=META)
    assert session["kind"] == "companion"
    assert session["settings"]["character"]["name"] == "Seraphina"
    assert session["imported"] == {"messages": 9, "turns": 7}
    rows = await engine.sessions.messages(WS, session["id"], after_turn=0, limit=100)
    # The leading greeting is a turn of its own with no player line.
    assert rows[0]["role"] == "narrator" and rows[0]["turn_number"] == 1
    assert rows[0]["content"].startswith("*Seraphina lifts her lantern.*")
    reply = next(r for r in rows if r["content"].startswith("In my glade"))
    texts = {a["text"] for a in reply["alternatives"]}
    assert texts == {
        "The glade is mine.",
        "In my glade. The lantern keeps the shadows out.",
        "You are safe here.",
    }
    assert reply["alternatives"][reply["active"]]["text"] == reply["content"]
    players = [r["content"] for r in rows if r["role"] == "player"]
    assert players == [
        "Where am I? What is this lantern?",
        "Thank you.",
        "Can I stay until morning?",
        "Goodnight, Seraphina.",
    ]


async def test_an_imported_chat_goes_on_with_regenerate_edit_and_fork(
    make_engine: Any,
) -> None:
    engine: Engine = await make_engine(ScriptedModel(["First new reply.", "Second new reply."]))
    session_id = await import_chat(engine)
    await play(engine, session_id, TurnAction.SAY, "Good morning!")
    await play(engine, session_id, TurnAction.REGENERATE)
    exported = lines(await engine.interop.export_session(WS, session_id, "jsonl"))
    original = lines(SERAPHINA)
    assert exported[: len(original)] == original  # the imported part is untouched
    user, reply = exported[len(original) :]
    assert user["is_user"] and user["mes"] == "Good morning!" and user["name"] == "Ada"
    assert reply["name"] == "Seraphina" and not reply["is_user"]
    assert reply["swipes"] == ["First new reply.", "Second new reply."]
    assert reply["swipe_id"] == 1 and reply["mes"] == "Second new reply."
    assert len(reply["swipe_info"]) == 2

    await play(engine, session_id, TurnAction.EDIT, "Good evening!")
    after_edit = lines(await engine.interop.export_session(WS, session_id, "jsonl"))
    assert after_edit[-2]["mes"] == "Good evening!"
    assert len(after_edit[-1]["swipes"]) == 3 and after_edit[-1]["swipe_id"] == 2

    fork = await engine.sessions.fork(WS, session_id, at_turn=3, title="Other path", metadata=META)
    forked = lines(await engine.interop.export_session(WS, fork["id"], "jsonl"))
    assert forked[0] == original[0]  # the fork keeps the chat's header
    assert forked[1:] == original[1:5]  # greeting, exchange, unanswered line
    await play(engine, fork["id"], TurnAction.SAY, "Let us leave.")
    assert lines(await engine.interop.export_session(WS, fork["id"], "jsonl"))[-2]["mes"] == (
        "Let us leave."
    )


async def test_swipes_added_to_an_imported_reply_keep_the_original_order(
    make_engine: Any,
) -> None:
    engine: Engine = await make_engine(ScriptedModel(["A fresh swipe."]))
    chat = SERAPHINA.splitlines()[:4]  # header, greeting, question, the three-swipe reply
    session_id = await import_chat(engine, b"\n".join(chat))
    await play(engine, session_id, TurnAction.REGENERATE)
    reply = lines(await engine.interop.export_session(WS, session_id, "jsonl"))[-1]
    assert reply["swipes"] == [
        "The glade is mine.",
        "In my glade. The lantern keeps the shadows out.",
        "You are safe here.",
        "A fresh swipe.",
    ]
    assert reply["swipe_id"] == 3 and reply["mes"] == "A fresh swipe."
    assert len(reply["swipe_info"]) == 4
    assert reply["extra"]["model"] == "gpt-4o"  # the original's fields stay


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"not json at all\n", "line 1 is not valid JSON"),
        (b'{"mes": "hi", "is_user": true}\n', "not a SillyTavern chat header"),
        (SERAPHINA[: len(SERAPHINA) // 2], "is not valid JSON"),  # truncated mid-line
        (SERAPHINA + b"\x00\x01garbage{{\n", "is not valid JSON"),
        (SERAPHINA + b"[1, 2, 3]\n", "is not a JSON object"),
        (SERAPHINA + b'{"name": "X", "is_user": "yes", "mes": "hi"}\n', "'is_user' must be"),
        (SERAPHINA + b'{"name": "X"}\n', "needs a text field 'mes'"),
        (SERAPHINA + b"[" * 100_000 + b"\n", "is not valid JSON"),
        (b"\xff\xfe" + SERAPHINA, "not UTF-8"),
        (SERAPHINA.splitlines()[0] + b"\n", "no messages"),
        (SERAPHINA + b'{"mes": "' + b"a" * (5 << 20) + b'"}\n', "longer than"),
    ],
    ids=[
        "empty",
        "garbage",
        "no-header",
        "truncated",
        "garbage-line",
        "array-line",
        "bad-flag",
        "no-text",
        "deep-nesting",
        "not-utf8",
        "header-only",
        "huge-line",
    ],
)
async def test_a_malformed_chat_is_refused_and_writes_nothing(
    engine: Engine, data: bytes, message: str
) -> None:
    before = await row_counts(engine)
    with pytest.raises(InvalidInput, match=message):
        await engine.interop.import_chat(WS, data, metadata=META)
    assert await row_counts(engine) == before


async def test_a_chat_over_the_size_limit_is_refused(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALEWEAVER_IMPORT_MAX_BYTES", "1000")
    with pytest.raises(PayloadTooLarge):
        await engine.interop.import_chat(WS, SERAPHINA, metadata=META)


async def test_exports_for_people_show_the_conversation(engine: Engine) -> None:
    session_id = await import_chat(engine)
    markdown = await engine.interop.export_session(WS, session_id, "markdown")
    assert markdown.startswith("# Seraphina (imported)")
    assert "> **Ada:** Where am I? What is this lantern?" in markdown  # the chat's user_name
    assert "**Seraphina:** In my glade. The lantern keeps the shadows out." in markdown
    assert "\n\n\n\n" not in markdown  # the unanswered line leaves no empty reply
    text = await engine.interop.export_session(WS, session_id, "text")
    assert "> Thank you." in text and "**" not in text
    document = json.loads(await engine.interop.export_session(WS, session_id, "json"))
    assert document["session"]["id"] == session_id
    assert len(document["messages"]) == 11 and document["events"][0]["type"] == "session.created"
    with pytest.raises(InvalidInput, match="unknown export format"):
        await engine.interop.export_session(WS, session_id, "docx")


async def test_a_story_session_exports_as_a_chat_sillytavern_can_read(engine: Engine) -> None:
    created = await engine.sessions.create(WS, kind="story", title="The Hall", metadata=META)  # type: ignore[arg-type]
    await play(engine, created["id"], TurnAction.SAY, "I open the door")
    exported = lines(await engine.interop.export_session(WS, created["id"], "jsonl"))
    header, user, reply = exported
    assert {"user_name", "character_name", "create_date", "chat_metadata"} <= header.keys()
    assert user["is_user"] is True and user["mes"] == "I open the door"
    assert reply["is_user"] is False and reply["swipes"] == [reply["mes"]]
    # ...and the export imports again as a chat.
    again = await engine.interop.import_chat(
        WS, "\n".join(json.dumps(x) for x in exported).encode(), metadata=META
    )
    assert again["imported"]["turns"] == 1


async def test_the_bulk_read_model_is_the_one_the_core_projection_writes(
    engine: Engine, settings: Any, tmp_path: Path
) -> None:
    chat = parse_chat(SERAPHINA)
    new_events = chat_events(chat, workspace_id=WS, title=None, owner_id=None)
    fast = await engine.interop.chats.commit_new_session(WS, new_events, META)
    reference = await Engine.open(
        settings, model=ScriptedModel(), database=Database(f"sqlite:///{tmp_path / 'ref.db'}")
    )
    try:
        state, _ = await reference.repository.commit(
            SessionState(id=fast), new_events, META, workspace_id=WS
        )
        core = await reference.sessions.messages(WS, state.id, after_turn=0, limit=100)
        core_session = await reference.caps.queries.session(WS, state.id)
    finally:
        await reference.close()
    bulk = await engine.sessions.messages(WS, fast, after_turn=0, limit=100)
    assert [m | {"created_at": None} for m in bulk] == [m | {"created_at": None} for m in core]
    bulk_session = await engine.caps.queries.session(WS, fast)
    assert bulk_session is not None and core_session is not None
    for key in ("kind", "title", "version", "turn_count", "pinned", "archived"):
        assert bulk_session[key] == core_session[key]


async def test_a_chat_imported_into_a_sensitive_workspace_is_sealed_at_rest(
    make_engine: Any, settings: Settings
) -> None:
    key = SecretStr(f"k1:{base64.b64encode(bytes(range(32))).decode()}")
    settings.encryption_keys = key  # the engine below reads it
    engine: Engine = await make_engine()
    private = await engine.accounts.create_workspace(LOCAL_USER_ID, "Private", sensitive=True)
    session = await engine.interop.import_chat(private["id"], SERAPHINA, metadata=META)
    async with engine.db.read() as conn:
        stored = (
            await conn.execute(
                sa.select(messages.c.content, messages.c.sealed).where(
                    messages.c.session_id == session["id"]
                )
            )
        ).all()
        payloads = (
            await conn.execute(
                sa.select(events.c.payload).where(events.c.stream_id == session["id"])
            )
        ).all()
    assert stored and all(row.sealed for row in stored)
    assert not any("lantern" in row.content for row in stored)
    assert not any("lantern" in json.dumps(row.payload) for row in payloads)
    exported = await engine.interop.export_session(private["id"], session["id"], "jsonl")
    assert lines(exported) == lines(SERAPHINA)  # opened again for its owner
    assert await engine.interop.search(private["id"], "lantern") == []  # never indexed


# --- the round trip holds for every chat ------------------------------------------------

# No NUL: an import strips it (no database stores it), so it cannot round-trip.
_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
_extra_fields = st.dictionaries(
    st.sampled_from(["title", "force_avatar", "gen_started", "custom", "bias"]),
    st.one_of(_text, st.integers(), st.booleans(), st.none(), st.lists(st.integers(), max_size=3)),
    max_size=3,
)


@st.composite
def _message(draw: st.DrawFn) -> dict[str, Any]:
    is_user = draw(st.booleans())
    line: dict[str, Any] = {
        "name": "Ada" if is_user else "Sera",
        "is_user": is_user,
        "is_system": draw(st.booleans()),
        "send_date": "June 3, 2024 10:12pm",
        "mes": draw(_text),
        "extra": draw(st.dictionaries(st.sampled_from(["api", "model"]), _text, max_size=2)),
    }
    line |= draw(_extra_fields)
    if not is_user and draw(st.booleans()):
        swipes = draw(st.lists(_text, min_size=1, max_size=4))
        chosen = draw(st.integers(0, len(swipes) - 1))
        if draw(st.booleans()):
            swipes[chosen] = line["mes"]  # usually the chosen swipe is the text shown
        line |= {"swipes": swipes, "swipe_id": chosen}
        if draw(st.booleans()):
            line["swipe_info"] = [{"send_date": "x", "extra": {}} for _ in swipes]
    return line


def _recorded(new_events: list[NewEvent]) -> list[RecordedEvent]:
    at = datetime(2024, 6, 3, tzinfo=UTC)
    return [
        RecordedEvent("s", WS, n, n, e.type, e.schema_version, e.payload, {}, at)
        for n, e in enumerate(new_events, start=1)
    ]


@settings(max_examples=150, deadline=None)
@given(
    header=st.fixed_dictionaries(
        {"user_name": _text, "character_name": _text, "chat_metadata": _extra_fields}
    ),
    body=st.lists(_message(), min_size=1, max_size=12),
)
def test_any_chat_renders_back_to_the_lines_it_was_read_from(
    header: dict[str, Any], body: list[dict[str, Any]]
) -> None:
    data = "\n".join(json.dumps(line) for line in [header, *body]).encode()
    chat = parse_chat(data)
    events = _recorded(chat_events(chat, workspace_id=WS, title=None, owner_id=None))
    assert lines("\n".join(render_chat(events))) == [header, *body]


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=400),
        st.lists(st.sampled_from(SERAPHINA.splitlines(keepends=True)), max_size=6).map(b"".join),
        st.binary(max_size=80).map(lambda junk: SERAPHINA[: len(junk) * 30] + junk),
    )
)
def test_any_bytes_parse_or_are_refused_as_invalid_input(data: bytes) -> None:
    try:
        chat = parse_chat(data)
    except InvalidInput:
        return
    paired = sum((t.user is not None) + (t.reply is not None) for t in chat.turns)
    assert paired == chat.messages  # every message landed in exactly one turn


async def test_a_chat_links_to_the_workspace_character_of_the_same_name(engine: Engine) -> None:
    if not hasattr(engine, "characters"):
        pytest.skip("engine.characters is not wired in yet")
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Seraphina"}}
    character = await engine.characters.import_card(
        WS, json.dumps(card).encode(), filename="seraphina.json", actor="test"
    )
    session = await engine.interop.import_chat(WS, SERAPHINA, metadata=META)
    assert session["settings"]["character_ids"] == [character["id"]]
    hits = await engine.interop.search(WS, "lantern", character=character["id"])
    assert hits and {h["session_id"] for h in hits} == {session["id"]}
    await play(engine, session["id"], TurnAction.SAY, "Hello again.")  # the card now speaks
    # A chat with a character the workspace does not have stays unlinked.
    other = SERAPHINA.replace(b'"character_name":"Seraphina"', b'"character_name":"Bram"')
    other = other.replace(b'"character_name": "Seraphina"', b'"character_name": "Bram"')
    unlinked = await engine.interop.import_chat(WS, other, metadata=META)
    assert "character_ids" not in unlinked["settings"]
