"""Lorebook files in the formats users bring, read into a `Book` and written back.

Formats: SillyTavern World Info (`{"entries": {uid: {...}}}`), a character card's
`character_book` (V2/V3, standalone or inside the card), a standalone V3 lorebook
(`{"spec": "lorebook_v3", "data": {...}}`) and NovelAI (`lorebookVersion`).

Round trips are lossless: every entry keeps the JSON it came in, and an export
in the same format starts from that JSON and changes only the fields whose
value was edited here, so unknown fields and the file's own spelling of
defaults (null, missing, true for 1) survive.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON
from taleweaver.domain.lorebook import Book, BookSettings, Entry, Logic, Position, Role, make_entry

FORMATS = ("sillytavern", "lorebook_v3", "character_book", "novelai")
MAX_ENTRIES = 200_000

_LOGIC = [Logic.AND_ANY, Logic.NOT_ALL, Logic.NOT_ANY, Logic.AND_ALL]
_POSITION = [
    Position.BEFORE_CHAR,
    Position.AFTER_CHAR,
    Position.AN_TOP,
    Position.AN_BOTTOM,
    Position.AT_DEPTH,
    Position.EM_TOP,
    Position.EM_BOTTOM,
    Position.OUTLET,
]
_ROLE = [Role.SYSTEM, Role.USER, Role.ASSISTANT]
NOVELAI_PRIORITY = 400


class _Reader:
    """Typed access to one raw entry; null means "the default", a wrong type is refused."""

    def __init__(self, where: str, raw: JSON) -> None:
        self.where = where
        self.raw = raw

    def fail(self, name: str, what: str) -> InvalidInput:
        return InvalidInput(f"{self.where}: '{name}' must be {what}")

    def get(self, name: str, source: JSON | None = None) -> Any:
        return (self.raw if source is None else source).get(name)

    def text(self, name: str, default: str = "", source: JSON | None = None) -> str:
        value = self.get(name, source)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(name, "a string")
        return value

    def flag(self, name: str, default: bool, source: JSON | None = None) -> bool:
        value = self.get(name, source)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self.fail(name, "true or false")

    def maybe_flag(self, name: str, source: JSON | None = None) -> bool | None:
        return None if self.get(name, source) is None else self.flag(name, False, source)

    def number(self, name: str, default: int, source: JSON | None = None) -> int:
        value = self.get(name, source)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise self.fail(name, "a whole number")
        return int(value)

    def maybe_number(self, name: str, source: JSON | None = None) -> int | None:
        return None if self.get(name, source) is None else self.number(name, 0, source)

    def keys(self, name: str, source: JSON | None = None) -> list[str]:
        value = self.get(name, source)
        if value is None:
            return []
        if isinstance(value, str):  # some older tools write "a, b, c"
            return [k.strip() for k in value.split(",") if k.strip()]
        if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
            raise self.fail(name, "a list of strings")
        return value

    def pick(self, name: str, table: list[Any], default: Any, source: JSON | None = None) -> Any:
        number = self.number(name, -1, source) if self.get(name, source) is not None else None
        if number is None:
            return default
        if not 0 <= number < len(table):
            raise self.fail(name, f"a number from 0 to {len(table) - 1}")
        return table[number]

    def character_filter(self, nested: str, source: JSON | None = None) -> JSON:
        """An entry's character filter, in Taleweaver's field names: SillyTavern's flat
        fields (`characterFilterNames`...) where the entry has them, else its nested
        object (`{"isExclude", "names", "tags"}`: tags may be SillyTavern's tag ids)."""
        flat = ("characterFilterNames", "characterFilterTags", "characterFilterExclude")
        if source is None and any(self.get(name) is not None for name in flat):
            return {
                "character_filter_names": self.keys(flat[0]),
                "character_filter_tags": self.keys(flat[1]),
                "character_filter_exclude": self.flag(flat[2], False),
            }
        found = self.get(nested, source)
        if found is None:
            return {}
        if not isinstance(found, dict):
            raise self.fail(nested, "an object")
        tags = found.get("tags")
        if isinstance(tags, list) and all(isinstance(t, int | str) for t in tags):
            found = found | {"tags": [str(t) for t in tags]}
        inner = _Reader(f"{self.where}: '{nested}'", found)
        return {
            "character_filter_names": inner.keys("names"),
            "character_filter_tags": inner.keys("tags"),
            "character_filter_exclude": inner.flag("isExclude", False),
        }

    def recursion_level(self, name: str, source: JSON | None = None) -> int:
        value = self.get(name, source)
        if isinstance(value, bool) or value is None:
            return 1 if value else 0
        return self.number(name, 0, source)


def _entry(uid: str, where: str, values: JSON) -> Entry:
    try:
        return make_entry(uid, values)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc.detail}") from None


