"""Which kind of file a user brought: a pure look at its bytes (and name)."""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from typing import Any

from taleweaver.domain.errors import InvalidInput, PayloadTooLarge
from taleweaver.interop import bounded_json

__all__ = ["BACKUP", "BUNDLE", "CARD", "CHAT", "KINDS", "LOREBOOK", "sniff"]

CHAT = "sillytavern-chat"
CARD = "character-card"
LOREBOOK = "lorebook"
BUNDLE = "workspace-bundle"
BACKUP = "backup"
KINDS = (CHAT, CARD, LOREBOOK, BUNDLE, BACKUP)

_PNG = b"\x89PNG\r\n\x1a\n"
_ZIP = b"PK\x03\x04"
_CHAT_HEADER = {"user_name", "character_name", "chat_metadata"}
_MAX_MANIFEST = 1024 * 1024
_V1_CARD = {"first_mes", "personality", "mes_example", "char_greeting", "char_persona"}


def sniff(data: bytes, filename: str | None = None) -> str:
    """One of KINDS, or `InvalidInput` saying why the file is none of them."""
    name = (filename or "").lower()
    if data.startswith(_PNG):
        if b"tEXtchara\x00" in data or b"tEXtccv3\x00" in data:
            return CARD
        raise InvalidInput(f"{filename or 'the file'} is a PNG without character card data")
    if data.startswith(_ZIP):
        return _sniff_zip(data, filename)
    text = data.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text[:1] not in (b"{", b"["):
        raise InvalidInput(
            f"{filename or 'the file'} is not a chat, card, lorebook, bundle or backup"
        )
    bounded_json.check_depth(text, filename or "the file")
    try:
        whole: Any = json.loads(text)
    except ValueError:
        whole = None
    if whole is None or name.endswith(".jsonl"):
        first = text.split(b"\n", 1)[0]
        try:
            head = json.loads(first)
        except (ValueError, RecursionError) as exc:
            raise InvalidInput(f"{filename or 'the file'} is not valid JSON or JSONL") from exc
        if isinstance(head, dict) and _CHAT_HEADER & head.keys() and "mes" not in head:
            return CHAT
        raise InvalidInput(f"{filename or 'the file'} is JSON lines but not a SillyTavern chat")
    return _sniff_json(whole, filename)


def _sniff_json(value: Any, filename: str | None) -> str:
    if isinstance(value, dict):
        spec = value.get("spec")
        if spec in ("chara_card_v2", "chara_card_v3"):
            return CARD
        if spec == "lorebook_v3":
            return LOREBOOK
        if isinstance(value.get("entries"), dict | list):
            return LOREBOOK  # SillyTavern world info, NovelAI, a bare character book
        if _CHAT_HEADER & value.keys() and "mes" not in value:
            return CHAT  # a chat with no messages after its header
        if isinstance(value.get("name"), str) and _V1_CARD & value.keys():
            return CARD
    raise InvalidInput(f"{filename or 'the JSON'} is not a known card, lorebook or chat")


def _sniff_zip(data: bytes, filename: str | None) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            if "card.json" in names:
                return CARD  # CHARX
            if "manifest.json" in names:
                manifest = _manifest(archive)
                kind = manifest.get("format") if isinstance(manifest, dict) else None
                if kind == "taleweaver-workspace":
                    return BUNDLE
                if kind == "taleweaver-backup":
                    return BACKUP
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, zlib.error) as exc:
        raise InvalidInput(f"{filename or 'the archive'} is a damaged zip: {exc}") from exc
    raise InvalidInput(f"{filename or 'the archive'} is a zip but no card, bundle or backup")


def _manifest(archive: zipfile.ZipFile) -> Any:
    """A bundle's or backup's manifest, read only if small (a bomb is not inflated)."""
    info = archive.getinfo("manifest.json")
    if info.file_size > _MAX_MANIFEST:
        raise PayloadTooLarge(f"the archive's manifest.json inflates to {info.file_size} bytes")
    with archive.open(info) as stream:
        data = stream.read(_MAX_MANIFEST + 1)
    return bounded_json.loads(data[:_MAX_MANIFEST], "the archive's manifest.json")
