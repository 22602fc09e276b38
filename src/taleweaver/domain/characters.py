"""Character cards: V1/V2/V3 normalised to one V3 shape, greetings, group-chat turns.

A card is kept as the V3 JSON it normalises to, with every key it arrived with:
unknown keys at the top level, in `data` and in `extensions` stay verbatim, so
an export gives back what was imported. Taleweaver's own settings travel in
`data.extensions.taleweaver`; on import they are lifted out of the card (they
live in their own columns) and put back on export.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON
from taleweaver.domain.macros import pick_index

__all__ = [
    "EDITABLE_FIELDS",
    "LIST_FIELDS",
    "TEXT_FIELDS",
    "Card",
    "CardMember",
    "apply_edit",
    "choose_greeting",
    "greetings",
    "normalise_card",
    "pick_speaker",
    "to_v2",
    "to_v3",
]

V2_SPEC = "chara_card_v2"
V3_SPEC = "chara_card_v3"
TALEWEAVER_KEY = "taleweaver"

TEXT_FIELDS = (
    "name",
    "description",
    "personality",
    "scenario",
    "first_mes",
    "mes_example",
    "creator_notes",
    "system_prompt",
    "post_history_instructions",
    "creator",
    "character_version",
)
LIST_FIELDS = ("alternate_greetings", "tags", "group_only_greetings")
# The fields V1 cards carry at the top level.
V1_FIELDS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
# Fields the V3 spec added to V2's `data`; a V2 export leaves them out.
V3_ONLY = (
    "assets",
    "nickname",
    "creator_notes_multilingual",
    "source",
    "group_only_greetings",
    "creation_date",
    "modification_date",
)
EDITABLE_FIELDS = (*TEXT_FIELDS, *LIST_FIELDS, "nickname", "extensions", "character_book")
MAX_NAME_CHARS = 500
MAX_LIST_ITEMS = 1000


@dataclass(frozen=True, slots=True)
class Card:
    """A normalised card: `card` is V3 JSON (without Taleweaver's extension)."""

    card: JSON
    # The spec it arrived in: "v1", "v2" or "v3".
    source_spec: str
    # `data.extensions.taleweaver` as it arrived ({} when there was none).
    taleweaver: JSON

    @property
    def data(self) -> JSON:
        data: JSON = self.card["data"]
        return data

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def display_name(self) -> str:
        """What `{{char}}` stands for: the nickname when the card sets one."""
        nickname = self.data.get("nickname")
        return nickname if isinstance(nickname, str) and nickname.strip() else self.name

    @property
    def tags(self) -> list[str]:
        return list(self.data["tags"])

    @property
    def character_book(self) -> JSON | None:
        book = self.data.get("character_book")
        return book if isinstance(book, dict) else None

    @property
    def world(self) -> str | None:
        """The name of the World Info book SillyTavern links the card to
        (`data.extensions.world`), if any."""
        extensions = self.data.get("extensions")
        world = extensions.get("world") if isinstance(extensions, dict) else None
        return world.strip() if isinstance(world, str) and world.strip() else None


def _fail(detail: str) -> InvalidInput:
    return InvalidInput(f"not a valid character card: {detail}")


def _text(data: JSON, key: str) -> None:
    value = data.get(key)
    if value is None:
        data[key] = ""
    elif not isinstance(value, str):
        raise _fail(f"'{key}' must be a string")


def _strings(data: JSON, key: str) -> None:
    value = data.get(key)
    if value is None:
        data[key] = []
    elif not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(f"'{key}' must be a list of strings")
    elif len(value) > MAX_LIST_ITEMS:
        raise _fail(f"'{key}' has more than {MAX_LIST_ITEMS} items")


def _check_book(book: object) -> None:
    if book is None:
        return
    if not isinstance(book, dict):
        raise _fail("'character_book' must be an object")
    entries = book.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise _fail("'character_book.entries' must be a list of objects")


def _check_assets(assets: object) -> None:
    if assets is None:
        return
    if not isinstance(assets, list):
        raise _fail("'assets' must be a list")
    for asset in assets:
        if not isinstance(asset, dict) or not all(
            isinstance(asset.get(k), str) for k in ("type", "uri")
        ):
            raise _fail("each asset needs a string 'type' and 'uri'")


def _normalise_data(data: JSON) -> JSON:
    """`data` with its known fields checked and their defaults filled in (in place)."""
    for key in TEXT_FIELDS:
        _text(data, key)
    if not data["name"].strip():
        raise _fail("'name' must not be empty")
    if len(data["name"]) > MAX_NAME_CHARS:
        raise _fail(f"'name' must be at most {MAX_NAME_CHARS} characters")
    for key in LIST_FIELDS:
        _strings(data, key)
    extensions = data.get("extensions")
    if extensions is None:
        data["extensions"] = {}
    elif not isinstance(extensions, dict):
        raise _fail("'extensions' must be an object")
    nickname = data.get("nickname")
    if nickname is not None and not isinstance(nickname, str):
        raise _fail("'nickname' must be a string")
    for key in ("creation_date", "modification_date"):
        stamp = data.get(key)
        if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, int | float)):
            raise _fail(f"'{key}' must be a number of seconds")
    _check_book(data.get("character_book"))
    _check_assets(data.get("assets"))
    return data


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _check_storable(value: object) -> None:
    """No NUL characters or unpaired surrogates anywhere (PostgreSQL stores neither);
    iterative, so that no nesting depth can exhaust the stack."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise _fail("it holds a NUL character or an unpaired surrogate")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def normalise_card(raw: object) -> Card:
    """A V1, V2 or V3 card as V3 JSON; raises InvalidInput on anything else."""
    if not isinstance(raw, dict):
        raise _fail("the card must be a JSON object")
    _check_storable(raw)
    card: JSON = copy.deepcopy(raw)
    spec = card.get("spec")
    if spec in (V2_SPEC, V3_SPEC):
        if not isinstance(card.get("data"), dict):
            raise _fail("'data' must be an object")
        source = "v3" if spec == V3_SPEC else "v2"
    elif spec is None and "name" in card:
        # V1: the fields at the top level; they stay there too, as other tools write them.
        card["data"] = {k: copy.deepcopy(card[k]) for k in V1_FIELDS if k in card}
        source = "v1"
    else:
        raise _fail(f"unknown spec {spec!r} (expected {V2_SPEC!r} or {V3_SPEC!r})")
    card["spec"] = V3_SPEC
    card["spec_version"] = "3.0"
    data = _normalise_data(card["data"])
    ours = data["extensions"].pop(TALEWEAVER_KEY, None)
    return Card(card, source, ours if isinstance(ours, dict) else {})


def apply_edit(card: Card, changes: Mapping[str, Any]) -> Card:
    """The card with some of its `data` fields replaced, checked like an import."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise InvalidInput(f"these fields cannot be edited: {', '.join(sorted(unknown))}")
    edited = copy.deepcopy(card.card)
    edited["data"].update(copy.deepcopy(dict(changes)))
    # A card that carries the V1 fields at its top level too (SillyTavern writes them,
    # and V1-only readers see nothing else) gets the edit there as well.
    for key in V1_FIELDS:
        if key in changes and key in edited:
            edited[key] = copy.deepcopy(changes[key])
    if "extensions" in changes:  # Taleweaver's own settings are edited on their own
        edited["data"]["extensions"] = dict(edited["data"]["extensions"] or {})
        edited["data"]["extensions"].pop(TALEWEAVER_KEY, None)
    renormalised = normalise_card(edited)
    return Card(renormalised.card, card.source_spec, card.taleweaver)