# --- SillyTavern World Info ---------------------------------------------------------


def _st_entry(uid: str, raw: JSON) -> Entry:
    r = _Reader(f"entry {uid}", raw)
    return _entry(
        uid,
        r.where,
        {
            "keys": r.keys("key"),
            "secondary_keys": r.keys("keysecondary"),
            "content": r.text("content"),
            "comment": r.text("comment"),
            "enabled": not r.flag("disable", False),
            "constant": r.flag("constant", False),
            "selective": r.flag("selective", True),
            "logic": r.pick("selectiveLogic", _LOGIC, Logic.AND_ANY),
            "order": r.number("order", 100),
            "position": r.pick("position", _POSITION, Position.BEFORE_CHAR),
            "depth": r.number("depth", 4),
            "role": r.pick("role", _ROLE, Role.SYSTEM),
            "scan_depth": r.maybe_number("scanDepth"),
            "case_sensitive": r.maybe_flag("caseSensitive"),
            "match_whole_words": r.maybe_flag("matchWholeWords"),
            "use_group_scoring": r.maybe_flag("useGroupScoring"),
            "exclude_recursion": r.flag("excludeRecursion", False),
            "prevent_recursion": r.flag("preventRecursion", False),
            "delay_until_recursion": r.recursion_level("delayUntilRecursion"),
            "probability": r.number("probability", 100),
            "use_probability": r.flag("useProbability", True),
            "group": r.text("group"),
            "group_override": r.flag("groupOverride", False),
            "group_weight": r.number("groupWeight", 100),
            "sticky": r.number("sticky", 0),
            "cooldown": r.number("cooldown", 0),
            "delay": r.number("delay", 0),
            "ignore_budget": r.flag("ignoreBudget", False),
            "triggers": r.keys("triggers"),
            "outlet_name": r.text("outletName"),
        }
        | r.character_filter("characterFilter"),
    )


def _uid_value(uid: str) -> int | str:
    return int(uid) if uid.isdigit() else uid


def _st_fields(entry: Entry, index: int) -> JSON:
    return {
        "uid": _uid_value(entry.uid),
        "key": list(entry.keys),
        "keysecondary": list(entry.secondary_keys),
        "comment": entry.comment,
        "content": entry.content,
        "constant": entry.constant,
        "vectorized": False,
        "selective": entry.selective,
        "selectiveLogic": _LOGIC.index(entry.logic),
        "addMemo": bool(entry.comment),
        "order": entry.order,
        "position": _POSITION.index(entry.position),
        "disable": not entry.enabled,
        "ignoreBudget": entry.ignore_budget,
        "excludeRecursion": entry.exclude_recursion,
        "preventRecursion": entry.prevent_recursion,
        "delayUntilRecursion": entry.delay_until_recursion or False,
        "probability": entry.probability,
        "useProbability": entry.use_probability,
        "depth": entry.depth,
        "group": entry.group,
        "groupOverride": entry.group_override,
        "groupWeight": entry.group_weight,
        "scanDepth": entry.scan_depth,
        "caseSensitive": entry.case_sensitive,
        "matchWholeWords": entry.match_whole_words,
        "useGroupScoring": entry.use_group_scoring,
        "automationId": "",
        "role": _ROLE.index(entry.role),
        "sticky": entry.sticky or None,
        "cooldown": entry.cooldown or None,
        "delay": entry.delay or None,
        "displayIndex": index,
        "triggers": list(entry.triggers),
        "outletName": entry.outlet_name,
        "characterFilterNames": list(entry.character_filter_names),
        "characterFilterTags": list(entry.character_filter_tags),
        "characterFilterExclude": entry.character_filter_exclude,
        "characterFilter": _filter_object(entry),
    }


def _filter_object(entry: Entry) -> JSON:
    return {
        "isExclude": entry.character_filter_exclude,
        "names": list(entry.character_filter_names),
        "tags": list(entry.character_filter_tags),
    }


# --- character_book (V2/V3) and lorebook_v3 -----------------------------------------


