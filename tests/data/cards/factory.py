"""Character cards built in code for the tests: V1, V2, V3, as JSON, PNG and CHARX."""

from __future__ import annotations

import base64
import io
import json
import struct
import zipfile
import zlib
from typing import Any

JSONDict = dict[str, Any]


def v2_card(name: str = "Aria", **data: Any) -> JSONDict:
    body: JSONDict = {
        "name": name,
        "description": "{{char}} is a lighthouse keeper who talks to {{user}} about the sea.",
        "personality": "warm, wry, patient",
        "scenario": "A stormy night at the lighthouse.",
        "first_mes": "Welcome in out of the rain, {{user}}. I'm {{char}}.",
        "mes_example": "<START>\n{{user}}: Hi\n{{char}}: Mind the wet steps.",
        "creator_notes": "For testing.",
        "system_prompt": "Write as {{char}}, in first person.",
        "post_history_instructions": "Keep replies under three sentences.",
        "alternate_greetings": ["Oh! A visitor. {{char}} at your service.", "Storm's bad, eh?"],
        "tags": ["sea", "Cozy"],
        "creator": "tester",
        "character_version": "1.0",
        "extensions": {"talkativeness": "0.5", "fav": False, "world": "", "x_unknown": [1, 2]},
        "x_data_unknown": {"kept": True},
    }
    body.update(data)
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": body, "x_top": "kept"}


def v3_card(name: str = "Aria", **data: Any) -> JSONDict:
    card = v2_card(name, **data)
    card["spec"] = "chara_card_v3"
    card["spec_version"] = "3.0"
    card["data"].setdefault("group_only_greetings", ["Hello, everyone."])
    card["data"].setdefault("nickname", "")
    return card


def v1_card(name: str = "Old Tom") -> JSONDict:
    return {
        "name": name,
        "description": "An old sailor.",
        "personality": "gruff",
        "scenario": "A harbour tavern.",
        "first_mes": "Arr, {{user}}.",
        "mes_example": "",
        "create_date": "2023-1-1",
        "avatar": "none",
    }


def book(*keys: str) -> JSONDict:
    return {
        "name": "Lighthouse lore",
        "extensions": {},
        "entries": [
            {
                "keys": list(keys or ["lamp"]),
                "content": "The lamp has burned for a hundred years.",
                "extensions": {"position": 0},
                "enabled": True,
                "insertion_order": 100,
                "use_regex": False,
            }
        ],
    }


def dumps(card: JSONDict) -> bytes:
    return json.dumps(card).encode()


def chunk(kind: bytes, data: bytes, *, crc: int | None = None) -> bytes:
    value = zlib.crc32(kind + data) & 0xFFFFFFFF if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", value)


SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image(width: int = 2, height: int = 2, *, colour: bytes = b"\xff\x00\x00") -> bytes:
    """A real RGB PNG picture (no card in it)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + colour * width for _ in range(height))
    return (
        SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def text_chunk(keyword: str, payload: bytes) -> bytes:
    return chunk(b"tEXt", keyword.encode() + b"\x00" + payload)


def png_card(
    *, chara: JSONDict | None = None, ccv3: JSONDict | None = None, picture: bytes | None = None
) -> bytes:
    """`picture` (a real PNG by default) with the card chunks put before IEND."""
    base = picture or image()
    extra = b""
    if chara is not None:
        extra += text_chunk("chara", base64.b64encode(dumps(chara)))
    if ccv3 is not None:
        extra += text_chunk("ccv3", base64.b64encode(dumps(ccv3)))
    iend = base.rindex(b"IEND") - 4
    return base[:iend] + extra + base[iend:]


def charx(card: JSONDict, files: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("card.json", dumps(card))
        for path, content in (files or {}).items():
            archive.writestr(path, content)
    return buffer.getvalue()


def charx_card(name: str = "Aria") -> tuple[JSONDict, bytes]:
    """A V3 card with an icon and a background, and its CHARX file."""
    card = v3_card(name)
    card["data"]["assets"] = [
        {
            "type": "icon",
            "uri": "embeded://assets/icon/images/main.png",
            "name": "main",
            "ext": "png",
        },
        {
            "type": "background",
            "uri": "embeded://assets/background/images/sea.png",
            "name": "sea",
            "ext": "png",
        },
    ]
    files = {
        "assets/icon/images/main.png": image(colour=b"\x00\xff\x00"),
        "assets/background/images/sea.png": image(3, 3, colour=b"\x00\x00\xff"),
    }
    return card, charx(card, files)