def _with_ours(card: JSON, ours: JSON) -> JSON:
    out = copy.deepcopy(card)
    if ours:
        out["data"]["extensions"][TALEWEAVER_KEY] = copy.deepcopy(ours)
    return out


def to_v3(card: Card, ours: JSON | None = None) -> JSON:
    """The card as V3 JSON, with Taleweaver's extension when there is one."""
    return _with_ours(card.card, ours or {})


def to_v2(card: Card, ours: JSON | None = None) -> JSON:
    """The card as V2 JSON (for older readers): V3-only fields left out, the rest kept."""
    out = _with_ours(card.card, ours or {})
    out["spec"] = V2_SPEC
    out["spec_version"] = "2.0"
    for key in V3_ONLY:
        out["data"].pop(key, None)
    return out


def greetings(card: Card, *, group: bool = False) -> list[str]:
    """The greetings a chat may open with, numbered from 0: first_mes, then the
    alternates, then (in a group chat) the group-only ones."""
    data = card.data
    found = [data["first_mes"], *data["alternate_greetings"]]
    if group:
        found += data["group_only_greetings"]
    return found


def choose_greeting(
    card: Card, *, index: int | None, seed: str, group: bool = False
) -> tuple[int, str] | None:
    """(index, text) of the greeting to open with: `index` when given, else a choice
    seeded by `seed` among the non-empty ones; None when the card has none."""
    options = greetings(card, group=group)
    if index is not None:
        if not 0 <= index < len(options):
            raise InvalidInput(
                f"greeting must be between 0 and {len(options) - 1} "
                f"(first_mes, then the {len(options) - 1} alternates)"
            )
        if not options[index].strip():
            raise InvalidInput(f"greeting {index} is empty")
        return index, options[index]
    usable = [i for i, text in enumerate(options) if text.strip()]
    if not usable:
        return None
    chosen = usable[pick_index(seed, 0, "greeting", len(usable))]
    return chosen, options[chosen]


@dataclass(frozen=True, slots=True)
class CardMember:
    """One character of a group chat, as turn-taking sees it."""

    character_id: str
    name: str
    nickname: str = ""


def _mention(text: str, name: str) -> int | None:
    if not name.strip():
        return None
    found = re.search(rf"(?<!\w){re.escape(name.strip())}(?!\w)", text, re.IGNORECASE)
    return None if found is None else found.start()


def pick_speaker(
    members: Sequence[CardMember], player_text: str | None, turn_number: int
) -> tuple[int, str]:
    """(index of the character who replies this turn, why): the one the player's
    message names first, else the next in turn by the turn number."""
    if not members:
        raise ValueError("a group chat needs at least one character")
    if player_text:
        named: list[tuple[int, int]] = []
        for index, member in enumerate(members):
            hits = [_mention(player_text, n) for n in (member.name, member.nickname)]
            where = [h for h in hits if h is not None]
            if where:
                named.append((min(where), index))
        if named:
            index = min(named)[1]
            return index, f"{members[index].name} is named in the player's message"
    index = turn_number % len(members)
    return index, f"round-robin: turn {turn_number} falls to {members[index].name}"
