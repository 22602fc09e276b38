"""SillyTavern chat JSONL: parsed into turns, and written back from a session's events.

A chat is a header line then one message per line. Taleweaver pairs messages into
turns (a player message and the character's reply); odd shapes become turns with
a missing side: a leading greeting or several character messages in a row are
turns without player input, a player message with no reply is a turn marked
`no_reply`. Swipes become the reply's alternatives (a `turn.committed` event and
one `turn.regenerated` per other swipe, the chosen swipe last so that it is the
active one). Every original field but the text lives in the turn's `st` payload,
so an imported chat exports back to the same lines; what the user adds afterwards
(new turns, regenerations, edits) is written in the same shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON, NewEvent, RecordedEvent
from taleweaver.domain.json_values import find_unstorable, strip_unstorable
from taleweaver.domain.sessions import EventType, Reply
from taleweaver.domain.turn_record import MessageIds, TurnInput, TurnRecord

__all__ = [
    "FORMAT",
    "Chat",
    "ChatTurn",
    "import_record",
    "parse_chat",
    "render_chat",
    "send_date",
    "turn_events",
]

FORMAT = "sillytavern"
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_MESSAGES = 200_000
_REPLY_OWN = ("mes", "swipes", "swipe_id")  # rebuilt from the alternatives on export


@dataclass(slots=True)
class ChatTurn:
    user: JSON | None  # the player's line as found, or None
    reply: JSON | None  # the character's line as found, or None


@dataclass(slots=True)
class Chat:
    header: JSON
    turns: list[ChatTurn] = field(default_factory=list)
    messages: int = 0
    stripped: int = 0  # NUL and unpaired-surrogate characters removed from the file

    @property
    def user_name(self) -> str:
        return str(self.header.get("user_name") or "You")

    @property
    def character_name(self) -> str:
        return str(self.header.get("character_name") or "Character")


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    start = 0
    number = 0
    size = len(data)
    while start < size:
        end = data.find(b"\n", start)
        if end == -1:
            end = size
        number += 1
        if end - start > MAX_LINE_BYTES:
            raise InvalidInput(f"line {number} is longer than {MAX_LINE_BYTES} bytes")
        line = data[start:end].strip()
        start = end + 1
        if line:
            yield number, line


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _object(number: int, line: bytes) -> tuple[JSON, int]:
    """The line's object, with NUL and lone surrogates stripped (other tools write
    them; no database stores them), and how many were."""
    try:
        value = json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"line {number} is not valid JSON: {str(exc)[:120]}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"line {number} is not a JSON object")
    wrong = find_unstorable(value, text=False)
    if wrong is not None:
        raise InvalidInput(f"line {number}: {wrong}")
    cleaned, stripped = strip_unstorable(value)
    return cleaned, stripped


def _check_message(number: int, message: JSON) -> None:
    if not isinstance(message.get("mes"), str):
        raise InvalidInput(f"line {number}: a message needs a text field 'mes'")
    for flag in ("is_user", "is_system"):
        if flag in message and not isinstance(message[flag], bool):
            raise InvalidInput(f"line {number}: '{flag}' must be true or false")
    if "name" in message and not isinstance(message["name"], str):
        raise InvalidInput(f"line {number}: 'name' must be a string")


def parse_chat(data: bytes) -> Chat:
    """Read a whole chat, or raise `InvalidInput` naming the first bad line."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the chat is not UTF-8 text (byte {exc.start})") from exc
    lines = _lines(data)
    first = next(lines, None)
    if first is None:
        raise InvalidInput("the chat file is empty")
    header, stripped = _object(*first)
    if "mes" in header or not {"user_name", "character_name", "chat_metadata"} & header.keys():
        raise InvalidInput(
            "line 1 is not a SillyTavern chat header "
            "(user_name, character_name, create_date, chat_metadata)"
        )
    chat = Chat(header=header, stripped=stripped)
    pending: JSON | None = None
    for number, line in lines:
        message, stripped = _object(number, line)
        chat.stripped += stripped
        _check_message(number, message)
        chat.messages += 1
        if chat.messages > MAX_MESSAGES:
            raise InvalidInput(f"a chat may hold at most {MAX_MESSAGES} messages")
        if message.get("is_user") is True:
            if pending is not None:
                chat.turns.append(ChatTurn(pending, None))
            pending = message
        else:
            chat.turns.append(ChatTurn(pending, message))
            pending = None
    if pending is not None:
        chat.turns.append(ChatTurn(pending, None))
    return chat


