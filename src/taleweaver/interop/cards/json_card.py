"""Card JSON text: strict parsing within limits, and writing.

Strict means what every database we store it in accepts: no NaN or Infinity, no
NUL characters or unpaired surrogates (PostgreSQL refuses both), no absurd nesting.
"""

from __future__ import annotations

import json
import re
from typing import Any

from taleweaver.domain.errors import InvalidInput, PayloadTooLarge
from taleweaver.interop.cards.limits import MAX_JSON_DEPTH, max_json_bytes

__all__ = ["decode_json_text", "dump_card", "parse_card_json"]

# `json.loads` turns a lone "\ud800" escape into a string no encoder or database takes.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_constant(name: str) -> Any:
    raise InvalidInput(f"the card JSON holds {name}, which JSON does not allow")


def _check(value: object, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(f"the card JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput("the card JSON holds a NUL character")
        if _SURROGATE.search(value):
            raise InvalidInput("the card JSON holds an unpaired UTF-16 surrogate (\\ud800-\\udfff)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, depth + 1)
            _check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)


def decode_json_text(data: bytes) -> str:
    """The bytes as UTF-8 text (a byte-order mark is allowed), within the size limit."""
    limit = max_json_bytes()
    if len(data) > limit:
        raise PayloadTooLarge(f"the card JSON is {len(data)} bytes; at most {limit} are accepted")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the card JSON is not UTF-8 text: {exc.reason}") from exc


def parse_card_json(text: str) -> Any:
    """The JSON value of a card's text; InvalidInput when it is not strict JSON."""
    limit = max_json_bytes()
    if len(text) > limit:
        raise PayloadTooLarge(f"the card JSON is {len(text)} characters; at most {limit}")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError as exc:
        raise InvalidInput("the card JSON is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise InvalidInput(f"the card is not valid JSON: {exc}") from exc
    _check(value)
    return value


def dump_card(card: object) -> str:
    """Compact UTF-8 JSON, as card tools write it."""
    return json.dumps(card, ensure_ascii=False, separators=(",", ":"))
