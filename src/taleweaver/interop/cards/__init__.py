"""Character card files: PNG (`ccv3`/`chara` chunks), JSON (V1, V2, V3) and CHARX.

`read_card_file` recognises the format from the content, checks it within the
limits, and hands back the card's JSON and the files that came with it;
nothing here touches the database.
"""

from __future__ import annotations

from taleweaver.interop.cards.card_file import CardFile, detect_format, read_card_file
from taleweaver.interop.cards.charx import EMBEDDED, write_charx
from taleweaver.interop.cards.json_card import dump_card
from taleweaver.interop.cards.png import placeholder_png, write_png_card

__all__ = [
    "EMBEDDED",
    "CardFile",
    "detect_format",
    "dump_card",
    "placeholder_png",
    "read_card_file",
    "write_charx",
    "write_png_card",
]
