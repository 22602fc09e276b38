"""Lorebook entries and books, as Taleweaver keeps them whatever format they came in.

Field meanings follow SillyTavern World Info (the richest of the formats users
bring); the importers map every other format onto these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON

DEFAULT_SCAN_DEPTH = 2
MAX_SCAN_DEPTH = 1000
DEFAULT_ORDER = 100
DEFAULT_DEPTH = 4
DEFAULT_WEIGHT = 100
DEFAULT_BUDGET_TOKENS = 1024
MAX_KEYS = 500
MAX_CONTENT_CHARS = 200_000


class Logic(StrEnum):
    """How secondary keys combine with a primary key match."""

    AND_ANY = "and_any"
    NOT_ALL = "not_all"
    NOT_ANY = "not_any"
    AND_ALL = "and_all"


class Position(StrEnum):
    BEFORE_CHAR = "before_char"
    AFTER_CHAR = "after_char"
    AN_TOP = "an_top"
    AN_BOTTOM = "an_bottom"
    AT_DEPTH = "at_depth"
    EM_TOP = "em_top"
    EM_BOTTOM = "em_bottom"
    OUTLET = "outlet"


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True, slots=True)
class Entry:
    """One lorebook entry; None in an optional setting means "the book's default"."""

    uid: str
    keys: tuple[str, ...] = ()
    secondary_keys: tuple[str, ...] = ()
    content: str = ""
    comment: str = ""
    enabled: bool = True
    constant: bool = False
    selective: bool = True
    logic: Logic = Logic.AND_ANY
    order: int = DEFAULT_ORDER
    position: Position = Position.BEFORE_CHAR
    depth: int = DEFAULT_DEPTH
    role: Role = Role.SYSTEM
    scan_depth: int | None = None
    case_sensitive: bool | None = None
    match_whole_words: bool | None = None
    use_group_scoring: bool | None = None
    exclude_recursion: bool = False
    prevent_recursion: bool = False
    # 0: not delayed; n: activates only from recursion level n on.
    delay_until_recursion: int = 0
    probability: int = 100
    use_probability: bool = True
    group: str = ""
    group_override: bool = False
    group_weight: int = DEFAULT_WEIGHT
    # Timed effects, counted in messages (a turn is the player's and the narrator's).
    sticky: int = 0
    cooldown: int = 0
    delay: int = 0
    ignore_budget: bool = False
    # Only for these characters (names or tags, ignoring case), or with `exclude`, never
    # for them; an entry with an include filter never activates where no character speaks.
    character_filter_names: tuple[str, ...] = ()
    character_filter_tags: tuple[str, ...] = ()
    character_filter_exclude: bool = False
    # Only for these generation types (GENERATION_TYPES; one this version does not know
    # never matches); empty: for all.
    triggers: tuple[str, ...] = ()
    # With position OUTLET: the name a `{{outlet::name}}` macro places the content by.
    outlet_name: str = ""

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(g.strip() for g in self.group.split(",") if g.strip())


@dataclass(frozen=True, slots=True)
class BookSettings:
    scan_depth: int = DEFAULT_SCAN_DEPTH
    # In tokens (the model's own count where known, else an estimate); None: the default.
    token_budget: int | None = None
    # Off unless the book turns it on, as SillyTavern's global default is.
    recursive: bool = False
    # 0: recursion runs until nothing new activates.
    max_recursion_steps: int = 0
    case_sensitive: bool = False
    match_whole_words: bool = False
    use_group_scoring: bool = False


@dataclass(frozen=True, slots=True)
class Book:
    """A parsed lorebook: normalised entries plus what the source file held verbatim.

    `raw_entries[i]` is the i-th entry exactly as imported (None for entries made
    here) and `envelope` the file's top level without its entries, so that an
    export in the same format gives back the same JSON, unknown fields included.
    """

    name: str
    format: str
    settings: BookSettings = field(default_factory=BookSettings)
    entries: tuple[Entry, ...] = ()
    raw_entries: tuple[JSON | None, ...] = ()
    envelope: JSON = field(default_factory=dict)


ENTRY_FIELDS = {f.name for f in fields(Entry)}
SETTINGS_FIELDS = {f.name for f in fields(BookSettings)}
# SillyTavern's generation types, which an entry's `triggers` restrict it to.
GENERATION_TYPES = ("normal", "continue", "impersonate", "swipe", "regenerate", "quiet")
_LISTS = {"keys", "secondary_keys", "character_filter_names", "character_filter_tags", "triggers"}
_ENUMS: dict[str, type[StrEnum]] = {"logic": Logic, "position": Position, "role": Role}
_OPTIONAL_INT = {"scan_depth"}
_OPTIONAL_BOOL = {"case_sensitive", "match_whole_words", "use_group_scoring"}
_BOOL = {
    "enabled",
    "constant",
    "selective",
    "exclude_recursion",
    "prevent_recursion",
    "use_probability",
    "group_override",
    "ignore_budget",
    "character_filter_exclude",
}
_INT = {
    "order",
    "depth",
    "delay_until_recursion",
    "probability",
    "group_weight",
    "sticky",
    "cooldown",
    "delay",
}
_STR = {"uid", "content", "comment", "group", "outlet_name"}
_NON_NEGATIVE = {"depth", "delay_until_recursion", "group_weight", "sticky", "cooldown", "delay"}


def _check(uid: str, name: str, value: Any) -> Any:
    """The value, validated and normalised for field `name`, or InvalidInput."""
    where = f"entry {uid}: {name}"
    if name in _LISTS:
        if not isinstance(value, list | tuple) or not all(isinstance(k, str) for k in value):
            raise InvalidInput(f"{where} must be a list of strings")
        if len(value) > MAX_KEYS:
            raise InvalidInput(f"{where} has more than {MAX_KEYS} items")
        return tuple(value)
    if name in _ENUMS:
        try:
            return _ENUMS[name](value)
        except ValueError:
            allowed = ", ".join(m.value for m in _ENUMS[name])
            raise InvalidInput(f"{where} must be one of {allowed}") from None
    if name in _STR:
        if not isinstance(value, str):
            raise InvalidInput(f"{where} must be a string")
        if name == "content" and len(value) > MAX_CONTENT_CHARS:
            raise InvalidInput(f"{where} is longer than {MAX_CONTENT_CHARS} characters")
        return value
    if name in _BOOL or (name in _OPTIONAL_BOOL and value is not None):
        if not isinstance(value, bool):
            raise InvalidInput(f"{where} must be true or false")
        return value
    if name in _INT or (name in _OPTIONAL_INT and value is not None):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{where} must be a whole number")
        if name == "probability" and not 0 <= value <= 100:
            raise InvalidInput(f"{where} must be between 0 and 100")
        if (name in _NON_NEGATIVE or name == "scan_depth") and value < 0:
            raise InvalidInput(f"{where} must not be negative")
        return min(value, MAX_SCAN_DEPTH) if name == "scan_depth" else value
    if name in _OPTIONAL_INT | _OPTIONAL_BOOL:
        return None
    raise InvalidInput(f"{where} is not a lorebook entry field")


def make_entry(uid: str, values: JSON) -> Entry:
    """An entry from Taleweaver's own field names, every value checked."""
    checked = {name: _check(uid, name, value) for name, value in values.items()}
    checked["uid"] = uid
    return Entry(**checked)


