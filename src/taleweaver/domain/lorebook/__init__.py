"""Lorebooks: keyword-activated context (a superset of SillyTavern World Info), pure."""

from taleweaver.domain.lorebook.activation import (
    Activated,
    Outcome,
    Segment,
    Skipped,
    TokenCounter,
    activate,
    estimate_tokens,
    roll,
)
from taleweaver.domain.lorebook.filters import ActiveCharacter, generation_types
from taleweaver.domain.lorebook.keys import PlainKey, accepts, parse_regex_key, plain_match
from taleweaver.domain.lorebook.model import (
    GENERATION_TYPES,
    Book,
    BookSettings,
    Entry,
    Logic,
    Position,
    Role,
    entry_from_json,
    entry_to_json,
    make_entry,
    settings_from_json,
    settings_to_json,
    update_entry,
)
from taleweaver.domain.lorebook.prepare import KeyIndex, KeyRef, PreparedBook, prepare

__all__ = [
    "GENERATION_TYPES",
    "Activated",
    "ActiveCharacter",
    "Book",
    "BookSettings",
    "Entry",
    "KeyIndex",
    "KeyRef",
    "Logic",
    "Outcome",
    "PlainKey",
    "Position",
    "PreparedBook",
    "Role",
    "Segment",
    "Skipped",
    "TokenCounter",
    "accepts",
    "activate",
    "entry_from_json",
    "entry_to_json",
    "estimate_tokens",
    "generation_types",
    "make_entry",
    "parse_regex_key",
    "plain_match",
    "prepare",
    "roll",
    "settings_from_json",
    "settings_to_json",
    "update_entry",
]
