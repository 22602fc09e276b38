"""Lorebooks: keyword-activated context imported from the formats users bring."""

from taleweaver.memory.lorebook.formats import FORMATS, parse_lorebook, to_format
from taleweaver.memory.lorebook.matcher import AutomatonIndex, PreparedBooks
from taleweaver.memory.lorebook.reimport import OnDuplicate
from taleweaver.memory.lorebook.service import Lorebooks
from taleweaver.memory.lorebook.source import LorebookSource

__all__ = [
    "FORMATS",
    "AutomatonIndex",
    "LorebookSource",
    "Lorebooks",
    "OnDuplicate",
    "PreparedBooks",
    "parse_lorebook",
    "to_format",
]