# --- import: turns as events ----------------------------------------------------------


def _swipes(line: JSON) -> tuple[list[str], int] | None:
    """The line's swipes and the chosen one's index, when they are well formed."""
    swipes = line.get("swipes")
    chosen = line.get("swipe_id")
    if (
        isinstance(swipes, list)
        and swipes
        and all(isinstance(s, str) for s in swipes)
        and isinstance(chosen, int)
        and not isinstance(chosen, bool)
        and 0 <= chosen < len(swipes)
    ):
        return swipes, chosen
    return None


def _without(line: JSON, keys: tuple[str, ...]) -> JSON:
    kept = dict(line)
    for key in keys:
        kept.pop(key, None)
    return kept


def turn_events(turn: ChatTurn, number: int, new_id: Callable[[], str]) -> list[NewEvent]:
    """The events of one imported turn (`new_id` makes turn and message ids)."""
    user, reply = turn.user, turn.reply
    st: JSON = {}
    if user is not None:
        st["user"] = _without(user, ("mes",))
    alternatives: list[tuple[str, int | None]] = [("", None)]
    model = None
    if reply is None:
        st["no_reply"] = True
    else:
        extra = reply.get("extra")
        model = extra.get("model") if isinstance(extra, dict) else None
        found = _swipes(reply)
        if found is None:
            st["reply"] = _without(reply, ("mes",))
            alternatives = [(reply["mes"], None)]
        else:
            swipes, chosen = found
            st["reply"] = _without(reply, _REPLY_OWN)
            st["swipe_id"] = chosen
            if swipes[chosen] != reply["mes"]:
                st["chosen_swipe_text"] = swipes[chosen]
            alternatives = [(s, i) for i, s in enumerate(swipes) if i != chosen]
            alternatives.append((reply["mes"], chosen))
    turn_id = new_id()
    model = model if isinstance(model, str) else "imported"
    first_text, first_swipe = alternatives[0]
    if first_swipe is not None:
        st["swipe"] = first_swipe
    # Nothing ran on an imported turn: its verdict says "not checked", its
    # context trace, artifacts and findings are empty.
    events = [
        TurnRecord(
            turn_id=turn_id,
            number=number,
            action="say" if user is not None else "continue",
            reply=Reply(first_text),
            input=TurnInput(user["mes"] if user is not None else None),
            message_ids=MessageIds(new_id(), new_id()),
            model=model,
            details={"imported": FORMAT, "st": st},
        ).to_event()
    ]
    for text, swipe in alternatives[1:]:
        regenerated = TurnRecord(
            turn_id=turn_id,
            number=number,
            action="regenerate",
            reply=Reply(text),
            model=model,
            details={"imported": FORMAT, "st": {"swipe": swipe}},
        )
        events.append(regenerated.to_event())
    return events


# --- export: a session's events as chat lines ------------------------------------------


@dataclass(slots=True)
class _Alternative:
    text: str
    swipe: int | None
    at: datetime
    model: str


@dataclass(slots=True)
class _Turn:
    input_text: str | None
    st: JSON
    at: datetime
    replies: list[_Alternative] = field(default_factory=list)
    chosen: int | None = None  # index into replies the player chose; None: the newest


def send_date(at: datetime) -> str:
    """A timestamp the way SillyTavern writes `send_date` ("June 3, 2024 10:12pm")."""
    at = at.astimezone(UTC)
    hour = at.hour % 12 or 12
    return f"{at:%B} {at.day}, {at.year} {hour}:{at:%M}{'am' if at.hour < 12 else 'pm'}"


