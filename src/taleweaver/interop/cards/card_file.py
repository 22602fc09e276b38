"""Reading a character card file, whatever its format: recognise it, check it within
the limits, hand back the card's JSON and the files that came with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taleweaver.domain.errors import InvalidInput
from taleweaver.interop.cards.charx import is_zip, read_charx
from taleweaver.interop.cards.json_card import decode_json_text, parse_card_json
from taleweaver.interop.cards.limits import check_file_size
from taleweaver.interop.cards.png import is_png, read_png_card

__all__ = ["FORMATS", "CardFile", "detect_format", "read_card_file"]

FORMATS = ("png", "json", "charx")


@dataclass(frozen=True, slots=True)
class CardFile:
    format: str  # "png" | "json" | "charx"
    # The card's JSON value and the text it was parsed from.
    card: Any
    text: str
    # A PNG card's image without its card chunks.
    image: bytes | None = None
    # A CHARX's other files, by path.
    files: dict[str, bytes] = field(default_factory=dict)


def detect_format(data: bytes, filename: str | None = None) -> str:
    """ "png", "charx" or "json", from the first bytes (the file name only breaks ties
    that the content leaves open, which today is none)."""
    if is_png(data):
        return "png"
    if is_zip(data):
        return "charx"
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return "json"
    named = f" ({filename})" if filename else ""
    raise InvalidInput(f"the file{named} is not a PNG, JSON or CHARX character card")


def read_card_file(data: bytes, filename: str | None = None) -> CardFile:
    check_file_size(len(data), "card file")
    fmt = detect_format(data, filename)
    if fmt == "png":
        found = read_png_card(data)
        return CardFile("png", parse_card_json(found.text), found.text, image=found.image)
    if fmt == "charx":
        archive = read_charx(data)
        text = decode_json_text(archive.card)
        return CardFile("charx", parse_card_json(text), text, files=archive.files)
    text = decode_json_text(data)
    return CardFile("json", parse_card_json(text), text)
