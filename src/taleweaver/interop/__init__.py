"""Interop: the formats other tools write (cards, chats, lorebook files), workspace
bundles and backups. The card codecs are what the characters feature reads and
writes cards with."""

from taleweaver.interop.cards import (
    EMBEDDED,
    dump_card,
    read_card_file,
    write_charx,
    write_png_card,
)
from taleweaver.interop.cards.png import is_png

__all__ = ["EMBEDDED", "dump_card", "is_png", "read_card_file", "write_charx", "write_png_card"]