def _cb_entry(index: int, raw: JSON) -> Entry:
    ident = raw.get("id")
    uid = str(ident) if ident is not None else str(index)
    r = _Reader(f"entry {uid}", raw)
    ext = raw.get("extensions")
    if ext is None:
        ext = {}
    if not isinstance(ext, dict):
        raise r.fail("extensions", "an object")
    if "keys" not in raw:
        raise r.fail("keys", "present (a list of strings)")
    if not isinstance(raw.get("content"), str):
        raise r.fail("content", "a string")
    legacy = Position.BEFORE_CHAR if raw.get("position") == "before_char" else Position.AFTER_CHAR
    case = r.maybe_flag("case_sensitive", ext)
    return _entry(
        uid,
        r.where,
        {
            "keys": r.keys("keys"),
            "secondary_keys": r.keys("secondary_keys"),
            "content": r.text("content"),
            "comment": r.text("comment") or r.text("name"),
            "enabled": r.flag("enabled", True),
            "constant": r.flag("constant", False),
            "selective": r.flag("selective", False),
            "logic": r.pick("selectiveLogic", _LOGIC, Logic.AND_ANY, ext),
            "order": r.number("insertion_order", 100),
            "position": r.pick("position", _POSITION, legacy, ext),
            "depth": r.number("depth", 4, ext),
            "role": r.pick("role", _ROLE, Role.SYSTEM, ext),
            "scan_depth": r.maybe_number("scan_depth", ext),
            "case_sensitive": case if case is not None else r.maybe_flag("case_sensitive"),
            "match_whole_words": r.maybe_flag("match_whole_words", ext),
            "use_group_scoring": r.maybe_flag("use_group_scoring", ext),
            "exclude_recursion": r.flag("exclude_recursion", False, ext),
            "prevent_recursion": r.flag("prevent_recursion", False, ext),
            "delay_until_recursion": r.recursion_level("delay_until_recursion", ext),
            "probability": r.number("probability", 100, ext),
            "use_probability": r.flag("useProbability", True, ext),
            "group": r.text("group", "", ext),
            "group_override": r.flag("group_override", False, ext),
            "group_weight": r.number("group_weight", 100, ext),
            "sticky": r.number("sticky", 0, ext),
            "cooldown": r.number("cooldown", 0, ext),
            "delay": r.number("delay", 0, ext),
            "ignore_budget": r.flag("ignore_budget", False, ext),
            "triggers": r.keys("triggers", ext),
            "outlet_name": r.text("outlet_name", "", ext),
        }
        | r.character_filter("character_filter", ext),
    )


def _cb_fields(entry: Entry, index: int) -> JSON:
    legacy = "before_char" if entry.position == Position.BEFORE_CHAR else "after_char"
    return {
        "id": _uid_value(entry.uid),
        "keys": list(entry.keys),
        "secondary_keys": list(entry.secondary_keys),
        "comment": entry.comment,
        "content": entry.content,
        "constant": entry.constant,
        "selective": entry.selective,
        "insertion_order": entry.order,
        "enabled": entry.enabled,
        "position": legacy,
        "use_regex": True,
        "extensions": {
            "position": _POSITION.index(entry.position),
            "exclude_recursion": entry.exclude_recursion,
            "display_index": index,
            "probability": entry.probability,
            "useProbability": entry.use_probability,
            "depth": entry.depth,
            "selectiveLogic": _LOGIC.index(entry.logic),
            "group": entry.group,
            "group_override": entry.group_override,
            "group_weight": entry.group_weight,
            "prevent_recursion": entry.prevent_recursion,
            "delay_until_recursion": entry.delay_until_recursion or False,
            "scan_depth": entry.scan_depth,
            "match_whole_words": entry.match_whole_words,
            "use_group_scoring": entry.use_group_scoring,
            "case_sensitive": entry.case_sensitive,
            "role": _ROLE.index(entry.role),
            "sticky": entry.sticky or None,
            "cooldown": entry.cooldown or None,
            "delay": entry.delay or None,
            "ignore_budget": entry.ignore_budget,
            "triggers": list(entry.triggers),
            "outlet_name": entry.outlet_name,
            "character_filter": _filter_object(entry),
        },
    }


def _cb_settings(raw: JSON) -> BookSettings:
    r = _Reader("lorebook", raw)
    budget = r.maybe_number("token_budget")
    return BookSettings(
        scan_depth=r.number("scan_depth", 2),
        token_budget=budget if budget and budget > 0 else None,
        # Absent: off, as SillyTavern's global default is.
        recursive=r.flag("recursive_scanning", False),
    )


