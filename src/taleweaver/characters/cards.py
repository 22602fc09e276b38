"""From a stored character to card files, and from card files to rows: no I/O here.

Taleweaver's own settings ride in `data.extensions.taleweaver`. A card nobody
edited since import is written back from its raw JSON text, byte for byte, so
what came in is what goes out.
"""

from __future__ import annotations

from collections.abc import Sequence

from taleweaver.characters.storage import Asset
from taleweaver.domain.characters import Card, to_v2, to_v3
from taleweaver.domain.errors import InvalidInput
from taleweaver.domain.events import JSON
from taleweaver.interop import EMBEDDED, dump_card, is_png, write_charx, write_png_card

EXPORT_FORMATS = ("png", "json", "charx")
MEDIA_TYPES = {"png": "image/png", "json": "application/json", "charx": "application/zip"}
ICON_PATH = "assets/icon/images/main.png"


def ours_from_row(row: JSON) -> JSON:
    """`extensions.taleweaver` as an export writes it (only what is set)."""
    ours: JSON = dict(row["extra"] or {})
    if row["voice"]:
        ours["voice"] = row["voice"]
    if row["avatar_url"]:
        ours["avatar_url"] = row["avatar_url"]
    if row["model_url"]:
        ours["model_url"] = row["model_url"]
    return ours


def split_ours(ours: JSON) -> JSON:
    """`extensions.taleweaver` as it arrived, as the row's columns."""
    extra = {k: v for k, v in ours.items() if k not in ("voice", "avatar_url", "model_url")}
    voice = ours.get("voice")
    avatar = ours.get("avatar_url")
    model = ours.get("model_url")
    if voice is not None and not isinstance(voice, dict):
        raise InvalidInput("extensions.taleweaver.voice must be an object")
    for key, value in (("avatar_url", avatar), ("model_url", model)):
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"extensions.taleweaver.{key} must be a string")
    extra.pop("relationships", None)  # derived from sessions, never imported
    return {"voice": voice or {}, "avatar_url": avatar, "model_url": model, "extra": extra}


def card_texts(row: JSON, card: Card, ours: JSON) -> tuple[str, str]:
    """(V2 text, V3 text): the raw text where the card came in that spec unedited."""
    unchanged = not row["edited"]
    v3 = row["raw"] if unchanged and row["source_spec"] == "v3" else dump_card(to_v3(card, ours))
    v2 = (
        row["raw"]
        if unchanged and row["source_spec"] in ("v1", "v2")
        else dump_card(to_v2(card, ours))
    )
    return v2, v3


def icon_path(card: Card, assets: Sequence[tuple[str, str]]) -> str | None:
    """Of the assets' (kind, path), the path of the picture that stands for the
    character: a PNG card's image, else the CHARX icon the card names (one called
    "main" first), else any file under assets/icon/."""
    image = next((path for kind, path in assets if kind == "image"), None)
    if image is not None:
        return image
    files = {path for kind, path in assets if kind == "file"}
    icons = [
        a
        for a in card.data.get("assets") or []
        if a.get("type") == "icon" and str(a.get("uri", "")).startswith(EMBEDDED)
    ]
    icons.sort(key=lambda a: a.get("name") != "main")
    for icon in icons:
        path = str(icon["uri"])[len(EMBEDDED) :]
        if path in files:
            return path
    return next((path for path in files if path.startswith("assets/icon/")), None)


def _icon(card: Card, assets: list[Asset]) -> Asset | None:
    path = icon_path(card, [(a.kind, a.path) for a in assets])
    return next((a for a in assets if a.path == path), None)


def avatar(card: Card, assets: list[Asset]) -> Asset | None:
    return _icon(card, assets)


def export_bytes(
    row: JSON, card: Card, assets: list[Asset], fmt: str, *, extra: JSON | None = None
) -> bytes:
    """The card file; `extra` adds to `extensions.taleweaver` (the card is then
    written from its normalised form, not its raw text)."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    ours = ours_from_row(row)
    if extra:
        ours |= extra
        row = row | {"edited": True}
    v2, v3 = card_texts(row, card, ours)
    if fmt == "json":
        return (v3 if row["source_spec"] == "v3" or row["edited"] else v2).encode()
    if fmt == "png":
        icon = _icon(card, assets)
        picture = icon.data if icon is not None and is_png(icon.data) else None
        return write_png_card(picture, v2_text=v2, v3_text=v3)
    files = {a.path: a.data for a in assets if a.kind == "file"}
    image = next((a for a in assets if a.kind == "image"), None)
    if image is not None and ICON_PATH not in files:
        # A PNG card going out as CHARX: its picture becomes the icon asset.
        files[ICON_PATH] = image.data
        exported = to_v3(card, ours)
        exported["data"]["assets"] = [
            *(exported["data"].get("assets") or []),
            {"type": "icon", "uri": EMBEDDED + ICON_PATH, "name": "main", "ext": "png"},
        ]
        v3 = dump_card(exported)
    return write_charx(v3, files)