def update_entry(entry: Entry, changes: JSON) -> Entry:
    checked = {name: _check(entry.uid, name, value) for name, value in changes.items()}
    checked.pop("uid", None)
    return replace(entry, **checked)


def entry_to_json(entry: Entry) -> JSON:
    out: JSON = {}
    for name in ENTRY_FIELDS:
        value = getattr(entry, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def entry_from_json(data: JSON) -> Entry:
    """Read back what `entry_to_json` stored (fields it does not know are ignored)."""
    return make_entry(str(data["uid"]), {k: v for k, v in data.items() if k in ENTRY_FIELDS})


def settings_to_json(settings: BookSettings) -> JSON:
    return {name: getattr(settings, name) for name in SETTINGS_FIELDS}


def settings_from_json(data: JSON) -> BookSettings:
    """Book settings from JSON; wrong types are refused, unknown names ignored."""
    values: JSON = {}
    for name in SETTINGS_FIELDS & data.keys():
        value = data[name]
        if name == "token_budget" and value is None:
            values[name] = None
        elif name in ("recursive", "case_sensitive", "match_whole_words", "use_group_scoring"):
            if not isinstance(value, bool):
                raise InvalidInput(f"lorebook setting {name} must be true or false")
            values[name] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"lorebook setting {name} must be a whole number, 0 or more")
            values[name] = min(value, MAX_SCAN_DEPTH) if name == "scan_depth" else value
    return BookSettings(**values)
