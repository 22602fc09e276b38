"""Cards in PNG files: the `ccv3` and `chara` tEXt chunks, read and written by hand.

A PNG is an 8-byte signature and a run of chunks (length, type, data, CRC-32 of
type and data), IHDR first and IEND last. The card is base64 of its UTF-8 JSON
in a tEXt chunk (`keyword NUL text`): `ccv3` holds V3, `chara` V2; a reader
prefers `ccv3`. Every CRC is checked, so a damaged file is refused, not half-read.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from dataclasses import dataclass

from taleweaver.domain.errors import InvalidInput

__all__ = [
    "SIGNATURE",
    "PngCard",
    "is_png",
    "placeholder_png",
    "read_png_card",
    "write_png_card",
]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CARD_KEYWORDS = ("ccv3", "chara")  # in order of preference


@dataclass(frozen=True, slots=True)
class Chunk:
    type: bytes
    data: bytes

    def encode(self) -> bytes:
        crc = zlib.crc32(self.type + self.data) & 0xFFFFFFFF
        return struct.pack(">I", len(self.data)) + self.type + self.data + struct.pack(">I", crc)

    @property
    def card_keyword(self) -> str | None:
        """`ccv3` or `chara` when this is a card's tEXt chunk."""
        if self.type != b"tEXt":
            return None
        keyword = self.data.split(b"\x00", 1)[0].decode("latin-1").lower()
        return keyword if keyword in CARD_KEYWORDS else None


@dataclass(frozen=True, slots=True)
class PngCard:
    # The card's JSON text, from the preferred chunk.
    text: str
    # Which chunk it came from ("ccv3" or "chara").
    keyword: str
    # The image without its card chunks: what an export writes the card back into.
    image: bytes


def is_png(data: bytes) -> bool:
    return data.startswith(SIGNATURE)


def _fail(detail: str) -> InvalidInput:
    return InvalidInput(f"not a valid PNG card: {detail}")


def read_chunks(data: bytes) -> list[Chunk]:
    """Every chunk up to IEND, CRCs checked; raises InvalidInput on damage."""
    if not is_png(data):
        raise _fail("the PNG signature is missing")
    chunks: list[Chunk] = []
    at = len(SIGNATURE)
    while True:
        if at + 8 > len(data):
            raise _fail("the file ends inside a chunk header (truncated?)")
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        end = at + 8 + length + 4
        if length > 2**31 - 1 or end > len(data):
            raise _fail(f"chunk {kind!r} runs past the end of the file (truncated?)")
        if not kind.isalpha():
            raise _fail(f"chunk type {kind!r} is not four letters")
        body = data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise _fail(f"chunk {kind.decode('latin-1')!r} fails its CRC check")
        if not chunks and kind != b"IHDR":
            raise _fail("the first chunk is not IHDR")
        chunks.append(Chunk(kind, body))
        at = end
        if kind == b"IEND":
            return chunks


def _card_text(chunk: Chunk) -> str:
    encoded = chunk.data.split(b"\x00", 1)[1] if b"\x00" in chunk.data else b""
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(f"the '{chunk.card_keyword}' chunk is not valid base64") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _fail(f"the '{chunk.card_keyword}' chunk is not UTF-8 JSON") from exc


def read_png_card(data: bytes) -> PngCard:
    """The card a PNG carries (`ccv3` preferred), and the image without it."""
    chunks = read_chunks(data)
    found = {c.card_keyword: c for c in chunks if c.card_keyword is not None}
    keyword = next((k for k in CARD_KEYWORDS if k in found), None)
    if keyword is None:
        raise _fail("the image holds no 'ccv3' or 'chara' card chunk")
    image = SIGNATURE + b"".join(c.encode() for c in chunks if c.card_keyword is None)
    return PngCard(_card_text(found[keyword]), keyword, image)


def _text_chunk(keyword: str, text: str) -> Chunk:
    return Chunk(b"tEXt", keyword.encode("latin-1") + b"\x00" + base64.b64encode(text.encode()))


def write_png_card(image: bytes | None, *, v2_text: str, v3_text: str) -> bytes:
    """`image` (or a 1x1 placeholder) carrying the card: `chara` V2 and `ccv3` V3,
    any card chunks it had replaced."""
    chunks = [c for c in read_chunks(image or placeholder_png()) if c.card_keyword is None]
    cards = [_text_chunk("chara", v2_text), _text_chunk("ccv3", v3_text)]
    chunks[-1:-1] = cards  # just before IEND
    return SIGNATURE + b"".join(c.encode() for c in chunks)


def placeholder_png() -> bytes:
    """A valid 1x1 transparent PNG, for a card that came without an image."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 8-bit RGBA, no interlace
    pixels = zlib.compress(b"\x00" + b"\x00\x00\x00\x00")  # filter byte + one pixel
    chunks = [Chunk(b"IHDR", header), Chunk(b"IDAT", pixels), Chunk(b"IEND", b"")]
    return SIGNATURE + b"".join(c.encode() for c in chunks)
