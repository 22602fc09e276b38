"""CHARX: a zip with `card.json` at its root and assets under `assets/{type}/…`.

The card refers to its files as `embeded://path` (sic, as the spec spells it).
A zip from a stranger is hostile until proven otherwise: entry count, declared
and actual inflated sizes, compression ratio and every path are checked before
anything is kept, and the whole file is refused on the first violation.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from dataclasses import dataclass

from taleweaver.domain.errors import InvalidInput, PayloadTooLarge
from taleweaver.interop.cards.limits import (
    MAX_ENTRIES,
    MAX_RATIO,
    MAX_TOTAL_BYTES,
    RATIO_CHECKED_ABOVE,
    max_file_bytes,
    max_json_bytes,
)

__all__ = ["CARD_NAME", "EMBEDDED", "CharxFile", "is_zip", "read_charx", "write_charx"]

CARD_NAME = "card.json"
EMBEDDED = "embeded://"
_READ_BLOCK = 64 * 1024


@dataclass(frozen=True, slots=True)
class CharxFile:
    card: bytes
    # Every other file, by its path in the zip, in the zip's order.
    files: dict[str, bytes]


def is_zip(data: bytes) -> bool:
    return data.startswith((b"PK\x03\x04", b"PK\x05\x06"))


def _fail(detail: str) -> InvalidInput:
    return InvalidInput(f"not a valid CHARX file: {detail}")


def safe_path(name: str) -> str:
    """The entry's path if it stays inside the archive; InvalidInput otherwise."""
    if "\x00" in name or "\\" in name:
        raise _fail(f"entry {name!r} has a NUL or backslash in its path")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _fail(f"entry {name!r} has an absolute path")
    parts = name.split("/")
    if any(p == ".." for p in parts):
        raise _fail(f"entry {name!r} climbs out of the archive ('..')")
    cleaned = posixpath.normpath(name)
    if cleaned in (".", "") or cleaned.startswith("../"):
        raise _fail(f"entry {name!r} has no usable path")
    return cleaned


def _check_declared(infos: list[zipfile.ZipInfo]) -> None:
    if len(infos) > MAX_ENTRIES:
        raise _fail(f"{len(infos)} entries; at most {MAX_ENTRIES} are accepted")
    per_file = max_file_bytes()
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise _fail(f"entry {info.filename!r} is encrypted")
        if info.file_size > per_file:
            raise PayloadTooLarge(
                f"CHARX entry {info.filename!r} inflates to {info.file_size} bytes; "
                f"at most {per_file} per file"
            )
        if info.file_size > RATIO_CHECKED_ABOVE and info.file_size > MAX_RATIO * max(
            info.compress_size, 1
        ):
            raise _fail(
                f"entry {info.filename!r} inflates more than {MAX_RATIO}-fold (a zip bomb?)"
            )
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        raise PayloadTooLarge(
            f"the CHARX inflates to {total} bytes in all; at most {MAX_TOTAL_BYTES}"
        )


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """The entry's bytes, never more than it declared (headers can lie) or `budget`."""
    cap = min(info.file_size, budget)
    out = bytearray()
    with archive.open(info) as stream:
        while True:
            block = stream.read(_READ_BLOCK)
            if not block:
                break
            out += block
            if len(out) > cap:
                raise _fail(f"entry {info.filename!r} inflates past its declared size")
    return bytes(out)


def read_charx(data: bytes) -> CharxFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise _fail(f"the zip cannot be read: {exc}") from exc
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        _check_declared(infos)
        seen: set[str] = set()
        card: bytes | None = None
        files: dict[str, bytes] = {}
        budget = MAX_TOTAL_BYTES
        for info in infos:
            path = safe_path(info.filename)
            if path in seen:
                raise _fail(f"entry {path!r} appears twice")
            seen.add(path)
            limit = max_json_bytes() if path == CARD_NAME else max_file_bytes()
            try:
                content = _read_entry(archive, info, min(budget, limit))
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
                raise _fail(f"entry {path!r} is damaged: {exc}") from exc
            except NotImplementedError as exc:  # an unsupported compression method
                raise _fail(f"entry {path!r}: {exc}") from exc
            budget -= len(content)
            if path == CARD_NAME:
                card = content
            else:
                files[path] = content
    if card is None:
        raise _fail(f"there is no {CARD_NAME} at the root of the zip")
    return CharxFile(card, files)


def write_charx(card_text: str, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(CARD_NAME, card_text.encode())
        for path, content in files.items():
            archive.writestr(safe_path(path), content)
    return buffer.getvalue()