def _create_date(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d@%Hh%Mm%Ss")


def _fold(events: Iterable[RecordedEvent]) -> tuple[JSON, list[_Turn]]:
    created: JSON = {}
    turns: dict[int, _Turn] = {}
    for event in events:
        p = event.payload
        if event.type == EventType.SESSION_CREATED:
            created = p | {"_at": event.recorded_at}
        elif event.type == EventType.TURN_COMMITTED:
            found_st = p.get("st")
            st: JSON = found_st if isinstance(found_st, dict) else {}
            turn = _Turn(p["input"]["text"], st, event.recorded_at)
            turn.replies.append(_alternative(p, event.recorded_at))
            turns[p["number"]] = turn
        elif event.type in (EventType.TURN_REGENERATED, EventType.TURN_EDITED):
            # By number, as the messages read model does: a regenerated reply's
            # turn_id is the regenerating turn's own.
            found = turns.get(p["number"])
            if found is None:
                continue
            if event.type == EventType.TURN_EDITED:
                found.input_text = p["input_text"]
            found.replies.append(_alternative(p, event.recorded_at))
            found.chosen = None
        elif event.type == EventType.TURN_SELECTED:
            found = turns.get(p["number"])
            if found is not None:
                found.chosen = p["active"]
    return created, list(turns.values())


def _alternative(payload: JSON, at: datetime) -> _Alternative:
    st = payload.get("st")
    swipe = st.get("swipe") if isinstance(st, dict) else None
    return _Alternative(
        payload["reply"]["text"],
        swipe if isinstance(swipe, int) else None,
        at,
        str(payload.get("model") or ""),
    )


def render_chat(
    events: Iterable[RecordedEvent], imported: JSON | None = None, *, player: str = "You"
) -> Iterator[str]:
    """The session as SillyTavern chat JSONL, one line at a time. `imported`: the
    import record of the session this one was forked from, when it has none;
    `player`: the player's name where the session sets none (their display name)."""
    created, turns = _fold(events)
    imported = import_record(created) or imported or {}
    header = imported.get("header")
    settings = created.get("settings") or {}
    character = settings.get("character") or {}
    if not isinstance(header, dict):
        at = created.get("_at") or datetime.now(UTC)
        header = {
            "user_name": str(settings.get("user_name") or player),
            "character_name": str(character.get("name") or created.get("title") or "Narrator"),
            "create_date": _create_date(at),
            "chat_metadata": {},
        }
    user_name = str(header.get("user_name") or player)
    character_name = str(header.get("character_name") or "Character")
    yield _dumps(header)
    for turn in turns:
        if turn.input_text is not None:
            user = dict(turn.st.get("user") or {})
            if not user:
                user = {
                    "name": user_name,
                    "is_user": True,
                    "is_system": False,
                    "send_date": send_date(turn.at),
                    "extra": {},
                }
            user["mes"] = turn.input_text
            yield _dumps(user)
        if turn.st.get("no_reply") and len(turn.replies) == 1:
            continue
        yield _dumps(_reply_line(turn, character_name))


def import_record(created: JSON) -> JSON | None:
    """What a `session.created` payload says about the chat it was imported from."""
    found = created.get("import")
    return found if isinstance(found, dict) and found.get("format") == FORMAT else None


def _reply_line(turn: _Turn, character_name: str) -> JSON:
    skipped = 1 if turn.st.get("no_reply") else 0  # the empty reply of a lone message
    replies = turn.replies[skipped:]
    shown = -1 if turn.chosen is None or turn.chosen < skipped else turn.chosen - skipped
    active = replies[shown]
    original = turn.st.get("reply")
    line: JSON = dict(original) if isinstance(original, dict) else {}
    fresh = not line
    if fresh:
        line = {
            "name": character_name,
            "is_user": False,
            "is_system": False,
            "send_date": send_date(active.at),
            "extra": {"model": active.model} if active.model else {},
        }
    line["mes"] = active.text
    kept = sorted((r for r in replies if r.swipe is not None), key=lambda r: r.swipe or 0)
    new = [r for r in replies if r.swipe is None]
    if not fresh and not kept and len(new) == 1:
        return line  # no swipes on import, none since
    swipes = [r.text for r in kept]
    chosen = turn.st.get("swipe_id")
    if isinstance(chosen, int) and 0 <= chosen < len(swipes) and "chosen_swipe_text" in turn.st:
        swipes[chosen] = str(turn.st["chosen_swipe_text"])
    swipes += [r.text for r in new]
    line["swipes"] = swipes
    line["swipe_id"] = (
        active.swipe
        if active.swipe is not None
        else len(kept) + next(i for i, r in enumerate(new) if r is active)
    )
    info = line.get("swipe_info")
    if fresh or isinstance(info, list):
        grown = [] if fresh else list(info or [])
        grown += [_swipe_info(r) for r in (replies if fresh else new)]
        line["swipe_info"] = grown
    return line


def _swipe_info(reply: _Alternative) -> JSON:
    return {
        "send_date": send_date(reply.at),
        "gen_started": reply.at.isoformat(),
        "gen_finished": reply.at.isoformat(),
        "extra": {"model": reply.model} if reply.model else {},
    }


def _dumps(value: JSON) -> str:
    return json.dumps(value, ensure_ascii=False)