def _cb_book_fields(name: str, settings: BookSettings) -> JSON:
    return {
        "name": name,
        "scan_depth": settings.scan_depth,
        "token_budget": settings.token_budget,
        "recursive_scanning": settings.recursive,
        "extensions": {},
    }


# --- NovelAI --------------------------------------------------------------------------


def _nai_entry(index: int, raw: JSON) -> Entry:
    ident = raw.get("id")
    uid = str(ident) if ident is not None else str(index)
    r = _Reader(f"entry {uid}", raw)
    config = raw.get("contextConfig")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise r.fail("contextConfig", "an object")
    return _entry(
        uid,
        r.where,
        {
            "keys": r.keys("keys"),
            "content": r.text("text"),
            "comment": r.text("displayName"),
            "enabled": r.flag("enabled", True),
            "constant": r.flag("forceActivation", False),
            "order": r.number("budgetPriority", NOVELAI_PRIORITY, config),
        },
    )


def _nai_fields(entry: Entry, index: int) -> JSON:
    return {
        "text": entry.content,
        "contextConfig": {
            "prefix": "",
            "suffix": "\n",
            "tokenBudget": 1,
            "reservedTokens": 0,
            "budgetPriority": entry.order,
            "trimDirection": "trimBottom",
            "insertionType": "newline",
            "maximumTrimType": "sentence",
            "insertionPosition": -1,
        },
        "displayName": entry.comment,
        "id": entry.uid,
        "keys": list(entry.keys),
        "searchRange": 1000,
        "enabled": entry.enabled,
        "forceActivation": entry.constant,
        "keyRelative": False,
        "nonStoryActivatable": False,
        "category": "",
        "loreBiasGroups": [],
    }


# --- detection, parsing, writing --------------------------------------------------------


EntryReader = Callable[[int, JSON], Entry]
EntryWriter = Callable[[Entry, int], JSON]


def _read_entries(items: list[tuple[str | int, Any]], reader: EntryReader) -> Book:
    if len(items) > MAX_ENTRIES:
        raise InvalidInput(f"a lorebook may hold at most {MAX_ENTRIES} entries")
    entries: list[Entry] = []
    raws: list[JSON] = []
    seen: set[str] = set()
    for index, (label, raw) in enumerate(items):
        if not isinstance(raw, dict):
            raise InvalidInput(f"entry {label} must be an object")
        entry = reader(index, raw)
        if entry.uid in seen:
            raise InvalidInput(f"entry id {entry.uid} appears twice")
        seen.add(entry.uid)
        entries.append(entry)
        raws.append(raw)
    return Book(name="", format="", entries=tuple(entries), raw_entries=tuple(raws))


def parse_lorebook(obj: Any, *, name: str | None = None, fallback: str | None = None) -> Book:
    """Detect the format of a lorebook file's JSON and read it; InvalidInput if it is none.

    Its name: `name`, else the file's own name field, else `fallback` (the file's name)."""
    if not isinstance(obj, dict):
        raise InvalidInput("a lorebook file must be a JSON object")
    spec = obj.get("spec")
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = obj.get("data")
        book = data.get("character_book") if isinstance(data, dict) else None
        if not isinstance(book, dict):
            raise InvalidInput("this character card has no character_book")
        card_name = data.get("name") if isinstance(data, dict) else None
        own = card_name if isinstance(card_name, str) else None
        return _character_book(book, "character_book", name, own or fallback)
    if spec == "lorebook_v3":
        data = obj.get("data")
        if not isinstance(data, dict):
            raise InvalidInput("a lorebook_v3 file needs a 'data' object")
        parsed = _character_book(data, "lorebook_v3", name, fallback)
        envelope = copy.deepcopy(obj)
        envelope["data"] = parsed.envelope
        return replace(parsed, envelope=envelope)
    if spec is not None:
        raise InvalidInput(f"unknown lorebook spec {spec!r}")
    entries = obj.get("entries")
    if "lorebookVersion" in obj:
        if not isinstance(entries, list):
            raise InvalidInput("a NovelAI lorebook needs an 'entries' list")
        read = _read_entries(list(enumerate(entries)), _nai_entry)
        title = name or _text(obj.get("name")) or fallback or "NovelAI lorebook"
        return _finish(read, obj, "novelai", title)
    if isinstance(entries, dict):
        items = list(entries.items())
        read = _read_entries(items, lambda i, raw: _st_entry(str(items[i][0]), raw))
        title = name or _text(obj.get("name")) or fallback or "Imported lorebook"
        return _finish(read, obj, "sillytavern", title)
    if isinstance(entries, list):
        return _character_book(obj, "character_book", name, fallback)
    raise InvalidInput(
        "not a lorebook: expected SillyTavern World Info ({'entries': {...}}), a "
        "character_book, a lorebook_v3 file or a NovelAI lorebook"
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _finish(
    read: Book, obj: JSON, fmt: str, name: str, settings: BookSettings | None = None
) -> Book:
    envelope = {k: copy.deepcopy(v) for k, v in obj.items() if k != "entries"}
    return replace(
        read, name=name, format=fmt, envelope=envelope, settings=settings or BookSettings()
    )


def _character_book(obj: JSON, fmt: str, name: str | None, fallback: str | None) -> Book:
    entries = obj.get("entries")
    if not isinstance(entries, list):
        raise InvalidInput("a character_book needs an 'entries' list")
    read = _read_entries(list(enumerate(entries)), _cb_entry)
    title = name or _text(obj.get("name")) or fallback or "Character lorebook"
    return _finish(read, obj, fmt, title, _cb_settings(obj))


def overlay(raw: Any, before: Any, after: Any) -> Any:
    """`raw` with the changes from `before` to `after` applied, field by field."""
    if not (isinstance(raw, dict) and isinstance(before, dict) and isinstance(after, dict)):
        return copy.deepcopy(raw) if before == after else copy.deepcopy(after)
    out = copy.deepcopy(raw)
    for name, value in after.items():
        old = before.get(name)
        if isinstance(value, dict) and isinstance(old, dict) and isinstance(out.get(name), dict):
            out[name] = overlay(out[name], old, value)
        elif value != old:
            out[name] = copy.deepcopy(value)
    return out


_READERS: dict[str, Callable[[int, JSON], Entry]] = {
    "character_book": _cb_entry,
    "lorebook_v3": _cb_entry,
    "novelai": _nai_entry,
}
_WRITERS: dict[str, EntryWriter] = {
    "sillytavern": _st_fields,
    "character_book": _cb_fields,
    "lorebook_v3": _cb_fields,
    "novelai": _nai_fields,
}


def _write_entry(book: Book, fmt: str, index: int) -> JSON:
    entry = book.entries[index]
    raw = book.raw_entries[index] if index < len(book.raw_entries) else None
    write = _WRITERS[fmt]
    if raw is None or fmt != book.format:
        return write(entry, index)
    read = _READERS.get(fmt)
    original = read(index, raw) if read else _st_entry(entry.uid, raw)
    result: JSON = overlay(raw, write(original, index), write(entry, index))
    return result


def to_format(book: Book, fmt: str) -> JSON:
    """The book as a file in `fmt` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown lorebook format {fmt!r}; use one of {', '.join(FORMATS)}")
    same = fmt == book.format
    written = [_write_entry(book, fmt, i) for i in range(len(book.entries))]
    if fmt == "sillytavern":
        envelope = copy.deepcopy(book.envelope) if same else {}
        return envelope | {
            "entries": {e.uid: w for e, w in zip(book.entries, written, strict=True)}
        }
    if fmt == "novelai":
        fresh: JSON = {"lorebookVersion": 5, "settings": {"orderByKeyLocations": False}}
        envelope = copy.deepcopy(book.envelope) if same else fresh | {"categories": []}
        envelope.setdefault("lorebookVersion", 5)
        return envelope | {"entries": written}
    if fmt == "character_book":
        return _cb_envelope(book, book.envelope if same else None) | {"entries": written}
    outer: JSON = copy.deepcopy(book.envelope) if same else {}
    outer.setdefault("spec", "lorebook_v3")
    data = outer.get("data")
    base = data if same and isinstance(data, dict) else None
    outer["data"] = _cb_envelope(book, base) | {"entries": written}
    return outer


def _cb_envelope(book: Book, base: JSON | None) -> JSON:
    """A character_book's top level: the imported one with edited settings applied."""
    fields = _cb_book_fields(book.name, book.settings)
    if base is None:
        return fields
    # A name the file did not have is not added (it came from the card or a default).
    name = _text(base.get("name")) if "name" in base else book.name
    result: JSON = overlay(base, _cb_book_fields(name or "", _cb_settings(base)), fields)
    return result
